"""Raft's messages and persistent records, named as in the paper (Ongaro 2014, fig. 2).

Tags 10-29 belong to Raft; append new ones, never reuse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgspec

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.messages import appended, message
from consensuskit.protocols.common.batching import entry_size

NOOP = "noop"
COMMAND = "command"
CONFIG = "config"


@message(10)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Voters decide elections and commitment; learners only receive the log."""

    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()

    def members(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.voters) | set(self.learners)))

    def summary(self) -> str:
        learners = f" learners={','.join(self.learners)}" if self.learners else ""
        return f"voters={','.join(self.voters)}{learners}"


@message(23)
@dataclass(frozen=True, slots=True, kw_only=True)
class RejoinConfig(ClusterConfig):
    """A configuration in which ``rejoining`` (a subset of the learners) are voters that
    lost their stable storage, demoted until they have caught up: the leader promotes
    each back to voter once its log reached the commit index (README, "A node that lost
    its disk").  Used only while a node rejoins, so configurations written by the
    previous release, and by this one otherwise, stay plain ClusterConfigs."""

    rejoining: tuple[str, ...] = ()
    # The incarnation (Rejoining.incarnation) of each of ``rejoining``, in the same
    # order: which disk loss the demotion answers.  A node that lost its disk twice
    # finds the first loss's demotion and promotion in the log it catches up on; only
    # a demotion naming its own incarnation is its own.  Empty in configurations of
    # releases before it, and 0 for a node that reported none: unknown (any will do).
    incarnations: tuple[int, ...] = dataclasses.field(default=(), metadata=appended(()))

    def summary(self) -> str:
        return f"{ClusterConfig.summary(self)} rejoining={','.join(self.rejoining)}"

    def demotes(self, node: str, incarnation: int) -> bool:
        """Is this the demotion of ``node``'s disk loss ``incarnation``?"""
        return node in self.rejoining and rejoining_of(self)[node] in (0, incarnation)


def rejoining_of(config: ClusterConfig) -> dict[str, int]:
    """The rejoining learners of ``config`` with their incarnations (0: unknown)."""
    if not isinstance(config, RejoinConfig):
        return {}
    incarnations = dict(zip(config.rejoining, config.incarnations, strict=False))
    return {node: incarnations.get(node, 0) for node in config.rejoining}


def make_config(
    voters: set[str] | tuple[str, ...],
    learners: set[str] | tuple[str, ...] = (),
    rejoining: dict[str, int] | None = None,
) -> ClusterConfig:
    """A sorted configuration; a RejoinConfig only when a learner is rejoining.
    ``rejoining``: node -> the incarnation its demotion answers (rejoining_of)."""
    rejoining = rejoining or {}
    marked = tuple(sorted(set(rejoining) & set(learners)))
    v, lr = tuple(sorted(voters)), tuple(sorted(learners))
    if marked:
        return RejoinConfig(
            voters=v, learners=lr, rejoining=marked, incarnations=tuple(rejoining[n] for n in marked)
        )
    return ClusterConfig(voters=v, learners=lr)


