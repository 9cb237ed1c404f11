"""SWIM's per-step invariants (protocols/swim), checked after every step of every member.

* incarnation-owner   - only a member raises its own incarnation: no member's view ever
                        holds another member at an incarnation above the highest that
                        member has claimed itself (in any of its lives);
* precedence          - every change of a member's record obeys memberlist's precedence:
                        alive(i) replaces anything at j only if i > j; suspect(i) replaces
                        only alive(j), if i >= j; dead/left(i) replace alive or suspect(j)
                        if i >= j; nothing but a newer alive replaces dead or left;
* dissemination-bound - no queued update has been sent more than
                        retransmit_mult * ceil(log10(n + 1)) times by one member.

The rules are written here again, plainly, rather than imported from the protocol
(``members.SUPERSEDES``), so a mistake in the protocol's table cannot hide itself.
Strong completeness and accuracy are properties of a whole run, not of a step: the
membership monitor (check/swim_monitor.py) measures them.
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation

_GONE = ("dead", "left")


def allowed(old_state: str, old_inc: int, new_state: str, new_inc: int) -> bool:
    """May a record at (old_state, old_inc) become (new_state, new_inc)?"""
    if new_state == "alive":
        return new_inc > old_inc
    if old_state in _GONE:
        return False
    if new_state == "suspect":
        return old_state == "alive" and new_inc >= old_inc
    if new_state in _GONE:
        return new_inc >= old_inc
    return False


class SwimChecker:
    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.owner_max: dict[str, int] = {}
        self.started = False

    def after_step(self, sim: Any, node_id: str) -> None:
        if not self.started:
            self.started = True
            for nid in sim.node_ids:
                self._note_owner(nid, sim.nodes.get(nid))
        node = sim.nodes.get(node_id)
        if node is None:
            return
        self._note_owner(node_id, node)
        owner_max = self.owner_max
        for member, old_state, old_inc, new_state, new_inc in node.changes:
            if member == node_id:
                continue
            if old_state is not None and not allowed(old_state, old_inc, new_state, new_inc):
                raise InvariantViolation(
                    "precedence",
                    f"{node_id} changed {member} from {old_state}/{old_inc} to {new_state}/{new_inc}",
                )
            claimed = owner_max.get(member)
            if claimed is not None and new_inc > claimed:
                raise InvariantViolation(
                    "incarnation-owner",
                    f"{node_id} holds {member} {new_state} at incarnation {new_inc}, "
                    f"but {member} never claimed more than {claimed}",
                )
        for entry in node.queue.entries.values():
            if entry.transmits > entry.limit:
                raise InvariantViolation(
                    "dissemination-bound",
                    f"{node_id} sent {entry.update.summary()} {entry.transmits} times (limit {entry.limit})",
                )

    def _note_owner(self, node_id: str, node: Any) -> None:
        if node is None:
            return
        inc = node.incarnation
        if inc > self.owner_max.get(node_id, -1):
            self.owner_max[node_id] = inc


def make_checker(bugs: frozenset[str]) -> SwimChecker:
    return SwimChecker(bugs)
