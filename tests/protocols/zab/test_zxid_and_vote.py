"""zxid = epoch << 32 | counter (a counter about to overflow forces a new epoch), FLE's
vote order, and the sync choice, each on its own."""

from __future__ import annotations

from consensuskit.core.client import Op
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.zab.log import ZabLog
from consensuskit.protocols.zab.messages import DIFF, SNAP, TRUNC, TRUNC_DIFF, Txn
from consensuskit.protocols.zab.sync import choose_sync
from consensuskit.protocols.zab.vote import beats, natural_key
from consensuskit.sim import SimConfig, Simulation


def z(epoch: int, counter: int) -> int:
    return (epoch << 32) | counter


def test_vote_order_is_epoch_then_zxid_then_id():
    assert beats((2, z(1, 1), 1), (1, z(1, 9), 3))  # the epoch first
    assert beats((1, z(1, 9), 1), (1, z(1, 8), 3))  # then the zxid
    assert beats((1, z(1, 9), 3), (1, z(1, 9), 2))  # then the id
    assert not beats((1, z(1, 9), 2), (1, z(1, 9), 2))
    assert not beats((9, z(9, 9), 0), (0, 0, 1))  # a vote for nobody never wins
    # The knob: zxid first, the epoch ignored.
    assert beats((1, z(1, 9), 1), (2, z(1, 1), 3), ignore_epoch=True)


def test_server_ids_order_naturally():
    assert sorted(["n10", "n2", "n1"], key=natural_key) == ["n1", "n2", "n10"]


def log_of(*zxids: int, snapshot: tuple[int, int] = (0, 0)) -> ZabLog:
    log = ZabLog(MemoryStorage(), *snapshot)
    start = snapshot[0] + 1
    log.append([Txn(zxid=x, index=start + i, kind="noop") for i, x in enumerate(zxids)])
    return log


def test_sync_choice():
    log = log_of(z(1, 1), z(1, 2), z(2, 1), z(2, 2))
    assert choose_sync(log, z(2, 2)).mode == DIFF  # current: an empty DIFF
    assert (choose_sync(log, z(1, 2)).mode, choose_sync(log, z(1, 2)).base_index) == (DIFF, 2)
    assert choose_sync(log, z(2, 5)).mode == TRUNC  # beyond the leader's last, same epoch
    plan = choose_sync(log, z(1, 3))  # inside the history, a txn the leader lacks
    assert (plan.mode, plan.base_zxid) == (TRUNC_DIFF, z(1, 2))
    # The cut point would be of another epoch: SNAP (or TRUNC with the knob).
    assert choose_sync(log, z(3, 1)).mode == SNAP
    assert choose_sync(log, z(3, 1), trunc_across_epoch=True).mode == TRUNC
    compacted = log_of(z(2, 1), z(2, 2), snapshot=(2, z(1, 2)))
    assert choose_sync(compacted, z(1, 1)).mode == SNAP  # behind the retained log


def test_an_exhausted_counter_forces_a_new_epoch():
    sim = Simulation(
        SimConfig(protocol="zab", node_ids=("n1", "n2", "n3"), seed=0, clients=0, options={"max_counter": 3})
    )
    handles = []
    for i in range(10):
        handle = sim.submit(Op(kind="put", key="k", value=i), client_id="w")
        sim.run_until_true(lambda h=handle: h.status is not None, timeout=10.0)
        handles.append(handle)
    assert all(h.status == "ok" for h in handles)
    zxids = [t.zxid for t in sim.nodes["n1"].log.entries]
    assert all(1 <= x & 0xFFFFFFFF <= 3 for x in zxids)
    assert len({x >> 32 for x in zxids}) >= 4  # 10 txns, 3 per epoch
    assert zxids == sorted(zxids)


def test_epochs_and_rounds_past_their_bounds_are_dropped_not_adopted():
    """A fuzzed or broken peer's epoch at the int64 top would be adopted and incremented
    past what the wire carries: the cluster could then never agree again (found by
    tests/server/test_fuzz_peer.py), and so would one at the bound itself.  A message
    past the bound, or more than a step above the node's own number, is malformed:
    dropped, counted."""
    from consensuskit.protocols.common.number_bounds import STEP
    from consensuskit.protocols.zab.messages import LeaderInfo, Notification
    from consensuskit.protocols.zab.node import EPOCH_STEP, MAX_EPOCH, MAX_ROUND

    from .fake import Cluster

    c = Cluster(["n1", "n2", "n3"])
    target, env = c.node("n1"), c.envs["n1"]
    clock = target.logicalclock
    for bad in (
        Notification(leader="n2", zxid=0, peer_epoch=2**63 - 1, election_epoch=1, state="leading"),
        Notification(leader="n2", zxid=0, peer_epoch=MAX_EPOCH + 1, election_epoch=1, state="looking"),
        Notification(leader="n2", zxid=0, peer_epoch=0, election_epoch=MAX_ROUND + 1, state="looking"),
        Notification(leader="n2", zxid=0, peer_epoch=-1, election_epoch=1, state="looking"),
        LeaderInfo(epoch=2**63 - 1),
        # At the bounds, and a step and one above the node's own numbers.
        Notification(leader="n2", zxid=0, peer_epoch=MAX_EPOCH, election_epoch=1, state="looking"),
        Notification(leader="n2", zxid=0, peer_epoch=0, election_epoch=MAX_ROUND, state="looking"),
        Notification(leader="n2", zxid=0, peer_epoch=EPOCH_STEP + 1, election_epoch=1, state="looking"),
        Notification(leader="n2", zxid=0, peer_epoch=0, election_epoch=clock + STEP + 1, state="looking"),
    ):
        before = len(env.recorded("ignored"))
        target.on_message("n2", bad)
        reasons = [r["reason"] for r in env.recorded("ignored")[before:]]
        assert len(reasons) == 1 and "out of reach" in reasons[0], (bad, reasons)
    assert target.current_epoch == 0 and target.accepted_epoch == 0
    leader = c.establish()  # the cluster still elects and serves epoch 1
    assert leader.current_epoch == 1
    # A step above the node's own numbers a message is still taken.
    epoch, clock = max(target.current_epoch, target.accepted_epoch), target.logicalclock
    ok = Notification(
        leader="n2", zxid=0, peer_epoch=epoch + EPOCH_STEP, election_epoch=clock + STEP, state="looking"
    )
    before = len(env.recorded("ignored"))
    target.on_message("n2", ok)
    assert not any("out of reach" in r["reason"] for r in env.recorded("ignored")[before:])
