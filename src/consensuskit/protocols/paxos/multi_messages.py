"""Multi-Paxos messages and persistent records (Chubby style; seed 001, seed 004).

Phase 1 (``Prepare``/``Promise``) covers every slot from the candidate's first
unexecuted one; phase 2 (``Accept``/``Accepted``) runs per command under a stable
leader.  Tags 50-69 belong to Multi-Paxos (all taken); append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.messages import appended, message
from consensuskit.protocols.paxos.ballot import Ballot

COMMAND = "command"
BATCH = "batch"  # several client commands in one slot, executed in order
NOOP = "noop"
CONFIG = "config"


@message(50)
@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """The acceptors (and learners) of a configuration; majorities are taken over it."""

    members: tuple[str, ...]

    def summary(self) -> str:
        return f"members={','.join(self.members)}"


@message(51)
@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A slot's value: a client command, a batch of them (a tuple, executed in order),
    a no-op (gap filler) or a ``Membership`` that takes effect ``alpha`` slots later."""

    kind: str
    data: Any = None

    def commands(self) -> tuple[ClientRequest, ...]:
        """The client commands this value executes, in order."""
        if self.kind == COMMAND:
            return (self.data,)
        if self.kind == BATCH:
            return tuple(self.data)
        return ()

    def summary(self) -> str:
        if self.kind == COMMAND:
            return f"{self.data.client_id}#{self.data.seq}:{self.data.op.describe()}"
        if self.kind == BATCH:
            return f"batch of {len(self.data)}: " + ", ".join(f"{r.client_id}#{r.seq}" for r in self.data)
        if self.kind == CONFIG:
            return f"config({self.data.summary()})"
        return "no-op"


NOOP_ENTRY = Entry(kind=NOOP)


@message(52)
@dataclass(frozen=True, slots=True, kw_only=True)
class SlotValue:
    """``entry`` at ``slot``: a proposal in ``Accept``, a chosen value in ``Learn``."""

    slot: int
    entry: Entry


@message(53)
@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedValue:
    """An acceptor's vote: it accepted ``entry`` at ``slot`` in ``ballot``.  Also the
    record stored at log position ``slot``."""

    slot: int
    ballot: Ballot
    entry: Entry


@message(54)
@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """Phase 1a for every slot >= ``from_slot`` at once."""

    ballot: Ballot
    from_slot: int

    def summary(self) -> str:
        return f"Prepare {self.ballot} from={self.from_slot}"


@message(55, streamed=True)  # a whole state: stored by the WAL's sync worker
@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """State machine image after executing every slot up to ``last_slot``; ``configs``
    are the (first slot, members) pairs in force from ``last_slot + 1`` on."""

    last_slot: int
    configs: tuple[tuple[int, tuple[str, ...]], ...]
    data: Any

    def summary(self) -> str:
        return f"snapshot@{self.last_slot}"


@message(56, streamed=True)  # may carry a snapshot and many chosen values
@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    """Phase 1b.  ``accepted``: the acceptor's votes for slots >= ``from_slot``;
    ``chosen``: values it knows were chosen there; ``snapshot`` when it compacted slots
    the candidate lacks.  ``lease_holder``/``lease_remaining``: the leader this acceptor
    last granted a lease to and how long that grant still runs on its clock ("" = an
    unknown holder, after a restart)."""

    ballot: Ballot
    from_slot: int
    accepted: tuple[AcceptedValue, ...]
    chosen: tuple[SlotValue, ...]
    executed: int
    snapshot: Snapshot | None
    lease_holder: str | None
    lease_remaining: float

    def summary(self) -> str:
        snap = f" {self.snapshot.summary()}" if self.snapshot else ""
        lease = f" lease={self.lease_remaining:.3f}" if self.lease_remaining > 0 else ""
        return f"Promise {self.ballot} accepted={len(self.accepted)} chosen={len(self.chosen)}{snap}{lease}"


@message(57)
@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """Refusal of ``ballot``: the acceptor promised ``promised`` (the proposer can jump
    ahead of it) and names who it believes leads."""

    ballot: Ballot
    promised: Ballot
    leader_hint: str | None = None

    def summary(self) -> str:
        return f"Nack {self.ballot} promised={self.promised}"


@message(58)
@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Phase 2a for one or more slots; ``commit`` = the leader's executed prefix."""

    ballot: Ballot
    values: tuple[SlotValue, ...]
    commit: int

    def summary(self) -> str:
        slots = ",".join(str(v.slot) for v in self.values)
        return f"Accept {self.ballot} slots=[{slots}] commit={self.commit}"


