"""DiskStorage: the Storage contract, durability across reopen, group commit, segments."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.raft.messages import COMMAND, NOOP, HardState, LogEntry
from consensuskit.server import wal
from consensuskit.server.wal import CorruptLogError, DirectoryInUseError, DiskStorage, StorageFailedError

pytestmark = pytest.mark.timeout(60)


def entry(term: int, index: int, value: bytes = b"v" * 16) -> LogEntry:
    request = ClientRequest(client_id="c", seq=index, op=Op(kind="put", key=f"k{index}", value=value))
    return LogEntry(term=term, index=index, kind=COMMAND, data=request)


def state(s: Any) -> tuple[int, int, list[Any]]:
    return s.log_first(), s.log_last(), s.log_records()


def reopen(s: DiskStorage, **options: Any) -> DiskStorage:
    s.close()
    return DiskStorage.open(s.directory, **options)


@pytest.fixture
def store(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "node", fsync=False)
    yield s
    s.close()


# ------------------------------------------------------------------ the Storage contract
def test_new_directory_is_an_empty_storage(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "a" / "b")
    assert state(s) == (1, 0, [])
    assert s.get("missing", "default") == "default"
    assert s.recovery_notes == []
    assert (tmp_path / "a" / "b").is_dir()
    s.close()


def test_writes_are_visible_at_once_and_mirror_memory_storage(store: DiskStorage):
    model = MemoryStorage()
    for s in (store, model):
        s.log_append(["a", "b", "c", "d"])
        s.log_truncate_from(3)
        s.log_append(["x"])
        s.log_compact_to(2)
        s.put("k", ("v", 1))
        s.log_truncate_from(10)  # past the end: nothing to drop
        s.log_compact_to(1)  # behind the start: nothing to drop
    assert state(store) == state(model) == (2, 3, ["b", "x"])
    assert store.get("k") == ("v", 1)


def test_compacted_records_are_freed_a_slice_per_sync_not_at_once(
    store: DiskStorage, monkeypatch: pytest.MonkeyPatch
):
    # Freeing 100,000 compacted entries at once held a loaded node's loop for up to
    # 0.1 s: the storage frees RELEASE_PER_SYNC of them per begin_sync instead.
    monkeypatch.setattr(wal, "RELEASE_PER_SYNC", 100)
    records = [entry(1, i) for i in range(1, 351)]
    store.log_append(records)
    store.sync()

    def refs() -> list[int]:
        return [sys.getrefcount(r) for r in records]

    held = refs()  # ours, the storage's, the loop's and the call's

    def freed() -> int:
        return sum(1 for now, before in zip(refs()[:300], held[:300], strict=True) if now < before)

    store.log_compact_to(301)
    assert state(store) == (301, 350, records[300:])  # gone from the log at once
    assert freed() == 0  # but not freed yet
    for expected in (100, 200, 300, 300):
        store.begin_sync().complete()
        assert freed() == expected
    assert refs()[300:] == held[300:]  # still in the log
    store.log_compact_to(351)
    store.close()  # frees what is left
    assert refs()[300:] == [n - 1 for n in held[300:]]


def test_compact_beyond_the_end_leaves_an_empty_log_starting_there(store: DiskStorage):
    store.log_append(["a", "b"])
    store.log_compact_to(10)
    assert state(store) == (10, 9, [])
    store.sync()
    store = reopen(store, fsync=False)
    assert state(store) == (10, 9, [])
    store.log_append(["j"])
    assert state(store) == (10, 10, ["j"])
    store.close()


def test_an_empty_log_restarted_before_its_start_survives_a_reopen(store: DiskStorage):
    """ZAB's SNAP onto an older snapshot: truncate everything, restart the log earlier,
    append; recovery replays the same positions (and mirrors MemoryStorage)."""
    model = MemoryStorage()
    for s in (store, model):
        s.log_append(["a", "b", "c", "d", "e", "f"])
        s.log_compact_to(5)
        s.log_compact_to(2)  # records held: nothing moves
        s.log_truncate_from(5)
        s.log_compact_to(3)
        s.log_append(["x", "y"])
    assert state(store) == state(model) == (3, 4, ["x", "y"])
    store.sync()
    store = reopen(store, fsync=False)
    assert state(store) == (3, 4, ["x", "y"])
    store.log_append(["z"])
    assert state(store) == (3, 5, ["x", "y", "z"])
    store.close()


def test_round_trip_across_reopen(store: DiskStorage):
    store.put("hard", HardState(term=3, voted_for="n2"))
    store.put("config", {"voters": ("a", "b"), "n": None, "blob": b"\x00\x01"})
    store.log_append([entry(1, 1), entry(1, 2)])
    store.log_append([LogEntry(term=2, index=3, kind=NOOP)])
    store.sync()
    before = state(store)
    again = reopen(store, fsync=False)
    assert state(again) == before
    assert again.get("hard") == HardState(term=3, voted_for="n2")
    assert again.get("config") == {"voters": ("a", "b"), "n": None, "blob": b"\x00\x01"}
    assert again.recovery_notes == []
    again.close()


def test_lists_come_back_as_tuples_as_from_the_codec(store: DiskStorage):
    store.put("k", [1, [2, 3]])
    store.sync()
    again = reopen(store, fsync=False)
    assert again.get("k") == (1, (2, 3))
    again.close()


def test_bad_input_is_refused_and_loses_nothing(store: DiskStorage):
    store.log_append(["a"])
    store.put("k", 1)
    store.sync()
    with pytest.raises(TypeError, match="not a registered message"):
        store.log_append(["b", object()])
    with pytest.raises(TypeError, match="not a registered message"):
        store.put("k", object())
    with pytest.raises(TypeError, match="record key must be a str"):
        store.put(7, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot truncate at 0: log starts at 1"):
        store.log_truncate_from(0)
    assert state(store) == (1, 1, ["a"])
    assert store.get("k") == 1
    assert store.begin_sync().empty
    again = reopen(store, fsync=False)
    assert state(again) == (1, 1, ["a"]) and again.get("k") == 1
    again.close()


def test_open_refuses_a_directory_that_is_not_ours(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorruptLogError, match=r"not a consensuskit data directory"):
        DiskStorage.open(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "hello"


def test_second_open_of_the_same_directory_is_refused(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", fsync=False)
    with pytest.raises(DirectoryInUseError, match="already open"):
        DiskStorage.open(tmp_path / "n", fsync=False)
    s.close()
    DiskStorage.open(tmp_path / "n", fsync=False).close()


def test_bad_options_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="segment_bytes must be positive"):
        DiskStorage.open(tmp_path / "n", segment_bytes=0)
    with pytest.raises(ValueError, match="inline_limit must not be negative"):
        DiskStorage.open(tmp_path / "n", inline_limit=-1)


def test_closed_storage_refuses_writes(store: DiskStorage):
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.log_append(["a"])
    with pytest.raises(ValueError, match="closed"):
        store.sync()
    store.close()  # idempotent


# -------------------------------------------------------------------------- durability
def test_unsynced_writes_are_lost_and_synced_ones_kept(store: DiskStorage):
    store.log_append(["a", "b"])
    store.put("k", "synced")
    store.sync()
    store.log_append(["c"])
    store.put("k", "unsynced")
    store.log_truncate_from(1)
    again = reopen(store, fsync=False)  # close() without sync() is a crash
    assert state(again) == (1, 2, ["a", "b"])
    assert again.get("k") == "synced"
    again.close()


def test_a_copy_taken_right_after_sync_recovers_everything_synced(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n")
    expected = MemoryStorage()
    for i in range(1, 30):
        for target in (s, expected):
            target.log_append([entry(1, i)])
            target.put("hard", HardState(term=i, voted_for=None))
        s.sync()
        if i % 7 == 0:
            shutil.copytree(tmp_path / "n", tmp_path / f"crash{i}")
            copy = DiskStorage.open(tmp_path / f"crash{i}")
            assert state(copy) == state(expected)
            assert copy.get("hard") == HardState(term=i, voted_for=None)
            copy.close()
        s.log_append(["never synced"])  # in the working view only
        s.log_truncate_from(s.log_last())
    s.close()


def test_a_begun_but_not_completed_batch_is_not_durable(store: DiskStorage):
    store.log_append(["a"])
    store.sync()
    store.log_append(["b"])
    batch = store.begin_sync()
    assert not batch.empty
    again = reopen(store, fsync=False)
    assert state(again) == (1, 1, ["a"])
    again.close()


def test_one_fsync_per_batch_however_many_writes(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n")
    created = s.stats.fsync_count
    for i in range(1, 101):
        s.log_append([entry(1, i)])
    s.put("hard", HardState(term=1, voted_for="n1"))
    s.sync()
    assert s.stats.fsync_count == created + 1
    assert s.stats.batches == 1
    assert s.stats.last_fsync_seconds > 0
    s.sync()  # nothing new: no fsync
    assert s.stats.fsync_count == created + 1
    s.close()


def test_fsync_false_never_fsyncs_but_still_writes(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", fsync=False)
    s.log_append(["a"])
    s.sync()
    assert s.stats.fsync_count == 0 and s.stats.bytes_written > 0
    again = reopen(s, fsync=False)
    assert state(again) == (1, 1, ["a"])
    again.close()


def test_completing_a_later_batch_writes_the_earlier_ones_in_order(store: DiskStorage):
    store.log_append(["a"])
    first = store.begin_sync()
    store.log_truncate_from(1)
    store.log_append(["b"])
    second = store.begin_sync()
    second.complete()
    assert first.done and second.done
    first.complete()  # already written: nothing to do
    assert store.stats.batches == 2
    again = reopen(store, fsync=False)
    assert state(again) == (1, 1, ["b"])
    again.close()


def test_an_empty_batch_completes_earlier_sealed_batches(store: DiskStorage):
    store.log_append(["a"])
    store.begin_sync()  # sealed, never completed by its owner
    store.sync()  # empty batch of its own, but sync() promises every earlier write
    again = reopen(store, fsync=False)
    assert state(again) == (1, 1, ["a"])
    again.close()


def test_complete_in_a_worker_thread_while_the_loop_keeps_writing(tmp_path: Path):
    """The runtime's pattern: begin_sync on the loop, complete in a thread, keep going."""
    s = DiskStorage.open(tmp_path / "n", segment_bytes=4096)
    model = MemoryStorage()
    durable_snapshots: list[tuple[int, tuple[int, int, list[Any]], Any]] = []
    worker: threading.Thread | None = None
    errors: list[BaseException] = []

    def complete(batch: wal.SyncBatch) -> None:
        try:
            batch.complete()
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    index = 0
    for round_ in range(60):
        for _ in range(5):
            index += 1
            for target in (s, model):
                target.log_append([entry(round_, index)])
        if round_ % 9 == 0:
            for target in (s, model):
                target.put("hard", HardState(term=round_, voted_for=None))
        if round_ % 13 == 12:
            for target in (s, model):
                target.log_compact_to(index - 3)
        if worker is not None:
            worker.join()
        batch = s.begin_sync()
        durable_snapshots.append((round_, state(model), model.get("hard")))
        worker = threading.Thread(target=complete, args=(batch,))
        worker.start()
    assert worker is not None
    worker.join()
    assert not errors
    _, expected, hard = durable_snapshots[-1]
    again = reopen(s)
    assert state(again) == expected
    assert again.get("hard") == hard
    again.close()


