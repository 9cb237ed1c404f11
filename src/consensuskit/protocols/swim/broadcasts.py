"""The broadcast queue (memberlist's ``TransmitLimitedQueue``): updates waiting to be
piggybacked, each sent at most ``limit`` times.

Rules this module owns:
  * one entry per member: a newer update about a member replaces the queued one (the
    old fact is obsolete; memberlist's named broadcasts invalidate the same way);
  * ``take(count)`` hands out the entries sent least often, newest first within a tier
    (fresh news travels first), and counts one transmission for each;
  * an entry is dropped once it has been sent ``limit`` times, so no update is ever
    transmitted more than ``limit`` times by one member (the dissemination bound;
    ``check/swim.py`` holds it).  ``keep_forever`` is the bug knob that breaks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.protocols.swim.messages import Update


@dataclass(slots=True)
class Queued:
    update: Update
    transmits: int
    stamp: int
    limit: int = 0  # the limit in force when it was last sent (n changes it)


class BroadcastQueue:
    def __init__(self, keep_forever: bool = False) -> None:
        self.entries: dict[str, Queued] = {}
        self._stamp = 0
        self.keep_forever = keep_forever

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, update: Update) -> None:
        self._stamp += 1
        self.entries[update.member] = Queued(update, 0, self._stamp)

    def queued(self, member: str) -> Update | None:
        entry = self.entries.get(member)
        return entry.update if entry is not None else None

    def take(self, count: int, limit: int) -> tuple[Update, ...]:
        """Up to ``count`` updates to piggyback on one message."""
        if not self.entries or count <= 0:
            return ()
        chosen = sorted(self.entries.values(), key=lambda q: (q.transmits, -q.stamp))[:count]
        for entry in chosen:
            entry.transmits += 1
            entry.limit = limit
            if entry.transmits >= limit and not self.keep_forever:
                del self.entries[entry.update.member]
        return tuple(entry.update for entry in chosen)

    def over_limit(self) -> list[Queued]:
        """Entries sent more often than the limit in force when they were last sent."""
        return [q for q in self.entries.values() if q.transmits > q.limit]