@message(59)
@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """Phase 2b: the acceptor voted for ``slots`` in ``ballot``; ``executed`` is its
    executed prefix (the leader's catch-up cursor)."""

    ballot: Ballot
    slots: tuple[int, ...]
    executed: int

    def summary(self) -> str:
        return f"Accepted {self.ballot} slots={list(self.slots)} executed={self.executed}"


@message(60)
@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Lease renewal (round ``round``) and commit propagation: every slot up to
    ``commit`` is chosen, and a follower whose vote there is in ``ballot`` holds the
    chosen value."""

    ballot: Ballot
    leader: str
    commit: int
    round: int

    def summary(self) -> str:
        return f"Heartbeat {self.ballot} commit={self.commit} round={self.round}"


@message(61)
@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAck:
    """Answer to ``Heartbeat`` (``round`` > 0), ``Learn`` or ``InstallSnapshot``
    (``round`` = 0): the follower's executed prefix."""

    ballot: Ballot
    round: int
    executed: int

    def summary(self) -> str:
        return f"HeartbeatAck {self.ballot} round={self.round} executed={self.executed}"


@message(62)
@dataclass(frozen=True, slots=True, kw_only=True)
class Learn:
    """Catch-up: chosen values for a lagging node."""

    ballot: Ballot
    leader: str
    values: tuple[SlotValue, ...]

    def summary(self) -> str:
        if not self.values:
            return f"Learn {self.ballot} []"
        return f"Learn {self.ballot} slots={self.values[0].slot}..{self.values[-1].slot}"


@message(63, streamed=True)  # carries a snapshot
@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    ballot: Ballot
    leader: str
    snapshot: Snapshot

    def summary(self) -> str:
        return f"InstallSnapshot {self.ballot} last={self.snapshot.last_slot}"


@message(64)
@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """A client command passed on to the leader; its answer goes back to ``origin``."""

    request: ClientRequest
    origin: str
    hops: int = 1

    def summary(self) -> str:
        r = self.request
        return f"Forward {r.client_id}#{r.seq} {r.op.describe()} from={self.origin}"


@message(65)
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardReply:
    """The leader's answer to a forwarded command, for ``origin`` to deliver."""

    response: ClientResponse

    def summary(self) -> str:
        r = self.response
        return f"ForwardReply {r.client_id}#{r.seq} ok={r.ok}"


@message(66)
@dataclass(frozen=True, slots=True, kw_only=True)
class RejoinRequest:
    """From an acceptor that lost its disk and caught up to the leader of ``ballot``:
    "run phase 1 again, and tell me (``Readmit``, echoing ``nonce``) through which slot
    the values chosen before it lie" (README, "Disk loss").  ``nonce`` was appended: a
    previous release's frame decodes with 0, and its sender gets the old answer (a new
    phase 1 deciding a no-op, and no ``Readmit``, which it could not decode)."""

    ballot: Ballot
    nonce: int = field(default=0, metadata=appended(0))

    def summary(self) -> str:
        return f"RejoinRequest {self.ballot} nonce={self.nonce}"


@message(67)
@dataclass(frozen=True, slots=True, kw_only=True)
class PrePrepare:
    """Pre-vote (Raft §9.6, for phase 1): "would you promise me a ballot of ``round`` if
    I ran phase 1 now?"  Nothing changes, and nothing is written, at either end."""

    round: int

    def summary(self) -> str:
        return f"PrePrepare round={self.round}"


@message(68)
@dataclass(frozen=True, slots=True, kw_only=True)
class PrePromise:
    """Answer to ``PrePrepare``: granted unless this node heard from a live leader within
    the election timeout (or leads); ``promised`` lets the asker pick a higher round."""

    round: int
    granted: bool
    promised: Ballot

    def summary(self) -> str:
        answer = "granted" if self.granted else "refused"
        return f"PrePromise round={self.round} {answer} promised={self.promised}"


@message(69)
@dataclass(frozen=True, slots=True, kw_only=True)
class Readmit:
    """The leader's answer to ``RejoinRequest(nonce)``, once it leads ``ballot``, whose
    phase 1 it started on that request: every value chosen before that phase 1 is at a
    slot up to ``through``.  The acceptor votes again once it has executed them and
    stored them in a snapshot (they replace the votes it lost)."""

    ballot: Ballot
    through: int
    nonce: int

    def summary(self) -> str:
        return f"Readmit {self.ballot} through={self.through} nonce={self.nonce}"
