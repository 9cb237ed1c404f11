"""ZAB snapshots: a large state snapshots once per as many txns as it has keys (its
copy is paid once per that many txns), a small one every ``snapshot_threshold``."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR
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
    assert_amortized(taken, threshold, keyspace)
    # The followers apply the same rule.
    follower = next(n for n in c.nodes.values() if not n.is_leader())
    assert follower.snapshot is not None
    assert follower.last_applied - follower.snapshot.last_index < keyspace
