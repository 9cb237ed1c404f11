"""Seed sweeps for ZAB, the size of Raft's CI sweep (in the default suite, as Raft's):
correct ZAB survives every fault with linearizable histories, also with frequent
snapshots (SNAP syncs) and observers.  Seed 99 at 5 nodes is the learner that had
promised a later epoch and never rejoined (protocols/zab/README.md, "Deviations").
(The bug knobs' sweeps are tests/check/test_bug_knobs.py and test_zab_knobs.py.)
"""

from __future__ import annotations

import os
import types

import pytest

from consensuskit.check.zab import ZabChecker
from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.zab.messages import COMMAND, Ack, Txn
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


def test_a_leader_elect_paused_through_later_epochs_may_establish_its_own():
    """Seed 9100046 of ``sweep zab --duration 60 --clients 6 --nemesis all,membership``
    (2026-12-08): n3, the leader-elect of epoch 14, was paused before a quorum's
    NEWLEADER acks reached it while the cluster went on to epoch 21.  Resumed, it handled
    the queued acks first and was established in epoch 14, as ZooKeeper's leader would
    be, with a history that lacks the later epochs' txns; it can commit nothing (every
    quorum moved past epoch 14) and went back to LOOKING 0.3 s later.  Primary integrity
    asks an established leader only for the txns of earlier epochs (the checker
    reported a violation there before); a leader of a later epoch lacking one is still
    caught."""
    checker = ZabChecker()
    later = Txn(zxid=(15 << 32) | 1, index=422, kind=COMMAND, data=put("c3", 1, "k1", 3))
    earlier = Txn(zxid=(13 << 32) | 2, index=421, kind=COMMAND, data=put("c3", 0, "k1", 2))
    checker.committed = {421: earlier, 422: later}
    history = _History({421: earlier.zxid})  # holds 13:2, not 15:1
    checker.on_established(types.SimpleNamespace(id="n3", epoch=14, log=history))
    assert checker.pending == []
    checker.on_established(types.SimpleNamespace(id="n4", epoch=16, log=history))
    assert [str(v) for v in checker.pending] == [
        "primary-integrity: n4 is established in epoch 16 with a history that lacks "
        "15:1#422:put k1=3, committed at position 422"
    ]


def put(client: str, seq: int, key: str, value: object) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key=key, value=value))


class _History:
    """The part of a ZAB log the checker reads: zxids by position, no snapshot."""

    offset = 0

    def __init__(self, zxids: dict[int, int]) -> None:
        self.zxids = zxids

    def zxid_at(self, index: int) -> int | None:
        return self.zxids.get(index)


def test_an_ack_that_arrives_after_its_sender_lost_its_disk_is_not_judged_by_the_new_disk():
    """Seed 11300609 of the same sweep (2026-12-08): n1 ACKed PROPOSALs up to 16:21
    (durable then), lost its disk 3 ms later (wipe, restart), and its ACKs arrived after,
    while its new life waited for its SNAP.  The ACK was true when sent, as any ACK of a
    disk lost the moment after (the disk-loss rule, protocols/zab/README.md, keeps the
    new life from counting until it caught up); the checker called it ack-before-persist.
    An ACK its disk does not hold, with no wipe since its sync, is still caught."""
    old_disk, new_disk = MemoryStorage(), MemoryStorage()
    sim = types.SimpleNamespace(
        nodes={"n1": types.SimpleNamespace(accepted_epoch=16)},
        storage_of=lambda node_id: disks[node_id],
    )
    disks = {"n1": types.SimpleNamespace(durable=old_disk)}
    checker = ZabChecker()
    checker.sim = sim
    checker.on_synced(types.SimpleNamespace(id="n1"), 16, 500, (16 << 32) | 1)
    disks["n1"] = types.SimpleNamespace(durable=new_disk)  # wiped: a new, empty disk
    ack = Ack(epoch=16, index=538, zxid=(16 << 32) | 21, newleader=False)
    checker.on_ack(None, "n1", ack)
    assert checker.pending == []
    checker.on_synced(types.SimpleNamespace(id="n1"), 16, 0, 0)  # its new life synced
    checker.on_ack(None, "n1", ack)  # an ACK of what its disk does not hold
    assert [v.name for v in checker.pending] == ["durable-ack"]
