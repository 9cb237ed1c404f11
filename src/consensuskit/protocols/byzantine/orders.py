"""Orders and the two decision functions of Lamport, Shostak and Pease (1982).

Rules this module owns:
  * an order is a string; the generals' domain is ``ORDERS`` (attack, retreat), but a
    traitor may send anything, and a loyal general relays what it got as is;
  * a message that never arrives counts as ``DEFAULT`` (RETREAT): assumption A3 (the
    absence of a message can be detected) plus the paper's default order;
  * ``majority`` is OM(m)'s function (§3): the value held by more than half of the
    values, else RETREAT.  It depends only on the multiset of values, never on their
    order, so two lieutenants holding the same values decide the same;
  * ``choice`` is SM(m)'s function (§4): the single element of V, else RETREAT (an
    empty V, or a commander caught sending two orders).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

ATTACK = "attack"
RETREAT = "retreat"
ORDERS = (ATTACK, RETREAT)
DEFAULT = RETREAT


def majority(values: Iterable[str]) -> str:
    """The value more than half of ``values`` hold, else RETREAT (LSP82 §3)."""
    counts = Counter(values)
    total = sum(counts.values())
    for value, count in counts.items():
        if 2 * count > total:
            return value
    return DEFAULT


def choice(values: Iterable[str]) -> str:
    """The one order in ``values``, else RETREAT (LSP82 §4: choice(V))."""
    distinct = set(values)
    if len(distinct) == 1:
        return next(iter(distinct))
    return DEFAULT


def opposite(order: str) -> str:
    """The other order of the domain (anything outside it becomes ATTACK)."""
    return RETREAT if order == ATTACK else ATTACK
