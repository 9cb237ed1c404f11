"""A ZooKeeper server running ZAB, as a deterministic, I/O-free state machine.

Follows ZooKeeper's implementation (QuorumPeer, FastLeaderElection, Leader,
LearnerHandler, Learner, Follower, Observer) rather than the paper's pseudocode; see
README.md here for the message table and the deviations.

Rules this module owns:
  * states LOOKING, FOLLOWING, LEADING, OBSERVING; a server LOOKING runs Fast Leader
    Election (vote order in vote.py): rounds (logical clock) discard stale notifications,
    a better vote is adopted and re-broadcast, a quorum of matching votes plus a
    ``finalize_wait`` without a better one decides, and a LOOKING server adopts the
    leader that a quorum of FOLLOWING/LEADING servers report (with the leader's own
    word); observers vote for nobody, are counted in no quorum and never win;
  * zxid = epoch << 32 | counter; a counter about to pass ``max_counter`` makes the
    leader give up so that a new epoch starts;
  * discovery: FOLLOWERINFO(acceptedEpoch) from a quorum -> the new epoch is one above
    every accepted epoch among them (LEADERINFO); a learner accepts an epoch above its
    own accepted epoch (persisting it before ACKEPOCH), re-acknowledges its own, and
    abandons a leader offering a lower one; a leader whose quorum reports a newer
    history than its own gives up;
  * synchronisation (sync.py) then NEWLEADER in one message; the learner persists every
    synced txn, then its current epoch, then ACKs NEWLEADER (all in one batch, so the
    durability barrier releases the ACK after both; the -before-persist knobs write the
    txns later, as ZooKeeper's asynchronous log writer did); the leader is established,
    commits its history and serves only once a quorum ACKed NEWLEADER (UPTODATE);
  * broadcast: PROPOSAL batches to every synced or syncing follower from a per-learner
    cursor (pipelined up to ``max_inflight_txns``), ACK after persisting, a quorum of
    voters' ACKs (the leader counting what is durable) commits, COMMIT to followers and
    INFORM (the committed txns) to observers; a learner accepts only a txn that follows
    its last (a gap is reported, a redundant one skipped) and commits only zxids it holds;
  * reads: ``linearizable`` at the leader after a PING round to a quorum (learners
    forward), ``sync`` (ask the leader its commit point, apply it, read locally),
    ``local`` (any server, sequentially consistent); learners forward writes;
  * snapshots of the applied state (every ``snapshot_threshold`` txns, a large state
    less often: common/snapshot_policy.py), compaction keeping ``snapshot_trailing``
    txns for DIFF;
  * a server that lost its disk (the platform's REJOINING_KEY: ``--rejoin``, the
    simulator's ``wipe``) forgot its promises and the txns it ACKed, so it counts in no
    quorum until it is readmitted: it observes (votes for nobody, says OBSERVERINFO, gets
    INFORMs), and other voters take a notification that votes for nobody or says
    OBSERVING as an observer's; once an established leader (a quorum without it) synced
    it and sent UPTODATE, it clears the key and follows that leader as a voter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensuskit.core.capabilities import LogPosition, NodeStatus
from consensuskit.core.client import NOT_LEADER, STALE_OK, ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.quorum import committed_index, quorum_size
from consensuskit.core.service import StateMachine
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.common import replies
from consensuskit.protocols.common.heartbeat_rounds import HeartbeatRounds
from consensuskit.protocols.common.number_bounds import CEILING, STEP, out_of_reach
from consensuskit.protocols.common.read_index import ReadIndex
from consensuskit.protocols.common.snapshot_policy import entries_kept, snapshot_due, stagger_turn
from consensuskit.protocols.zab.log import ZabLog
from consensuskit.protocols.zab.messages import (
    COMMAND,
    FOLLOWING,
    LEADING,
    LOOKING,
    OBSERVING,
    SNAP,
    TRUNC,
    TRUNC_DIFF,
    Ack,
    AckEpoch,
    Commit,
    FollowerInfo,
    Forward,
    ForwardReply,
    Inform,
    LeaderInfo,
    NewLeader,
    Notification,
    Ping,
    PingAck,
    Proposal,
    Snapshot,
    SyncReply,
    SyncRequest,
    Txn,
    UpToDate,
    zxid_str,
)
from consensuskit.protocols.zab.options import ZabOptions
from consensuskit.protocols.zab.sync import choose_sync, epoch_of
from consensuskit.protocols.zab.vote import beats, natural_key, ranks
from consensuskit.statemachines import default_state_machine

ACCEPTED_EPOCH_KEY = "zab/accepted-epoch"
CURRENT_EPOCH_KEY = "zab/current-epoch"
SNAPSHOT_KEY = "zab/snapshot"

NOTIFY_TIMER = "notify"
FINALIZE_TIMER = "finalize"
TICK_TIMER = "tick"
FOLLOW_TIMER = "follow"
LEAD_TIMER = "lead"
ASYNC_LOG_TIMER = "async-log"

# Learner phases as the leader sees them (LearnerHandler).
INFO = "info"  # FOLLOWERINFO received
EPOCH = "epoch"  # ACKEPOCH received
SYNCING = "syncing"  # NEWLEADER sent
SYNCED = "synced"  # NEWLEADER ACKed

# A learner's own phase.
L_INFO = "info"  # sent FOLLOWERINFO, waiting for LEADERINFO
L_EPOCH = "epoch"  # ACKed the epoch, waiting for NEWLEADER
L_SYNCED = "synced"  # ACKed NEWLEADER, waiting for UPTODATE
L_SERVING = "serving"  # UPTODATE

MAX_HELD_REQUESTS = 4096

# Bounds on a peer's numbers.  zxid = epoch << 32 | counter is a signed 64-bit integer on
# the wire (ZooKeeper's long), so an epoch is at most MAX_EPOCH; an election round grows
# by one per round.  Neither gets near its bound in a real cluster, nor far above this
# node's own, and adopting one at the bound would leave no higher epoch or round to move
# to (a cluster stuck for good), so a message past its bound, or more than a step above
# this node's number, is malformed: dropped and counted (protocols/common/number_bounds.py).
MAX_EPOCH = 2**31 - 1
EPOCH_STEP = 2**20  # a million elections: the 32-bit epoch then takes 2^11 such messages
MAX_ROUND = CEILING
_EPOCH_FIELDS = ("epoch", "peer_epoch", "current_epoch")
_ROUND_FIELDS = ("election_epoch",)
STALLED_PINGS = 2  # PING answers without progress before a cursor is rewound
# A learner's handshake unanswered this many ticks is started again (a LEADERINFO,
# ACKEPOCH, NEWLEADER or its ACK was lost); each restart doubles the wait, up to
# ZooKeeper's default initLimit (10 tickTimes, 20 of our ticks).  Without the doubling a
# learner receiving a large SNAP, which answers nothing until the SNAP is in, was handed a
# new LEADERINFO every 2 ticks of the transfer (11 of them in a 2.4 s SNAP).
HANDSHAKE_FIRST_WAIT_TICKS = 2
HANDSHAKE_MAX_WAIT_TICKS = 20


def _out_of_range(msg: Any, epoch: int, round_: int) -> str:
    """Which of a peer message's epochs or rounds is out of reach of this node's
    ``epoch`` and election ``round_`` ("" when none)."""
    for fields, own, bound, step in (
        (_EPOCH_FIELDS, epoch, MAX_EPOCH, EPOCH_STEP),
        (_ROUND_FIELDS, round_, MAX_ROUND, STEP),
    ):
        for name in fields:
            value = getattr(msg, name, 0)
            if type(value) is int:
                why = out_of_reach(name, value, own, bound, step)
                if why:
                    return why
    return ""


@dataclass(slots=True)
class LearnerState:
    """What the leader knows of one learner (ZooKeeper's LearnerHandler)."""

    observer: bool
    accepted_epoch: int
    phase: str = INFO
    current_epoch: int = 0
    last_zxid: int = 0
    next: int = 1  # next index to send
    acked: int = 0  # highest index the learner acknowledged holding
    # The last index its latest PINGACK reported.  Not an acknowledgement (it counts
    # toward no quorum): it only lets a PING announce the commits the learner holds
    # when the ACK of its last txn was lost, with no later txn to carry it (the
    # learner checks the zxid anyway).
    reported: int = 0
    # The last index of the history its latest NEWLEADER brings it to: the in-flight
    # window counts from there while its ACK is on the way (acked restarts at 0).
    sync_end: int = 0
    heard_at: float = 0.0
    stalled: int = 0
    fresh: bool = False  # it acknowledged our epoch as newly accepted from us
    handshake_at: float = 0.0  # when LEADERINFO or NEWLEADER last went to it
    handshake_wait: int = HANDSHAKE_FIRST_WAIT_TICKS  # ticks before the handshake restarts


class ZabNode:
    """Capabilities (core/capabilities.py): HasLeader, ReplicatedLog."""

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: ZabOptions | None = None,
        *,
        state_machine: StateMachine | None = None,
    ) -> None:
        self.id = node_id
        self.env = env
        self.opts = options or ZabOptions()
        self.bugs = self.opts.bugs
        self.sm: Any = state_machine if state_machine is not None else default_state_machine()
        self.observer: Any = None  # a checker's hook; never used for control

        ordered = sorted(set(members) | {node_id}, key=natural_key)
        n_obs = min(self.opts.observers, max(0, len(ordered) - 1))
        self.members = tuple(ordered)
        self.observers = tuple(ordered[len(ordered) - n_obs :]) if n_obs else ()
        self.voters = tuple(m for m in ordered if m not in self.observers)
        self.sid = ranks(ordered)

        storage = env.storage
        # Lost its disk: it observes until readmitted (see the module rules).
        self.rejoining = bool(storage.get(REJOINING_KEY)) and "vote-after-wipe" not in self.bugs
        self.is_observer = node_id in self.observers or self.rejoining
        self.accepted_epoch: int = storage.get(ACCEPTED_EPOCH_KEY) or 0
        self.current_epoch: int = storage.get(CURRENT_EPOCH_KEY) or 0
        self.snapshot: Snapshot | None = storage.get(SNAPSHOT_KEY)
        snap = self.snapshot
        self.log = ZabLog.load(storage, snap.last_index if snap else 0, snap.last_zxid if snap else 0)
        if snap is not None:
            self.sm.restore(snap.data)
        # Invariant: log.offset <= last_applied <= commit_index <= log.last_index
        self.commit_index = snap.last_index if snap else 0
        self.last_applied = self.commit_index

        self.state = LOOKING
        self.leader_id: str | None = None
        # FLE
        self.logicalclock = 0
        self.proposal: tuple[str, int, int] = ("", 0, 0)  # (leader, zxid, peer epoch)
        self.recvset: dict[str, tuple[str, int, int]] = {}
        # The senders whose recvset entry came from a LOOKING notification (checkers:
        # FLE adopts only those votes).
        self.looking_senders: set[str] = set()
        self.outofelection: dict[str, tuple[str, int, int, int, str]] = {}
        self.finalizing = False
        # The vote this server acts on (answered to LOOKING servers when not LOOKING).
        self.current_vote: tuple[str, int, int] = ("", 0, 0)
        # Learner
        self.phase = L_INFO
        self.pending_ack: Ack | None = None  # epoch-before-persist: ACK after the writer
        # The leader we accepted ``accepted_epoch`` from (None: before this start).
        self.epoch_from: str | None = None
        self.sync_token = 0
        self.sync_reads: dict[int, list[ClientRequest]] = {}
        self.sync_waiting: list[tuple[int, ClientRequest]] = []
        # Leader
        self.epoch = 0  # the epoch this server leads (LEADING)
        self.epoch_proposed = False
        self.epoch_acked = False  # a quorum ACKed the epoch (current epoch set)
        self.established = False
        self.learners: dict[str, LearnerState] = {}
        self.held_requests: list[tuple[ClientRequest, str]] = []
        self._unapplied = replies.UnappliedIds()  # for _may_apply
        self.origins: dict[tuple[str, int], str] = {}
        self.leader_syncs: list[tuple[int, str, int]] = []  # (index, learner, token)
        self.rounds = HeartbeatRounds(node_id)
        self.reads = ReadIndex()
        self.lead_heard: set[str] = set()
        # Batching runtimes: a batch's appends reach storage together, its writes are
        # proposed together, its reads share one PING round.
        self.batched = bool(getattr(env, "calls_batch_end", False))
        self.log.defer_writes = self.batched
        self.propose_due = False
        self.read_round_due = False
        # Commits of a batch are announced once, at its end (one cumulative COMMIT per
        # follower, leaving with the batch's PROPOSALs), not once per ACK.
        self.commit_due = False
        self.commit_sent = 0  # the commit point last announced to the learners
        # A runtime reporting durability lets the leader propose before its own fsync;
        # it then counts itself only up to the durable prefix.
        self.reports_durable = bool(getattr(env, "reports_durable", False))
        self.early_proposals = self.reports_durable and hasattr(env, "send_early")
        self.early_answers = hasattr(env, "deliver_early")  # see _reply
        self.durable_index = self.log.last_index

        self._handlers: dict[type, Any] = {
            Notification: self.handle_notification,
            FollowerInfo: self.handle_follower_info,
            LeaderInfo: self.handle_leader_info,
            AckEpoch: self.handle_ack_epoch,
            NewLeader: self.handle_new_leader,
            Ack: self.handle_ack,
            UpToDate: self.handle_uptodate,
            Proposal: self.handle_proposal,
            Commit: self.handle_commit,
            Inform: self.handle_inform,
            Ping: self.handle_ping,
            PingAck: self.handle_ping_ack,
            SyncRequest: self.handle_sync_request,
            SyncReply: self.handle_sync_reply,
            Forward: self.handle_forward,
            ForwardReply: self.handle_forward_reply,
        }

    # ------------------------------------------------------------------ inspection
    def is_leader(self) -> bool:
        return self.state == LEADING

    def current_leader(self) -> str | None:
        return self.leader_id

    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.state,
            leader=self.leader_id,
            generation_name="epoch",
            generation=self.current_epoch,
            details={
                "epoch": self.current_epoch,
                "accepted_epoch": self.accepted_epoch,
                "last_zxid": hex(self.log.last_zxid),
                "established": self.established,
                "observer": self.is_observer,
                "rejoining": self.rejoining,
            },
        )

    def log_position(self) -> LogPosition:
        return LogPosition(
            commit=self.commit_index,
            applied=self.last_applied,
            last_index=self.log.last_index,
            snapshot_index=self.snapshot.last_index if self.snapshot else 0,
        )

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.state,
            "epoch": self.current_epoch,
            "leader": self.leader_id,
            "accepted_epoch": self.accepted_epoch,
            "current_epoch": self.current_epoch,
            "last_zxid": self.log.last_zxid,
            "commit": self.commit_index,
            "applied": self.last_applied,
            "last_index": self.log.last_index,
            "established": self.established,
            "observer": self.is_observer,
            "rejoining": self.rejoining,
        }

    def my_vote(self) -> tuple[int, int, int]:
        """This server's own candidacy (epoch, zxid, sid); sid 0 for an observer."""
        return (self.current_epoch, self.log.last_zxid, 0 if self.is_observer else self.sid[self.id])

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        self.env.record("role", role=LOOKING, epoch=self.current_epoch)
        self._look()

    def on_timer(self, key: str) -> None:
        if key == NOTIFY_TIMER:
            if self.state == LOOKING:
                self._send_notifications()
                self._arm_notify()
        elif key == FINALIZE_TIMER:
            self.finalizing = False
            # No better vote changed the proposal meanwhile (it would have re-armed
            # the wait): decide if the quorum still holds.
            if self.state == LOOKING and self._quorum_for(self.recvset, self.proposal):
                self._decide(self.proposal, looking=True)
        elif key == TICK_TIMER:
            self._on_tick()
        elif key == FOLLOW_TIMER:
            if self.state in (FOLLOWING, OBSERVING):
                self.env.record("abandon", reason="leader silent", leader=self.leader_id)
                self._look()
        elif key == LEAD_TIMER:
            self._check_lead()
        elif key == ASYNC_LOG_TIMER:
            self._async_log_written()

    def on_message(self, src: str, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.env.record("ignored", src=src, reason=f"not a zab message: {type(msg).__name__}")
            return
        if src not in self.sid:
            self.env.record("ignored", src=src, reason="not a member")
            return
        out_of_range = _out_of_range(msg, max(self.accepted_epoch, self.current_epoch), self.logicalclock)
        if out_of_range:
            self.env.record("ignored", src=src, reason=f"malformed {type(msg).__name__}: {out_of_range}")
            return
        try:
            handler(src, msg)
        except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
            # A malformed message from a peer: dropped and counted, never raised.
            self.env.record("ignored", src=src, reason=f"malformed {type(msg).__name__}: {exc}")

    def on_durable(self, index: int) -> None:
        index = min(index, self.log.last_index)
        if index <= self.durable_index:
            return
        self.durable_index = index
        if self.state == LEADING and self.established:
            self._maybe_commit()

    def on_batch_end(self) -> None:
        self.log.flush()
        if self.propose_due:
            self.propose_due = False
            if self.state == LEADING and self.established:
                self._broadcast()
                self._maybe_commit()
        if self.commit_due:
            self.commit_due = False
            if self.state == LEADING and self.established:
                self._announce_commit()
        if self.read_round_due:
            self.read_round_due = False
            if self.state == LEADING and self.established:
                self._ping()

    # ------------------------------------------------------------------ clients
    def on_request(self, request: ClientRequest) -> None:
        op = request.op
        if op.is_read():
            mode = self._read_mode(request)
            if mode == "local":
                self._serve_local(request)
                return
            if mode == "sync" and self.state in (FOLLOWING, OBSERVING):
                self._sync_read(request)
                return
        self._handle(request, self.id)

    def _read_mode(self, request: ClientRequest) -> str:
        if request.consistency == STALE_OK:
            return "local"
        if request.consistency is not None:
            return "linearizable"  # LINEARIZABLE, and LEASE: ZAB has no leases
        return self.opts.read_mode

    def _handle(self, request: ClientRequest, origin: str) -> None:
        """A request at the leader (``origin`` the server its client waits at), or at a
        learner that forwards it."""
        if self.state == LEADING:
            if not self.established:
                if len(self.held_requests) >= MAX_HELD_REQUESTS:
                    self._refuse(origin, request, None)
                else:
                    self.held_requests.append((request, origin))
                return
            if request.op.is_read():
                self._leader_read(request, origin)
            else:
                self._propose_command(request, origin)
            return
        if origin == self.id and self.state in (FOLLOWING, OBSERVING) and self.phase == L_SERVING:
            assert self.leader_id is not None
            self.env.send(self.leader_id, Forward(epoch=self.accepted_epoch, request=request))
            return
        self._refuse(origin, request, self._hint())

    def _refuse(self, origin: str, request: ClientRequest, hint: str | None) -> None:
        """Refuse ``request`` not-leader (definitely not applied), unless it is a write
        this server may apply after all: applied here, or a copy of it waits unapplied
        in our log (replies.may_apply); then it stays unanswered."""
        if request.op.is_read() or not self._may_apply(request):
            self._reply(origin, replies.refused(request, NOT_LEADER, hint))

    def _may_apply(self, request: ClientRequest) -> bool:
        log = self.log
        unapplied = self._unapplied.in_log(log, self.last_applied, log.last_zxid)
        return replies.may_apply(self.sm, request, unapplied)

    def _hint(self) -> str | None:
        if self.state in (FOLLOWING, OBSERVING) and self.leader_id != self.id:
            return self.leader_id
        return None

    def _reply(self, origin: str, response: ClientResponse, *, committed: bool = False) -> None:
        """``committed``: the answer to a committed txn, which depends on no unsynced
        write of ours (a quorum logged it): with a runtime that offers ``deliver_early``
        it need not wait for the sync of writes made meanwhile."""
        if origin == self.id:
            if committed and self.early_answers:
                self.env.deliver_early(response)  # type: ignore[attr-defined]
            else:
                self.env.deliver(response)
        else:
            self.env.send(origin, ForwardReply(epoch=self.epoch, response=response))

    def handle_forward(self, src: str, m: Forward) -> None:
        if self.state != LEADING or m.epoch != self.epoch:
            if m.request.op.is_read() or not self._may_apply(m.request):
                refusal = replies.refused(m.request, NOT_LEADER, None)
                self.env.send(src, ForwardReply(epoch=m.epoch, response=refusal))
            return
        self._handle(m.request, src)

    def handle_forward_reply(self, src: str, m: ForwardReply) -> None:
        response = m.response
        if not isinstance(response, ClientResponse):
            raise TypeError("ForwardReply without a ClientResponse")
        self.env.deliver(response)

    def _serve_local(self, request: ClientRequest, origin: str | None = None) -> None:
        hint = self.id if self.state == LEADING else self.leader_id
        response = replies.read_answer(self.sm, request, self.env, hint, self.last_applied)
        self._reply(origin or self.id, response)

    # -- sync + read (learner side)
    def _sync_read(self, request: ClientRequest) -> None:
        if self.phase != L_SERVING or self.leader_id is None:
            self.env.deliver(replies.refused(request, NOT_LEADER, self._hint()))
            return
        self.sync_token += 1
        self.sync_reads[self.sync_token] = [request]
        self.env.send(self.leader_id, SyncRequest(epoch=self.accepted_epoch, token=self.sync_token))

    def handle_sync_reply(self, src: str, m: SyncReply) -> None:
        requests = self.sync_reads.pop(m.token, None)
        if requests is None or src != self.leader_id:
            return
        for request in requests:
            self.sync_waiting.append((m.commit, request))
        self._serve_sync_reads()

    def _serve_sync_reads(self) -> None:
        if not self.sync_waiting:
            return
        still = []
        for index, request in self.sync_waiting:
            if index <= self.last_applied:
                self._serve_local(request)
            else:
                still.append((index, request))
        self.sync_waiting = still

    def _drop_sync_reads(self) -> None:
        for requests in self.sync_reads.values():
            for request in requests:
                self.env.deliver(replies.refused(request, NOT_LEADER, None))
        for _, request in self.sync_waiting:
            self.env.deliver(replies.refused(request, NOT_LEADER, None))
        self.sync_reads = {}
        self.sync_waiting = []

    # -- leader side
    def handle_sync_request(self, src: str, m: SyncRequest) -> None:
        if self.state != LEADING or m.epoch != self.epoch or not self.established:
            return
        # ZooKeeper answers a sync once every proposal outstanding when it came committed.
        self.leader_syncs.append((self.log.last_index, src, m.token))
        self._answer_syncs()

    def _answer_syncs(self) -> None:
        if not self.leader_syncs:
            return
        still = []
        for index, learner, token in self.leader_syncs:
            if index <= self.commit_index:
                self.env.send(learner, SyncReply(epoch=self.epoch, token=token, commit=index))
            else:
                still.append((index, learner, token))
        self.leader_syncs = still

    def _leader_read(self, request: ClientRequest, origin: str) -> None:
        if self._read_mode(request) == "sync":
            # sync at the leader: its commit point once outstanding proposals commit.
            self.reads.wait_for_apply(self.log.last_index, request, origin)
            self.reads.release(self.last_applied, self._serve_leader_read)
            return
        self.reads.wait_for_round(self.rounds.current + 1, self.commit_index, request, origin)
        if self.batched:
            self.read_round_due = True
        else:
            self._ping()

    def _serve_leader_read(self, request: ClientRequest, origin: Any) -> None:
        self._reply(origin, replies.read_answer(self.sm, request, self.env, self.id, self.last_applied))

    def _propose_command(self, request: ClientRequest, origin: str) -> None:
        if origin != self.id:
            self.origins[(request.client_id, request.seq)] = origin
        if not self._append_new(COMMAND, request):
            self._refuse(origin, request, None)
            return
        if self.batched:
            self.propose_due = True
            return
        self._broadcast()
        self._maybe_commit()

    def _append_new(self, kind: str, data: Any) -> bool:
        last = self.log.last_zxid
        counter = (last & 0xFFFFFFFF) + 1 if epoch_of(last) == self.epoch else 1
        if counter > self.opts.max_counter:
            # ZooKeeper: "zxid lower 32 bits have rolled over, forcing re-election".
            self.env.record("abandon", reason="zxid counter exhausted", epoch=self.epoch)
            self._look()
            return False
        txn = Txn(zxid=(self.epoch << 32) | counter, index=self.log.last_index + 1, kind=kind, data=data)
        self._append((txn,))
        if self.observer is not None:
            self.observer.on_propose(self, txn)
        return True

    # ------------------------------------------------------------------ FLE
    def _look(self) -> None:
        """Enter LOOKING and start a new election round."""
        was = self.state
        if was == LEADING:
            self._drop_leader_state()
        elif was in (FOLLOWING, OBSERVING):
            self._drop_sync_reads()
        self.state = LOOKING
        self.leader_id = None
        self.phase = L_INFO
        self.pending_ack = None
        for key in (FOLLOW_TIMER, LEAD_TIMER, TICK_TIMER, FINALIZE_TIMER):
            self.env.cancel_timer(key)
        if was != LOOKING:
            self.env.record("role", role=LOOKING, epoch=self.current_epoch)
        self.logicalclock += 1
        epoch, zxid, sid = self.my_vote()
        self.proposal = (self.id if sid else "", zxid, epoch)
        self.recvset = {self.id: self.proposal} if sid else {}
        self.looking_senders = set()
        self.outofelection = {}
        self.finalizing = False
        self._send_notifications()
        self._arm_notify()
        self._try_decide()

    def _arm_notify(self) -> None:
        t = self.opts.notification_interval
        self.env.set_timer(NOTIFY_TIMER, t + self.env.rng.random() * t)

    def _send_notifications(self) -> None:
        leader, zxid, epoch = self._announced()
        msg = Notification(
            leader=leader, zxid=zxid, peer_epoch=epoch, election_epoch=self.logicalclock, state=LOOKING
        )
        for peer in self.members:
            if peer != self.id:
                self.env.send(peer, msg)

    def _vote_key(self, vote: tuple[str, int, int]) -> tuple[int, int, int]:
        leader, zxid, epoch = vote
        return (epoch, zxid, self.sid.get(leader, 0) if leader in self.voters else 0)

    def _better(self, new: tuple[str, int, int], cur: tuple[str, int, int]) -> bool:
        return beats(self._vote_key(new), self._vote_key(cur), ignore_epoch="vote-ignores-epoch" in self.bugs)

    def handle_notification(self, src: str, m: Notification) -> None:
        vote = (m.leader, m.zxid, m.peer_epoch)
        if self.state != LOOKING:
            if m.state == LOOKING:
                # Tell a LOOKING server whom we follow (its round may be behind ours).
                leader, zxid, epoch = self.current_vote
                self.env.send(
                    src,
                    Notification(
                        leader=leader,
                        zxid=zxid,
                        peer_epoch=epoch,
                        election_epoch=self.logicalclock,
                        state=self._fle_state(),
                    ),
                )
            return
        if src not in self.voters or m.state == OBSERVING or (m.state == LOOKING and not m.leader):
            # An observer's notification counts for nothing; a voter answers with its
            # vote (observers never answer each other: two would echo forever).  A voter
            # that lost its disk observes until readmitted: it votes for nobody while
            # LOOKING and says OBSERVING after, and counts for nothing either.
            if m.state == LOOKING and not self.is_observer:
                self._send_vote_to(src)
            return
        if m.state == LOOKING:
            if m.election_epoch > self.logicalclock:
                self.logicalclock = m.election_epoch
                self.recvset = {}
                self.looking_senders = set()
                epoch, zxid, sid = self.my_vote()
                mine = (self.id if sid else "", zxid, epoch)
                self.proposal = vote if self._better(vote, mine) else mine
                if sid:
                    self.recvset[self.id] = self.proposal
                self._send_notifications()
            elif m.election_epoch < self.logicalclock:
                # A laggard: show it the current round (an observer's round counts for
                # nothing; its answer would only echo back).
                if not self.is_observer:
                    self._send_vote_to(src)
                return
            elif self._better(vote, self.proposal):
                self.proposal = vote
                if self.id in self.recvset:
                    self.recvset[self.id] = vote
                self._send_notifications()
                if self.finalizing:  # a better late vote: wait afresh
                    self.finalizing = False
                    self.env.cancel_timer(FINALIZE_TIMER)
            self.recvset[src] = vote
            self.looking_senders.add(src)
            self._try_decide()
            return
        # FOLLOWING / LEADING: someone already decided.
        if m.election_epoch == self.logicalclock:
            self.recvset[src] = vote
            self.looking_senders.discard(src)
            if self._quorum_for(self.recvset, vote) and self._check_leader(m.leader, m.election_epoch):
                self._decide(vote)
                return
        self.outofelection[src] = (m.leader, m.zxid, m.peer_epoch, m.election_epoch, m.state)
        # Servers that joined a running leader at different times report different
        # votes for it (ZooKeeper compares only the leader across vote versions): a
        # quorum following the same leader, which says itself that it leads, will do;
        # discovery then rejects a leader whose epoch is behind ours.
        backers = {sid: (v[0], 0, 0) for sid, v in self.outofelection.items()}
        if self._quorum_for(backers, (m.leader, 0, 0)) and self._check_leader(m.leader, m.election_epoch):
            self.logicalclock = m.election_epoch
            self._decide(vote)

    def _fle_state(self) -> str:
        return LEADING if self.state == LEADING else (OBSERVING if self.is_observer else FOLLOWING)

    def _announced(self) -> tuple[str, int, int]:
        """The vote we send while LOOKING: a rejoining server adopts votes only to find
        whom to observe, and tells everyone it votes for nobody (its vote must not count)."""
        if self.rejoining:
            return ("", *self.proposal[1:])
        return self.proposal

    def _send_vote_to(self, dst: str) -> None:
        leader, zxid, epoch = self._announced()
        self.env.send(
            dst,
            Notification(
                leader=leader, zxid=zxid, peer_epoch=epoch, election_epoch=self.logicalclock, state=LOOKING
            ),
        )

    def _quorum_for(self, votes: dict[str, tuple[str, int, int]], vote: tuple[str, int, int]) -> bool:
        if not vote[0] or vote[0] not in self.voters:
            return False
        agree = sum(1 for v in self.voters if votes.get(v) == vote)
        return agree >= quorum_size(len(self.voters))

    def _check_leader(self, leader: str, election_epoch: int) -> bool:
        """ZooKeeper's checkLeader: a reported leader counts only if it said so itself
        (or, when it is us, in our own round)."""
        if leader == self.id:
            return election_epoch == self.logicalclock
        seen = self.outofelection.get(leader)
        return seen is not None and seen[4] == LEADING

    def _try_decide(self) -> None:
        if self.state != LOOKING or not self._quorum_for(self.recvset, self.proposal):
            return
        # Every voter's vote is in and names our proposal: no better one can come
        # (ZooKeeper: "if have received from all nodes, then terminate").
        everyone = all(self.recvset.get(v) == self.proposal for v in self.voters)
        if self.opts.finalize_wait <= 0 or everyone:
            self._decide(self.proposal, looking=True)
            return
        if not self.finalizing:
            # Wait for a better late vote; the timer decides if the quorum still holds.
            self.finalizing = True
            self.env.set_timer(FINALIZE_TIMER, self.opts.finalize_wait)

    def _decide(self, vote: tuple[str, int, int], *, looking: bool = False) -> None:
        if looking and self.observer is not None:
            votes = {v: self.recvset[v] for v in self.looking_senders if v in self.recvset}
            self.observer.on_elected(self, vote, votes)
        self.env.cancel_timer(NOTIFY_TIMER)
        self.env.cancel_timer(FINALIZE_TIMER)
        self.finalizing = False
        self.current_vote = vote
        leader = vote[0]
        self.env.record("elected", leader=leader, round=self.logicalclock)
        if leader == self.id:
            self._become_leading()
        else:
            self._become_learner(leader)

    # ------------------------------------------------------------------ learner
    def _become_learner(self, leader: str) -> None:
        self.state = OBSERVING if self.is_observer else FOLLOWING
        self.leader_id = leader
        self.phase = L_INFO
        self.env.record("role", role=self.state, epoch=self.current_epoch, leader=leader)
        self._send_follower_info()
        self.env.set_timer(TICK_TIMER, self.opts.tick)
        self._heard_leader()

    def _send_follower_info(self) -> None:
        assert self.leader_id is not None
        self.env.send(
            self.leader_id,
            FollowerInfo(epoch=self.accepted_epoch, last_zxid=self.log.last_zxid, observer=self.is_observer),
        )

    def _heard_leader(self) -> None:
        self.env.set_timer(FOLLOW_TIMER, self.opts.election_timeout)

    def _from_leader(self, src: str, epoch: int) -> bool:
        """A message from the leader we follow, of the epoch we accepted from it."""
        if self.state not in (FOLLOWING, OBSERVING) or src != self.leader_id:
            return False
        if epoch != self.accepted_epoch or self.phase == L_INFO:
            return False
        self._heard_leader()
        return True

    def handle_leader_info(self, src: str, m: LeaderInfo) -> None:
        if self.state not in (FOLLOWING, OBSERVING) or src != self.leader_id:
            return
        self._heard_leader()
        if m.epoch < self.accepted_epoch:
            # A leader behind an epoch we accepted: abandon it (Zab phase 1).
            self.env.record(
                "abandon", reason="epoch below accepted", epoch=m.epoch, accepted=self.accepted_epoch
            )
            self._look()
            return
        if m.epoch > self.accepted_epoch:
            self.accepted_epoch = m.epoch
            self.env.storage.put(ACCEPTED_EPOCH_KEY, m.epoch)  # durable before ACKEPOCH leaves
            self.epoch_from = src
        if self.phase == L_INFO:
            self.phase = L_EPOCH
        self.env.send(
            src,
            AckEpoch(
                epoch=m.epoch,
                current_epoch=self.current_epoch,
                last_zxid=self.log.last_zxid,
                last_index=self.log.last_index,
                fresh=self.epoch_from == src,
            ),
        )

    def handle_new_leader(self, src: str, m: NewLeader) -> None:
        if not self._from_leader(src, m.epoch):
            return
        if m.peer_zxid != self.log.last_zxid:
            # Computed from an older ACKEPOCH: applying it could cut txns we took
            # (and ACKed) since.  If we synced in this epoch already, say so again.
            self.env.record("ignored", src=src, reason="stale sync")
            if self.current_epoch == m.epoch and self.phase != L_EPOCH and not self.pending_ack:
                self.env.send(
                    src,
                    Ack(epoch=m.epoch, index=self.log.last_index, zxid=self.log.last_zxid, newleader=True),
                )
            return
        if self.observer is not None:
            self.observer.on_sync(self, m)
        self._apply_sync(m)
        hold_back = "ack-before-persist" in self.bugs or "epoch-before-persist" in self.bugs
        if self.log.held_back and not hold_back:
            self.log.write_held()
        ack = Ack(epoch=m.epoch, index=self.log.last_index, zxid=self.log.last_zxid, newleader=True)
        if self.observer is not None and self.current_epoch != m.epoch:
            # The history the current epoch is about to be set over (checkers only).
            self.observer.on_synced(self, m.epoch, ack.index, ack.zxid)
        # ZOOKEEPER-3911/-4643: the synced txns are in storage (written above, in this
        # batch), then the current epoch, then the ACK (released once both are durable).
        self._set_current_epoch(m.epoch)
        if self.phase in (L_INFO, L_EPOCH):
            self.phase = L_SYNCED
        if self.log.held_back:
            # The knobs: an asynchronous writer logs the txns a little later.
            self.env.set_timer(ASYNC_LOG_TIMER, self.opts.async_log_delay)
            if "epoch-before-persist" in self.bugs and "ack-before-persist" not in self.bugs:
                self.pending_ack = ack
                return
        self.env.send(src, ack)
        self._commit_to(min(m.commit, self.log.last_index))

    def _async_log_written(self) -> None:
        self.log.write_held()
        ack, self.pending_ack = self.pending_ack, None
        if ack is not None and self.state in (FOLLOWING, OBSERVING) and ack.epoch == self.accepted_epoch:
            assert self.leader_id is not None
            self.env.send(self.leader_id, ack)

    def _set_current_epoch(self, epoch: int) -> None:
        if epoch != self.current_epoch:
            self.current_epoch = epoch
            self.env.storage.put(CURRENT_EPOCH_KEY, epoch)

    def _apply_sync(self, m: NewLeader) -> None:
        hold_back = "ack-before-persist" in self.bugs or "epoch-before-persist" in self.bugs
        if m.mode == SNAP:
            snap = m.snapshot
            if snap is None:
                raise ValueError("SNAP without a snapshot")
            self.sm.restore(snap.data)
            self.log.reset(snap.last_index, snap.last_zxid)
            self.durable_index = min(self.durable_index, snap.last_index)
            self.snapshot = snap
            self.env.storage.put(SNAPSHOT_KEY, snap)
            self.commit_index = self.last_applied = snap.last_index
            self.env.record("sync", mode=SNAP, zxid=zxid_str(snap.last_zxid), index=snap.last_index)
            if self.observer is not None:
                self.observer.on_restore(self, snap)
        elif m.mode in (TRUNC, TRUNC_DIFF):
            keep = self.log.last_at_or_below(m.trunc_zxid)
            if keep is None or keep < self.log.offset:
                raise ValueError("TRUNC below the snapshot")
            self.env.record("sync", mode=m.mode, zxid=zxid_str(m.trunc_zxid))
            if keep < self.log.last_index:
                self._truncate_from(keep + 1)
        else:
            self.env.record("sync", mode=m.mode, txns=len(m.txns))
        appended = []
        next_index = self.log.last_index + 1
        for t in m.txns:
            if t.zxid <= self.log.last_zxid and not appended:
                continue  # already held (a resent sync)
            appended.append(Txn(zxid=t.zxid, index=next_index, kind=t.kind, data=t.data))
            next_index += 1
        if appended:
            self._append(tuple(appended), hold_back=hold_back)

    def handle_uptodate(self, src: str, m: UpToDate) -> None:
        if not self._from_leader(src, m.epoch) or self.current_epoch != m.epoch:
            return
        if self.phase != L_SERVING:
            self._serving(m.epoch)
        self._commit_to(min(m.commit, self.log.last_index))
        if self.rejoining:
            self._readmit()

    def _serving(self, epoch: int) -> None:
        self.phase = L_SERVING
        self.env.record("uptodate", epoch=epoch)

    def _readmit(self) -> None:
        """UPTODATE: a leader established by a quorum without us (we were in none)
        synced us, so our disk holds its history, which holds every txn ever committed,
        and our epochs are its epoch.  We vote and ACK again: as a follower of this leader
        now (a fresh FOLLOWERINFO; the leader drops our observer handshake for it)."""
        self.rejoining = False
        self.env.storage.put(REJOINING_KEY, False)  # durable before the FOLLOWERINFO leaves
        self.is_observer = self.id in self.observers
        self.env.record("readmitted", epoch=self.current_epoch, zxid=zxid_str(self.log.last_zxid))
        if self.is_observer:
            return
        self.state = FOLLOWING
        self.phase = L_INFO
        self.env.record("role", role=FOLLOWING, epoch=self.current_epoch, leader=self.leader_id)
        self._send_follower_info()

    def handle_proposal(self, src: str, m: Proposal) -> None:
        if self.is_observer or not self._from_leader(src, m.epoch) or self.current_epoch != m.epoch:
            return
        self._accept_txns(src, m.epoch, m.txns)

    def handle_inform(self, src: str, m: Inform) -> None:
        if not self._from_leader(src, m.epoch) or self.current_epoch != m.epoch:
            return
        if not self.is_observer:
            # Our leader takes us for an observer: a late OBSERVERINFO of our rejoin
            # (duplicated or reordered on the way) restarted our handshake as one.  Say
            # again that we follow, or our ACKs would count for nothing until the next
            # election.
            if self.state == FOLLOWING and self.phase == L_SERVING:
                self.env.record("ignored", src=src, reason="INFORM to a follower: FOLLOWERINFO again")
                self.phase = L_INFO
                self._send_follower_info()
            return
        self._accept_txns(src, m.epoch, m.txns)
        if m.txns:
            last = m.txns[-1]
            if self.log.zxid_at(last.index) == last.zxid:
                self._commit_to(last.index)

    def _accept_txns(self, src: str, epoch: int, txns: tuple[Txn, ...]) -> None:
        log = self.log
        fresh: list[Txn] = []
        for t in txns:
            if t.zxid <= log.last_zxid and not fresh:
                if "paper-redundant-propose" in self.bugs:
                    # The paper's follower logs a PROPOSAL it already holds.
                    fresh.append(Txn(zxid=t.zxid, index=log.last_index + 1, kind=t.kind, data=t.data))
                continue  # redundant: already held (issues.md #2)
            if not fresh and t.index != log.last_index + 1:
                if "paper-propose-acked" in self.bugs and t.index > log.last_index + 1:
                    # The paper's follower logs whatever arrives (TCP FIFO assumed).
                    fresh.append(Txn(zxid=t.zxid, index=log.last_index + 1, kind=t.kind, data=t.data))
                    continue
                self.env.send(src, Ack(epoch=epoch, index=log.last_index, zxid=log.last_zxid, gap=True))
                return
            if fresh:
                t = Txn(zxid=t.zxid, index=fresh[-1].index + 1, kind=t.kind, data=t.data)
            fresh.append(t)
        if fresh:
            self._append(tuple(fresh))
        self.env.send(src, Ack(epoch=epoch, index=log.last_index, zxid=log.last_zxid))

    def handle_commit(self, src: str, m: Commit) -> None:
        if not self._from_leader(src, m.epoch) or self.current_epoch != m.epoch:
            return
        if "paper-commit-ld-ack" in self.bugs and m.index != self.commit_index + 1:
            # The spec's follower: a COMMIT names the txn after its last committed one.
            if m.index > self.commit_index + 1:
                self.env.record("illegal-commit", index=m.index, committed=self.commit_index)
                if self.observer is not None:
                    self.observer.on_illegal_commit(self, m)
            return
        self._commit_known(m.index, m.zxid)

    def _commit_known(self, index: int, zxid: int) -> None:
        """Commit up to ``index`` only if we hold ``zxid`` there: never a COMMIT for
        an unknown zxid."""
        held = self.log.zxid_at(index)
        if held == zxid:
            self._commit_to(index)
        elif held is not None or index > self.log.last_index:
            self.env.record("ignored", reason="commit for an unknown zxid", index=index)

    def handle_ping(self, src: str, m: Ping) -> None:
        if not self._from_leader(src, m.epoch):
            return
        if self.current_epoch == m.epoch and m.uptodate and self.phase == L_SYNCED:
            self._serving(m.epoch)  # UPTODATE was lost; the PING repeats it
        if (
            self.current_epoch == m.epoch
            and self.phase == L_SERVING
            and "paper-commit-ld-ack" not in self.bugs
        ):
            self._commit_known(m.commit, m.commit_zxid)
        self.env.send(src, PingAck(epoch=m.epoch, round=m.round, last_index=self.log.last_index))
        if self.rejoining and self.phase == L_SERVING and self.current_epoch == m.epoch:
            self._readmit()

    # ------------------------------------------------------------------ leader
    def _become_leading(self) -> None:
        self.state = LEADING
        self.leader_id = self.id
        self.epoch = 0
        self.epoch_proposed = self.epoch_acked = self.established = False
        self.learners = {}
        self.rounds.reset()
        self.env.record("role", role=LEADING, epoch=self.current_epoch)
        self.env.set_timer(TICK_TIMER, self.opts.tick)
        self.env.set_timer(LEAD_TIMER, self.opts.election_timeout * 2)
        self._maybe_propose_epoch()

    def _drop_leader_state(self) -> None:
        for request, origin in self.held_requests:
            self._refuse(origin, request, None)
        self.held_requests = []
        for request, origin in self.reads.drain():
            self._reply(origin, replies.refused(request, NOT_LEADER, None))
        self.learners = {}
        self.origins = {}
        self.leader_syncs = []
        self.established = False
        self.epoch_proposed = self.epoch_acked = False
        self.epoch = 0
        self.commit_due = False

    def handle_follower_info(self, src: str, m: FollowerInfo) -> None:
        if self.state != LEADING:
            return
        # A voter that lost its disk says it observes until readmitted; the learner's word
        # can only make it count for less, never a configured observer for more.
        observer = src in self.observers or m.observer
        ls = self.learners.get(src)
        if ls is None or ls.phase != INFO or ls.accepted_epoch != m.epoch:
            ls = self.learners[src] = LearnerState(observer=observer, accepted_epoch=m.epoch)
        ls.heard_at = ls.handshake_at = self.env.now()
        if self.epoch_proposed and m.epoch > self.epoch:
            # The learner promised a later epoch (to a leader that never established): it
            # will abandon our LEADERINFO, and would rejoin us after every election that
            # finds us leading again, forever (ZooKeeper's getEpochToPropose answers an
            # established leader's epoch regardless).  Step down: the next discovery
            # proposes an epoch at least as high, which it accepts.
            self.env.record("abandon", reason="learner accepted a later epoch", learner=src, accepted=m.epoch)
            self._look()
            return
        if self.epoch_proposed:
            self.env.send(src, LeaderInfo(epoch=self.epoch))
        else:
            self._maybe_propose_epoch()

    def _maybe_propose_epoch(self) -> None:
        """getEpochToPropose: once a quorum of voters (us included) told their accepted
        epochs, the new epoch is one above them all."""
        if self.epoch_proposed:
            return
        epochs = {self.id: self.accepted_epoch}
        for peer, ls in self.learners.items():
            if not ls.observer:
                epochs[peer] = ls.accepted_epoch
        if sum(1 for v in self.voters if v in epochs) < quorum_size(len(self.voters)):
            return
        self.epoch = max(epochs.values()) + 1
        self.epoch_proposed = True
        self.accepted_epoch = self.epoch
        self.env.storage.put(ACCEPTED_EPOCH_KEY, self.epoch)
        self.env.record("new-epoch", epoch=self.epoch)
        for peer in self.learners:
            self.env.send(peer, LeaderInfo(epoch=self.epoch))
        self._maybe_epoch_acked()  # a cluster of one

    def handle_ack_epoch(self, src: str, m: AckEpoch) -> None:
        ls = self.learners.get(src)
        if self.state != LEADING or m.epoch != self.epoch or ls is None:
            return
        ls.heard_at = self.env.now()
        ls.current_epoch, ls.last_zxid = m.current_epoch, m.last_zxid
        ahead = (m.current_epoch, m.last_zxid) > (self.current_epoch, self.log.last_zxid)
        if ahead and not ls.observer and not self.epoch_acked:
            # waitForEpochAck: "Follower is ahead of the leader".
            self.env.record("abandon", reason="follower ahead", follower=src)
            self._look()
            return
        ls.phase = EPOCH
        ls.fresh = ls.fresh or m.fresh
        if not self.epoch_acked:
            self._maybe_epoch_acked()
            return
        self._send_new_leader(src, ls)

    def _maybe_epoch_acked(self) -> None:
        """waitForEpochAck: a quorum of voters (us included) took the epoch from us."""
        acked = {self.id} | {p for p, s in self.learners.items() if not s.observer and s.fresh}
        if sum(1 for v in self.voters if v in acked) < quorum_size(len(self.voters)):
            return
        self.epoch_acked = True
        self._set_current_epoch(self.epoch)
        for peer, s in self.learners.items():
            if s.phase == EPOCH:
                self._send_new_leader(peer, s)
        self._maybe_establish()

    def _maybe_establish(self) -> None:
        """waitForNewLeaderAck: a quorum of voters (us included) ACKed NEWLEADER."""
        if self.established or not self.epoch_acked:
            return
        synced = {self.id} | {p for p, s in self.learners.items() if not s.observer and s.phase == SYNCED}
        if sum(1 for v in self.voters if v in synced) >= quorum_size(len(self.voters)):
            self._establish()

    def _send_new_leader(self, peer: str, ls: LearnerState) -> None:
        plan = choose_sync(self.log, ls.last_zxid, trunc_across_epoch="trunc-across-epoch" in self.bugs)
        snapshot = None
        if plan.mode == SNAP:
            snapshot = self._snapshot_for_sync()
            start = snapshot.last_index + 1
        else:
            start = plan.base_index + 1
        txns = (
            self.log.slice(start, self.log.last_index, self.log.last_index + 1)
            if start <= self.log.last_index
            else ()
        )
        self.env.send(
            peer,
            NewLeader(
                epoch=self.epoch,
                mode=plan.mode,
                peer_zxid=ls.last_zxid,
                trunc_index=plan.base_index if plan.mode in (TRUNC, TRUNC_DIFF) else 0,
                trunc_zxid=plan.base_zxid if plan.mode in (TRUNC, TRUNC_DIFF) else 0,
                snapshot=snapshot,
                txns=txns,
                commit=self.commit_index,
            ),
        )
        self.env.record("sync-sent", learner=peer, mode=plan.mode, txns=len(txns))
        ls.handshake_at = self.env.now()
        ls.phase = SYNCING
        ls.next = self.log.last_index + 1
        ls.acked = 0
        ls.sync_end = self.log.last_index
        ls.stalled = 0

    def _snapshot_for_sync(self) -> Snapshot:
        """SNAP sends the applied state (ZooKeeper serializes its database)."""
        snap = self.snapshot
        if snap is not None and snap.last_index == self.last_applied:
            return snap
        zxid = self.log.zxid_at(self.last_applied)
        assert zxid is not None
        return Snapshot(last_index=self.last_applied, last_zxid=zxid, data=self.sm.snapshot())

    def handle_ack(self, src: str, m: Ack) -> None:
        ls = self.learners.get(src)
        if self.state != LEADING or m.epoch != self.epoch or ls is None:
            return
        ls.heard_at = self.env.now()
        if not ls.observer:
            self.lead_heard.add(src)
        if self.observer is not None:
            self.observer.on_ack(self, src, m)
        held = self.log.zxid_at(m.index)
        # An index we compacted since is committed, and an ACK of our epoch comes from a
        # learner synced in it, whose history is a prefix of ours: it counts (else a
        # learner whose sync we compacted under load would stay unacknowledged, its
        # window closed for good).
        if m.index > ls.acked and (held == m.zxid or (held is None and m.index < self.log.offset)):
            ls.acked = m.index
            ls.stalled = 0
        if m.newleader:
            if ls.phase != SYNCING:
                return
            ls.phase = SYNCED
            if "paper-propose-acked" in self.bugs:
                ls.next = self.log.last_index + 1  # the paper: only new proposals follow
            if not self.established:
                self._maybe_establish()
                return
            commit = m.index if "paper-commit-ld-ack" in self.bugs else self.commit_index
            self.env.send(src, UpToDate(epoch=self.epoch, commit=commit))
            self._send_txns(src, ls)
            return
        if m.gap:
            ls.next = max(ls.acked, min(m.index, ls.next - 1)) + 1
        if not ls.observer:
            self._maybe_commit()
        self._send_txns(src, ls)

    def _establish(self) -> None:
        """A quorum ACKed NEWLEADER: the history is committed; serve."""
        self.established = True
        self.env.record("established", epoch=self.epoch, zxid=zxid_str(self.log.last_zxid))
        if self.observer is not None:
            self.observer.on_established(self)
        self._commit_to(self.log.last_index)
        self.commit_sent = self.commit_index  # UPTODATE carries it
        for peer, ls in self.learners.items():
            if ls.phase == SYNCED:
                commit = ls.acked if "paper-commit-ld-ack" in self.bugs else self.commit_index
                self.env.send(peer, UpToDate(epoch=self.epoch, commit=commit))
        held, self.held_requests = self.held_requests, []
        for request, origin in held:
            self._handle(request, origin)

    def _broadcast(self) -> None:
        for peer, ls in self.learners.items():
            self._send_txns(peer, ls)

    def _send_txns(self, peer: str, ls: LearnerState) -> None:
        """PROPOSALs to a follower (syncing or synced), INFORMs of committed txns to an
        observer (synced), from its cursor, pipelined."""
        if ls.observer:
            if ls.phase != SYNCED:
                return
            hi = self.commit_index
        else:
            if ls.phase not in (SYNCING, SYNCED):
                return
            if "paper-propose-acked" in self.bugs and ls.phase != SYNCED:
                return
            hi = self.log.last_index
        opts = self.opts
        # In flight: sent, and not yet known held.  What a PINGACK reports held counts
        # too (for the window only, never toward a quorum): when the ACK of the txn that
        # filled the window was lost, the learner held every txn sent, acked stayed
        # behind, and with no later txn to send nothing else would ever be acked (seed
        # 202058, max_inflight_txns=1: a follower two txns behind for good).
        base = max(ls.acked, ls.sync_end, ls.reported)
        while ls.next <= hi and ls.next - 1 - base < opts.max_inflight_txns:
            if ls.next <= self.log.offset:
                # Behind the retained history: synchronise it again (SNAP).
                ls.phase = EPOCH
                ls.handshake_at = self.env.now()
                self.env.send(peer, LeaderInfo(epoch=self.epoch))
                return
            txns = self.log.slice(ls.next, hi, opts.max_batch_txns, opts.max_batch_bytes)
            prev = ls.next - 1
            prev_zxid = self.log.zxid_at(prev) or 0
            kind = Inform if ls.observer else Proposal
            msg = kind(epoch=self.epoch, prev_index=prev, prev_zxid=prev_zxid, txns=txns)
            if ls.observer:
                self.env.send(peer, msg)
            else:
                self._replicate(peer, msg)
            ls.next = txns[-1].index + 1

    def _replicate(self, peer: str, msg: Proposal | Commit) -> None:
        """PROPOSALs and COMMITs depend on no unsynced write of ours (we count our own
        log toward a commit only once durable): where the runtime reports durability they
        leave at the end of their batch, before our own sync completes."""
        if self.early_proposals:
            self.env.send_early(peer, msg)  # type: ignore[attr-defined]
        else:
            self.env.send(peer, msg)

    def _maybe_commit(self) -> None:
        if self.state != LEADING or not self.established:
            return
        match = {p: ls.acked for p, ls in self.learners.items() if not ls.observer and ls.phase == SYNCED}
        match[self.id] = self.durable_index if self.reports_durable else self.log.last_index
        n = committed_index(match, self.voters)
        old = self.commit_index
        if n <= old:
            return
        # The leader is the first to learn a txn is committed (message-delay counts).
        self.env.record("learned", slot=n, first=old + 1)
        self._commit_to(n)
        if self.batched:
            self.commit_due = True  # on_batch_end: one COMMIT for the whole batch
        else:
            self._announce_commit()

    def _announce_commit(self) -> None:
        """COMMIT (cumulative) to synced followers, INFORM to observers, for everything
        committed since the last announcement."""
        old, n = self.commit_sent, self.commit_index
        if n <= old:
            return
        self.commit_sent = n
        zxid = self.log.zxid_at(n)
        assert zxid is not None
        for peer, ls in self.learners.items():
            if ls.observer:
                self._send_txns(peer, ls)
            elif ls.phase == SYNCED:
                if "paper-commit-ld-ack" in self.bugs:
                    for i in range(old + 1, n + 1):  # the spec: one COMMIT per txn
                        zxid_i = self.log.zxid_at(i) or 0
                        self._replicate(peer, Commit(epoch=self.epoch, index=i, zxid=zxid_i))
                else:
                    self._replicate(peer, Commit(epoch=self.epoch, index=n, zxid=zxid))

    def _on_tick(self) -> None:
        if self.state in (FOLLOWING, OBSERVING):
            if self.phase == L_INFO:
                self._send_follower_info()  # until LEADERINFO comes
            self.env.set_timer(TICK_TIMER, self.opts.tick)
            return
        if self.state != LEADING:
            return
        self.env.set_timer(TICK_TIMER, self.opts.tick)
        now = self.env.now()
        for peer, ls in self.learners.items():
            if (
                ls.phase in (EPOCH, SYNCING)
                and self.epoch_proposed
                and now - ls.handshake_at > self.opts.tick * ls.handshake_wait
            ):
                # Lost LEADERINFO, ACKEPOCH, NEWLEADER or its ACK (or a long SNAP): start again.
                ls.handshake_at = now
                ls.handshake_wait = min(ls.handshake_wait * 2, HANDSHAKE_MAX_WAIT_TICKS)
                self.env.send(peer, LeaderInfo(epoch=self.epoch))
        if self.established:
            self._ping()

    def _ping(self) -> None:
        self.read_round_due = False
        round_ = self.rounds.start(self.env.now())
        zxid = self.log.zxid_at(self.commit_index) or 0
        for peer, ls in self.learners.items():
            if ls.phase in (SYNCED, SYNCING):
                commit = self.commit_index
                if not ls.observer:
                    commit = min(commit, max(ls.acked, ls.reported))
                cz = self.log.zxid_at(commit) if commit >= self.log.offset else None
                self.env.send(
                    peer,
                    Ping(
                        epoch=self.epoch,
                        round=round_,
                        commit=commit,
                        commit_zxid=cz if cz is not None else zxid,
                        uptodate=ls.phase == SYNCED,
                    ),
                )
        self._round_acknowledged()

    def handle_ping_ack(self, src: str, m: PingAck) -> None:
        ls = self.learners.get(src)
        if self.state != LEADING or m.epoch != self.epoch or ls is None:
            return
        ls.heard_at = self.env.now()
        if not ls.observer:
            self.lead_heard.add(src)
        if ls.phase == SYNCED:
            opened = m.last_index > ls.reported
            ls.reported = m.last_index
            if opened:
                self._send_txns(src, ls)
        if not ls.observer and ls.phase == SYNCED and self.rounds.ack(src, m.round):
            self._round_acknowledged()
        if ls.phase == SYNCED and m.last_index < ls.next - 1:
            ls.stalled += 1
            if ls.stalled >= STALLED_PINGS:
                # Lost PROPOSALs at the tail (no later one shows the gap): resend.
                ls.stalled = 0
                ls.next = max(ls.acked, m.last_index) + 1
                self._send_txns(src, ls)

    def _round_acknowledged(self) -> None:
        synced = [v for v in self.voters if v == self.id or self._synced_voter(v)]
        if len(synced) < quorum_size(len(self.voters)):
            return
        q = self.rounds.quorum_round(self.voters)
        if q <= 0:
            return
        self.rounds.settle(q)
        self.reads.confirm(q, self.last_applied, self._serve_leader_read)

    def _synced_voter(self, peer: str) -> bool:
        ls = self.learners.get(peer)
        return ls is not None and not ls.observer and ls.phase == SYNCED

    def _check_lead(self) -> None:
        """A leader that is not established within two timeouts, or then does not hear
        from a quorum in one, goes back to LOOKING (ZooKeeper: initLimit, syncLimit)."""
        if self.state != LEADING:
            return
        heard = self.lead_heard | {self.id}
        self.lead_heard = set()
        if not self.established:
            self.env.record("abandon", reason="not established in time", epoch=self.epoch)
            self._look()
            return
        if sum(1 for v in self.voters if v in heard) < quorum_size(len(self.voters)):
            self.env.record("abandon", reason="lost quorum", epoch=self.epoch)
            self._look()
            return
        self.env.set_timer(LEAD_TIMER, self.opts.election_timeout)

    # ------------------------------------------------------------------ log and state
    def _append(self, txns: tuple[Txn, ...], *, hold_back: bool = False) -> None:
        self.log.append(txns, hold_back=hold_back)
        if self.observer is not None:
            self.observer.on_append(self, txns)

    def _truncate_from(self, index: int) -> None:
        if self.observer is not None:
            self.observer.on_truncate(self, index)
        self.log.truncate_from(index)
        self.durable_index = min(self.durable_index, index - 1)
        if self.commit_index >= index:
            # Only a bug truncates committed txns (the checker reports it); keep the
            # positions inside the log so the server can go on.
            self.commit_index = min(self.commit_index, index - 1)
            self.last_applied = min(self.last_applied, index - 1)

    def _commit_to(self, index: int) -> None:
        if index <= self.commit_index:
            return
        self.commit_index = index
        self.env.record("commit", index=index, zxid=zxid_str(self.log.zxid_at(index) or 0))
        if self.observer is not None:
            self.observer.on_commit(self, index)
        self._apply_committed()

    def _apply_committed(self) -> None:
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            txn = self.log.entry(index)
            self.last_applied = index
            if txn.kind == COMMAND:
                result = replies.applied(self.sm, txn.data, self.env)
                if self.state == LEADING and epoch_of(txn.zxid) == self.epoch:
                    request = txn.data
                    origin = self.origins.pop((request.client_id, request.seq), self.id)
                    answer = replies.command_answer(request, result, self.id, index)
                    self._reply(origin, answer, committed=True)
            if self.observer is not None:
                self.observer.on_apply(self, txn)
        if self.state == LEADING:
            self.reads.release(self.last_applied, self._serve_leader_read)
            self._answer_syncs()
        else:
            self._serve_sync_reads()
        self._maybe_snapshot()

    def _snapshot_turn(self) -> tuple[int, int]:
        # Every member, observers included, writes snapshots: they take turns
        # (snapshot_policy).
        return stagger_turn(self.id, self.members)

    def _maybe_snapshot(self) -> None:
        snap_index = self.snapshot.last_index if self.snapshot else 0
        # A large state snapshots less often (its copy, encoding and write are paid once
        # per as many txns as it has keys), as Raft's does.
        applied = self.last_applied
        if not snapshot_due(
            applied - snap_index, self.opts.snapshot_threshold, len(self.sm), applied, self._snapshot_turn
        ):
            return
        index = applied
        zxid = self.log.zxid_at(index)
        if zxid is None:
            return
        snap = Snapshot(last_index=index, last_zxid=zxid, data=self.sm.snapshot())
        self.snapshot = snap
        self.env.storage.put(SNAPSHOT_KEY, snap)
        self.env.record("snapshot", index=index, zxid=zxid_str(zxid))
        keep_from = index - entries_kept(self.opts.snapshot_trailing, len(self.sm))
        if keep_from > self.log.offset:
            self.log.compact(keep_from)
