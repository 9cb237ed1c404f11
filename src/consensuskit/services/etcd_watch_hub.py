"""One read per revision for all the watches of a node: etcd's watchableStore.

Rules this module owns:
  * a watch is *synced* once it was handed every event up to the hub's revision.  The
    hub reads each new revision's events once, over the whole key space, and hands every
    synced watch those in its range (with its filters and ``prev_kv``), one response per
    read, in revision order: etcd's synced group.  One read per move of the revision,
    however many watches (each watch reading for itself, 1,000 idle watches on other
    keys took a one-node cluster's puts from 1,244/s to 104/s);
  * a watch that starts before the hub's revision reads the store itself until it has
    caught up, then joins (etcd's unsynced group).  One that joins ahead of the hub (its
    own read saw more than the hub's last) is handed only events from its next revision
    on, so no event is handed twice;
  * a synced watch holding ``QUEUED`` responses its client has not taken leaves the hub
    without the read that found it full, and reads the rest itself once its client
    catches up (etcd's victims): a slow client costs the node at most ``QUEUED``
    responses, and no other watch waits for it;
  * a read the store refuses as compacted (the hub fell behind a compaction, or the node
    installed a snapshot) ends every synced watch that needed a revision before the
    compact revision, as its own read would have; the hub goes on from the compact
    revision (a watch that joined past it missed nothing).

``StreamProgress`` answers a Watch stream's progress requests by the same accounts.

The hub itself does no I/O: its owner (services/etcd_api.py) reads the store and hands it
each answer (``dispatch``), in order.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

QUEUED = 128  # responses a synced watch holds for its client at most (etcd's chanBufLen)
ALL_KEYS = {"key": b"\0", "range_end": b"\0"}  # the hub's reads: every key


@dataclass(slots=True, eq=False)
class Watcher:
    """One watch as the hub sees it; its owner takes ``pending`` and waits on ``wake``."""

    key: bytes
    end: bytes  # b"": the one key
    prev_kv: bool
    filters: frozenset[int]  # event types its client does not want
    next: int  # the first revision not handed to it (synced: at least the hub's + 1)
    pending: deque[tuple[str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    synced: bool = False
    progress_asked: bool = False  # its stream asked for progress (StreamProgress)

    def hand(self, item: tuple[str, Any]) -> None:
        self.pending.append(item)
        self.wake.set()


class WatchHub:
    """The synced watches of one node, and the revision they have every event up to."""

    def __init__(self) -> None:
        self.revision: int | None = None  # None: not started, every watch reads itself
        self._by_key: dict[bytes, set[Watcher]] = {}  # one-key watches
        self._by_range: dict[tuple[bytes, bytes], set[Watcher]] = {}  # range watches, by range
        self.synced = 0

    def start(self, revision: int) -> None:
        """Begin at ``revision``: the store's, whose events no watch of the hub needs."""
        self.revision = revision

    def join(self, watcher: Watcher) -> bool:
        """Take ``watcher`` into the synced group if it has every event up to the hub's
        revision; False: it must read the store itself first (module rules)."""
        if watcher.synced:
            return True
        if self.revision is None or watcher.next <= self.revision:
            return False
        if watcher.end:
            self._by_range.setdefault((watcher.key, watcher.end), set()).add(watcher)
        else:
            self._by_key.setdefault(watcher.key, set()).add(watcher)
        watcher.synced = True
        self.synced += 1
        return True

    def leave(self, watcher: Watcher) -> None:
        """Drop ``watcher`` from the synced group; its ``next`` says where it stands."""
        if not watcher.synced:
            return
        assert self.revision is not None
        watcher.synced = False
        watcher.next = max(watcher.next, self.revision + 1)
        self.synced -= 1
        table: dict[Any, set[Watcher]] = self._by_range if watcher.end else self._by_key
        group = (watcher.key, watcher.end) if watcher.end else watcher.key
        members = table.get(group)
        if members is not None:
            members.discard(watcher)
            if not members:
                del table[group]

    def dispatch(self, answer: dict[str, Any]) -> None:
        """Hand the synced watches one read's events: the store's watch answer over
        ``ALL_KEYS`` from the hub's revision + 1, with ``prev_kv``."""
        assert self.revision is not None
        events = answer["events"]
        if events:
            for watcher, chosen in self._matches(events).items():
                self._hand(watcher, answer["revision"], [events[i] for i in sorted(chosen)])
        self.revision = max(self.revision, int(answer["next"]) - 1)

    def _matches(self, events: Any) -> dict[Watcher, list[int]]:
        """Each synced watch whose range holds any of ``events``: their indexes."""
        matches: dict[Watcher, list[int]] = {}
        by_key = self._by_key
        if by_key:
            for i, (_, kv, _) in enumerate(events):
                for watcher in by_key.get(kv[0], ()):
                    matches.setdefault(watcher, []).append(i)
        if self._by_range:
            order = sorted(range(len(events)), key=lambda i: events[i][1][0])
            keys = [events[i][1][0] for i in order]
            for (start, end), members in self._by_range.items():
                lo = bisect.bisect_left(keys, start)
                hi = len(keys) if end == b"\0" else bisect.bisect_left(keys, end, lo)
                if lo < hi:
                    chosen = order[lo:hi]
                    for watcher in members:
                        matches[watcher] = chosen
        return matches

    def _hand(self, watcher: Watcher, revision: int, events: list[Any]) -> None:
        wanted = [
            e if watcher.prev_kv else (e[0], e[1], None)
            for e in events
            if e[0] not in watcher.filters and e[1][2] >= watcher.next
        ]
        if not wanted:
            return
        if len(watcher.pending) >= QUEUED:
            self.leave(watcher)  # before the hub's revision moves: this read is not its
            watcher.wake.set()
            return
        watcher.hand(("events", (revision, wanted)))

    def compacted(self, compact_revision: int) -> None:
        """The hub's read was refused as compacted: end every synced watch that needed a
        revision before ``compact_revision`` (module rules); the hub goes on from it."""
        assert self.revision is not None
        owed = [
            watcher
            for table in (self._by_key, self._by_range)
            for members in table.values()
            for watcher in members
            if max(watcher.next, self.revision + 1) < compact_revision
        ]
        for watcher in owed:
            self.leave(watcher)
            watcher.hand(("compacted", compact_revision))
        self.revision = max(self.revision, compact_revision - 1)

    def close(self) -> None:
        """Wake every synced watch (its owner sees the node closed)."""
        for table in (self._by_key, self._by_range):
            for members in table.values():
                for watcher in members:
                    watcher.wake.set()


