"""An acceptor's votes, one record per slot, mirrored into the node's Storage.

Storage log position == slot; a slot without a vote holds ``None`` (votes can arrive
out of order).  Slots up to ``offset`` were compacted behind a snapshot: they are
chosen and executed, so their votes are no longer needed.

Invariants: ``offset <= last``; every stored vote has ``offset < slot <= last``.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensuskit.core.storage import Storage
from consensuskit.protocols.paxos.multi_messages import AcceptedValue


class AcceptorLog:
    __slots__ = ("last", "offset", "storage", "votes")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.log_first()
        self.offset = first - 1
        self.votes: dict[int, AcceptedValue] = {}
        for position, record in enumerate(storage.log_records(), start=first):
            if record is not None:
                if record.slot != position:
                    raise ValueError(f"vote for slot {record.slot} stored at position {position}")
                self.votes[position] = record
        self.last = storage.log_last()

    def vote(self, slot: int) -> AcceptedValue | None:
        return self.votes.get(slot)

    def votes_from(self, slot: int) -> tuple[AcceptedValue, ...]:
        return tuple(self.votes[s] for s in sorted(self.votes) if s >= slot)

    def record(self, votes: Iterable[AcceptedValue]) -> None:
        """Store votes (new or replacing older ones); slots at or below ``offset`` are
        skipped.  One truncate and one append per call, however many slots it covers."""
        fresh = {v.slot: v for v in votes if v.slot > self.offset}
        if not fresh:
            return
        lo, hi = min(fresh), max(fresh)
        self.votes.update(fresh)
        if lo <= self.last:
            self.storage.log_truncate_from(lo)
        else:
            lo = self.last + 1  # fill the hole before the new votes
        end = max(hi, self.last)
        self.storage.log_append([self.votes.get(s) for s in range(lo, end + 1)])
        self.last = end

    def compact(self, upto: int) -> None:
        """Forget every slot up to ``upto`` (all chosen and executed)."""
        if upto <= self.offset:
            return
        for s in [s for s in self.votes if s <= upto]:
            del self.votes[s]
        self.storage.log_compact_to(upto + 1)
        self.offset = upto
        self.last = max(self.last, upto)
