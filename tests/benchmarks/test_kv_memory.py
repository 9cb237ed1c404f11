"""benchmarks/kv_memory.py: its reading of a node's stall figures, and its arguments."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import pytest

from kv_memory import main, parse_stalls

METRICS = """\
# HELP consensuskit_term Current term
consensuskit_term 3.0
consensuskit_elections_total 2.0
consensuskit_loop_lag_max_seconds 0.4125
consensuskit_loop_lag_seconds_bucket{le="0.5"} 10.0
consensuskit_gc_collections_total{generation="0"} 55.0
consensuskit_gc_collections_total{generation="2"} 4.0
consensuskit_gc_seconds_total{generation="0"} 1.25
consensuskit_gc_seconds_total{generation="1"} 0.5
consensuskit_gc_seconds_total{generation="2"} 2.0
consensuskit_gc_max_seconds{generation="0"} 0.1
consensuskit_gc_max_seconds{generation="2"} 0.3
consensuskit_events_total{kind="snapshot"} 7.0
consensuskit_events_total{kind="restore"} 1.0
consensuskit_events_total{kind="step-down"} 1.0
consensuskit_messages_received_total{type="AppendEntries"} 9.0
"""


def test_stalls_read_from_metrics():
    assert parse_stalls(METRICS) == {
        "loop_lag_max_s": 0.412,
        "elections": 2,
        "term": 3,
        "full_gcs": 4,
        "gc_s": 3.75,
        "gc_max_s": 0.3,
        "snapshots": 7,
        "restores": 1,
    }


def test_a_page_without_the_figures_reads_as_unknown_or_zero():
    got = parse_stalls("# nothing here\n")
    assert math.isnan(got["loop_lag_max_s"])
    assert (got["elections"], got["term"], got["full_gcs"], got["gc_s"], got["gc_max_s"]) == (0, 0, 0, 0, 0.0)
    assert (got["snapshots"], got["restores"]) == (0, 0)


def test_the_etcd_service_runs_part_one_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--service", "etcd"])
    assert exit_info.value.code == 2
    assert "--service etcd runs part 1 only: add --part load" in capsys.readouterr().err
