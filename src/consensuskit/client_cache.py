"""The client side of cache leases (Gray and Cheriton, SOSP 1989): keep what a leased
read returned, and answer from it until the lease runs out by this client's clock.

The leader's side is ``protocols/raft/cache_leases.py``: it holds back every write to a
key until the leases it granted on the key have run out by *its* clock, lengthened by the
drift bound.  This side shortens the lease by the same bound and counts it from when the
read was *sent* (before the leader granted it), so with both clocks within the bound the
client stops trusting its copy before any write to the key can commit.  A clock that runs
slower than the bound allows keeps the copy too long: the stale read the ``lease-cache``
scenario shows.

Rules this module owns:
  * ``store(key, entry, lease, asked_at)`` keeps ``entry`` until
    ``asked_at + lease * (1 - drift_bound)`` (``lease`` 0: not kept);
  * ``lookup(key, now)`` answers only before that instant; an expired entry is dropped;
  * ``forget(key)`` (the client's own write to the key) drops it at once, so a client
    reads its own writes;
  * at most ``max_entries`` keys are kept; the one expiring first makes room.
"""

from __future__ import annotations

from typing import Any

MISS: Any = object()


class LeaseCache:
    __slots__ = ("_entries", "drift_bound", "hits", "max_entries", "misses")

    def __init__(self, drift_bound: float = 0.05, max_entries: int = 10_000) -> None:
        if not 0 <= drift_bound < 1:
            raise ValueError("drift_bound must be in [0, 1)")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.drift_bound = drift_bound
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Any, float]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, key: str, entry: Any, lease: float, asked_at: float) -> None:
        if lease <= 0:
            return
        until = asked_at + lease * (1.0 - self.drift_bound)
        if key not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k][1])]
        self._entries[key] = (entry, until)

    def lookup(self, key: str, now: float) -> Any:
        """The cached entry, or ``MISS``."""
        found = self._entries.get(key)
        if found is not None:
            if now < found[1]:
                self.hits += 1
                return found[0]
            del self._entries[key]
        self.misses += 1
        return MISS

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
