"""Raft's log in memory, mirrored into the node's Storage.

Storage log position == Raft index.  Entries before ``first_index`` were compacted into
a snapshot; the term of ``offset`` (= first_index - 1) is remembered so the consistency
check still works right after the snapshot point.

Invariants: entries[i].index == offset + 1 + i; terms never decrease along the log;
offset >= 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensuskit.core.storage import Storage, log_after_snapshot
from consensuskit.protocols.common.batching import EntrySizes
from consensuskit.protocols.raft.messages import LogEntry


class RaftLog:
    __slots__ = ("defer_writes", "entries", "offset", "offset_term", "sizes", "storage", "unwritten")

    def __init__(self, storage: Storage, offset: int = 0, offset_term: int = 0) -> None:
        self.storage = storage
        self.offset = offset
        self.offset_term = offset_term
        self.entries: list[LogEntry] = []
        # With defer_writes, appends reach storage at the next flush() (or before any
        # other log write) as one call: a batching runtime flushes at each batch's end,
        # before the sync, so a batch of client writes costs one storage append.
        self.defer_writes = False
        self.unwritten: list[LogEntry] = []
        # Estimated sizes (LogEntry.size) by index, filled by slice_sized: a leader
        # estimates each entry once, not once per follower.  An index's entry changes
        # only through truncate_from and reset, which drop what they replace.
        self.sizes = EntrySizes(LogEntry.size)

    @classmethod
    def load(cls, storage: Storage, offset: int, offset_term: int) -> RaftLog:
        """Rebuild from durable storage: records after the snapshot point."""
        log = cls(storage, offset, offset_term)
        log.entries = log_after_snapshot(storage, offset)
        return log

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term_at(self, index: int) -> int | None:
        """Term of ``index``; None when compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        pos = index - self.offset - 1
        if 0 <= pos < len(self.entries):
            return self.entries[pos].term
        return None

    def entry(self, index: int) -> LogEntry:
        pos = index - self.offset - 1
        if pos < 0 or pos >= len(self.entries):
            raise IndexError(f"no entry {index} (log holds {self.first_index}..{self.last_index})")
        return self.entries[pos]

    def slice(self, lo: int, max_entries: int, max_bytes: int) -> tuple[LogEntry, ...]:
        """Entries from ``lo`` on, at least one if any, within both limits."""
        return self.slice_sized(lo, max_entries, max_bytes)[0]

    def slice_sized(self, lo: int, max_entries: int, max_bytes: int) -> tuple[tuple[LogEntry, ...], int]:
        """``slice`` and the estimated size of what it returns."""
        start = lo - self.offset - 1
        if start < 0:
            raise IndexError(f"entry {lo} was compacted (log starts at {self.first_index})")
        out = self.entries[start : start + max_entries]
        n, total = self.sizes.take(out, lo, max_bytes)
        return tuple(out[:n]), total

    def first_index_of_term(self, index: int) -> int:
        """First index of the run of entries sharing ``index``'s term (fast backtracking)."""
        term = self.term_at(index)
        while index - 1 > self.offset and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int) -> int | None:
        """Last index holding ``term``, or None if the log has no entry of it."""
        for e in reversed(self.entries):
            if e.term == term:
                return e.index
            if e.term < term:
                return None
        return None

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: the candidate's log is at least as up to date as ours."""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    # -- mutations (write through to storage) --------------------------------------------
    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        expected = self.last_index + 1
        if entries[0].index != expected:
            raise ValueError(f"append at {entries[0].index}, expected {expected}")
        self.entries.extend(entries)
        if self.defer_writes:
            self.unwritten.extend(entries)
        else:
            self.storage.log_append(list(entries))

    def flush(self) -> None:
        """Hand deferred appends to storage."""
        if self.unwritten:
            unwritten, self.unwritten = self.unwritten, []
            self.storage.log_append(unwritten)

    def truncate_from(self, index: int) -> None:
        if index <= self.offset:
            raise ValueError(f"cannot truncate at {index}: compacted up to {self.offset}")
        self.flush()
        del self.entries[index - self.offset - 1 :]
        self.sizes.drop_from(index)
        self.storage.log_truncate_from(index)

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (which must be in the log)."""
        if index <= self.offset:
            return
        term = self.term_at(index)
        if term is None:
            raise ValueError(f"cannot compact to {index}: not in the log")
        self.flush()
        del self.entries[: index - self.offset]
        self.sizes.drop_through(index)
        self.offset, self.offset_term = index, term
        self.storage.log_compact_to(index + 1)

    def reset(self, offset: int, offset_term: int) -> None:
        """Discard the whole log; it now starts after a snapshot at ``offset``."""
        self.unwritten = []  # never written, now never needed
        self.entries = []
        self.sizes.clear()
        self.offset, self.offset_term = offset, offset_term
        self.storage.log_truncate_from(self.storage.log_first())
        self.storage.log_compact_to(offset + 1)
