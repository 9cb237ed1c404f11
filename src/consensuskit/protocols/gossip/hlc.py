"""Hybrid logical clocks (Kulkarni, Demirbas, Madappa, Avva, Leone, "Logical Physical
Clocks", OPODIS 2014), as pure functions of the physical time a node reads.

Rules this module owns:
  * a timestamp is ``(l, c)``: ``l`` the greatest physical time (integer milliseconds,
    as in the paper's 48-bit l)
    the node has heard of, ``c`` a counter that orders events sharing one ``l``;
  * a local or send event (the paper's Fig. 5): ``l = max(l, pt)``; ``c`` counts on if
    ``l`` did not move, else restarts at 0;
  * a receive event: ``l = max(l, l_m, pt)``; ``c`` is one above the greatest counter
    among those whose ``l`` equals the new one (0 if only ``pt`` does);
  * hence: every event's timestamp is greater than every timestamp that happened before
    it (the node's earlier events, and every stamp it received), and ``l - pt`` never
    exceeds the largest clock offset among the nodes whose stamps reached it (bounded
    drift; tests/protocols/gossip/test_hlc.py checks both with hypothesis);
  * ``pack`` maps ``(l, c)`` to one integer that orders as the pair does
    (``l << COUNTER_BITS | c``). The counter stays below ``1 << COUNTER_BITS``: an event
    that would reach it moves ``l`` on by one millisecond instead, which keeps the order
    and adds at most one millisecond of drift per 65,536 events in one millisecond;
  * a packed stamp fits the wire's int64 while ``l`` is below 2^47 ms (4,400 years of the
    clock ``env.now()`` reads).
"""

from __future__ import annotations

COUNTER_BITS = 16
COUNTER_LIMIT = 1 << COUNTER_BITS


def physical(seconds: float) -> int:
    """A node's clock reading in whole milliseconds (never negative)."""
    return max(0, int(seconds * 1_000))


def pack(l: int, c: int) -> int:  # noqa: E741 - the paper's names
    return (l << COUNTER_BITS) | c


def unpack(stamp: int) -> tuple[int, int]:
    return stamp >> COUNTER_BITS, stamp & (COUNTER_LIMIT - 1)


class HybridClock:
    """One node's hybrid logical clock. Invariant: ``(l, c)`` only grows."""

    __slots__ = ("c", "l")

    def __init__(self, l: int = 0, c: int = 0) -> None:  # noqa: E741
        self.l = l
        self.c = c

    def _settle(self) -> tuple[int, int]:
        if self.c >= COUNTER_LIMIT:
            self.l += 1
            self.c = 0
        return self.l, self.c

    def tick(self, pt: int) -> tuple[int, int]:
        """A local event (a write) at physical time ``pt``: its timestamp."""
        if pt > self.l:
            self.l, self.c = pt, 0
        else:
            self.c += 1
        return self._settle()

    def observe(self, pt: int, l_m: int, c_m: int) -> tuple[int, int]:
        """A received timestamp ``(l_m, c_m)`` at physical time ``pt``: the new clock."""
        l_old = self.l
        l_new = max(l_old, l_m, pt)
        if l_new == l_old and l_new == l_m:
            c_new = max(self.c, c_m) + 1
        elif l_new == l_old:
            c_new = self.c + 1
        elif l_new == l_m:
            c_new = c_m + 1
        else:
            c_new = 0
        self.l, self.c = l_new, c_new
        return self._settle()

    def observe_packed(self, pt: int, stamp: int) -> tuple[int, int]:
        return self.observe(pt, *unpack(stamp))

    def packed(self) -> int:
        return pack(self.l, self.c)
