"""ZAB's messages and persistent records, named as ZooKeeper names its packets
(Zab 1.0: FOLLOWERINFO, LEADERINFO, ACKEPOCH, DIFF/TRUNC/SNAP, NEWLEADER, ACK, UPTODATE,
PROPOSAL, COMMIT, INFORM, PING, SYNC) plus Fast Leader Election's notification.

Every message but ``Notification`` carries the ``epoch`` of the leader it belongs to;
a server drops those of an epoch other than the one it follows or leads (ZooKeeper
gets that from the TCP connection to one leader; a reordering network needs the tag).

Tags 70-89 belong to ZAB; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from consensuskit.core.messages import message
from consensuskit.protocols.common.batching import entry_size

COMMAND = "command"
NOOP = "noop"

# Sync modes chosen by the leader (LearnerHandler.syncFollower).
DIFF = "DIFF"
TRUNC = "TRUNC"
TRUNC_DIFF = "TRUNC+DIFF"
SNAP = "SNAP"
SYNC_MODES = (DIFF, TRUNC, TRUNC_DIFF, SNAP)

# Server states (QuorumPeer.ServerState); LEADING is recorded under the platform's
# reserved leader role name (core/capabilities.py).
LOOKING = "looking"
FOLLOWING = "following"
LEADING = "leader"
OBSERVING = "observing"
STATES = (LOOKING, FOLLOWING, LEADING, OBSERVING)


def zxid_str(zxid: int) -> str:
    """``epoch:counter``, the way a transcript reads a zxid."""
    return f"{zxid >> 32}:{zxid & 0xFFFFFFFF}"


@message(70)
class Txn(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One transaction of the history: ``zxid`` = epoch << 32 | counter; ``index`` is
    its position in the log (the storage position, 1-based, contiguous).  A msgspec
    Struct the collector never tracks (gc=False), as Raft's LogEntry: a long log holds
    a hundred thousand of them (core/messages.py)."""

    zxid: int
    index: int
    kind: str
    data: Any = None

    def size(self) -> int:
        """Estimated encoded size, values included, so that ``max_batch_bytes`` bounds
        a PROPOSAL of large values (ZabLog caches it per index)."""
        return entry_size(self.data)

    def summary(self) -> str:
        if self.kind == COMMAND:
            return f"{zxid_str(self.zxid)}#{self.index}:{self.data.op.describe()}"
        return f"{zxid_str(self.zxid)}#{self.index}:{self.kind}"


@message(71)
@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """FLE's vote: the proposed ``leader`` with its last logged ``zxid`` and current
    epoch (``peer_epoch``); the sender's election round and its own state."""

    leader: str
    zxid: int
    peer_epoch: int
    election_epoch: int
    state: str

    def summary(self) -> str:
        who = self.leader or "none"
        return (
            f"Notification vote=({self.peer_epoch}, {zxid_str(self.zxid)}, {who}) "
            f"round={self.election_epoch} state={self.state}"
        )


@message(72)
@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerInfo:
    """FOLLOWERINFO (OBSERVERINFO when ``observer``): the learner's accepted epoch."""

    epoch: int  # the learner's accepted epoch
    last_zxid: int
    observer: bool = False

    def summary(self) -> str:
        kind = "ObserverInfo" if self.observer else "FollowerInfo"
        return f"{kind} accepted={self.epoch} last={zxid_str(self.last_zxid)}"


@message(73)
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderInfo:
    """LEADERINFO(e): the new epoch, above every accepted epoch of a quorum."""

    epoch: int

    def summary(self) -> str:
        return f"LeaderInfo epoch={self.epoch}"


@message(74)
@dataclass(frozen=True, slots=True, kw_only=True)
class AckEpoch:
    """ACKEPOCH: the learner accepted ``epoch``; its current epoch and history end."""

    epoch: int
    current_epoch: int
    last_zxid: int
    last_index: int
    # The learner took ``epoch`` from this leader (not from another leader that
    # proposed the same epoch): only such acks make the leader's quorum (ZooKeeper
    # sends -1 instead of its epoch when it had accepted that epoch already).
    fresh: bool = True

    def summary(self) -> str:
        stale = "" if self.fresh else " not-fresh"
        return (
            f"AckEpoch epoch={self.epoch} current={self.current_epoch} "
            f"last={zxid_str(self.last_zxid)}#{self.last_index}{stale}"
        )


@message(75, streamed=True)  # a whole state: stored by the WAL's sync worker
@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """State machine image covering every txn up to ``last_index`` / ``last_zxid``."""

    last_index: int
    last_zxid: int
    data: Any

    def summary(self) -> str:
        return f"snapshot {zxid_str(self.last_zxid)}#{self.last_index}"


