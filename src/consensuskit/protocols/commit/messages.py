"""Messages of the atomic-commit family: 2PC, 3PC and Paxos Commit.

Names follow Gray and Lamport, "Consensus on Transaction Commit" (2006) where the paper
names them (Prepare, Phase1a/1b, Phase2a/2b, Commit, Abort) and Skeen's 3PC otherwise
(PreCommit, StateRequest/StateReport of the termination protocol).  A transaction is
named by its id (``txn``, "n1.2.7": coordinator, coordinator incarnation, counter), so
every message says which transaction it is about.

A ``Round`` orders the coordinators of one transaction (3PC termination protocol and
Paxos Commit ballots): the original coordinator speaks in ``ZERO_ROUND``; a participant
that takes over picks a higher one, and a participant (an acceptor) obeys no coordinator
of a round lower than the highest it answered.  It is the Paxos family's ballot, (number,
node) compared in that order; defined here because a family imports no other family
(tests/core/test_layers.py).

Tags 130-159 belong to Commit; append new ones, never reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensuskit.core.messages import message


@message(147)
@dataclass(frozen=True, slots=True, order=True)
class Round:
    number: int
    node: int

    def __str__(self) -> str:
        return f"{self.number}.{self.node}"


ZERO_ROUND = Round(0, 0)


def node_numbers(members: Sequence[str]) -> dict[str, int]:
    """Each member's number inside rounds: its 1-based position in the member list."""
    return {member: i for i, member in enumerate(members, start=1)}


def _keys(part: TxnPart) -> str:
    return ",".join(part.keys())


@message(130)
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnPart:
    """One participant's share of a transaction, in the shape of etcd's Txn: compares
    ``(key, "value"|"version", target)`` and the ops ``(op, key, value)`` of each branch
    (op is put, delete or get) that touch the keys this participant owns."""

    compare: tuple[tuple[str, str, Any], ...] = ()
    success: tuple[tuple[str, str, Any], ...] = ()
    failure: tuple[tuple[str, str, Any], ...] = ()

    def keys(self) -> list[str]:
        """Every key the part touches, sorted (the locks a yes vote holds)."""
        keys = {c[0] for c in self.compare} | {o[1] for o in self.success} | {o[1] for o in self.failure}
        return sorted(keys)


@message(131)
@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """Coordinator -> participant: vote on ``txn`` (3PC's CanCommit, Paxos Commit's
    BeginCommit).  ``participants`` lists every participant, for the termination
    protocols; ``coordinator`` is who to answer."""

    txn: str
    coordinator: str
    participants: tuple[str, ...]
    part: TxnPart

    def summary(self) -> str:
        return f"Prepare {self.txn} keys={_keys(self.part)}"


@message(132)
@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """Participant -> coordinator: yes (prepared: locks held, the vote logged) or no.
    A yes vote carries the participant's ``snapshot`` of its keys, ``(key, value,
    version)``, stable while the locks are held: the coordinator evaluates the compares
    and builds the answer from it."""

    txn: str
    yes: bool
    snapshot: tuple[tuple[str, Any, int], ...] = ()
    reason: str = ""

    def summary(self) -> str:
        return f"Vote {self.txn} {'yes' if self.yes else 'no ' + self.reason}".rstrip()


@message(133)
@dataclass(frozen=True, slots=True, kw_only=True)
class PreCommit:
    """3PC: every participant voted yes; move to pre-committed and acknowledge.  The
    branch the commit will apply (``succeeded``) is fixed here, so whoever finishes the
    transaction later commits the same one."""

    txn: str
    succeeded: bool = True
    round: Round = ZERO_ROUND

    def summary(self) -> str:
        return f"PreCommit {self.txn}" + (f" round={self.round}" if self.round != ZERO_ROUND else "")


@message(134)
@dataclass(frozen=True, slots=True, kw_only=True)
class PreCommitAck:
    txn: str
    round: Round = ZERO_ROUND

    def summary(self) -> str:
        return f"PreCommitAck {self.txn}" + (f" round={self.round}" if self.round != ZERO_ROUND else "")


@message(135)
@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """The decision: commit, applying the ``success`` branch when ``succeeded`` (every
    compare held) and the ``failure`` branch otherwise."""

    txn: str
    succeeded: bool = True
    round: Round = ZERO_ROUND

    def summary(self) -> str:
        branch = "" if self.succeeded else " branch=failure"
        rnd = f" round={self.round}" if self.round != ZERO_ROUND else ""
        return f"Commit {self.txn}{branch}{rnd}"


