"""RaftLog over MemoryStorage: indexes, terms, slices, compaction, reload."""

from __future__ import annotations

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.raft.log import RaftLog
from consensuskit.protocols.raft.messages import COMMAND, NOOP, LogEntry


def entries(start: int, terms: list[int]) -> list[LogEntry]:
    return [LogEntry(term=t, index=start + i, kind=NOOP) for i, t in enumerate(terms)]


def make(terms: list[int]) -> RaftLog:
    """Log with entries 1..len(terms) of the given terms."""
    log = RaftLog(MemoryStorage())
    log.append(entries(1, terms))
    return log


def indexes(items) -> list[int]:
    return [e.index for e in items]


def assert_storage_mirrors(log: RaftLog) -> None:
    s = log.storage
    assert s.log_first() == log.first_index
    assert s.log_last() == log.last_index
    assert s.log_records() == log.entries
    for pos, rec in enumerate(s.log_records(), start=s.log_first()):
        assert rec.index == pos


def test_empty_log():
    log = RaftLog(MemoryStorage())
    assert (log.first_index, log.last_index, log.last_term) == (1, 0, 0)
    assert log.term_at(0) == 0
    assert log.term_at(1) is None
    assert log.slice(1, 10, 1000) == ()


def test_append_contiguous():
    log = make([1, 1, 2])
    log.append(entries(4, [3]))
    log.append([])
    assert (log.first_index, log.last_index, log.last_term) == (1, 4, 3)
    assert [log.term_at(i) for i in range(0, 6)] == [0, 1, 1, 2, 3, None]
    assert log.entry(3) == LogEntry(term=2, index=3, kind=NOOP)
    assert_storage_mirrors(log)


@pytest.mark.parametrize("bad_start", [1, 3, 5, 0])
def test_append_non_contiguous_raises(bad_start):
    log = make([1, 1, 1])
    with pytest.raises(ValueError, match=f"append at {bad_start}, expected 4"):
        log.append(entries(bad_start, [2]))
    assert log.last_index == 3
    assert_storage_mirrors(log)


def test_entry_out_of_range():
    log = make([1, 1])
    with pytest.raises(IndexError, match=r"no entry 3 \(log holds 1..2\)"):
        log.entry(3)
    log.compact(1)
    with pytest.raises(IndexError, match=r"no entry 1 \(log holds 2..2\)"):
        log.entry(1)


def test_term_at_offset_compacted_and_beyond():
    log = make([1, 2, 2, 3, 3])
    log.compact(3)
    assert (log.offset, log.offset_term, log.first_index) == (3, 2, 4)
    assert log.term_at(3) == 2  # the snapshot point itself
    assert log.term_at(2) is None  # compacted away
    assert log.term_at(0) is None
    assert log.term_at(4) == 3
    assert log.term_at(5) == 3
    assert log.term_at(6) is None  # beyond the end
    assert_storage_mirrors(log)


def test_last_term_after_full_compaction_is_offset_term():
    log = make([1, 2, 4])
    log.compact(3)
    assert (log.last_index, log.last_term, log.entries) == (3, 4, [])
    assert_storage_mirrors(log)


def test_slice_max_entries():
    log = make([1] * 10)
    assert indexes(log.slice(3, 4, 10_000)) == [3, 4, 5, 6]
    assert indexes(log.slice(8, 4, 10_000)) == [8, 9, 10]
    assert log.slice(11, 4, 10_000) == ()
    assert log.slice(5, 0, 10_000) == ()


def test_slice_max_bytes():
    log = make([1] * 10)
    size = log.entry(1).size()
    assert size == 48
    assert indexes(log.slice(1, 10, 2 * size)) == [1, 2]
    assert indexes(log.slice(1, 10, 2 * size + 1)) == [1, 2]
    assert indexes(log.slice(1, 10, 3 * size - 1)) == [1, 2]
    assert indexes(log.slice(1, 10, 3 * size)) == [1, 2, 3]


