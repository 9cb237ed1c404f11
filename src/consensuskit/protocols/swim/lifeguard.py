"""Lifeguard's formulas (Dadgar, Phillips, Currey 2018), as memberlist computes them.

Rules this module owns (pure functions, tested alone):
  * suspicion timeout: ``min = mult * max(1, log10(n)) * probe_interval`` (memberlist's
    ``suspicionTimeout``: log10 of n, though its comment says log(n+1));
    ``max = max_mult * min``; the wanted confirmations ``k = mult - 2``, or 0 when the
    other ``n - 2`` members cannot give that many;
  * dynamic suspicion (``remaining``): after ``c`` independent confirmations the timer
    runs ``max - (ln(c+1)/ln(k+1)) * (max - min)`` from its start, floored at ``min``
    (rounded down to the millisecond, as memberlist does);
  * local health awareness (``Awareness``): a score in ``0 .. max_score - 1``; probe
    interval and timeouts are multiplied by ``score + 1``; a probe answered: -1; a probe
    failed: +1 per expected nack that did not come (+1 when none were expected); having
    to refute a suspicion of oneself: +1;
  * dissemination: an update is retransmitted at most
    ``retransmit_mult * ceil(log10(n + 1))`` times (``retransmit_limit``);
  * push-pull interval: scaled by ``ceil(log2(n) - log2(32)) + 1`` above 32 members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PUSH_PULL_SCALE_THRESHOLD = 32


def suspicion_bounds(mult: int, max_mult: int, n: int, probe_interval: float) -> tuple[float, float]:
    """(min, max) suspicion timeout for a cluster of ``n`` members."""
    scale = max(1.0, math.log10(max(1.0, float(n))))
    low = mult * scale * probe_interval
    return low, max_mult * low


def confirmations_wanted(mult: int, n: int) -> int:
    """k: independent confirmations that drive the timer to its minimum."""
    k = mult - 2
    return 0 if n - 2 < k else k


def suspicion_timeout(confirmations: int, k: int, low: float, high: float) -> float:
    """Total timeout (from the suspicion's start) after ``confirmations``."""
    if k < 1:
        return low
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = high - frac * (high - low)
    timeout = math.floor(1000.0 * raw) / 1000.0
    return max(timeout, low)


def retransmit_limit(mult: int, n: int) -> int:
    return mult * math.ceil(math.log10(n + 1))


def push_pull_interval(interval: float, n: int) -> float:
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    return (math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0) * interval


@dataclass(slots=True)
class Awareness:
    """Local health: 0 is healthy; Invariant: 0 <= score < max_score."""

    max_score: int = 8
    score: int = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max_score - 1)

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)


@dataclass(slots=True)
class Suspicion:
    """One suspicion timer (memberlist's ``suspicion``): starts at ``high`` (``low`` when
    no confirmation is wanted) and shrinks with each new independent accuser.  The
    member that started it (``accusers`` holds it) never counts as a confirmation."""

    start: float
    k: int
    low: float
    high: float
    incarnation: int
    accusers: set[str] = field(default_factory=set)
    confirmations: int = 0

    def timeout(self) -> float:
        return suspicion_timeout(self.confirmations, self.k, self.low, self.high)

    def deadline(self) -> float:
        return self.start + self.timeout()

    def confirm(self, accuser: str) -> bool:
        """A new independent confirmation (True) or nothing new (False)."""
        if self.confirmations >= self.k or accuser in self.accusers:
            return False
        self.accusers.add(accuser)
        self.confirmations += 1
        return True
