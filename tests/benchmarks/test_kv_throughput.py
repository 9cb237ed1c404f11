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


def test_machine_shares_are_steal_and_idle_over_the_interval():
    before = dict.fromkeys(kv_throughput._STAT_FIELDS, 1000)
    after = {**before, "user": 1600, "system": 1200, "idle": 1100, "iowait": 1050, "steal": 1050}
    # 600 + 200 user/system, 100 + 50 idle/iowait, 50 steal: 1,000 ticks in all.
    assert kv_throughput.machine_shares(before, after) == {"steal_pct": 5.0, "idle_pct": 15.0}
    assert kv_throughput.machine_shares({}, after) == {}
    assert kv_throughput.machine_shares(before, before) == {}
    now = kv_throughput.machine_ticks()
    assert set(now) == set(kv_throughput._STAT_FIELDS) and all(v >= 0 for v in now.values())


def test_ratios_carry_the_machines_steal_of_both_points():
    ours, etcd = point("consensuskit", 1, 150.0, 5.0), point("etcd", 1, 100.0, 10.0)
    ours.machine, etcd.machine = {"steal_pct": 7.5, "idle_pct": 2.0}, {"steal_pct": 0.4, "idle_pct": 1.0}
    [row] = ratios([ours, etcd])
    assert (row["steal_pct"], row["etcd_steal_pct"]) == (7.5, 0.4)