@pytest.mark.parametrize("max_bytes", [0, 1, 47])
def test_slice_returns_at_least_one_entry(max_bytes):
    log = make([1, 1, 1])
    assert indexes(log.slice(2, 10, max_bytes)) == [2]


def test_slice_of_compacted_raises():
    log = make([1, 1, 1, 1])
    log.compact(2)
    with pytest.raises(IndexError, match=r"entry 2 was compacted \(log starts at 3\)"):
        log.slice(2, 10, 1000)
    assert indexes(log.slice(3, 10, 1000)) == [3, 4]


def test_first_index_of_term():
    log = make([1, 1, 2, 2, 2, 5, 6, 6])
    assert [log.first_index_of_term(i) for i in range(1, 9)] == [1, 1, 3, 3, 3, 6, 7, 7]


def test_first_index_of_term_stops_at_offset():
    log = make([2, 2, 2, 2, 3])
    log.compact(2)
    # entries 1-2 of term 2 were compacted; the run visible in the log starts at 3
    assert log.first_index_of_term(4) == 3
    assert log.first_index_of_term(3) == 3
    assert log.first_index_of_term(5) == 5


def test_last_index_of_term():
    log = make([1, 1, 3, 3, 5])
    assert log.last_index_of_term(1) == 2
    assert log.last_index_of_term(3) == 4
    assert log.last_index_of_term(5) == 5
    assert log.last_index_of_term(2) is None
    assert log.last_index_of_term(4) is None
    assert log.last_index_of_term(6) is None
    assert log.last_index_of_term(0) is None


