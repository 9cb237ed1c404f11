"""Fast Paxos messages beyond the classic ones in ``basic_messages``.

``AcceptAny`` is the coordinator's phase-2a "any" (seed 004's ``Any(N,I,Recovery)``):
acceptors may vote for the first value a client proposes in round ``ballot`` for every
slot from ``from_slot`` on.  ``Propose`` is that client proposal (seed 004's
``Accept!(N,I,W)`` sent by the client straight to the acceptors).

Tags 42-49 belong to Fast Paxos; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensuskit.core.messages import message
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic_messages import describe


@message(42)
@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptAny:
    ballot: Ballot
    from_slot: int

    def summary(self) -> str:
        return f"Any {self.ballot} from slot {self.from_slot}"


@message(43)
@dataclass(frozen=True, slots=True, kw_only=True)
class Propose:
    slot: int
    ballot: Ballot
    value: Any

    def summary(self) -> str:
        return f"Propose slot={self.slot} ({self.ballot}, {describe(self.value)})"
