"""Seed sweeps for ZAB, the size of Raft's CI sweep (in the default suite, as Raft's):
correct ZAB survives every fault with linearizable histories, also with frequent
snapshots (SNAP syncs) and observers.  Seed 99 at 5 nodes is the learner that had
promised a later epoch and never rejoined (protocols/zab/README.md, "Deviations").
(The bug knobs' sweeps are tests/check/test_bug_knobs.py and test_zab_knobs.py.)
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from consensuskit.sim import NEMESIS_KINDS, SimConfig, Simulation
from consensuskit.sweep import run_sweep

WORKERS = os.cpu_count() or 1


def config(nodes: int, **overrides) -> SimConfig:
    base = dict(
        protocol="zab",
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        duration=5.0,
        clients=3,
        nemesis=NEMESIS_KINDS,
    )
    base.update(overrides)
    return SimConfig(**base)


@pytest.mark.parametrize("nodes", [3, 5])
def test_ci_sweep_all_faults_no_violation(nodes: int):
    result = run_sweep(config(nodes), range(200), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in result.failures] == []
    assert result.passed == 200


@pytest.mark.parametrize(
    "options",
    [
        {"snapshot_threshold": 30, "snapshot_trailing": 5},  # learners often need a SNAP
        {"observers": 2},  # 3 voters, 2 observers
        {"read_mode": "sync"},  # ZooKeeper's sync + read: checked by the invariants only
    ],
    ids=["snapshots", "observers", "sync-reads"],
)
def test_sweep_variants(options: dict):
    cfg = config(5, duration=5.0, options=options)
    if options.get("read_mode") == "sync":
        cfg = config(5, duration=5.0, options=options, check_linearizability=False)
    result = run_sweep(cfg, range(6), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in result.failures] == []


def test_a_run_without_step_checks_reports_no_false_violation():
    """Without per-step checks no server reports its commits to the checker: it must
    not then call every acknowledged write uncommitted (it did, and the run stopped)."""
    sim = Simulation(config(3, nemesis=(), clients=8, duration=1.0, check_every_step=False))
    result = sim.run()
    assert result.violations == []
    assert sum(1 for r in sim.history if r.status == "ok") > 100


def test_a_leader_elect_paused_through_later_epochs_may_establish_its_own(tmp_path):
    """Seed 9100046 of ``sweep zab --duration 60 --clients 6 --nemesis all,membership``:
    n3, the leader-elect of epoch 14, is paused before a quorum's NEWLEADER acks reach
    it; the cluster goes on to epoch 21.  Resumed, it handles the queued acks first and
    is established in epoch 14, as ZooKeeper's leader would be, with a history that
    lacks the later epochs' txns.  It can commit nothing (every quorum moved past epoch
    14): primary integrity asks only for the txns of earlier epochs, and the run passes
    (the checker reported a violation here before)."""
    from consensuskit.cli import build_config

    trace = tmp_path / "trace.jsonl"
    cfg = build_config("zab", 5, 9100046, 60.0, 6, "all,membership", None)
    result = Simulation(dataclasses.replace(cfg, trace_path=str(trace))).run()
    assert result.violations == [] and result.linearizable
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    established = {(r["node"], r["epoch"]) for r in records if r.get("kind") == "established"}
    assert ("n3", 14) in established and max(epoch for _, epoch in established) > 14


def test_an_ack_that_arrives_after_its_sender_lost_its_disk_is_not_judged_by_the_new_disk():
    """Seed 11300609 of the same sweep: n1 ACKs PROPOSALs up to 16:21 (durable then),
    loses its disk 3 ms later (wipe, restart) and its ACKs arrive after, while its new
    life waits for its SNAP.  The ACK was true when sent, as any ACK of a disk lost the
    moment after (the disk-loss rule, protocols/zab/README.md, keeps the new life from
    counting until it caught up); the checker called it ack-before-persist."""
    from consensuskit.cli import build_config

    result = Simulation(build_config("zab", 5, 11300609, 60.0, 6, "all,membership", None)).run()
    assert result.violations == [] and result.linearizable
    assert result.faults.get("wipe", 0) >= 1