def test_is_up_to_date():
    log = make([1, 2, 2])
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(9, 2)
    assert not log.is_up_to_date(2, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(10, 1)


def test_truncate_from():
    log = make([1, 1, 2, 2])
    log.truncate_from(3)
    assert (log.last_index, log.last_term) == (2, 1)
    assert_storage_mirrors(log)
    log.append(entries(3, [3]))
    assert [log.term_at(i) for i in (1, 2, 3)] == [1, 1, 3]
    assert_storage_mirrors(log)


def test_truncate_at_or_before_offset_raises():
    log = make([1, 1, 2, 2])
    log.compact(2)
    with pytest.raises(ValueError, match="cannot truncate at 2: compacted up to 2"):
        log.truncate_from(2)
    assert log.last_index == 4
    log.truncate_from(3)
    assert (log.first_index, log.last_index, log.last_term) == (3, 2, 1)
    assert_storage_mirrors(log)


def test_compact():
    log = make([1, 1, 2, 3])
    log.compact(2)
    assert (log.offset, log.offset_term, indexes(log.entries)) == (2, 1, [3, 4])
    assert_storage_mirrors(log)
    log.compact(1)  # already compacted: no-op
    log.compact(2)
    assert (log.offset, log.offset_term, indexes(log.entries)) == (2, 1, [3, 4])


def test_compact_beyond_end_raises():
    log = make([1, 1])
    with pytest.raises(ValueError, match="cannot compact to 3: not in the log"):
        log.compact(3)
    assert (log.offset, log.last_index) == (0, 2)
    assert_storage_mirrors(log)


def test_reset_discards_everything():
    log = make([1, 1, 2, 2])
    log.reset(10, 4)
    assert (log.offset, log.offset_term, log.entries) == (10, 4, [])
    assert (log.first_index, log.last_index, log.last_term) == (11, 10, 4)
    assert log.term_at(10) == 4
    assert log.term_at(4) is None
    assert_storage_mirrors(log)
    log.append(entries(11, [5, 5]))
    assert_storage_mirrors(log)


def test_reset_within_the_log():
    log = make([1, 1, 2, 2, 2])
    log.reset(3, 2)
    assert (log.first_index, log.last_index, log.entries) == (4, 3, [])
    assert_storage_mirrors(log)


def test_load_after_compaction_returns_same_entries():
    storage = MemoryStorage()
    log = RaftLog(storage)
    log.append(entries(1, [1, 1, 2, 2, 3, 3, 3]))
    log.compact(4)
    log.truncate_from(7)
    log.append(entries(7, [4]))
    loaded = RaftLog.load(storage, log.offset, log.offset_term)
    assert loaded.entries == log.entries
    assert indexes(loaded.entries) == [5, 6, 7]
    assert (loaded.offset, loaded.offset_term, loaded.last_index, loaded.last_term) == (4, 2, 7, 4)
    assert_storage_mirrors(loaded)


def test_load_skips_records_covered_by_the_snapshot():
    # crash between writing a snapshot at 3 and compacting the log
    storage = MemoryStorage()
    storage.log_append(entries(1, [1, 1, 2, 2, 2]))
    loaded = RaftLog.load(storage, 3, 2)
    assert indexes(loaded.entries) == [4, 5]
    assert storage.log_first() == 4
    assert_storage_mirrors(loaded)


def test_load_when_snapshot_covers_whole_log():
    storage = MemoryStorage()
    storage.log_append(entries(1, [1, 1]))
    loaded = RaftLog.load(storage, 5, 3)
    assert (loaded.entries, loaded.first_index, loaded.last_term) == ([], 6, 3)
    assert_storage_mirrors(loaded)


def test_load_empty_storage():
    loaded = RaftLog.load(MemoryStorage(), 0, 0)
    assert (loaded.entries, loaded.last_index) == ([], 0)


def test_load_with_gap_after_snapshot_raises():
    storage = MemoryStorage(first_position=6)
    storage.log_append(entries(6, [3]))
    with pytest.raises(ValueError, match="log starts at 6, after the snapshot point 3"):
        RaftLog.load(storage, 3, 2)


# ---------------------------------------------------------------------- sizes of large values
def put_entry(index: int, value: str, term: int = 1) -> LogEntry:
    request = ClientRequest(client_id="c", seq=index, op=Op(kind="put", key=f"k{index}", value=value))
    return LogEntry(term=term, index=index, kind=COMMAND, data=request)


def test_a_commands_estimated_size_counts_its_value():
    small, large = put_entry(1, "x").size(), put_entry(1, "x" * 100_000).size()
    assert 48 <= small < 200
    assert large - small == 100_000 - 1


def test_max_bytes_bounds_a_slice_of_large_values():
    """With the estimate at a fixed 48 bytes, 1,024 entries of 64 KiB values fitted a
    64 KiB cap: an AppendEntries of 64 MiB, over the peer transport's frame limit, which
    is never delivered (the follower would never catch up)."""
    log = RaftLog(MemoryStorage())
    log.append([put_entry(i, "v" * 40_000) for i in range(1, 11)])
    entries, nbytes = log.slice_sized(1, 1024, 64 * 1024)
    assert indexes(entries) == [1]  # a second would pass 64 KiB
    assert nbytes == entries[0].size() > 40_000
    assert indexes(log.slice(1, 1024, 100_000)) == [1, 2]
    assert indexes(log.slice(5, 1024, 0)) == [5]  # at least one, however large


def test_sizes_follow_an_index_whose_entry_was_replaced():
    """Sizes are cached by index: truncation and reset drop them, compaction prunes them."""
    log = RaftLog(MemoryStorage())
    log.append([put_entry(1, "a"), put_entry(2, "b" * 50_000)])
    assert log.slice_sized(1, 10, 10**9)[1] == put_entry(1, "a").size() + put_entry(2, "b" * 50_000).size()
    log.truncate_from(2)
    log.append([put_entry(2, "c", term=2)])
    assert log.slice_sized(1, 10, 10**9)[1] == put_entry(1, "a").size() + put_entry(2, "c").size()
    log.compact(1)
    assert list(log.sizes.cached()) == [2]
    log.reset(5, 3)
    assert list(log.sizes.cached()) == []
