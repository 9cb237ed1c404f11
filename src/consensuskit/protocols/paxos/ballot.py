"""Ballots (proposal numbers) shared by every Paxos variant.

Rules this module owns:
  * a ballot is ``(round, node)``, compared round first, then node number, so two
    proposers never issue the same ballot and any two ballots are ordered (seed 003's
    S1 "3.1" < S5 "4.5");
  * ``ZERO_BALLOT`` (0.0) is below every ballot a proposer issues: it means "nothing
    promised / nothing accepted";
  * node numbers come from node ids: the trailing integers of the ids when every member
    has a distinct one ("S5" -> 5, "n12" -> 12), else the 1-based position in the member
    list as given ("A" -> 1, "B" -> 2).

Tag 30 belongs to the Paxos family's ``Ballot``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from consensuskit.core.messages import message


@message(30)
@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    round: int
    node: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"

    def summary(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, text: str) -> Ballot:
        """Inverse of ``str``: "3.1" -> Ballot(3, 1)."""
        round_, sep, node = text.partition(".")
        if not sep or not round_.isdigit() or not node.isdigit():
            raise ValueError(f"not a ballot {text!r}: expected ROUND.NODE, e.g. 3.1")
        return cls(int(round_), int(node))


ZERO_BALLOT = Ballot(0, 0)

_TRAILING_INT = re.compile(r"(\d+)$")


def node_numbers(members: Sequence[str]) -> dict[str, int]:
    """Each member's number inside ballots (see the module rules)."""
    trailing = {}
    for member in members:
        match = _TRAILING_INT.search(member)
        if match is None:
            break
        trailing[member] = int(match.group(1))
    else:
        if len(set(trailing.values())) == len(members) and 0 not in trailing.values():
            return trailing
    return {member: i for i, member in enumerate(members, start=1)}
