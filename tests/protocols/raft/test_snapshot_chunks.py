"""Raft §7 (Figure 13): a snapshot larger than ``snapshot_chunk_bytes`` streams in chunks."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.raft.messages import InstallSnapshot, InstallSnapshotResponse

from .fake import Cluster


def put(seq: int, key: str, value: str) -> ClientRequest:
    return ClientRequest(client_id="x", seq=seq, op=Op(kind="put", key=key, value=value))


def lagging_cluster(chunk: int) -> Cluster:
    """c is down while the leader writes 30 keys and compacts its log behind a snapshot."""
    c = Cluster(["a", "b", "c"], snapshot_threshold=5, snapshot_trailing=1, snapshot_chunk_bytes=chunk)
    leader = c.elect("a")
    c.down = {"c"}
    for seq in range(1, 31):
        leader.on_request(put(seq, f"key-{seq:03d}", "v" * 20))
        c.deliver_all()
    assert leader.snapshot is not None and leader.log.offset > 1
    c.down = set()
    return c


def chunks_to(c: Cluster, dst: str) -> list[InstallSnapshot]:
    """Deliver everything, returning the InstallSnapshot messages that reached ``dst``."""
    seen: list[InstallSnapshot] = []
    for _ in range(200):
        batch = [(src, d, m) for src in c.ids for d, m in c.envs[src].take()]
        if not batch:
            break
        for src, d, msg in batch:
            if isinstance(msg, InstallSnapshot) and d == dst:
                seen.append(msg)
            c.nodes[d].on_message(src, msg)
    return seen


def test_large_snapshot_is_streamed_in_order_and_installed() -> None:
    c = lagging_cluster(chunk=100)
    c.fire("a", "heartbeat")
    sent = chunks_to(c, "c")
    blob = encode(c.nodes["a"].snapshot)
    assert len(sent) == -(-len(blob) // 100) > 5
    assert all(m.snapshot is None for m in sent)
    assert [m.offset for m in sent] == list(range(0, len(blob), 100))
    assert [m.done for m in sent] == [False] * (len(sent) - 1) + [True]
    assert b"".join(m.chunk for m in sent) == blob
    follower = c.nodes["c"]
    assert follower.snapshot == c.nodes["a"].snapshot
    assert follower.sm.get("key-030") == "v" * 20 and follower.snapshot_incoming is None
    assert c.nodes["a"].snapshot_readers == {}  # the leader freed what it streamed from


def test_small_snapshot_still_goes_whole() -> None:
    c = lagging_cluster(chunk=1 << 20)
    c.fire("a", "heartbeat")
    sent = chunks_to(c, "c")
    assert len(sent) == 1 and sent[0].snapshot is not None
    assert c.nodes["c"].sm.get("key-030") == "v" * 20


def test_a_lost_chunk_is_resent_from_where_the_follower_stands() -> None:
    c = lagging_cluster(chunk=100)
    c.fire("a", "heartbeat")
    # Let two chunks through, then drop the third.
    delivered = 0
    dropped = None
    for _ in range(50):
        batch = [(src, d, m) for src in c.ids for d, m in c.envs[src].take()]
        if not batch:
            break
        for src, d, msg in batch:
            if isinstance(msg, InstallSnapshot) and d == "c":
                delivered += 1
                if delivered == 3:
                    dropped = msg
                    continue
            c.nodes[d].on_message(src, msg)
        if dropped is not None:
            break
    assert dropped is not None and dropped.offset == 200
    assert c.nodes["c"].snapshot_incoming is not None and len(c.nodes["c"].snapshot_incoming[1]) == 200
    # A later chunk (out of order) makes the follower say where it stands.
    later = InstallSnapshot(
        term=dropped.term, leader="a", last_index=dropped.last_index, offset=300, chunk=b"z" * 100, done=False
    )
    c.nodes["c"].on_message("a", later)
    reply = [m for d, m in c.envs["c"].take() if isinstance(m, InstallSnapshotResponse)]
    assert reply and reply[-1].next_offset == 200
    c.nodes["a"].on_message("c", reply[-1])
    rest = chunks_to(c, "c")
    assert rest[0].offset == 200
    assert c.nodes["c"].snapshot == c.nodes["a"].snapshot


def test_new_messages_round_trip_the_codec() -> None:
    m = InstallSnapshot(term=3, leader="a", last_index=9, offset=4, chunk=b"\x00\x01", done=False)
    assert decode(encode(m)) == m
    r = InstallSnapshotResponse(term=3, index=2, next_offset=6)
    assert decode(encode(r)) == r and "next_offset=6" in r.summary()
