"""The member table and the precedence of membership updates (memberlist's
``aliveNode`` / ``suspectNode`` / ``deadNode``, with the fixes of PR #345).

Rules this module owns:
  * only a member raises its own incarnation (refutation, restart); everybody else
    copies incarnations from updates;
  * ``alive(i)`` replaces a record at incarnation ``j`` iff ``i > j`` (whatever its state:
    a restarted or refuting member comes back);
  * ``suspect(i)`` replaces ``alive(j)`` iff ``i >= j`` (suspect beats alive at equal
    incarnation); it never replaces a suspect (a second accuser confirms instead) or a
    dead/left record;
  * ``dead(i)`` / ``left(i)`` replace ``alive(j)`` or ``suspect(j)`` iff ``i >= j``; once
    dead or left, only a newer alive brings a member back;
  * records are never forgotten (tombstones): a member memberlist would have reaped can
    come back only by a newer alive, not by a stale one relayed in a push-pull
    (memberlist #312).
``SUPERSEDES`` states this as data; the node applies it in ``node.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.protocols.swim.messages import ALIVE, DEAD, LEFT, SUSPECT

# (old state, new state) -> the comparison the new incarnation must pass against the
# old one: ">" strictly newer, ">=" at least as new, None never.
SUPERSEDES: dict[tuple[str, str], str | None] = {
    (ALIVE, ALIVE): ">",
    (ALIVE, SUSPECT): ">=",
    (ALIVE, DEAD): ">=",
    (ALIVE, LEFT): ">=",
    (SUSPECT, ALIVE): ">",
    (SUSPECT, SUSPECT): None,
    (SUSPECT, DEAD): ">=",
    (SUSPECT, LEFT): ">=",
    (DEAD, ALIVE): ">",
    (DEAD, SUSPECT): None,
    (DEAD, DEAD): None,
    (DEAD, LEFT): None,
    (LEFT, ALIVE): ">",
    (LEFT, SUSPECT): None,
    (LEFT, DEAD): None,
    (LEFT, LEFT): None,
}


def supersedes(old_state: str, old_inc: int, new_state: str, new_inc: int) -> bool:
    rule = SUPERSEDES[(old_state, new_state)]
    if rule == ">":
        return new_inc > old_inc
    if rule == ">=":
        return new_inc >= old_inc
    return False


@dataclass(slots=True)
class Member:
    """What one member knows about another (or itself)."""

    state: str
    incarnation: int
    since: float  # the member's clock when the state last changed
    address: str = ""

    def gone(self) -> bool:
        return self.state in (DEAD, LEFT)
