"""ZAB snapshots: a large state snapshots once per as many txns as it has keys (its
copy is paid once per that many txns), a small one every ``snapshot_threshold``."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR, stagger_turn
from consensuskit.protocols.zab.log import ZabLog
from consensuskit.protocols.zab.messages import Txn
from consensuskit.sim.storage import SimStorage
from tests.protocols.snapshot_gaps import assert_amortized, note_snapshot
from tests.protocols.zab.fake import Cluster


def put(key: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value="v"))


def test_a_large_state_waits_for_as_many_txns_as_keys_between_snapshots():
    threshold, keyspace = 50, AMORTIZE_FLOOR + 100
    c = Cluster(["a", "b", "c"], snapshot_threshold=threshold, snapshot_trailing=0)
    leader = c.establish()
    taken: list[tuple[int, int]] = []  # (snapshot index, keys in the state when taken)
    for seq in range(1, 4 * keyspace):
        leader.on_request(put(f"key{seq % keyspace}", seq))
        c.deliver_all()
        note_snapshot(taken, leader.snapshot.last_index if leader.snapshot else None, len(leader.sm))
    assert_amortized(taken, threshold, keyspace, turn=stagger_turn(leader.id, leader.members))
    # The followers apply the same rule.
    follower = next(n for n in c.nodes.values() if not n.is_leader())
    assert follower.snapshot is not None
    assert follower.last_applied - follower.snapshot.last_index < keyspace


def txn(epoch: int, counter: int, index: int) -> Txn:
    return Txn(zxid=epoch << 32 | counter, index=index, kind="put")


def test_a_snap_older_than_our_own_snapshot_keeps_positions_equal_to_indexes():
    """A follower that compacted to 250 and holds uncommitted txns of a lost epoch gets a
    SNAP of the leader's snapshot at 200 plus txns 201..271: its disk must hold txn i at
    position i.  (It held them at 251..321: a NEWLEADER ACK before its disk held the
    synced txns, found by the etcd service's lease workload, seed 112.)"""
    storage = SimStorage()
    log = ZabLog(storage)
    log.append([txn(3, i, i) for i in range(1, 274)])
    log.compact(250)
    storage.finish_sync(storage.begin_sync())
    assert storage.durable.log_first() == 251
    log.reset(200, txn(3, 200, 200).zxid)
    log.append([txn(3, i, i) for i in range(201, 272)])
    storage.finish_sync(storage.begin_sync())
    for copy in (storage.working, storage.durable):
        assert copy.log_first() == 201 and copy.log_last() == 271
        assert [t.index for t in copy.log_records()] == list(range(201, 272))
    reloaded = ZabLog.load(SimStorage(storage.durable), 200, txn(3, 200, 200).zxid)
    assert reloaded.last_index == 271 and reloaded.entry(271).zxid == txn(3, 271, 271).zxid
