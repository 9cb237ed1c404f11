"""SnapshotReader: chunks of encode(snapshot) by offset, without the whole encoding."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.messages import encode
from consensuskit.protocols.raft.messages import ClusterConfig, InstallSnapshot, Snapshot
from consensuskit.protocols.raft.snapshot_reader import SnapshotReader

from .fake import Cluster
from .test_snapshot_chunks import lagging_cluster, put


def kv_snapshot(keys: int) -> Snapshot:
    flat: list[object] = []
    for i in range(keys):
        flat += [f"key{i:07d}", f"value-{i:050d}", 1]
    sessions = tuple((f"client-{c}", c, {"version": 1}) for c in range(50))
    config = ClusterConfig(voters=("a", "b", "c"), learners=())
    return Snapshot(
        last_index=keys, last_term=3, config=config, data={"flat": tuple(flat), "sessions": sessions}
    )


SNAP = kv_snapshot(30_000)  # about 2 MB encoded: several pieces of iter_encode
BLOB = encode(SNAP)
reads = st.tuples(st.integers(0, len(BLOB) + 10), st.integers(0, 400_000))


@settings(max_examples=60, deadline=None)
@given(st.lists(reads, min_size=1, max_size=12))
def test_any_sequence_of_reads_gives_the_bytes_of_encode(requests):
    reader = SnapshotReader(SNAP)
    for offset, n in requests:
        assert reader.read(offset, n) == BLOB[offset : offset + n]


def test_reading_forward_in_chunks_then_going_back():
    reader = SnapshotReader(SNAP)
    chunk = 100_000
    got = []
    for offset in range(0, len(BLOB), chunk):
        data = reader.read(offset, chunk + 1)
        assert (len(data) <= chunk) == (offset + chunk >= len(BLOB))  # the "done" test
        got.append(data[:chunk])
    assert b"".join(got) == BLOB and reader.size == len(BLOB)
    assert reader.read(len(BLOB), 10) == b"" and reader.read(len(BLOB) + 5, 10) == b""
    # A lost chunk: the follower asks from an earlier offset; the encoding starts over.
    assert reader.read(chunk, chunk) == BLOB[chunk : 2 * chunk]
    # The same offset again (a duplicated ack) is served from what the reader holds.
    assert reader.read(chunk, chunk) == BLOB[chunk : 2 * chunk]


def test_negative_arguments_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        SnapshotReader(SNAP).read(-1, 5)


def test_streaming_a_large_snapshot_never_holds_its_encoding():
    snap = kv_snapshot(400_000)  # about 28 MB encoded
    size = len(encode(snap))
    chunk = 1 << 20
    tracemalloc.start()
    try:
        reader = SnapshotReader(snap)
        total = 0
        offset = 0
        while data := reader.read(offset, chunk + 1):
            total += len(data[:chunk])
            offset += chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < size // 3, f"peaked at {peak} bytes for a {size}-byte snapshot"


def test_the_leader_frees_the_reader_when_it_steps_down_mid_transfer():
    c = lagging_cluster(chunk=100)
    leader = c.nodes["a"]
    c.fire("a", "heartbeat")
    for _ in range(10):  # until the transfer to c has started
        for src, dst, msg in [(s, d, m) for s in c.ids for d, m in c.envs[s].take()]:
            c.nodes[dst].on_message(src, msg)
        if leader.snapshot_readers:
            break
    assert set(leader.snapshot_readers) == {"c"}
    leader.on_message("b", InstallSnapshot(term=leader.term + 1, leader="b", snapshot=leader.snapshot))
    assert leader.role == "follower" and leader.snapshot_readers == {}


def test_two_lagging_followers_stream_independently():
    c = Cluster(
        ["a", "b", "c", "d", "e"], snapshot_threshold=5, snapshot_trailing=1, snapshot_chunk_bytes=100
    )
    leader = c.elect("a")
    c.down = {"d", "e"}
    for seq in range(1, 31):
        leader.on_request(put(seq, f"key-{seq:03d}", "v" * 20))
        c.deliver_all()
    c.down = set()
    c.fire("a", "heartbeat")
    seen: dict[str, list[InstallSnapshot]] = {"d": [], "e": []}
    most_readers = 0
    for _ in range(500):
        batch = [(s, d, m) for s in c.ids for d, m in c.envs[s].take()]
        if not batch:
            break
        for src, dst, msg in batch:
            if isinstance(msg, InstallSnapshot) and dst in seen:
                seen[dst].append(msg)
            c.nodes[dst].on_message(src, msg)
        most_readers = max(most_readers, len(leader.snapshot_readers))
    assert most_readers == 2  # both transfers were in flight together
    blob = encode(leader.snapshot)
    for follower in ("d", "e"):
        assert len(seen[follower]) > 5
        assert b"".join(m.chunk for m in seen[follower]) == blob
        assert c.nodes[follower].snapshot == leader.snapshot
    assert leader.snapshot_readers == {}
