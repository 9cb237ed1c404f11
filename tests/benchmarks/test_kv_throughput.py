"""benchmarks/kv_throughput.py's --rounds: each of our points is compared with etcd's of
the same round (etcd's own figures move by up to 2x between runs), and the summary gives
the ratio of every round, its minimum and median."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import kv_throughput
from kv_throughput import Point, ratios, round_summary


def point(system: str, round_: int, ops: float, p99: float, errors: int = 0) -> Point:
    return Point(
        system=system,
        nodes=3,
        op="put",
        concurrency=64,
        seconds=10.0,
        ok=int(ops * 10),
        errors=errors,
        ops_per_s=ops,
        p50_ms=1.0,
        p99_ms=p99,
        protocol="raft" if system == "consensuskit" else "",
        round=round_,
    )


def test_ratios_pair_points_of_one_round():
    points = [
        point("consensuskit", 1, 150.0, 5.0),
        point("etcd", 1, 100.0, 10.0),
        point("consensuskit", 2, 250.0, 12.0, errors=3),
        point("etcd", 2, 200.0, 10.0),
    ]
    rows = ratios(points)
    assert [(r["round"], r["throughput_ratio"], r["p99_ratio"]) for r in rows] == [
        (1, 1.5, 0.5),
        (2, 1.25, 1.2),
    ]
    [summary] = round_summary(rows)
    assert summary["throughput_ratios"] == [1.5, 1.25]
    assert (summary["min"], summary["median"]) == (1.25, 1.375)
    assert (summary["p99_no_worse_rounds"], summary["error_free_rounds"], summary["rounds"]) == (1, 1, 2)


def test_a_round_without_etcd_has_no_ratio():
    assert ratios([point("consensuskit", 2, 150.0, 5.0), point("etcd", 1, 100.0, 10.0)]) == []


def test_rounds_below_one_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        kv_throughput.main(["--rounds", "0"])
    assert exit_info.value.code == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