def test_concurrent_completes_of_many_batches_keep_order(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", segment_bytes=2048, fsync=False)
    batches = []
    for i in range(1, 201):
        s.log_append([i])
        if i % 3 == 0:
            s.log_truncate_from(s.log_last())  # drop it again
        batches.append(s.begin_sync())
    threads = [threading.Thread(target=b.complete) for b in reversed(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [i for i in range(1, 201) if i % 3 != 0]
    again = reopen(s, fsync=False)
    assert again.log_records() == expected
    again.close()


def test_a_failed_fsync_fails_the_storage_and_restart_recovers_synced_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    s = DiskStorage.open(tmp_path / "n")
    s.log_append(["a"])
    s.sync()

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal, "_datasync", broken)
    s.log_append(["b"])
    with pytest.raises(OSError, match="Input/output error"):
        s.sync()
    with pytest.raises(StorageFailedError, match="failed earlier"):
        s.sync()
    monkeypatch.undo()
    # The process would stop here.  "b" reached the page cache; whether it survives is
    # unknown to the node, which never acknowledged it: both outcomes are allowed.
    again = reopen(s)
    assert again.log_records() in (["a"], ["a", "b"])
    again.close()


# ------------------------------------------------------------- named records in files
def test_large_named_records_go_to_their_own_file_atomically(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", inline_limit=100)
    s.put("small", "x")
    s.put("snap", {"data": b"s" * 1000})
    s.sync()
    files = sorted(p.name for p in (tmp_path / "n").glob("rec-*.bin"))
    assert files == ["rec-0000000000000001.bin"]
    s.put("snap", {"data": b"t" * 1000})
    s.sync()
    # The replaced file is removed once the new reference is durable.
    assert sorted(p.name for p in (tmp_path / "n").glob("rec-*.bin")) == ["rec-0000000000000002.bin"]
    s.put("snap", "now small")
    s.sync()
    assert list((tmp_path / "n").glob("rec-*.bin")) == []
    s.put("snap", {"data": b"u" * 1000})
    s.sync()
    again = reopen(s, inline_limit=100)
    assert again.get("snap") == {"data": b"u" * 1000}
    assert again.get("small") == "x"
    assert not list((tmp_path / "n").glob("*.tmp"))
    again.close()


def test_a_snapshot_write_costs_a_file_fsync_and_a_directory_fsync(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", inline_limit=100)
    before = s.stats.fsync_count
    s.put("snap", b"s" * 1000)
    s.log_append(["a"])
    s.sync()
    assert s.stats.fsync_count == before + 3  # file, directory, WAL
    s.close()


def test_unreferenced_and_unfinished_files_are_removed_on_open(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", inline_limit=10, fsync=False)
    s.put("snap", b"s" * 100)
    s.sync()
    s.put("snap", b"t" * 100)
    s.begin_sync()  # never completed: only the file write could have happened
    s.close()
    directory = tmp_path / "n"
    (directory / "rec-00000000000000ff.bin").write_bytes(b"orphan")
    (directory / "rec-0000000000000100.bin.tmp").write_bytes(b"half")
    again = DiskStorage.open(directory, inline_limit=10, fsync=False)
    assert again.get("snap") == b"s" * 100
    assert sorted(p.name for p in directory.glob("rec-*")) == ["rec-0000000000000001.bin"]
    assert any("rec-00000000000000ff.bin" in note for note in again.recovery_notes)
    # New generations never reuse a number seen on disk.
    again.put("snap", b"u" * 100)
    again.sync()
    assert sorted(p.name for p in directory.glob("rec-*")) == ["rec-0000000000000100.bin"]
    again.close()


# -------------------------------------------------------------------------- segments
def segment_names(s: DiskStorage) -> list[str]:
    return [p.name for p in s.segment_paths()]


def test_segments_roll_over_and_the_state_carries_across(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", segment_bytes=512, fsync=False)
    s.put("hard", HardState(term=1, voted_for="a"))
    for i in range(1, 41):
        s.log_append([entry(1, i)])
        s.sync()
    assert len(segment_names(s)) > 5
    on_disk = sorted(p.name for p in (tmp_path / "n").glob("wal-*.log"))
    assert on_disk == segment_names(s)
    expected = state(s)
    again = reopen(s, segment_bytes=512, fsync=False)
    assert state(again) == expected
    assert again.get("hard") == HardState(term=1, voted_for="a")
    again.close()


def test_a_new_segment_starts_from_the_written_batches_not_later_writes(tmp_path: Path):
    """The STATE record opening a segment describes the batches written so far; writes
    made while the batch was being completed belong to the next batch."""
    s = DiskStorage.open(tmp_path / "n", segment_bytes=64, fsync=False)
    s.put("hard", HardState(term=1, voted_for=None))
    s.log_append(["a"])
    batch = s.begin_sync()
    s.put("hard", HardState(term=2, voted_for="x"))  # after begin_sync: next batch
    s.put("new", "key")
    s.log_append(["b"])
    s.log_compact_to(2)
    batch.complete()  # rolls over: the segment is already past 64 bytes
    assert len(segment_names(s)) == 2
    shutil.copytree(tmp_path / "n", tmp_path / "crash")
    copy = DiskStorage.open(tmp_path / "crash", fsync=False)
    assert state(copy) == (1, 1, ["a"])
    assert (copy.get("hard"), copy.get("new")) == (HardState(term=1, voted_for=None), None)
    copy.close()
    s.sync()
    again = reopen(s, fsync=False)
    assert state(again) == (2, 2, ["b"])
    assert (again.get("hard"), again.get("new")) == (HardState(term=2, voted_for="x"), "key")
    again.close()


def test_segments_wholly_before_log_first_are_deleted(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", segment_bytes=512, fsync=False)
    for i in range(1, 61):
        s.log_append([entry(1, i)])
        s.sync()
    many = len(segment_names(s))
    s.log_compact_to(55)
    s.put("hard", HardState(term=2, voted_for=None))
    s.sync()
    remaining = segment_names(s)
    assert len(remaining) < many
    assert sorted(p.name for p in (tmp_path / "n").glob("wal-*.log")) == remaining
    assert s.stats.segments_deleted == many - len(remaining)
    expected = state(s)
    assert expected[:2] == (55, 60)
    again = reopen(s, segment_bytes=512, fsync=False)
    assert state(again) == expected
    assert again.get("hard") == HardState(term=2, voted_for=None)
    again.close()


def test_compaction_keeps_segments_holding_entries_still_in_the_log(tmp_path: Path):
    s = DiskStorage.open(tmp_path / "n", segment_bytes=512, fsync=False)
    for i in range(1, 61):
        s.log_append([entry(1, i)])
        s.sync()
    s.log_compact_to(20)
    s.sync()
    again = reopen(s, segment_bytes=512, fsync=False)
    assert [e.index for e in again.log_records()] == list(range(20, 61))
    again.close()


def test_truncation_is_durable_across_segments(tmp_path: Path):
    """A truncate far back (into older segments) then new appends at the same positions."""
    s = DiskStorage.open(tmp_path / "n", segment_bytes=400, fsync=False)
    for i in range(1, 31):
        s.log_append([entry(1, i)])
        s.sync()
    s.log_truncate_from(5)
    s.log_append([entry(2, i) for i in range(5, 9)])
    s.sync()
    s.log_compact_to(3)
    s.sync()
    again = reopen(s, segment_bytes=400, fsync=False)
    assert [(e.term, e.index) for e in again.log_records()] == [(1, 3), (1, 4)] + [
        (2, i) for i in range(5, 9)
    ]
    again.close()


def test_reopen_decodes_only_the_records_that_survived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Opening costs time in proportion to the live log, not to the segments' bytes."""
    from consensuskit.server import wal_recovery

    s = DiskStorage.open(tmp_path / "n", fsync=False)
    for i in range(1, 201):
        s.log_append([entry(1, i)])
    s.log_truncate_from(150)
    s.log_append([entry(2, 150), entry(2, 151)])
    s.log_compact_to(148)
    s.sync()
    expected = state(s)
    s.close()
    decoded: list[bytes] = []
    real_decode = wal_recovery.decode

    def counting_decode(blob: bytes) -> Any:
        decoded.append(blob)
        return real_decode(blob)

    monkeypatch.setattr(wal_recovery, "decode", counting_decode)
    again = DiskStorage.open(tmp_path / "n", fsync=False)
    assert state(again) == expected
    assert [(e.term, e.index) for e in again.log_records()] == [(1, 148), (1, 149), (2, 150), (2, 151)]
    assert len(decoded) == 3  # the appends of 148, 149 and the pair
    again.close()


def test_gap_in_segment_numbers_drops_the_leftovers_before_it(tmp_path: Path):
    """An interrupted clean-up may leave an old segment behind a gap; it is not needed."""
    s = DiskStorage.open(tmp_path / "n", segment_bytes=512, fsync=False)
    for i in range(1, 61):
        s.log_append([entry(1, i)])
        s.sync()
    s.log_compact_to(58)
    s.sync()
    first_kept = s.segment_paths()[0]
    number = int(first_kept.name[4:20], 16)
    stale = first_kept.with_name(f"wal-{number - 5:016x}.log")
    shutil.copy(first_kept, stale)  # content does not matter: it is never read
    expected = state(s)
    again = reopen(s, segment_bytes=512, fsync=False)
    assert state(again) == expected
    assert not stale.exists()
    assert any(stale.name in note for note in again.recovery_notes)
    again.close()


# ------------------------------------------------------------------- Raft on DiskStorage
def test_raft_cluster_on_disk_survives_a_full_restart(tmp_path: Path):
    """RaftNode writes hard state, entries, snapshots and compactions through DiskStorage;
    closing every storage (synced after each round, as the runtime's barrier does) and
    rebuilding the nodes from disk gives back the same term, vote, log and state machine."""
    from consensuskit.protocols.raft import RaftNode, RaftOptions
    from consensuskit.protocols.raft.node import HARD_STATE_KEY, SNAPSHOT_KEY
    from tests.protocols.raft.fake import Cluster, FakeEnv

    ids = ["a", "b", "c"]
    options = {"snapshot_threshold": 8, "snapshot_trailing": 2}
    open_options = {"segment_bytes": 2048, "inline_limit": 256, "fsync": False}
    cluster = Cluster(ids, **options)
    for node_id in ids:
        env = FakeEnv(node_id, storage=DiskStorage.open(tmp_path / node_id, **open_options))  # type: ignore[arg-type]
        cluster.envs[node_id] = env
        cluster.nodes[node_id] = RaftNode(node_id, env, ids, RaftOptions(**options))
        cluster.nodes[node_id].on_start()

    def sync_all() -> None:
        for env in cluster.envs.values():
            env.storage.sync()

    leader = cluster.elect("a")
    sync_all()
    for seq in range(1, 41):
        request = ClientRequest(client_id="cl", seq=seq, op=Op(kind="put", key=f"k{seq % 5}", value=seq))
        leader.on_request(request)
        cluster.deliver_all()
        sync_all()
        cluster.fire("a", "heartbeat")
        cluster.deliver_all()
        sync_all()
    assert leader.snapshot is not None and leader.log.offset > 0
    before = {
        i: (n.term, n.voted_for, n.log.offset, list(n.log.entries), n.sm.snapshot())
        for i, n in cluster.nodes.items()
    }
    last_applied = {i: n.last_applied for i, n in cluster.nodes.items()}

    for node_id in ids:
        storage = cluster.envs[node_id].storage
        storage.put("junk", "unsynced")  # lost in the crash
        storage.close()
        reopened = DiskStorage.open(tmp_path / node_id, **open_options)
        assert reopened.get("junk") is None
        assert isinstance(reopened.get(HARD_STATE_KEY), HardState)
        assert reopened.get(SNAPSHOT_KEY).last_index == cluster.nodes[node_id].snapshot.last_index
        env = FakeEnv(node_id, storage=reopened)  # type: ignore[arg-type]
        node = RaftNode(node_id, env, ids, RaftOptions(**options))
        term, voted_for, _offset, entries, _ = before[node_id]
        snap_index = node.snapshot.last_index
        # RaftLog.load drops the trailing entries a snapshot already covers.
        assert (node.term, node.voted_for, node.log.offset) == (term, voted_for, snap_index)
        assert node.log.entries == [e for e in entries if e.index > snap_index]
        assert node.log.entries, "the test should leave entries after the snapshot"
        # The state machine restarts from the snapshot and catches up by re-applying.
        assert node.last_applied == node.log.offset <= last_applied[node_id]
        reopened.close()
    assert all(len(os.listdir(tmp_path / i)) >= 2 for i in ids)