@message(11)
class LogEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``data`` is a ClientRequest (command), a ClusterConfig (config) or None (no-op).
    A msgspec Struct the collector never tracks (gc=False): a long log holds a hundred
    thousand of them (core/messages.py)."""

    term: int
    index: int
    kind: str
    data: Any = None

    def size(self) -> int:
        """Estimated encoded size, for flow control (cheap; not exact): 48 bytes plus
        what the entry carries, so that ``max_batch_bytes`` bounds an AppendEntries of
        large values too (RaftLog caches it per index)."""
        return entry_size(self.data)

    def summary(self) -> str:
        if self.kind == COMMAND:
            return f"{self.term}/{self.index}:{self.data.op.describe()}"
        if self.kind == CONFIG:
            return f"{self.term}/{self.index}:config({self.data.summary()})"
        return f"{self.term}/{self.index}:no-op"


@message(12)
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote:
    """§5.2; ``pre_vote`` asks "would you vote?" without disturbing terms (§9.6);
    ``transfer`` marks an election started by TimeoutNow, which bypasses the leader-lease
    vote check (§3.10)."""

    term: int
    candidate: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False

    def summary(self) -> str:
        kind = "PreVote" if self.pre_vote else "RequestVote"
        return f"{kind} term={self.term} last={self.last_log_term}/{self.last_log_index}"


@message(13)
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteResponse:
    term: int
    granted: bool
    pre_vote: bool = False

    def summary(self) -> str:
        kind = "PreVoteResp" if self.pre_vote else "VoteResp"
        return f"{kind} term={self.term} {'granted' if self.granted else 'rejected'}"


@message(14)
@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries:
    term: int
    leader: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...]
    leader_commit: int

    def summary(self) -> str:
        entries = ",".join(f"{e.term}/{e.index}" for e in self.entries)
        return (
            f"AppendEntries term={self.term} prev={self.prev_log_term}/{self.prev_log_index}"
            f" commit={self.leader_commit} entries=[{entries}]"
        )


@message(15)
@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesResponse:
    """On success ``index`` is the last index the message made consistent; on rejection
    it is the ``prev_log_index`` that failed, with the fast-backtracking hint
    ``conflict_term`` (0: follower's log too short) and ``conflict_index``."""

    term: int
    success: bool
    index: int
    conflict_term: int = 0
    conflict_index: int = 0

    def summary(self) -> str:
        if self.success:
            return f"AppendResp term={self.term} ok match={self.index}"
        return (
            f"AppendResp term={self.term} reject at={self.index}"
            f" hint={self.conflict_term}/{self.conflict_index}"
        )


@message(16)
@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Leader liveness plus commit propagation; ``commit`` is already bounded by the
    follower's match index, and ``context`` numbers a ReadIndex confirmation round."""

    term: int
    leader: str
    commit: int
    context: int = 0

    def summary(self) -> str:
        ctx = f" ctx={self.context}" if self.context else ""
        return f"Heartbeat term={self.term} commit={self.commit}{ctx}"


@message(17)
@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    term: int
    context: int = 0

    def summary(self) -> str:
        ctx = f" ctx={self.context}" if self.context else ""
        return f"HeartbeatResp term={self.term}{ctx}"


@message(18, streamed=True)  # a whole state: stored by the WAL's sync worker
@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """State machine image covering every entry up to ``last_index``."""

    last_index: int
    last_term: int
    config: ClusterConfig
    data: Any

    def summary(self) -> str:
        return f"snapshot {self.last_term}/{self.last_index}"


@message(19)
@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    """The leader's snapshot for a follower behind its log, whole or in chunks.

    Whole: ``snapshot`` is set.  Chunked (a snapshot whose encoding exceeds
    ``snapshot_chunk_bytes``): ``snapshot`` is None and ``chunk`` holds the bytes of the
    encoded Snapshot from ``offset`` on; ``last_index`` names the snapshot and ``done``
    marks the final chunk.  Raft §7 / Figure 13: offset, data, done."""

    term: int
    leader: str
    snapshot: Snapshot | None = None
    last_index: int = 0
    offset: int = 0
    chunk: bytes = b""
    done: bool = True

    def summary(self) -> str:
        s = self.snapshot
        if s is not None:
            return f"InstallSnapshot term={self.term} last={s.last_term}/{s.last_index}"
        return (
            f"InstallSnapshot term={self.term} last=?/{self.last_index} chunk @{self.offset} "
            f"+{len(self.chunk)}{' done' if self.done else ''}"
        )


@message(20)
@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotResponse:
    """``index``: the follower's commit index (installed or already covered).
    ``next_offset`` >= 0 acknowledges a chunk: send the snapshot from there."""

    term: int
    index: int
    next_offset: int = -1

    def summary(self) -> str:
        if self.next_offset >= 0:
            return f"SnapshotResp term={self.term} next_offset={self.next_offset}"
        return f"SnapshotResp term={self.term} match={self.index}"


@message(21)
@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """Leadership transfer: "start an election now" (§3.10)."""

    term: int
    leader: str

    def summary(self) -> str:
        return f"TimeoutNow term={self.term}"


@message(22)
@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    term: int
    voted_for: str | None


@message(24)
@dataclass(frozen=True, slots=True, kw_only=True)
class Rejoining:
    """How a node that lost its stable storage answers the leader while it rejoins:
    ``response`` is its AppendEntriesResponse, HeartbeatResponse or
    InstallSnapshotResponse (same ``term``).  The leader counts such a follower in no
    quorum (commit, ReadIndex, check-quorum), demotes it to a learner and promotes it
    back once it caught up.  ``demoted_at`` > 0: the follower has seen a committed
    configuration, in force at that index, in which it is not a voter.  ``incarnation``
    is drawn at random when the node starts rejoining and persisted with its first
    answer: a new one means the node lost its disk again, so the leader takes its
    ``demoted_at`` as it is instead of the highest seen, and records it in the demotion
    (RejoinConfig.incarnations)."""

    term: int
    response: Any
    demoted_at: int = 0
    incarnation: int = 0

    def summary(self) -> str:
        inner = getattr(self.response, "summary", None)
        text = inner() if inner is not None else type(self.response).__name__
        return f"Rejoining demoted_at={self.demoted_at} [{text}]"


# Requests a follower passes on to its leader (etcd's MsgProp and MsgReadIndex forwarding).
# They carry term 0: like etcd's, they are not part of the term protocol, so a leader
# answers a follower that is a term behind and a stale answer is still a correct one (a
# write is answered where it is applied; a read index was confirmed when it was given).


@message(25)
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRequest:
    """A client command a follower received, for the leader to append; the follower
    answers its client itself when it applies the entry."""

    term: int
    request: ClientRequest

    def summary(self) -> str:
        r = self.request
        return f"ForwardRequest {r.client_id}#{r.seq} {r.op.describe()}"


@message(26)
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRefused:
    """The leader did not append a forwarded command (it is not the leader, or busy):
    ``response`` is the definite refusal for the follower to deliver."""

    term: int
    response: ClientResponse

    def summary(self) -> str:
        r = self.response
        return f"ForwardRefused {r.client_id}#{r.seq} {r.error}"


@message(27)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest:
    """A follower asks the leader for a read index for one linearizable read (§6.4)."""

    term: int
    client_id: str
    seq: int

    def summary(self) -> str:
        return f"ReadIndexRequest {self.client_id}#{self.seq}"


@message(28)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResponse:
    """``index`` > 0: leadership was confirmed after the request arrived, and the read is
    linearizable once the follower has applied ``index``; 0: refused (``leader``: the
    sender's best guess of the leader)."""

    term: int
    client_id: str
    seq: int
    index: int
    leader: str | None = None

    def summary(self) -> str:
        verdict = f"index={self.index}" if self.index else f"refused leader={self.leader}"
        return f"ReadIndexResponse {self.client_id}#{self.seq} {verdict}"
