"""A follower synchronised under load keeps up: the leader's compaction may pass the
point a NEWLEADER brought it to before its ACK arrives, and PROPOSALs follow a syncing
learner at once whatever it acknowledged before (issues.md #1's fix).

Found on real processes (kv_throughput, 3 nodes, 64 clients): a follower that connected
late was synced while the leader snapshotted every 200 txns (keeping 20); its NEWLEADER
ACK named an index the leader had compacted meanwhile, the leader could not check that
ACK's zxid and left the follower's acknowledged position at 0, and its in-flight window
(position - 0 > 1,024) never opened: the follower got COMMITs for txns it never
received, and the cluster ran on one follower."""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.zab.messages import Ack
from tests.protocols.zab.fake import Cluster

OPTIONS = {"snapshot_threshold": 50, "snapshot_trailing": 5, "max_inflight_txns": 64, "max_batch_txns": 16}


def put(key: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value="v"))


def load(c: Cluster, leader: Any, first: int, count: int) -> int:
    for seq in range(first, first + count):
        leader.on_request(put(f"k{seq % 7}", seq))
        c.deliver_all()
    return first + count


def is_newleader_ack(msg: Any) -> bool:
    return isinstance(msg, Ack) and msg.newleader


def test_a_late_follower_whose_sync_the_leader_compacted_before_its_ack_catches_up():
    c = Cluster(["a", "b", "c"], **OPTIONS)
    c.partition(["a"], ["b", "c"])  # "a" starts late
    leader = c.establish()
    assert leader.id == "c"
    seq = load(c, leader, 1, 100)
    c.heal()
    follower = c.nodes["a"]
    held = []
    for _ in range(10):  # FLE, FOLLOWERINFO, LEADERINFO, ACKEPOCH, NEWLEADER; its ACK held
        c.fire("a", "notify" if follower.state == "looking" else "tick")
        for _ in range(10):
            moved = [(src, dst, m) for src in c.ids for dst, m in c.envs[src].take()]
            held += [(src, dst, m) for src, dst, m in moved if is_newleader_ack(m)]
            for src, dst, m in moved:
                if not is_newleader_ack(m):
                    c.nodes[dst].on_message(src, m)
        if held:
            break
    assert held, follower.status()
    synced_to = held[0][2].index
    # The leader commits and compacts past that point before the ACK arrives.
    c.partition(["a"], ["b", "c"])
    seq = load(c, leader, seq, 120)
    assert leader.log.offset > synced_to
    c.heal()
    for src, dst, m in held:
        c.nodes[dst].on_message(src, m)
    c.deliver_all()
    for _ in range(4):
        seq = load(c, leader, seq, 20)
        c.fire("c", "tick")
        c.deliver_all()
    assert follower.log.last_index == leader.log.last_index, (follower.status(), leader.learners["a"])
