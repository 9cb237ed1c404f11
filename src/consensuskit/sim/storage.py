"""Simulated storage with a durability barrier.

A node writes to a *working* view (what it reads back at once) and every write is
also appended to a journal.  The simulator makes the journal durable in batches
(``begin_sync`` takes everything written so far, ``finish_sync`` applies it to the
*durable* copy).  A crash keeps only the durable copy: the next incarnation starts
from ``SimStorage(durable)``.

Invariant: durable state is never aliased by a working view, so a node mutating a
value it read cannot change what "survives a crash".  Lists, dicts and sets are
copied one level deep on the way in (journal) and out (restart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensuskit.core.storage import MemoryStorage

_PUT = 0
_APPEND = 1
_TRUNCATE = 2
_COMPACT = 3

Journal = list[tuple[int, Any, Any]]


def _copy(value: Any) -> Any:
    # One level is enough for protocol state (term/vote scalars, lists of immutable
    # entries, small config maps); deeper mutable nesting would be a protocol smell.
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, set):
        return set(value)
    return value


class SimStorage:
    """The ``Storage`` a simulated node sees: working view + journal + durable copy."""

    # Reads go straight to the working view: get, log_first, log_last and log_records
    # are the working MemoryStorage's bound methods (no extra frame on the hot path).
    __slots__ = (
        "dirty",
        "durable",
        "get",
        "journal",
        "log_first",
        "log_last",
        "log_records",
        "truncated_below",
        "working",
    )

    def __init__(self, durable: MemoryStorage | None = None) -> None:
        self.durable = durable if durable is not None else MemoryStorage()
        working = _clone(self.durable)
        self.working = working
        self.journal: Journal = []  # writes not yet covered by a sync
        self.dirty = False  # Invariant: dirty == bool(journal) (read by the driver)
        # Lowest ``position - 1`` truncated since the last begin_sync (None: none); the
        # durability driver (core/driver.py) reads and resets it.
        self.truncated_below: int | None = None
        self.get: Callable[..., Any] = working.get
        self.log_first: Callable[[], int] = working.log_first
        self.log_last: Callable[[], int] = working.log_last
        self.log_records: Callable[[], list[Any]] = working.log_records

    # -- Storage interface: writes --------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        self.dirty = True
        self.working.put(key, value)
        self.journal.append((_PUT, key, _copy(value)))

    def log_append(self, records: list[Any]) -> None:
        records = list(records)
        self.dirty = True
        self.working.log_append(records)
        self.journal.append((_APPEND, records, None))

    def log_truncate_from(self, position: int) -> None:
        below = self.truncated_below
        if below is None or position - 1 < below:
            self.truncated_below = position - 1
        self.dirty = True
        self.working.log_truncate_from(position)
        self.journal.append((_TRUNCATE, position, None))

    def log_compact_to(self, position: int) -> None:
        self.dirty = True
        self.working.log_compact_to(position)
        self.journal.append((_COMPACT, position, None))

    # -- the barrier ----------------------------------------------------------------
    def begin_sync(self) -> Journal:
        """Take every write made so far; they become durable at ``finish_sync``."""
        batch = self.journal
        self.journal = []
        self.dirty = False
        return batch

    def finish_sync(self, batch: Journal) -> None:
        durable = self.durable
        for op, a, b in batch:
            if op == _PUT:
                durable.put(a, b)
            elif op == _APPEND:
                durable.log_append(a)
            elif op == _TRUNCATE:
                durable.log_truncate_from(a)
            else:
                durable.log_compact_to(a)


def _clone(storage: MemoryStorage) -> MemoryStorage:
    # Break aliasing of mutable record values (MemoryStorage.copy alone shares them).
    return storage.copy(_copy)