@message(136)
@dataclass(frozen=True, slots=True, kw_only=True)
class Abort:
    txn: str
    round: Round = ZERO_ROUND

    def summary(self) -> str:
        return f"Abort {self.txn}" + (f" round={self.round}" if self.round != ZERO_ROUND else "")


@message(137)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """2PC participant -> coordinator: the commit is applied (the coordinator may forget)."""

    txn: str

    def summary(self) -> str:
        return f"Ack {self.txn}"


@message(138)
@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRequest:
    """2PC: an uncertain participant asks the coordinator and, cooperative termination,
    the other participants what became of ``txn``."""

    txn: str

    def summary(self) -> str:
        return f"DecisionRequest {self.txn}"


# What a participant (or coordinator) knows of a transaction, in replies and reports.
UNKNOWN = "unknown"  # never heard of it (a participant that never voted)
UNCERTAIN = "uncertain"  # voted yes, no decision yet
PRECOMMITTED = "precommitted"  # 3PC only
COMMITTED = "committed"
ABORTED = "aborted"


@message(139)
@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionReply:
    txn: str
    state: str
    succeeded: bool = True

    def summary(self) -> str:
        branch = " branch=failure" if self.state == COMMITTED and not self.succeeded else ""
        return f"DecisionReply {self.txn} {self.state}{branch}"


@message(140)
@dataclass(frozen=True, slots=True, kw_only=True)
class StateRequest:
    """3PC termination protocol: a participant that timed out coordinates ``round``."""

    txn: str
    round: Round

    def summary(self) -> str:
        return f"StateRequest {self.txn} round={self.round}"


@message(141)
@dataclass(frozen=True, slots=True, kw_only=True)
class StateReport:
    txn: str
    round: Round
    state: str
    succeeded: bool = True

    def summary(self) -> str:
        return f"StateReport {self.txn} round={self.round} {self.state}"


@message(142)
@dataclass(frozen=True, slots=True, kw_only=True)
class RMValue:
    """The value of one participant's Paxos instance in Paxos Commit: prepared (with
    the participant's snapshot, as in a yes ``Vote``, and whether the compares on its
    keys hold: the transaction takes its success branch when every part's hold) or
    aborted."""

    prepared: bool
    snapshot: tuple[tuple[str, Any, int], ...] = ()
    holds: bool = True

    def summary(self) -> str:
        return "prepared" if self.prepared else "aborted"


@message(143)
@dataclass(frozen=True, slots=True, kw_only=True)
class Phase2a:
    """Paxos Commit: accept ``value`` for participant ``rm``'s instance of ``txn`` in
    ``ballot``.  Round 0 is the participant's own (its vote, sent with no phase 1);
    ``leader`` is whom the acceptors answer."""

    txn: str
    rm: str
    ballot: Round
    value: RMValue
    leader: str

    def summary(self) -> str:
        return f"Phase2a {self.txn} rm={self.rm} {self.ballot} {self.value.summary()}"


@message(144)
@dataclass(frozen=True, slots=True, kw_only=True)
class Phase2b:
    txn: str
    rm: str
    ballot: Round
    value: RMValue

    def summary(self) -> str:
        return f"Phase2b {self.txn} rm={self.rm} {self.ballot} {self.value.summary()}"


@message(145)
@dataclass(frozen=True, slots=True, kw_only=True)
class Phase1a:
    """Paxos Commit recovery: a new leader takes every instance of ``txn`` over."""

    txn: str
    ballot: Round
    participants: tuple[str, ...]
    leader: str

    def summary(self) -> str:
        return f"Phase1a {self.txn} {self.ballot}"


@message(146)
@dataclass(frozen=True, slots=True, kw_only=True)
class Phase1b:
    """The acceptor's promise for every instance of ``txn``, with what it accepted:
    ``(rm, ballot, value)`` per instance."""

    txn: str
    ballot: Round
    accepted: tuple[tuple[str, Round, RMValue], ...] = ()

    def summary(self) -> str:
        votes = ",".join(f"{rm}:{b}:{v.summary()}" for rm, b, v in self.accepted) or "none"
        return f"Phase1b {self.txn} {self.ballot} accepted={votes}"


@message(148)
@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """Paxos Commit: an acceptor refused ``ballot`` having promised ``promised``; the
    leader's next ballot goes above it (a leader that restarted forgot its ballots)."""

    txn: str
    ballot: Round
    promised: Round

    def summary(self) -> str:
        return f"Nack {self.txn} {self.ballot} promised={self.promised}"


STATES = (UNKNOWN, UNCERTAIN, PRECOMMITTED, COMMITTED, ABORTED)
DECISIONS = (Commit, Abort)
