"""ZAB snapshots: a large state snapshots once per as many txns as it has keys (its
copy is paid once per that many txns), a small one every ``snapshot_threshold``."""

from __future__ import annotations

import itertools

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR
from tests.protocols.zab.fake import Cluster


def put(key: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value="v"))


def test_a_large_state_waits_for_as_many_txns_as_keys_between_snapshots():
    threshold, keyspace = 50, AMORTIZE_FLOOR + 100
    c = Cluster(["a", "b", "c"], snapshot_threshold=threshold, snapshot_trailing=0)
    leader = c.establish()
    taken = []  # (snapshot index, keys in the state when it was taken)
    for seq in range(1, 4 * keyspace):
        leader.on_request(put(f"key{seq % keyspace}", seq))
        c.deliver_all()
        snap = leader.snapshot
        if snap is not None and (not taken or taken[-1][0] != snap.last_index):
            taken.append((snap.last_index, len(leader.sm)))
    gaps = [(b - a, keys) for (a, _), (b, keys) in itertools.pairwise(taken)]
    small = [gap for gap, keys in gaps if keys <= AMORTIZE_FLOOR]
    large = [(gap, keys) for gap, keys in gaps if keys > AMORTIZE_FLOOR]
    assert small and all(gap == threshold for gap in small)
    assert len(large) >= 2 and all(gap == keys for gap, keys in large[1:]), large
    assert large[-1] == (keyspace, keyspace)
    # The followers apply the same rule.
    follower = next(n for n in c.nodes.values() if not n.is_leader())
    assert follower.snapshot is not None
    assert follower.last_applied - follower.snapshot.last_index < keyspace
