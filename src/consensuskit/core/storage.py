"""Storage a protocol writes through its Env.

Two kinds of durable state: named records (``put``/``get``: term and vote, snapshot) and
one append-only log of records at absolute positions.  Protocols never make writes
durable themselves; the runtime does, once per batch of inputs, before releasing the
messages those inputs produced.

Invariant: ``log_first() <= log_last() + 1``; positions are contiguous.

One named record belongs to the platform, not to a protocol: ``REJOINING_KEY``.  The
runtime (``consensuskit server --rejoin``) or the simulator (the ``wipe`` fault) puts
``True`` there in an otherwise empty storage *before* it builds the node, meaning "this
node lost its stable storage; whatever it promised before is forgotten".  A protocol
whose registry entry says ``survives_disk_loss`` reads it when it is constructed, keeps
out of every quorum while it is set, and puts ``False`` there itself once it has been
readmitted (see the protocol READMEs for what readmitted means).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from consensuskit.core.compiled import mypyc_attr

REJOINING_KEY = "rejoining"


class Storage(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...

    def log_append(self, records: list[Any]) -> None:
        """Append records at positions ``log_last()+1 ...``."""
        ...

    def log_truncate_from(self, position: int) -> None:
        """Drop every record at ``position`` or later (conflict resolution)."""
        ...

    def log_compact_to(self, position: int) -> None:
        """Drop records before ``position``; ``log_first()`` becomes ``position``.

        ``position`` may exceed ``log_last()+1`` (a snapshot from the leader ahead of the
        whole local log); the log is then empty and starts there.  At or before
        ``log_first()`` it drops nothing and, on a log holding records, changes nothing;
        an *empty* log starts at any ``position`` >= 1, also before its old start (a
        snapshot older than the one the node had: ZAB's SNAP sync restores the leader's).
        """
        ...

    def log_first(self) -> int: ...

    def log_last(self) -> int: ...

    def log_records(self) -> list[Any]:
        """All records, first to last."""
        ...


def log_after_snapshot(storage: Storage, offset: int) -> list[Any]:
    """The log records after a snapshot at position ``offset``, for a log rebuilt on
    start.  Records at or before it are redundant (a crash between writing the snapshot
    and compacting the log): they are skipped and compacted away now.  A log that starts
    after ``offset + 1`` has lost records the snapshot does not cover: ``ValueError``."""
    first = storage.log_first()
    records = storage.log_records()
    skip = max(0, offset + 1 - first)
    if records and first + skip != offset + 1 and skip < len(records):
        raise ValueError(f"log starts at {first}, after the snapshot point {offset}")
    if skip:
        storage.log_compact_to(offset + 1)
    return records[skip:]


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed by interpreted code
class MemoryStorage:
    """Reference in-memory storage in which every write is immediately durable."""

    __slots__ = ("_first", "_log", "_records")

    def __init__(
        self,
        first_position: int = 1,
        *,
        log: list[Any] | None = None,
        records: dict[str, Any] | None = None,
    ) -> None:
        """Empty, or holding ``log`` (from ``first_position``) and ``records`` as given
        (taken, not copied: a recovered WAL hands over what it read)."""
        self._records: dict[str, Any] = records if records is not None else {}
        self._log: list[Any] = log if log is not None else []
        self._first = first_position

    def get(self, key: str, default: Any = None) -> Any:
        return self._records.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self._records[key] = value

    def log_append(self, records: list[Any]) -> None:
        self._log.extend(records)

    def log_truncate_from(self, position: int) -> None:
        if position < self._first:
            raise ValueError(f"cannot truncate at {position}: log starts at {self._first}")
        del self._log[position - self._first :]

    def log_compact_to(self, position: int) -> None:
        self.log_detach_to(position)  # the dropped records are freed right here

    def log_detach_to(self, position: int) -> list[Any]:
        """``log_compact_to``, handing the dropped records back instead of freeing them,
        so that the caller chooses when that happens (``server/wal.py`` frees a long
        log's a slice at a time, off the path of the request that compacted it)."""
        if position <= self._first:
            if not self._log and 1 <= position < self._first:
                self._first = position  # an empty log restarts earlier (see Storage)
            return []
        drop = position - self._first
        if drop >= len(self._log):
            dropped, self._log = self._log, []
        else:
            dropped = self._log[:drop]
            del self._log[:drop]  # references only: ``dropped`` keeps the records alive
        self._first = position
        return dropped

    def log_first(self) -> int:
        return self._first

    def log_last(self) -> int:
        return self._first + len(self._log) - 1

    def log_records(self) -> list[Any]:
        return list(self._log)

    def copy(self, copy_value: Callable[[Any], Any] | None = None) -> MemoryStorage:
        """A copy; record values are shared unless ``copy_value`` copies them."""
        records = dict(self._records)
        if copy_value is not None:
            records = {key: copy_value(value) for key, value in records.items()}
        return MemoryStorage(self._first, log=list(self._log), records=records)
