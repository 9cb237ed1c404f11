"""ZAB's history on one server: txns in memory, mirrored into the server's Storage.

Storage log position == txn index.  Txns before ``first_index`` were compacted into a
snapshot ending at ``offset`` (whose zxid is ``offset_zxid``).

Invariants: entries[i].index == offset + 1 + i; zxids strictly increase along the log
(a follower accepts only zxids above its last); offset >= 0.
"""

from __future__ import annotations

import bisect

from consensuskit.core.storage import Storage, log_after_snapshot
from consensuskit.protocols.common.batching import EntrySizes
from consensuskit.protocols.zab.messages import Txn


class ZabLog:
    __slots__ = (
        "defer_writes",
        "entries",
        "held_back",
        "offset",
        "offset_zxid",
        "sizes",
        "storage",
        "unwritten",
    )

    def __init__(self, storage: Storage, offset: int = 0, offset_zxid: int = 0) -> None:
        self.storage = storage
        self.offset = offset
        self.offset_zxid = offset_zxid
        self.entries: list[Txn] = []
        # Appends reach storage at flush() as one call when the runtime batches.
        self.defer_writes = False
        self.unwritten: list[Txn] = []
        # Appends an asynchronous log writer has not written yet (the *-before-persist
        # knobs): flush() leaves them; write_held() writes them.
        self.held_back: list[Txn] = []
        # Estimated sizes (Txn.size) by index: the leader measures each txn once, not
        # once per learner.  truncate_from and reset drop what they replace.
        self.sizes = EntrySizes(Txn.size)

    @classmethod
    def load(cls, storage: Storage, offset: int, offset_zxid: int) -> ZabLog:
        log = cls(storage, offset, offset_zxid)
        log.entries = log_after_snapshot(storage, offset)
        return log

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_zxid(self) -> int:
        return self.entries[-1].zxid if self.entries else self.offset_zxid

    def zxid_at(self, index: int) -> int | None:
        if index == self.offset:
            return self.offset_zxid
        pos = index - self.offset - 1
        if 0 <= pos < len(self.entries):
            return self.entries[pos].zxid
        return None

    def entry(self, index: int) -> Txn:
        pos = index - self.offset - 1
        if pos < 0 or pos >= len(self.entries):
            raise IndexError(f"no txn {index} (log holds {self.first_index}..{self.last_index})")
        return self.entries[pos]

    def index_of(self, zxid: int) -> int | None:
        """The index holding ``zxid`` (the snapshot point included), or None."""
        if zxid == self.offset_zxid:
            return self.offset
        pos = bisect.bisect_left(self.entries, zxid, key=lambda t: t.zxid)
        if pos < len(self.entries) and self.entries[pos].zxid == zxid:
            return self.offset + 1 + pos
        return None

    def last_at_or_below(self, zxid: int) -> int | None:
        """The highest index whose zxid is <= ``zxid`` (None if below the log)."""
        if zxid < self.offset_zxid:
            return None
        pos = bisect.bisect_right(self.entries, zxid, key=lambda t: t.zxid)
        return self.offset + pos

    def slice(self, lo: int, hi: int, max_txns: int, max_bytes: int | None = None) -> tuple[Txn, ...]:
        """Txns lo..hi (inclusive), at most ``max_txns`` and, when ``max_bytes`` is
        given, at most that many estimated bytes (at least one txn if any)."""
        start = lo - self.offset - 1
        if start < 0:
            raise IndexError(f"txn {lo} was compacted (log starts at {self.first_index})")
        end = min(hi - self.offset, start + max_txns)
        out = self.entries[start:end]
        if max_bytes is not None:
            n, _ = self.sizes.take(out, lo, max_bytes)
            del out[n:]
        return tuple(out)

    # -- mutations (write through to storage) --------------------------------------------
    def append(self, txns: list[Txn] | tuple[Txn, ...], *, hold_back: bool = False) -> None:
        if not txns:
            return
        if txns[0].index != self.last_index + 1:
            raise ValueError(f"append at {txns[0].index}, expected {self.last_index + 1}")
        self.entries.extend(txns)
        if hold_back or self.held_back:
            self.held_back.extend(txns)  # stays behind what is held back (log order)
        elif self.defer_writes:
            self.unwritten.extend(txns)
        else:
            self.storage.log_append(list(txns))

    def flush(self) -> None:
        if self.unwritten:
            unwritten, self.unwritten = self.unwritten, []
            self.storage.log_append(unwritten)

    def write_held(self) -> None:
        """The asynchronous writer catches up: held-back txns go to storage."""
        self.flush()
        if self.held_back:
            held, self.held_back = self.held_back, []
            self.storage.log_append(held)

    def truncate_from(self, index: int) -> None:
        if index <= self.offset:
            raise ValueError(f"cannot truncate at {index}: compacted up to {self.offset}")
        self.flush()
        self.held_back = [t for t in self.held_back if t.index < index]
        del self.entries[index - self.offset - 1 :]
        self.sizes.drop_from(index)
        if index <= self.storage.log_last():
            self.storage.log_truncate_from(index)

    def compact(self, index: int) -> None:
        if index <= self.offset:
            return
        zxid = self.zxid_at(index)
        if zxid is None:
            raise ValueError(f"cannot compact to {index}: not in the log")
        self.write_held()
        del self.entries[: index - self.offset]
        self.sizes.drop_through(index)
        self.offset, self.offset_zxid = index, zxid
        self.storage.log_compact_to(index + 1)

    def reset(self, offset: int, offset_zxid: int) -> None:
        self.unwritten = []
        self.held_back = []
        self.entries = []
        self.sizes.clear()
        self.offset, self.offset_zxid = offset, offset_zxid
        self.storage.log_truncate_from(self.storage.log_first())
        self.storage.log_compact_to(offset + 1)
