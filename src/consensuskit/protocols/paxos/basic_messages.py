"""Messages and persistent records of single-decree Paxos run per slot (Basic and Fast).

Named as in "Paxos Made Simple": phase 1 ``Prepare``/``Promise``, phase 2
``Accept``/``Accepted``; ``Nack`` carries the ballot the acceptor promised so the
proposer can jump past it.  ``Chosen`` tells lagging nodes the values they missed.
Fast Paxos reuses all of them (``fast`` marks a vote of a fast round; ``base`` marks a
recovery round that uses the 2b messages of round ``base`` as its phase 1).

Tags 31-41 belong to Basic Paxos; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensuskit.core.client import ClientRequest
from consensuskit.core.messages import message
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot


@message(39)
@dataclass(frozen=True, slots=True, kw_only=True)
class Noop:
    """The value that fills a hole in the log; executing it changes nothing."""

    def summary(self) -> str:
        return "no-op"


NOOP = Noop()


def describe(value: Any) -> str:
    """A short, stable text for a slot value (traces, records, errors)."""
    if isinstance(value, ClientRequest):
        return f"{value.client_id}#{value.seq}:{value.op.describe()}"
    if isinstance(value, Noop):
        return "no-op"
    return repr(value) if not isinstance(value, str) else value


@message(31)
@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    slot: int
    ballot: Ballot

    def summary(self) -> str:
        return f"Prepare slot={self.slot} {self.ballot}"


@message(32)
@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    """Phase 1b: the acceptor will not accept below ``ballot`` and reports its vote."""

    slot: int
    ballot: Ballot
    accepted_ballot: Ballot = ZERO_BALLOT
    accepted_value: Any = None
    accepted_fast: bool = False

    def summary(self) -> str:
        if self.accepted_ballot == ZERO_BALLOT:
            return f"Promise slot={self.slot} {self.ballot} accepted=none"
        return (
            f"Promise slot={self.slot} {self.ballot} "
            f"accepted=({self.accepted_ballot}, {describe(self.accepted_value)})"
        )


@message(33)
@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    slot: int
    ballot: Ballot
    value: Any
    # Fast Paxos recovery: phase 1 of ``ballot`` was replaced by the 2b messages of
    # round ``base``; acceptors that promised anything above ``base`` must refuse.
    base: Ballot | None = None

    def summary(self) -> str:
        base = f" base={self.base}" if self.base is not None else ""
        return f"Accept slot={self.slot} ({self.ballot}, {describe(self.value)}){base}"


@message(34)
@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """Phase 2b, sent to the proposer and every learner (and in Fast Paxos to the
    coordinator, or to the other acceptors for uncoordinated recovery)."""

    slot: int
    ballot: Ballot
    value: Any
    fast: bool = False

    def summary(self) -> str:
        kind = " fast" if self.fast else ""
        return f"Accepted slot={self.slot} ({self.ballot}, {describe(self.value)}){kind}"


@message(35)
@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """A refused Prepare/Accept/Propose for ``ballot``: the acceptor promised ``promised``."""

    slot: int
    ballot: Ballot
    promised: Ballot

    def summary(self) -> str:
        return f"Nack slot={self.slot} {self.ballot} promised={self.promised}"


@message(36)
@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    """'Tell me the chosen values from ``from_slot`` on.'"""

    from_slot: int

    def summary(self) -> str:
        return f"CatchUp from={self.from_slot}"


@message(37)
@dataclass(frozen=True, slots=True, kw_only=True)
class Chosen:
    """Values known chosen, as ``((slot, value), ...)``."""

    values: tuple[tuple[int, Any], ...]

    def summary(self) -> str:
        slots = [s for s, _ in self.values]
        return f"Chosen slots={slots[0]}..{slots[-1]}" if slots else "Chosen none"


# Storage keys of the durable per-slot records: public, since check/ reads the acceptors'
# votes from storage to compute what was chosen.
def acceptor_key(slot: int) -> str:
    return f"paxos/acceptor/{slot}"


def chosen_key(slot: int) -> str:
    return f"paxos/chosen/{slot}"


@message(38)
@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptorState:
    """What an acceptor persists per slot before it answers.

    Invariant (without the accept-lower-ballot bug): accepted_ballot <= promised.
    """

    promised: Ballot = ZERO_BALLOT
    accepted_ballot: Ballot = ZERO_BALLOT
    accepted_value: Any = None
    accepted_fast: bool = False

    def summary(self) -> str:
        return f"promised={self.promised} accepted=({self.accepted_ballot}, {describe(self.accepted_value)})"


EMPTY_ACCEPTOR = AcceptorState()