class StreamProgress:
    """One Watch stream's progress requests (etcd's RequestProgress, answered as etcd
    3.5.8 and later answer it): the answer waits until every watch the stream had when
    it asked has caught up (handed its client every event it was owed, then said so:
    ``caught_up``), and carries the least revision they have each handed every event up
    to; so a client that reads it has had every event of its watches up to that
    revision.  A watch whose client lags delays the answer, as an unsynced watcher delays
    etcd's.  A request made while one waits is answered with it."""

    def __init__(self) -> None:
        self.watchers: dict[int, Watcher] = {}  # the stream's watches, by watch id
        self._owed: dict[int, int | None] | None = None  # a waiting request: who caught up where

    def ask(self) -> None:
        if self._owed is None:
            self._owed = dict.fromkeys(self.watchers)
            for watch_id in self._owed:
                watcher = self.watchers[watch_id]
                watcher.progress_asked = True
                watcher.wake.set()

    def caught_up(self, watch_id: int, revision: int) -> None:
        if self._owed is not None and watch_id in self._owed:
            self._owed[watch_id] = revision

    def gone(self, watch_id: int) -> None:
        self.watchers.pop(watch_id, None)
        if self._owed is not None:
            self._owed.pop(watch_id, None)

    def answer(self) -> tuple[bool, int | None]:
        """(True, revision) once the waiting request can be answered, and forget it (the
        revision None: the stream had no watch, answer with the store's); else (False, None)."""
        owed = self._owed
        if owed is None or any(revision is None for revision in owed.values()):
            return False, None
        self._owed = None
        return True, min((r for r in owed.values() if r is not None), default=None)
