"""When a lease expires: the leader's lessor (etcd's lease/lessor.go, without its clock).

The MVCC store (statemachines/mvcc.py) holds leases without time: each has a TTL and a
refresh stamp that every keep-alive bumps.  Time lives here, on each node, and only the
leader acts on it: it writes ``lease_expire(id, stamp)`` into the log, which the store
honours only if no keep-alive came in between.

Rules this module owns (``now`` is the caller's monotonic clock, in seconds):
  * a lease's deadline is ``now + TTL`` from the moment this node first sees its current
    stamp (a grant, a keep-alive, or the lease at all): a node sees a refresh a little
    after it happened, so deadlines err late, never early;
  * a node that becomes leader extends every lease to ``now + TTL`` (etcd's Promote): it
    cannot know when the old leader last refreshed them, so it never expires a lease it
    could not have kept alive; a follower expires nothing;
  * ``expired`` lists, in id order, the (id, stamp) of each lease past its deadline, each
    at most once per stamp (the expiry command may fail: after ``RETRY`` seconds it is
    listed again);
  * ``remaining`` is what TimeToLive answers: whole seconds left, at least 0, rounded up;
  * bug knobs (the simulator's lease checks): ``no-promote-extend``, a node that becomes
    leader keeps the deadlines it counted as a follower; ``ignore-new-leases``, a leader
    never counts a lease it first sees while it leads (only those it knew when promoted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RETRY = 1.0  # seconds before an expiry that was not applied is proposed again
LOOK = 0.1  # seconds between a lessor's looks at its node's leases (server and simulator)
BUGS = ("no-promote-extend", "ignore-new-leases")


class Lessor:
    __slots__ = ("_asked", "_deadlines", "bugs", "leading")

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.bugs = bugs
        self._deadlines: dict[int, tuple[int, int, float]] = {}  # id -> (stamp, ttl, deadline)
        self._asked: dict[int, tuple[int, float]] = {}  # id -> (stamp, when) of its expiry command
        self.leading = False

    def observe(
        self, leases: Iterable[tuple[int, int, int]], now: float, leading: bool
    ) -> list[tuple[int, int]]:
        """Take the store's leases ``(id, ttl, stamp)`` as seen at ``now``; the (id, stamp)
        pairs to expire if this node leads (see the module rules)."""
        promoted = leading and not self.leading
        if promoted and "no-promote-extend" not in self.bugs:
            self._deadlines.clear()  # promoted: every lease gets a whole TTL from now
            self._asked.clear()
        self.leading = leading
        old = self._deadlines
        fresh: dict[int, tuple[int, int, float]] = {}
        ignore_new = leading and not promoted and "ignore-new-leases" in self.bugs
        for lease_id, ttl, stamp in leases:
            seen = old.get(lease_id)
            if seen is not None and seen[0] == stamp and seen[1] == ttl:
                fresh[lease_id] = seen
            elif seen is None and ignore_new:
                continue
            else:
                fresh[lease_id] = (stamp, ttl, now + ttl)
        self._deadlines = fresh
        self._asked = {i: a for i, a in self._asked.items() if i in fresh}
        if not leading:
            return []
        due = []
        for lease_id in sorted(fresh):
            stamp, _, deadline = fresh[lease_id]
            if now < deadline:
                continue
            asked = self._asked.get(lease_id)
            if asked is not None and asked[0] == stamp and now < asked[1] + RETRY:
                continue
            self._asked[lease_id] = (stamp, now)
            due.append((lease_id, stamp))
        return due

    def refreshed(self, lease_id: int, stamp: int, ttl: int, now: float) -> None:
        """A keep-alive this node applied: its deadline moves at once (no wait for the poll)."""
        self._deadlines[lease_id] = (stamp, ttl, now + ttl)

    def remaining(self, lease_id: int, ttl: int, now: float) -> int:
        seen = self._deadlines.get(lease_id)
        if seen is None:
            return ttl
        return max(0, math.ceil(seen[2] - now))