@message(76, streamed=True)  # may carry a snapshot (SNAP) or a long DIFF
@dataclass(frozen=True, slots=True, kw_only=True)
class NewLeader:
    """The synchronisation (DIFF, TRUNC, TRUNC+DIFF or SNAP) followed by NEWLEADER(e),
    in one message so a lossy network cannot split them.  TRUNC cuts the learner's log
    after ``trunc_index`` (holding ``trunc_zxid``); DIFF then appends ``txns`` (the first
    follows ``trunc_index`` or the learner's own last txn); SNAP installs ``snapshot``
    and then appends ``txns``.  ``commit`` is what the leader knows committed."""

    epoch: int
    mode: str
    # The learner's last zxid this sync was computed from (its ACKEPOCH): a learner
    # whose history moved since ignores it (a resent handshake crossed a newer one).
    peer_zxid: int = 0
    trunc_index: int = 0
    trunc_zxid: int = 0
    snapshot: Snapshot | None = None
    txns: tuple[Txn, ...] = ()
    commit: int = 0

    def summary(self) -> str:
        parts = [f"NewLeader epoch={self.epoch} {self.mode}"]
        if self.mode in (TRUNC, TRUNC_DIFF):
            parts.append(f"trunc={zxid_str(self.trunc_zxid)}#{self.trunc_index}")
        if self.snapshot is not None:
            parts.append(self.snapshot.summary())
        if self.txns:
            parts.append("txns=[" + ",".join(zxid_str(t.zxid) for t in self.txns) + "]")
        parts.append(f"commit={self.commit}")
        return " ".join(parts)


@message(77)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """ACK: the learner holds (durably) its history up to ``index`` / ``zxid``.
    ``newleader`` marks the ACK of NEWLEADER; ``gap`` says a PROPOSAL did not follow
    its last txn (the leader resends from ``index`` + 1)."""

    epoch: int
    index: int
    zxid: int
    newleader: bool = False
    gap: bool = False

    def summary(self) -> str:
        what = " newleader" if self.newleader else (" gap" if self.gap else "")
        return f"Ack epoch={self.epoch} {zxid_str(self.zxid)}#{self.index}{what}"


@message(78)
@dataclass(frozen=True, slots=True, kw_only=True)
class UpToDate:
    """UPTODATE: the epoch is established; the learner may serve clients."""

    epoch: int
    commit: int

    def summary(self) -> str:
        return f"UpToDate epoch={self.epoch} commit={self.commit}"


@message(79)
@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """PROPOSAL, batched: ``txns`` follow the txn at ``prev_index`` (``prev_zxid``)."""

    epoch: int
    prev_index: int
    prev_zxid: int
    txns: tuple[Txn, ...]

    def summary(self) -> str:
        zx = ",".join(zxid_str(t.zxid) for t in self.txns)
        return f"Proposal epoch={self.epoch} prev={zxid_str(self.prev_zxid)}#{self.prev_index} txns=[{zx}]"


@message(80)
@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """COMMIT: every txn up to ``index`` (which holds ``zxid``) is committed."""

    epoch: int
    index: int
    zxid: int

    def summary(self) -> str:
        return f"Commit epoch={self.epoch} {zxid_str(self.zxid)}#{self.index}"


@message(81)
@dataclass(frozen=True, slots=True, kw_only=True)
class Inform:
    """INFORM, batched: committed ``txns`` for an observer (it never votes)."""

    epoch: int
    prev_index: int
    prev_zxid: int
    txns: tuple[Txn, ...]

    def summary(self) -> str:
        zx = ",".join(zxid_str(t.zxid) for t in self.txns)
        return f"Inform epoch={self.epoch} prev={zxid_str(self.prev_zxid)}#{self.prev_index} txns=[{zx}]"


@message(82)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """PING: the leader's heartbeat, numbered for leader reads; carries the commit
    point the learner may apply (up to what it holds with that zxid)."""

    epoch: int
    round: int
    commit: int
    commit_zxid: int
    # The leader counts the learner as synced (it has its NEWLEADER ACK): a PING then
    # repeats UPTODATE for a learner that lost it.
    uptodate: bool = False

    def summary(self) -> str:
        up = " uptodate" if self.uptodate else ""
        commit = f"{zxid_str(self.commit_zxid)}#{self.commit}"
        return f"Ping epoch={self.epoch} round={self.round} commit={commit}{up}"


@message(83)
@dataclass(frozen=True, slots=True, kw_only=True)
class PingAck:
    epoch: int
    round: int
    last_index: int

    def summary(self) -> str:
        return f"PingAck epoch={self.epoch} round={self.round} last={self.last_index}"


@message(84)
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    """SYNC: a learner asks the leader how far it has committed (``sync`` + read)."""

    epoch: int
    token: int

    def summary(self) -> str:
        return f"Sync epoch={self.epoch} token={self.token}"


@message(85)
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReply:
    epoch: int
    token: int
    commit: int

    def summary(self) -> str:
        return f"SyncReply epoch={self.epoch} token={self.token} commit={self.commit}"


@message(86)
@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """A client request a learner hands its leader (writes; leader reads)."""

    epoch: int
    request: Any

    def summary(self) -> str:
        r = self.request
        return f"Forward {r.client_id}#{r.seq} {r.op.describe()}"


@message(87)
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardReply:
    """The leader's answer to a forwarded request, for the learner to deliver."""

    epoch: int
    response: Any

    def summary(self) -> str:
        r = self.response
        return f"ForwardReply {r.client_id}#{r.seq} ok={r.ok}"
