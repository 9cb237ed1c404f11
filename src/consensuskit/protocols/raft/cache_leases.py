"""Client cache leases at the Raft leader (Gray and Cheriton, "Leases: An Efficient
Fault-Tolerant Mechanism for Distributed File Cache Consistency", SOSP 1989).

A client that reads a key with ``consistency="cache"`` may keep the answer for the lease
it is granted, measured on its own clock from when it *sent* the read, shortened by the
drift bound (``client_cache.LeaseCache``).  The leader keeps that promise by holding back
every write to the key until the lease has run out by its own clock, lengthened by the
drift bound.  A write is never refused for a lease: it waits (the "wait out" of the paper;
an HTTP client cannot be called back to give its lease up early).

Rules this module owns (all times are the leader's ``env.now()``):
  * ``grant(key, now)`` promises ``term`` seconds and holds writes to ``key`` until
    ``now + term * (1 + drift_bound)``: with both clocks within the bound the client's
    lease (at most ``term`` of real time from before the grant) ends first;
  * no lease is granted on a key a held write waits for (else reads could starve it);
  * held writes leave in arrival order: once one write waits, every later write queues
    behind it (a client's writes keep their order, so its session never sees a newer
    sequence number applied before an older one);
  * a write whose key is unknown here (another service's op) waits for every lease;
  * a new leader does not know the leases its predecessor granted: it holds every write
    for ``term * (1 + drift_bound)`` after it took office (``start_term``);
  * leases are the leader's memory only: nothing here is persisted or replicated.
"""

from __future__ import annotations

import collections
from typing import Any

from consensuskit.core.client import ClientRequest, Op

# Held writes at most; beyond it a write is refused as busy rather than queued without bound.
MAX_HELD = 4096


class CacheLeases:
    __slots__ = ("_barrier", "_grants", "_held", "drift_bound", "term")

    def __init__(self, term: float, drift_bound: float) -> None:
        self.term = term
        self.drift_bound = drift_bound
        self._grants: dict[str, float] = {}  # key -> writes to it wait until then
        self._held: collections.deque[tuple[ClientRequest, Any]] = collections.deque()
        self._barrier = 0.0  # every write waits until then (a new leader's wait)

    def __len__(self) -> int:
        return len(self._held)

    @property
    def hold(self) -> float:
        """How long a grant holds writes back, by the leader's clock."""
        return self.term * (1.0 + self.drift_bound)

    def start_term(self, now: float) -> None:
        self._grants.clear()
        self._barrier = now + self.hold

    def may_grant(self, key: str) -> bool:
        return not any(_key_of(request) in (key, None) for request, _ in self._held)

    def grant(self, key: str, now: float) -> float:
        """Promise a lease on ``key``; returns its length in seconds."""
        until = now + self.hold
        if self._grants.get(key, 0.0) < until:
            self._grants[key] = until
        return self.term

    def must_wait(self, request: ClientRequest, now: float) -> bool:
        """Whether ``request`` (a write) must be held back rather than appended now."""
        return bool(self._held) or self._blocked_until(request, now) is not None

    def hold_back(self, request: ClientRequest, origin: Any) -> bool:
        """Queue a write; False when the queue is full (the caller refuses it)."""
        if len(self._held) >= MAX_HELD:
            return False
        self._held.append((request, origin))
        return True

    def released(self, now: float) -> list[tuple[ClientRequest, Any]]:
        """The held writes whose turn has come, in arrival order."""
        out = []
        held = self._held
        while held and self._blocked_until(held[0][0], now) is None:
            out.append(held.popleft())
        for key in [k for k, until in self._grants.items() if until <= now]:
            del self._grants[key]
        return out

    def next_release(self, now: float) -> float | None:
        """When the first held write may go (None: nothing is held)."""
        if not self._held:
            return None
        return self._blocked_until(self._held[0][0], now) or now

    def drain(self) -> list[tuple[ClientRequest, Any]]:
        """Everything held (a leader stepping down refuses it: nothing was appended)."""
        out = list(self._held)
        self._held.clear()
        self._grants.clear()
        return out

    def _blocked_until(self, request: ClientRequest, now: float) -> float | None:
        until = self._barrier
        key = _key_of(request)
        if key is None:
            until = max([until, *self._grants.values()])
        else:
            until = max(until, self._grants.get(key, 0.0))
        return until if until > now else None


def _key_of(request: ClientRequest) -> str | None:
    """The one key a kv write touches; None for anything else (it waits for every lease)."""
    op = request.op
    if type(op) is Op and op.kind in ("put", "delete", "cas"):
        return op.key
    return None
