"""A Raft server as a deterministic, I/O-free state machine.

Follows the Raft paper and Ongaro's dissertation (section numbers below are the
dissertation's).  Message handling is etcd-style: the shared term rules run first in
``on_message``, then a per-type handler.

Rules this module owns:
  * §3.3 term rules: a higher term makes us a follower (except pre-votes and votes
    ignored under the leader lease); a lower term is answered with our term;
  * §3.4 election: one vote per term, persisted before the grant leaves (the runtime's
    durability barrier); candidates' logs must be up to date (§3.6.1);
  * §9.6 pre-vote and §4.2.3 check-quorum / leader lease (a node that heard from a leader
    within the minimum election timeout ignores RequestVote);
  * §3.5 log matching via the consistency check; fast backtracking by conflict term;
  * §3.6.2 commit only an entry of the current term by counting replicas; a no-op
    starts every term;
  * §5 snapshots; §6.4 ReadIndex and lease reads (a request may ask for linearizable,
    lease or stale; stale reads are served by any node); §3.10 leadership transfer;
  * client cache leases (``cache_lease`` > 0, cache_leases.py): the leader grants one
    with a "cache" read it serves itself, and holds back writes to the key until it ran
    out; a follower serves a cache read as a linearizable one, with no lease;
  * §4.1 single-server membership changes, with learners; a config entry takes effect
    when appended; one change in flight at a time, only after the leader committed an
    entry of its own term (the fix to the bug in §4.1 of the original dissertation);
  * disk loss (README, "A node that lost its disk"): a node built on a storage holding
    the platform's REJOINING_KEY never votes, pre-votes or campaigns and answers the
    leader through ``Rejoining``; the leader counts it in no quorum, demotes it to a
    learner, and promotes it back once its log reached the commit index; the node clears
    the key when it sees its promotion committed, and gives up its vote in that term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from consensuskit.core.capabilities import LogPosition, Membership, NodeStatus
from consensuskit.core.client import (
    BUSY,
    CACHE,
    LEASE,
    NOT_LEADER,
    STALE_OK,
    ClientRequest,
)
from consensuskit.core.env import Env
from consensuskit.core.messages import CodecError, decode
from consensuskit.core.quorum import committed_index, quorum_size
from consensuskit.core.service import StateMachine
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.common import replies
from consensuskit.protocols.common.check_quorum import CheckQuorum
from consensuskit.protocols.common.config_history import ConfigHistory
from consensuskit.protocols.common.heartbeat_rounds import HeartbeatRounds
from consensuskit.protocols.common.number_bounds import CEILING, STEP, out_of_reach
from consensuskit.protocols.common.read_index import ReadIndex
from consensuskit.protocols.common.snapshot_policy import entries_kept, snapshot_due, stagger_turn
from consensuskit.protocols.raft.cache_leases import CacheLeases
from consensuskit.protocols.raft.log import RaftLog
from consensuskit.protocols.raft.messages import (
    COMMAND,
    CONFIG,
    NOOP,
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    ForwardRefused,
    ForwardRequest,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    ReadIndexRequest,
    ReadIndexResponse,
    RejoinConfig,
    Rejoining,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
    make_config,
    rejoining_of,
)
from consensuskit.protocols.raft.options import RaftOptions
from consensuskit.protocols.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from consensuskit.protocols.raft.snapshot_reader import SnapshotReader
from consensuskit.statemachines import default_state_machine

FOLLOWER: Final = "follower"
PRE_CANDIDATE: Final = "pre-candidate"
CANDIDATE: Final = "candidate"
LEADER: Final = "leader"

ELECTION_TIMER: Final = "election"
HEARTBEAT_TIMER: Final = "heartbeat"
CHECK_QUORUM_TIMER: Final = "check-quorum"
TRANSFER_TIMER: Final = "transfer"
CACHE_TIMER: Final = "cache-lease"

# The op of the placeholder request a leader keeps for a follower's ReadIndexRequest in
# its ReadIndex stages: never applied, never sent; told apart by identity.
_READ_INDEX_OP: Any = object()

HARD_STATE_KEY: Final = "raft/hard-state"
SNAPSHOT_KEY: Final = "raft/snapshot"
# While rejoining: the commit index at which the node saw a committed configuration that
# does not count it as a voter (0: not yet).
REJOIN_DEMOTED_KEY: Final = "raft/rejoin-demoted"
# While rejoining: the incarnation the node answers with (messages.Rejoining), kept
# across restarts so that the demotion naming it stays its own.
REJOIN_INCARNATION_KEY: Final = "raft/rejoin-incarnation"

# The answers a follower sends its leader; a rejoining follower wraps them in Rejoining.
FOLLOWER_RESPONSES = (AppendEntriesResponse, HeartbeatResponse, InstallSnapshotResponse)

CONFIG_CHANGES: Final = ("add-learner", "add-voter", "remove")
# A term beyond this, or more than STEP above the node's own, comes only from a broken or
# hostile peer (a billion elections a second would need 146 years to get here); messages
# carrying one are ignored (protocols/common/number_bounds.py).
MAX_TERM: Final = CEILING


class RaftNode:
    """Capabilities (core/capabilities.py): HasLeader, ReplicatedLog, MembershipChange,
    LeaderTransfer, LeaseReads."""

    config_changes = CONFIG_CHANGES

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: RaftOptions | None = None,
        *,
        state_machine: StateMachine | None = None,
    ) -> None:
        self.id = node_id
        self.env = env
        self.opts = options or RaftOptions()
        self.bugs = self.opts.bugs
        # The service's state machine (the protocol serves any log service).
        self.sm: Any = state_machine if state_machine is not None else default_state_machine()
        # Set by checkers to watch log and state machine changes; never used for control.
        self.observer: Any = None

        storage = env.storage
        # Lost its disk (the platform's key): no vote, no campaign, no quorum until the
        # leader has caught it up and promoted it.  The bug knob ignores the key.
        self.rejoining = bool(storage.get(REJOINING_KEY)) and "vote-after-wipe" not in self.bugs
        self.demoted_at: int = (storage.get(REJOIN_DEMOTED_KEY) or 0) if self.rejoining else 0
        # Which disk loss this is, so that the leader tells answers of this loss from a
        # stale one of an earlier and names it in the demotion (RejoinConfig): drawn when
        # the rejoin starts, persisted with the first answer.
        saved = storage.get(REJOIN_INCARNATION_KEY) if self.rejoining else None
        self.incarnation: int = saved or (env.rng.getrandbits(31) + 1 if self.rejoining else 0)
        self._incarnation_saved = saved is not None
        hard: HardState | None = storage.get(HARD_STATE_KEY)
        self.term = hard.term if hard else 0
        self.voted_for: str | None = hard.voted_for if hard else None
        self.snapshot: Snapshot | None = storage.get(SNAPSHOT_KEY)
        snap = self.snapshot
        self.log = RaftLog.load(storage, snap.last_index if snap else 0, snap.last_term if snap else 0)
        if snap is not None:
            base_config = snap.config
            self.sm.restore(snap.data)
        else:
            voters = tuple(sorted(self.opts.voters or members))
            base_config = ClusterConfig(voters=voters, learners=tuple(sorted(self.opts.learners)))
        # The configuration at each index of the log (in force once appended, §4.1); the
        # base is the one before the log's first entry.  config/config_index: the latest.
        self.config_history = ConfigHistory(self.log.offset, base_config)
        for e in self.log.entries:
            if e.kind == CONFIG:
                self.config_history.record(e.index, e.data)
        self._recompute_config()

        self.role = FOLLOWER
        self.leader_id: str | None = None
        # Invariant: log.offset <= last_applied <= commit_index <= log.last_index
        self.commit_index = snap.last_index if snap else 0
        self.last_applied = self.commit_index
        self.votes: dict[str, bool] = {}
        self.last_leader_contact = 0.0
        # Leader state
        self.progress: dict[str, Progress] = {}
        self.term_start_index = 0
        self.transfer_target: str | None = None
        self.rounds = HeartbeatRounds(node_id)
        self.activity = CheckQuorum()
        self.lease_until = 0.0
        # Client cache leases the leader granted, and the writes they hold back.
        self.cache: CacheLeases | None = None
        if self.opts.cache_lease:
            self.cache = CacheLeases(self.opts.cache_lease, self.opts.clock_drift_bound)
        # ReadIndex reads: held until an entry of our term commits, then waiting for a
        # heartbeat round, then for the apply index.
        self.reads = ReadIndex()
        self.snapshot_sent_at: dict[str, float] = {}
        # Leader: per follower, the snapshot being streamed to it in chunks.  Encoded as
        # it goes, never whole: a cached 100 MB encoding doubled a large node's memory.
        self.snapshot_readers: dict[str, SnapshotReader] = {}
        # Follower: a chunked snapshot being received (last_index, bytes so far).
        self.snapshot_incoming: tuple[int, bytearray] | None = None
        # A runtime that calls on_batch_end() after each batch of inputs says so; then
        # every read of a batch shares one ReadIndex heartbeat round (§6.4 batching)
        # instead of starting one each.  Other environments see one round per read.
        self.share_read_rounds = bool(getattr(env, "calls_batch_end", False))
        # ... and the batch's log appends reach storage as one (flushed at its end).
        self.log.defer_writes = self.share_read_rounds
        self.read_round_due = False
        # Likewise the writes of a batch are appended as they come but replicated
        # together at its end: one AppendEntries per follower per batch (and one
        # commit check), not one per write.
        self.append_due = False
        # §10.2.1 (parallel leader writes): a runtime that reports which log prefix is
        # durable (``on_durable``) lets the leader send its replication traffic before its
        # own fsync, because the leader then counts itself toward a commit quorum only up
        # to that prefix.  Elsewhere every send waits for the barrier and the leader
        # counts its whole log (the two are equivalent there).
        self.reports_durable = bool(getattr(env, "reports_durable", False))
        self.early_replication = self.reports_durable and hasattr(env, "send_early")
        # Invariant (when reports_durable): log entries up to durable_index are on disk.
        self.durable_index = self.log.last_index
        # The answer to a committed command depends on no unsynced write of ours (the
        # entry is durable on a quorum): a runtime that offers ``deliver_early`` lets it
        # leave at the end of its batch instead of waiting for the sync of the writes
        # made meanwhile (under load, up to two fsyncs: etcd applies and answers
        # committed entries while it persists new ones in the same way).
        self.early_answers = hasattr(env, "deliver_early")
        # Follower serving (opts.forward_requests): commands passed on to the leader,
        # answered here when applied; linearizable reads waiting for the leader's read
        # index, then for that index to be applied here.  Both by (client_id, seq) and
        # bounded: an unanswered one is the client's timeout, as a lost message is.
        self.forwarded: dict[tuple[str, int], ClientRequest] = {}
        self._unapplied = replies.UnappliedIds()  # for _may_apply
        self.remote_reads: dict[tuple[str, int], ClientRequest] = {}
        self.follower_reads: list[tuple[int, ClientRequest]] = []
        self._handlers: dict[type, Any] = {
            AppendEntries: self.handle_append_entries,
            AppendEntriesResponse: self.handle_append_response,
            Heartbeat: self.handle_heartbeat,
            HeartbeatResponse: self.handle_heartbeat_response,
            RequestVote: self.handle_request_vote,
            RequestVoteResponse: self.handle_vote_response,
            InstallSnapshot: self.handle_install_snapshot,
            InstallSnapshotResponse: self.handle_snapshot_response,
            TimeoutNow: self.handle_timeout_now,
            Rejoining: self.handle_rejoining,
        }
        # Term-free messages (messages.py): handled before the term rules.
        self._forwarding: dict[type, Any] = {
            ForwardRequest: self.handle_forward_request,
            ForwardRefused: self.handle_forward_refused,
            ReadIndexRequest: self.handle_read_index_request,
            ReadIndexResponse: self.handle_read_index_response,
        }

    # ------------------------------------------------------------------ inspection
    def is_leader(self) -> bool:
        return self.role == LEADER

    def current_leader(self) -> str | None:
        return self.leader_id

    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.role,
            leader=self.leader_id,
            generation_name="term",
            generation=self.term,
            details={"term": self.term, "rejoining": self.rejoining, "peers": self._peer_progress()},
        )

    def log_position(self) -> LogPosition:
        return LogPosition(
            commit=self.commit_index,
            applied=self.last_applied,
            last_index=self.log.last_index,
            snapshot_index=self.snapshot.last_index if self.snapshot else 0,
        )

    def membership(self) -> Membership:
        return Membership(
            voters=tuple(self.config.voters),
            learners=tuple(self.config.learners),
            config_index=self.config_index,
            # A config entry takes effect when appended (§4.1): pending until committed.
            config_pending=self.config_index > self.commit_index,
        )

    def lease_remaining(self) -> float:
        if self.role != LEADER or not self.opts.check_quorum:
            return 0.0
        return max(0.0, self.lease_until - self.env.now())

    def _peer_progress(self) -> dict[str, dict[str, Any]]:
        """Leader only: what it knows of each follower's log (empty elsewhere)."""
        return {
            peer: {
                "match": pr.match,
                "next": pr.next,
                "state": pr.state,
                **({"rejoining": True} if pr.rejoining else {}),
            }
            for peer, pr in sorted(self.progress.items())
        }

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "term": self.term,
            "leader": self.leader_id,
            "commit": self.commit_index,
            "applied": self.last_applied,
            "last_index": self.log.last_index,
            "snapshot_index": self.snapshot.last_index if self.snapshot else 0,
            "voters": list(self.config.voters),
            "learners": list(self.config.learners),
            "config_index": self.config_index,
            "rejoining": self.rejoining,
            "peers": self._peer_progress(),
        }

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        # A restarted node may have promised a leader, before the crash, not to vote for
        # anyone else for one election timeout (the lease behind lease reads); it cannot
        # remember, so it keeps that promise from its start.  A fresh node promised
        # nothing.
        if self.term > 0:
            self.last_leader_contact = self.env.now()
        else:
            self.last_leader_contact = self.env.now() - self.opts.election_timeout
        self.env.record("role", role=self.role, term=self.term)
        self._reset_election_timer()

    def on_timer(self, key: str) -> None:
        if key == ELECTION_TIMER:
            self._on_election_timeout()
        elif key == HEARTBEAT_TIMER:
            if self.role == LEADER:
                self._broadcast_heartbeat()
                self.env.set_timer(HEARTBEAT_TIMER, self.opts.heartbeat_interval)
        elif key == CHECK_QUORUM_TIMER:
            if self.role == LEADER:
                self._check_quorum()
        elif key == TRANSFER_TIMER:
            self.transfer_target = None
        elif key == CACHE_TIMER:
            self._release_held_writes()

    def on_request(self, request: ClientRequest) -> None:
        is_read = request.op.is_read()
        if is_read:
            if "stale-read" in self.bugs:
                self._serve_local(request, self.id)  # the bug: answer from local state, wherever we are
                return
            if request.consistency == STALE_OK:
                # Asked for: any replica answers from what it has applied.
                self._serve_local(request, self.leader_id)
                return
        if self.role != LEADER:
            if self._may_forward():
                self._forward(request)
            elif is_read or not self._may_apply(request):
                self._reject(request, NOT_LEADER)
            return
        if self.transfer_target is not None:
            if is_read or not self._may_apply(request):
                self._reject(request, BUSY)
            return
        if is_read and (self.opts.read_mode != "log" or request.consistency is not None):
            self._read(request)
            return
        if self.cache is not None and self._hold_write(request, None):
            return
        self._append_new(COMMAND, request)
        if self.share_read_rounds:
            self.append_due = True
            return
        self._broadcast_append()
        self._maybe_commit()

    def on_durable(self, index: int) -> None:
        """The runtime made the log durable up to ``index``; the leader may now count
        itself for those entries."""
        index = min(index, self.log.last_index)
        if index <= self.durable_index:
            return
        self.durable_index = index
        if self.role == LEADER:
            self._maybe_commit()

    def on_batch_end(self) -> None:
        """Called by batching runtimes after each batch of inputs: start the heartbeat
        round the batch's ReadIndex reads wait for, and replicate the batch's writes."""
        log = self.log
        if log.unwritten:  # runs after every batch: no call when nothing is deferred
            log.flush()  # before the runtime's sync, and before anything is sent
        if self.append_due:
            self.append_due = False
            if self.role == LEADER:
                self._broadcast_append()
                self._maybe_commit()
        if self.read_round_due:
            self.read_round_due = False
            if self.role == LEADER:
                self._broadcast_heartbeat()

    def on_message(self, src: str, msg: Any) -> None:
        kind = type(msg)
        forwarding = self._forwarding.get(kind)
        if forwarding is not None:
            forwarding(src, msg)
            return
        term = getattr(msg, "term", None)
        if not isinstance(term, int):
            self.env.record("ignored", src=src, reason=f"not a raft message: {kind.__name__}")
            return
        if not 0 <= term <= self.term + STEP or term > MAX_TERM:
            # Terms grow by one per election: only a broken or hostile peer sends one far
            # above ours, and adopting one at the ceiling would leave no term to campaign
            # in (a cluster stuck for good: protocols/common/number_bounds.py).
            self.env.record("ignored", src=src, reason=out_of_reach("term", term, self.term, MAX_TERM))
            return
        if term > self.term:
            if kind is RequestVote:
                if not msg.transfer and self._in_leader_lease():
                    self.env.record("ignored", src=src, reason="vote request under leader lease")
                    return
                if not msg.pre_vote:
                    self._become_follower(term, None)
            elif kind is RequestVoteResponse and msg.pre_vote and msg.granted:
                pass  # a granted pre-vote carries the term we would campaign in
            else:
                leader = getattr(msg, "leader", None)
                self._become_follower(term, leader)
        elif term < self.term:
            self._answer_stale(src, msg)
            return

        handler = self._handlers.get(kind)
        if handler is None:
            self.env.record("ignored", src=src, reason=f"unknown message {kind.__name__}")
            return
        if kind in FOLLOWER_RESPONSES and self.progress:
            pr = self.progress.get(src)
            if pr is not None and pr.rejoining and pr.demoted_at:
                # Answered plainly after it saw its demotion: it has seen its promotion
                # committed and counts again.  (Before that, a plain answer can only be
                # an old one, sent before it lost its disk.)
                pr.rejoining = False
            handler(src, msg)
            if pr is not None and self.role == LEADER and (pr.rejoining or type(self.config) is RejoinConfig):
                self._rejoin_step(src, pr)
            return
        handler(src, msg)

    # ------------------------------------------------------------------ admin inputs
    def campaign(self) -> None:
        """Start an election now, as if the election timer fired (etcd's MsgHup)."""
        if self.role == LEADER or self.id not in self.config.voters or self.rejoining:
            return
        self._campaign(pre_vote=self.opts.pre_vote, transfer=False)

    def transfer_leadership(self, target: str) -> str | None:
        """Start handing leadership to ``target`` (§3.10); returns an error or None."""
        if self.role != LEADER:
            return NOT_LEADER
        if target == self.id:
            return "already-leader"
        if target not in self.config.voters:
            return f"{target} is not a voter"
        if self.progress[target].rejoining:
            return f"{target} is rejoining after losing its disk"
        self.transfer_target = target
        self.env.set_timer(TRANSFER_TIMER, self.opts.election_timeout)
        self.env.record("transfer", target=target)
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send_timeout_now(target)
        else:
            self._send_append(target, pr, allow_empty=True)
        return None

    def propose_config_change(self, change: str, node: str) -> str | None:
        """Single-server membership change (§4.1); returns an error or None."""
        if change not in CONFIG_CHANGES:
            return f"unknown change {change!r}; valid: {', '.join(CONFIG_CHANGES)}"
        if self.role != LEADER:
            return NOT_LEADER
        if self.config_index > self.commit_index:
            return "a configuration change is already in progress"
        if self.commit_index < self.term_start_index:
            return "leader has not committed an entry of its term yet"
        voters, learners = set(self.config.voters), set(self.config.learners)
        rejoining = rejoining_of(self.config)
        if change == "add-learner":
            if node in voters or node in learners:
                return f"{node} is already a member"
            learners.add(node)
        elif change == "add-voter":
            if node in voters:
                return f"{node} is already a voter"
            learners.discard(node)
            voters.add(node)
        else:
            if node not in voters and node not in learners:
                return f"{node} is not a member"
            voters.discard(node)
            learners.discard(node)
            if not voters:
                return "cannot remove the last voter"
        self._propose_config(make_config(voters, learners, rejoining))
        return None

    def _propose_config(self, config: ClusterConfig) -> None:
        self._append_new(CONFIG, config)
        self._broadcast_append()
        self._maybe_commit()

    # ------------------------------------------------------------------ elections
    def _on_election_timeout(self) -> None:
        if self.role == LEADER:
            return
        if self.id not in self.config.voters or self.rejoining:
            # Learners, removed servers and servers rejoining after a disk loss never
            # campaign.
            self._reset_election_timer()
            return
        self.campaign()

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self.role = PRE_CANDIDATE
            self.leader_id = None
            vote_term = self.term + 1
        else:
            self.term += 1
            self.voted_for = self.id
            self.role = CANDIDATE
            self.leader_id = None
            self._persist_hard_state()
            vote_term = self.term
        self.env.record("role", role=self.role, term=vote_term)
        if self.remote_reads:
            self._refuse_remote_reads()
        self._reset_election_timer()
        self.votes = {self.id: True}
        if self._tally() == "won":
            self._won_votes()
            return
        msg = RequestVote(
            term=vote_term,
            candidate=self.id,
            last_log_index=self.log.last_index,
            last_log_term=self.log.last_term,
            pre_vote=pre_vote,
            transfer=transfer,
        )
        for peer in self.config.voters:
            if peer != self.id:
                self.env.send(peer, msg)

    def handle_request_vote(self, src: str, m: RequestVote) -> None:
        """§3.4/§3.6.1: grant if we have not voted for another in this term and the
        candidate's log is at least as up to date; a pre-vote changes nothing."""
        if self.rejoining:
            can_vote = False  # it cannot know whom it voted for before it lost its disk
        elif m.pre_vote:
            can_vote = m.term > self.term
        elif "vote-twice" in self.bugs:
            can_vote = True
        else:
            can_vote = self.voted_for == m.candidate or (self.voted_for is None and self.leader_id is None)
        granted = can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if granted and not m.pre_vote:
            self.voted_for = m.candidate
            self._persist_hard_state()
            self._reset_election_timer()
        term = m.term if (m.pre_vote and granted) else self.term
        self.env.send(src, RequestVoteResponse(term=term, granted=granted, pre_vote=m.pre_vote))

    def handle_vote_response(self, src: str, m: RequestVoteResponse) -> None:
        if m.pre_vote:
            # A grant names the term we would campaign in; a rejection names the voter's.
            if self.role != PRE_CANDIDATE or (m.granted and m.term != self.term + 1):
                return
        elif self.role != CANDIDATE or m.term != self.term:
            return
        self.votes[src] = m.granted
        outcome = self._tally()
        if outcome == "won":
            self._won_votes()
        elif outcome == "lost":
            self._become_follower(self.term, None)

    def _tally(self) -> str:
        voters = self.config.voters
        granted = sum(1 for v in voters if self.votes.get(v) is True)
        rejected = sum(1 for v in voters if self.votes.get(v) is False)
        need = quorum_size(len(voters))
        if granted >= need:
            return "won"
        if rejected >= need:
            return "lost"
        return "pending"

    def _won_votes(self) -> None:
        if self.role == PRE_CANDIDATE:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _in_leader_lease(self) -> bool:
        if not self.opts.check_quorum:
            return False
        if self.role == LEADER:
            return True
        return self.env.now() - self.last_leader_contact < self.opts.election_timeout

    # ------------------------------------------------------------------ role changes
    def _become_follower(self, term: int, leader: str | None) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
            self._persist_hard_state()
        was = self.role
        self.role = FOLLOWER
        self.leader_id = leader
        if was == LEADER:
            self._drop_leader_state()
        self.env.record("role", role=FOLLOWER, term=self.term, leader=leader)
        if was != FOLLOWER or leader is not None:
            # Figure 3.1: a follower's timer restarts on hearing from a leader or on
            # granting a vote, not on a higher term. Otherwise candidates whose logs are
            # behind keep resetting the one server that can win (seed 70101, no pre-vote).
            self._reset_election_timer()

    def _become_leader(self) -> None:
        self._refuse_remote_reads()
        self.role = LEADER
        self.leader_id = self.id
        self.transfer_target = None
        self.env.cancel_timer(ELECTION_TIMER)
        self.env.record("role", role=LEADER, term=self.term)
        next_index = self.log.last_index + 1
        self.progress = {peer: Progress(next_index) for peer in self.config.members() if peer != self.id}
        self.rounds.reset()
        self.activity.reset()
        self.lease_until = 0.0
        if self.cache is not None:
            self.cache.start_term(self.env.now())
        self.term_start_index = next_index
        self._append_new(NOOP, None)
        self._broadcast_append()
        self.env.set_timer(HEARTBEAT_TIMER, self.opts.heartbeat_interval)
        self.env.set_timer(CHECK_QUORUM_TIMER, self.opts.election_timeout)
        self._maybe_commit()

    def _drop_leader_state(self) -> None:
        self.env.cancel_timer(HEARTBEAT_TIMER)
        self.env.cancel_timer(CHECK_QUORUM_TIMER)
        self.env.cancel_timer(TRANSFER_TIMER)
        if self.cache is not None:
            self.env.cancel_timer(CACHE_TIMER)
            for request, origin in self.cache.drain():  # never appended: a definite refusal
                self._refuse_held(request, origin, NOT_LEADER)
        self.progress = {}
        self.transfer_target = None
        self.lease_until = 0.0
        self.snapshot_sent_at = {}
        self.snapshot_readers = {}
        # Reads have no effect, so refusing them is a definite answer.  Pending writes
        # are left unanswered: they may still commit under the next leader.
        for request, origin in self.reads.drain():
            if origin is not None and request.op is _READ_INDEX_OP:
                self.env.send(
                    origin, ReadIndexResponse(term=0, client_id=request.client_id, seq=request.seq, index=0)
                )
            else:
                self._reject(request, NOT_LEADER)

    def _check_quorum(self) -> None:
        """§6.2: a leader that did not hear from a majority in an election timeout
        steps down, so clients find the real leader and lease reads stay safe."""
        self.env.set_timer(CHECK_QUORUM_TIMER, self.opts.election_timeout)
        if not self.opts.check_quorum:
            return
        rejoining = [peer for peer, pr in self.progress.items() if pr.rejoining]
        if not self.activity.check(self.id, self.config.voters, rejoining):
            self.env.record("step-down", reason="check-quorum")
            self._become_follower(self.term, None)

    def _reset_election_timer(self) -> None:
        timeout = self.opts.election_timeout
        self.env.set_timer(ELECTION_TIMER, timeout + self.env.rng.random() * timeout)

    # ------------------------------------------------------------------ replication
    def _append_new(self, kind: str, data: Any) -> LogEntry:
        entry = LogEntry(term=self.term, index=self.log.last_index + 1, kind=kind, data=data)
        self._append_entries((entry,))
        return entry

    def _append_entries(self, entries: Sequence[LogEntry]) -> None:
        self.log.append(entries)
        if self.observer is not None:
            self.observer.on_append(self, entries)
        for e in entries:
            if e.kind == CONFIG:
                self._apply_config(e.data, e.index)

    def _broadcast_append(self) -> None:
        for peer, pr in self.progress.items():
            self._send_append(peer, pr, allow_empty=False)

    def _send_append(self, peer: str, pr: Progress, *, allow_empty: bool) -> None:
        opts = self.opts
        while True:
            if pr.is_paused(opts.max_inflight_msgs, opts.max_inflight_bytes):
                return
            if pr.next <= self.log.offset:
                self._send_snapshot(peer, pr)
                return
            prev = pr.next - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:  # cannot happen: next <= last + 1 and next > offset
                pr.become_probe()
                return
            entries: tuple[LogEntry, ...] = ()
            nbytes = 0
            if pr.next <= self.log.last_index:
                entries, nbytes = self.log.slice_sized(pr.next, opts.max_batch_entries, opts.max_batch_bytes)
            if not entries and not (allow_empty or pr.state == PROBE):
                return
            self._replicate(
                peer,
                AppendEntries(
                    term=self.term,
                    leader=self.id,
                    prev_log_index=prev,
                    prev_log_term=prev_term,
                    entries=entries,
                    leader_commit=self.commit_index,
                ),
            )
            if entries:
                pr.sent(entries[-1].index, nbytes)
            elif pr.state == PROBE:
                pr.probe_sent = True
            # Pipelining: keep sending batches while in replicate state and not paused.
            if pr.state != REPLICATE or not entries:
                return
            allow_empty = False

    def _send_snapshot(self, peer: str, pr: Progress) -> None:
        snap = self.snapshot
        if snap is None:  # offset > 0 always comes with a snapshot
            raise RuntimeError("log compacted without a snapshot")
        reader = SnapshotReader(snap)
        # One byte past a chunk tells whether the whole encoding fits in one.
        if len(reader.read(0, self.opts.snapshot_chunk_bytes + 1)) <= self.opts.snapshot_chunk_bytes:
            self.snapshot_readers.pop(peer, None)
            self._replicate(peer, InstallSnapshot(term=self.term, leader=self.id, snapshot=snap))
        else:
            self.snapshot_readers[peer] = reader
            self._send_snapshot_chunk(peer, reader, 0)
        self.snapshot_sent_at[peer] = self.env.now()
        pr.become_snapshot(snap.last_index)

    def _send_snapshot_chunk(self, peer: str, reader: SnapshotReader, offset: int) -> bool:
        """Send the chunk at ``offset``; False if the snapshot ends there (nothing to send)."""
        size = self.opts.snapshot_chunk_bytes
        data = reader.read(offset, size + 1)
        if not data:
            return False
        self._replicate(
            peer,
            InstallSnapshot(
                term=self.term,
                leader=self.id,
                last_index=reader.last_index,
                offset=offset,
                chunk=data[:size],
                done=len(data) <= size,
            ),
        )
        return True

    def handle_append_entries(self, src: str, m: AppendEntries) -> None:
        self._follow(m.leader)
        log = self.log
        entries = m.entries
        prev = m.prev_log_index
        local_term: int | None
        if prev < self.commit_index:
            # Committed entries are in every current leader's log (§3.6.3), so they
            # match; skip them rather than re-check entries we may have compacted.
            skip = self.commit_index - prev
            if skip >= len(entries):
                done = AppendEntriesResponse(term=self.term, success=True, index=self.commit_index)
                self._respond(src, done)
                return
            entries = entries[skip:]
            prev = self.commit_index
            local_term = m_prev_term = 0
        else:
            local_term = log.term_at(prev)
            m_prev_term = m.prev_log_term
        if local_term != m_prev_term and not ("skip-log-check" in self.bugs and local_term is not None):
            if local_term is None:
                hint_term, hint_index = 0, log.last_index + 1
            else:
                hint_term = local_term
                hint_index = max(log.first_index_of_term(prev), self.commit_index + 1)
            self._respond(
                src,
                AppendEntriesResponse(
                    term=self.term,
                    success=False,
                    index=prev,
                    conflict_term=hint_term,
                    conflict_index=hint_index,
                ),
            )
            return
        for pos, e in enumerate(entries):
            if e.index > log.last_index:
                self._append_entries(entries[pos:])
                break
            if log.term_at(e.index) != e.term:
                self._truncate_from(e.index)
                self._append_entries(entries[pos:])
                break
        last_new = prev + len(entries)
        self._commit_to(min(m.leader_commit, last_new))
        self._respond(src, AppendEntriesResponse(term=self.term, success=True, index=last_new))

    def _truncate_from(self, index: int) -> None:
        if self.observer is not None:
            self.observer.on_truncate(self, index)
        self.log.truncate_from(index)
        self.config_history.truncate_from(index)
        self.durable_index = min(self.durable_index, index - 1)
        if self.config_index >= index:
            self._recompute_config()

    def handle_append_response(self, src: str, m: AppendEntriesResponse) -> None:
        pr = self.progress.get(src)
        if pr is None or self.role != LEADER:
            return
        self.activity.heard.add(src)
        if m.success:
            updated = pr.update(m.index)
            if updated or (pr.state == PROBE and pr.match == m.index):
                if pr.state == PROBE:
                    pr.become_replicate()
                elif pr.state == SNAPSHOT and pr.match >= pr.snapshot_index:
                    pr.become_probe()
                    self.snapshot_readers.pop(src, None)
                if updated:
                    self._maybe_commit()
                if src == self.transfer_target and pr.match == self.log.last_index:
                    self._send_timeout_now(src)
            self._send_append(src, pr, allow_empty=False)
            return
        # (conflict_index 0 is no hint at all: a stale-term answer, _answer_stale, that
        # a reordering delivered after we reached that term; never a log position.)
        if m.conflict_term == 0 and 0 < m.conflict_index <= pr.match <= m.index:
            # The follower's log ends below what it acknowledged: it lost synced entries
            # (a disk fault outside Raft's model) or this is a reordered old rejection.
            # Lowering match is always safe (it only delays commits), and it lets a
            # follower that lost data catch up instead of being probed at match+1 forever.
            self.env.record("follower-behind-match", peer=src, match=pr.match, last=m.conflict_index - 1)
            pr.match = m.conflict_index - 1
            pr.become_probe()
            pr.next = m.conflict_index
            self._send_append(src, pr, allow_empty=True)
            return
        # Rejection: ignore answers to messages older than what we know matches.
        if m.index < pr.match or (pr.state == REPLICATE and m.index <= pr.match):
            return
        if pr.state == PROBE and m.index != pr.next - 1:
            return
        if m.conflict_term:
            last_of_term = self.log.last_index_of_term(m.conflict_term)
            next_index = last_of_term + 1 if last_of_term is not None else m.conflict_index
        else:
            next_index = m.conflict_index
        pr.become_probe()
        pr.next = max(pr.match + 1, min(next_index, m.index))
        self._send_append(src, pr, allow_empty=True)

    def _maybe_commit(self) -> None:
        if self.role != LEADER:
            return
        # A rejoining follower's log counts for no commit: it forgot the terms it saw, so
        # it may accept entries from a leader a newer one has already replaced.
        match = {peer: pr.match for peer, pr in self.progress.items() if not pr.rejoining}
        durable_only = self.reports_durable and "count-self-before-durable" not in self.bugs
        match[self.id] = self.durable_index if durable_only else self.log.last_index
        n = committed_index(match, self.config.voters)
        if n <= self.commit_index:
            return
        # §3.6.2: only an entry of the current term is committed by counting replicas.
        if self.log.term_at(n) != self.term and "commit-previous-term" not in self.bugs:
            return
        # The leader is always the first to learn an entry is committed.
        self.env.record("learned", slot=n, first=self.commit_index + 1)
        self._commit_to(n)
        if self.reads.held and self.commit_index >= self.term_start_index:
            for request, origin in self.reads.take_held():
                if origin is not None and request.op is _READ_INDEX_OP:
                    self._confirm_read_index(request, origin)
                else:
                    self._read(request)

    def _commit_to(self, index: int) -> None:
        if index <= self.commit_index:
            return
        self.commit_index = index
        self.env.record("commit", index=index, term=self.term)
        if self.observer is not None:
            self.observer.on_commit(self, index)
        self._apply_committed()
        if self.rejoining:
            self._rejoin_progress()

    def _apply_committed(self) -> None:
        step_down = False
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            entry = self.log.entry(index)
            self.last_applied = index
            if entry.kind == COMMAND:
                result = replies.applied(self.sm, entry.data, self.env)
                if self.role == LEADER and entry.term == self.term:
                    self._answer(entry.data, result, index)
                elif self.forwarded:
                    request = entry.data
                    if self.forwarded.pop((request.client_id, request.seq), None) is not None:
                        self._answer(request, result, index)
            elif entry.kind == CONFIG and self.role == LEADER and index == self.config_index:
                step_down = self.id not in entry.data.voters
            if self.observer is not None:
                self.observer.on_apply(self, entry)
        if self.reads.awaiting_apply:
            self._serve_ready_reads()
        if self.follower_reads:
            self._serve_follower_reads()
        self._maybe_snapshot()
        if step_down:
            self.env.record("step-down", reason="removed from configuration")
            self._become_follower(self.term, None)

    def _answer(self, request: ClientRequest, result: Any, index: int) -> None:
        # A session refusal (nothing applied) is refused; as leader, leader_id is us.
        # Called for committed entries only, so the answer may leave early (see
        # early_answers).
        response = replies.command_answer(request, result, self.id, index)
        if self.early_answers:
            self.env.deliver_early(response)  # type: ignore[attr-defined]
        else:
            self.env.deliver(response)

    def _reject(self, request: ClientRequest, error: str) -> None:
        self.env.deliver(replies.refused(request, error, self.leader_id))

    # ------------------------------------------------------------------ follower serving
    # As etcd's members do, a follower accepts every request: it passes commands on to the
    # leader and answers them when it applies them, and serves linearizable reads itself
    # once it has applied a read index the leader confirmed (§6.4, "followers can serve
    # read-only queries").  Lease and stale reads need nothing of the leader's.
    def _may_forward(self) -> bool:
        return (
            self.opts.forward_requests
            and self.role == FOLLOWER
            and self.leader_id is not None
            and self.leader_id != self.id
        )

    def _forward(self, request: ClientRequest) -> None:
        key = (request.client_id, request.seq)
        leader = self.leader_id
        assert leader is not None
        if request.op.is_read() and (self.opts.read_mode != "log" or request.consistency is not None):
            _bounded_put(self.remote_reads, key, request, self.opts.max_forwarded)
            self.env.send(leader, ReadIndexRequest(term=0, client_id=request.client_id, seq=request.seq))
            return
        _bounded_put(self.forwarded, key, request, self.opts.max_forwarded)
        self.env.send(leader, ForwardRequest(term=0, request=request))

    def handle_forward_request(self, src: str, m: ForwardRequest) -> None:
        request = m.request
        error = NOT_LEADER if self.role != LEADER else BUSY if self.transfer_target is not None else None
        if error is not None:
            if self._may_apply(request):
                return  # it may be applied: no definite answer (_may_apply)
            # No second hop: a chain of stale hints could loop.
            refusal = replies.refused(request, error, self.leader_id)
            self.env.send(src, ForwardRefused(term=0, response=refusal))
            return
        if self.cache is not None and self._hold_write(request, src):
            return
        self._append_new(COMMAND, request)
        if self.share_read_rounds:
            self.append_due = True
            return
        self._broadcast_append()
        self._maybe_commit()

    def _may_apply(self, request: ClientRequest) -> bool:
        """Whether a refusal of the write ``request`` would be a lie (replies.may_apply):
        applied here, or a copy of it waits unapplied in our log."""
        log = self.log
        unapplied = self._unapplied.in_log(log, self.last_applied, log.last_term)
        return replies.may_apply(self.sm, request, unapplied)

    def handle_forward_refused(self, src: str, m: ForwardRefused) -> None:
        response = m.response
        if self.forwarded.pop((response.client_id, response.seq), None) is not None:
            self.env.deliver(response)

    def handle_read_index_request(self, src: str, m: ReadIndexRequest) -> None:
        if self.role != LEADER or self.transfer_target is not None:
            refusal = ReadIndexResponse(term=0, client_id=m.client_id, seq=m.seq, index=0)
            self.env.send(src, dataclasses.replace(refusal, leader=self.leader_id))
            return
        # The follower's read joins the leader's own: same stages, same rounds; its
        # origin says where the confirmed index goes (_serve_read).
        stub = ClientRequest(client_id=m.client_id, seq=m.seq, op=_READ_INDEX_OP)
        if self.commit_index < self.term_start_index:
            self.reads.hold(stub, src)
            return
        self._confirm_read_index(stub, src)

    def _confirm_read_index(self, stub: ClientRequest, origin: str) -> None:
        self.reads.wait_for_round(self.rounds.current + 1, self.commit_index, stub, origin)
        if self.share_read_rounds:
            self.read_round_due = True
        else:
            self._broadcast_heartbeat()

    def handle_read_index_response(self, src: str, m: ReadIndexResponse) -> None:
        request = self.remote_reads.pop((m.client_id, m.seq), None)
        if request is None:
            return  # answered or given up already
        if not m.index:
            self.env.deliver(replies.refused(request, NOT_LEADER, m.leader))
            return
        self.follower_reads.append((m.index, request))
        self._serve_follower_reads()

    def _serve_follower_reads(self) -> None:
        waiting = []
        for index, request in self.follower_reads:
            if index <= self.last_applied:
                self._serve_local(request, self.leader_id)
            else:
                waiting.append((index, request))
        self.follower_reads = waiting

    def _refuse_remote_reads(self) -> None:
        """Reads waiting for a leader's index when this node stops following it: a read
        has no effect, so refusing it is a definite answer."""
        waiting, self.remote_reads = self.remote_reads, {}
        for request in waiting.values():
            self.env.deliver(replies.refused(request, NOT_LEADER, None))

    # ------------------------------------------------------------------ heartbeats
    def _broadcast_heartbeat(self) -> None:
        self.read_round_due = False  # this round serves every read waiting for one
        round_ = self.rounds.start(self.env.now())
        for peer, pr in self.progress.items():
            commit = min(pr.match, self.commit_index)
            self._replicate(peer, Heartbeat(term=self.term, leader=self.id, commit=commit, context=round_))
        self._round_acknowledged()

    def handle_heartbeat(self, src: str, m: Heartbeat) -> None:
        self._follow(m.leader)
        self._commit_to(min(m.commit, self.log.last_index))
        self._respond(src, HeartbeatResponse(term=self.term, context=m.context))

    def handle_heartbeat_response(self, src: str, m: HeartbeatResponse) -> None:
        pr = self.progress.get(src)
        if pr is None or self.role != LEADER:
            return
        self.activity.heard.add(src)
        if not pr.rejoining and self.rounds.ack(src, m.context):
            self._round_acknowledged()
        if pr.match < self.log.last_index:
            # Recover from lost messages (etcd): resend a probe, or free one in-flight
            # slot so an append goes out and its answer resynchronises us.
            if pr.state == SNAPSHOT:
                sent = self.snapshot_sent_at.get(src, 0.0)
                if self.env.now() - sent < self.opts.election_timeout:
                    return
                pr.become_probe()
                self.snapshot_readers.pop(src, None)
            elif pr.state == REPLICATE and pr.inflight:
                pr.inflight_bytes -= pr.inflight.popleft()[1]
            pr.probe_sent = False
            self._send_append(src, pr, allow_empty=True)

    def _round_acknowledged(self) -> None:
        """Track the newest heartbeat round a majority answered: it confirms leadership
        for ReadIndex (§6.4) and starts the lease (§6.4.1)."""
        quorum_round = self.rounds.quorum_round(self.config.voters)
        if quorum_round <= 0:
            return
        sent_at = self.rounds.settle(quorum_round)
        if sent_at is not None and self.transfer_target is None:
            lease = self.opts.election_timeout * (1.0 - self.opts.clock_drift_bound)
            self.lease_until = max(self.lease_until, sent_at + lease)
        self.reads.confirm(quorum_round, self.last_applied, self._serve_read)

    # ------------------------------------------------------------------ reads
    def _read(self, request: ClientRequest) -> None:
        if self.commit_index < self.term_start_index:
            # §6.4 step 1: until an entry of its term commits, the leader's commit index
            # may lag the cluster's; wait for the no-op.
            self.reads.hold(request)
            return
        # The lease is only as good as the followers' promise not to vote while they hear
        # from a leader, which check-quorum makes (§6.4.1); without it, use ReadIndex.
        lease_ok = self.opts.check_quorum and (
            request.consistency == LEASE or (request.consistency is None and self.opts.read_mode == "lease")
        )
        if lease_ok and self.transfer_target is None and self.env.now() < self.lease_until:
            self.reads.wait_for_apply(self.commit_index, request)
            self._serve_ready_reads()
            return
        self.reads.wait_for_round(self.rounds.current + 1, self.commit_index, request)
        if self.share_read_rounds:
            self.read_round_due = True
        else:
            self._broadcast_heartbeat()

    def _serve_ready_reads(self) -> None:
        self.reads.release(self.last_applied, self._serve_read)

    def _serve_read(self, request: ClientRequest, origin: str | None = None) -> None:
        # As the ReadIndex callback, origin is None for our own reads and a follower's id
        # for one it asked the index for: that follower serves it once it applied as much.
        if origin is not None and request.op is _READ_INDEX_OP:
            index = self.last_applied  # >= the read index: the read waited for it here
            self.env.send(
                origin, ReadIndexResponse(term=0, client_id=request.client_id, seq=request.seq, index=index)
            )
            return
        self._serve_local(request, self.id)

    def _serve_local(self, request: ClientRequest, leader_hint: str | None) -> None:
        """Answer a read from this node's applied state."""
        response = replies.read_answer(self.sm, request, self.env, leader_hint, self.last_applied)
        if response.ok and request.consistency == CACHE and self.cache is not None and self.role == LEADER:
            response = dataclasses.replace(response, result=self._with_cache_lease(request, response.result))
        self.env.deliver(response)

    # ------------------------------------------------------------------ cache leases
    def _with_cache_lease(self, request: ClientRequest, result: Any) -> Any:
        cache = self.cache
        op = request.op
        if cache is None or op.kind != "get" or not isinstance(result, dict) or not cache.may_grant(op.key):
            return result
        lease = cache.grant(op.key, self.env.now())
        self.env.record("cache-lease", key=op.key, lease=lease)
        return {**result, "lease": lease}

    def _hold_write(self, request: ClientRequest, origin: str | None) -> bool:
        """Hold a write back while a cache lease covers its key (True: held or refused)."""
        cache = self.cache
        assert cache is not None
        now = self.env.now()
        if not cache.must_wait(request, now):
            return False
        if not cache.hold_back(request, origin):
            self._refuse_held(request, origin, BUSY)
            return True
        self.env.record("cache-wait", client=request.client_id, seq=request.seq)
        if len(cache) == 1:
            self._arm_cache_timer(now)
        return True

    def _arm_cache_timer(self, now: float) -> None:
        assert self.cache is not None
        at = self.cache.next_release(now)
        if at is not None:
            self.env.set_timer(CACHE_TIMER, max(0.0, at - now))

    def _release_held_writes(self) -> None:
        cache = self.cache
        if cache is None or self.role != LEADER:
            return
        now = self.env.now()
        released = cache.released(now)
        for request, _origin in released:
            self._append_new(COMMAND, request)
        if released:
            self._broadcast_append()
            self._maybe_commit()
        self._arm_cache_timer(now)

    def _refuse_held(self, request: ClientRequest, origin: str | None, error: str) -> None:
        if origin is None:
            self._reject(request, error)
        else:
            refusal = replies.refused(request, error, self.leader_id)
            self.env.send(origin, ForwardRefused(term=0, response=refusal))

    # ------------------------------------------------------------------ snapshots
    def _maybe_snapshot(self) -> None:
        snap_index = self.snapshot.last_index if self.snapshot else 0
        applied = self.last_applied
        if not snapshot_due(
            applied - snap_index, self.opts.snapshot_threshold, len(self.sm), applied, self._snapshot_turn
        ):
            return
        index = applied
        term = self.log.term_at(index)
        if term is None:
            return
        snap = Snapshot(
            last_index=index, last_term=term, config=self.config_history.at(index), data=self.sm.snapshot()
        )
        self.snapshot = snap
        self.env.storage.put(SNAPSHOT_KEY, snap)
        self.env.record("snapshot", index=index, term=term)
        keep_from = index - entries_kept(self.opts.snapshot_trailing, len(self.sm))
        if keep_from > self.log.offset:
            self.config_history.compact(keep_from)
            self.log.compact(keep_from)

    def _snapshot_turn(self) -> tuple[int, int]:
        # Voters and learners all write snapshots: they take turns (snapshot_policy).
        return stagger_turn(self.id, (*self.config.voters, *self.config.learners))

    def handle_install_snapshot(self, src: str, m: InstallSnapshot) -> None:
        self._follow(m.leader)
        snap = m.snapshot
        if snap is None:
            snap = self._receive_snapshot_chunk(src, m)
            if snap is None:
                return
        if snap.last_index <= self.commit_index:
            self._respond(src, InstallSnapshotResponse(term=self.term, index=self.commit_index))
            return
        try:  # first: a snapshot that does not restore (a peer's garbage) changes nothing
            self.sm.restore(snap.data)
        except ValueError as exc:
            self.env.record("ignored", src=src, reason=f"snapshot does not restore: {exc}")
            return
        if self.log.term_at(snap.last_index) == snap.last_term:
            self.log.compact(snap.last_index)  # §5.1: keep the entries that follow it
            self.config_history.rebase(snap.last_index, snap.config)
        else:
            self.log.reset(snap.last_index, snap.last_term)
            self.config_history.reset(snap.last_index, snap.config)
            # Entries up to the snapshot point are committed: counting them is harmless.
            self.durable_index = min(self.durable_index, snap.last_index)
        self.snapshot = snap
        self.env.storage.put(SNAPSHOT_KEY, snap)
        self.commit_index = self.last_applied = snap.last_index
        self._recompute_config()
        self.env.record("restore", index=snap.last_index, term=snap.last_term)
        if self.observer is not None:
            self.observer.on_restore(self, snap)
        self._rejoin_progress()
        self._respond(src, InstallSnapshotResponse(term=self.term, index=snap.last_index))

    def _receive_snapshot_chunk(self, src: str, m: InstallSnapshot) -> Snapshot | None:
        """Collect a chunked snapshot; the whole Snapshot once its last chunk is in."""
        if m.last_index <= self.commit_index:
            self.snapshot_incoming = None
            self._respond(src, InstallSnapshotResponse(term=self.term, index=self.commit_index))
            return None
        incoming = self.snapshot_incoming
        if m.offset == 0:
            incoming = self.snapshot_incoming = (m.last_index, bytearray(m.chunk))
        elif incoming is not None and incoming[0] == m.last_index and m.offset == len(incoming[1]):
            incoming[1].extend(m.chunk)
        else:
            # A lost or repeated chunk, or a newer snapshot: say where we are.
            have = len(incoming[1]) if incoming is not None and incoming[0] == m.last_index else 0
            self._ack_snapshot_chunk(src, have)
            return None
        if not m.done:
            self._ack_snapshot_chunk(src, len(incoming[1]))
            return None
        self.snapshot_incoming = None
        try:
            snap = decode(incoming[1])
        except CodecError:
            snap = None
        if not isinstance(snap, Snapshot) or snap.last_index != m.last_index:
            self.env.record("ignored", src=src, reason="chunked snapshot does not decode")
            self._ack_snapshot_chunk(src, 0)
            return None
        return snap

    def _ack_snapshot_chunk(self, src: str, next_offset: int) -> None:
        self._respond(
            src, InstallSnapshotResponse(term=self.term, index=self.commit_index, next_offset=next_offset)
        )

    def handle_snapshot_response(self, src: str, m: InstallSnapshotResponse) -> None:
        pr = self.progress.get(src)
        if pr is None or self.role != LEADER:
            return
        self.activity.heard.add(src)
        if m.next_offset >= 0:
            # A chunk acknowledged: send the next one of the snapshot still in flight.
            reader = self.snapshot_readers.get(src)
            if (
                pr.state == SNAPSHOT
                and reader is not None
                and reader.last_index == pr.snapshot_index
                and self._send_snapshot_chunk(src, reader, m.next_offset)
            ):
                self.snapshot_sent_at[src] = self.env.now()
            return
        if pr.update(m.index):
            self._maybe_commit()
        if pr.state == SNAPSHOT and pr.match >= pr.snapshot_index:
            pr.become_probe()
        if pr.state != SNAPSHOT:
            self.snapshot_readers.pop(src, None)  # the transfer is over
        self._send_append(src, pr, allow_empty=True)

    # ------------------------------------------------------------------ transfer
    def _send_timeout_now(self, target: str) -> None:
        # The lease cannot outlive the transfer: the target ignores vote leases.
        self.lease_until = 0.0
        self.env.send(target, TimeoutNow(term=self.term, leader=self.id))

    def handle_timeout_now(self, src: str, m: TimeoutNow) -> None:
        if self.id not in self.config.voters or self.role == LEADER or self.rejoining:
            return
        self.env.record("transfer-received", src=src)
        self._campaign(pre_vote=False, transfer=True)

    # ------------------------------------------------------------------ membership
    def _apply_config(self, config: ClusterConfig, index: int) -> None:
        self.config_history.record(index, config)
        self.config, self.config_index = config, index
        self.env.record("config", index=index, voters=list(config.voters), learners=list(config.learners))
        if self.role != LEADER:
            return
        members = set(config.members())
        for peer in sorted(members):
            if peer != self.id and peer not in self.progress:
                self.progress[peer] = Progress(self.log.last_index + 1)
        for peer in [p for p in self.progress if p not in members]:
            del self.progress[peer]
            self.rounds.forget(peer)
            self.activity.forget(peer)
            self.snapshot_readers.pop(peer, None)

    def _recompute_config(self) -> None:
        self.config_index, self.config = self.config_history.latest()

    # ------------------------------------------------------------------ disk loss
    def _respond(self, leader: str, msg: Any) -> None:
        """A follower's answer to its leader; wrapped while we rejoin."""
        if self.rejoining:
            if not self._incarnation_saved:
                self.env.storage.put(REJOIN_INCARNATION_KEY, self.incarnation)
                self._incarnation_saved = True
            msg = Rejoining(
                term=self.term, response=msg, demoted_at=self.demoted_at, incarnation=self.incarnation
            )
        self.env.send(leader, msg)

    def _rejoin_progress(self) -> None:
        """Follower side: note the committed demotion, then the committed promotion."""
        if not self.rejoining:
            return
        config = self.config_history.at(self.commit_index)
        if self.id not in config.voters:
            # Only a demotion of this disk loss: one of an earlier loss (caught up on with
            # the log, its promotion after it) would readmit us unasked, a voter again
            # before the leader demoted us, to count as up while we are not.
            mine = isinstance(config, RejoinConfig) and config.demotes(self.id, self.incarnation)
            if not self.demoted_at and mine:
                self.demoted_at = self.commit_index
                self.env.storage.put(REJOIN_DEMOTED_KEY, self.demoted_at)
                self.env.record("rejoin-demoted", index=self.commit_index)
            return
        if not self.demoted_at or self.commit_index <= self.demoted_at:
            return  # a configuration from before the demotion
        # A voter again by an entry after the demotion: readmitted.  The vote we may
        # have cast before the disk loss is forgotten, so give up our vote in this term
        # (which is at least the promoting entry's term; earlier terms are refused by
        # the term rule).  Persisted with the key's clearing, in one batch.
        self.rejoining = False
        self.demoted_at = 0
        if self.voted_for is None:
            self.voted_for = self.id
            self._persist_hard_state()
        self.env.storage.put(REJOIN_DEMOTED_KEY, 0)
        self.env.storage.put(REJOIN_INCARNATION_KEY, 0)
        self.env.storage.put(REJOINING_KEY, False)
        self.env.record("rejoined", index=self.commit_index, term=self.term)

    def _rejoin_step(self, peer: str, pr: Progress) -> None:
        """Leader side: demote a rejoining voter, promote a caught-up rejoiner."""
        if self.config_index > self.commit_index or self.commit_index < self.term_start_index:
            return  # one change at a time, after an entry of our term (§4.1)
        if self.transfer_target is not None:
            return
        config = self.config
        voters, learners = set(config.voters), set(config.learners)
        rejoining = rejoining_of(config)
        if peer in voters:
            if not pr.rejoining or pr.demoted_at:
                return  # healthy, or promoted and about to learn it
            voters.discard(peer)
            learners.add(peer)
            rejoining[peer] = pr.incarnation
            self.env.record("rejoin-demote", node=peer)
        elif peer in rejoining:
            if pr.rejoining and pr.incarnation and rejoining[peer] not in (0, pr.incarnation):
                # It lost its disk again while demoted: this loss needs a demotion naming it.
                rejoining[peer] = pr.incarnation
                self.env.record("rejoin-demote", node=peer)
            elif pr.match < self.commit_index or (pr.rejoining and not pr.demoted_at):
                return  # not caught up, or has not yet seen its demotion committed
            else:
                del rejoining[peer]
                learners.discard(peer)
                voters.add(peer)
                self.env.record("rejoin-promote", node=peer, match=pr.match)
        else:
            return
        self._propose_config(make_config(voters, learners, rejoining))

    def handle_rejoining(self, src: str, m: Rejoining) -> None:
        inner = m.response
        kind = type(inner)
        if kind not in FOLLOWER_RESPONSES or inner.term != m.term:
            self.env.record("ignored", src=src, reason="malformed Rejoining")
            return
        pr = self.progress.get(src)
        if pr is not None:
            pr.rejoining = True
            if m.incarnation != pr.incarnation:
                pr.incarnation, pr.demoted_at = m.incarnation, m.demoted_at
            else:  # a late answer must not undo a demotion already reported
                pr.demoted_at = max(pr.demoted_at, m.demoted_at)
        self._handlers[kind](src, inner)
        if pr is not None and self.role == LEADER:
            self._rejoin_step(src, pr)

    # ------------------------------------------------------------------ helpers
    def _follow(self, leader: str) -> None:
        """A message from the leader of our term: follow it and restart the timer."""
        if self.role != FOLLOWER or self.leader_id != leader:
            if self.role == LEADER:
                # Two leaders in one term: only possible with a protocol bug; keep going
                # so the election-safety invariant can report it.
                self.env.record("anomaly", reason=f"leader {leader} in my term {self.term}")
                return
            self.role = FOLLOWER
            self.leader_id = leader
            self.env.record("role", role=FOLLOWER, term=self.term, leader=leader)
        self.last_leader_contact = self.env.now()
        self._reset_election_timer()

    def _answer_stale(self, src: str, msg: Any) -> None:
        """§3.3: reply to a stale sender with our term so it steps down."""
        kind = type(msg)
        if kind is AppendEntries or kind is Heartbeat or kind is InstallSnapshot:
            self.env.send(src, AppendEntriesResponse(term=self.term, success=False, index=0))
        elif kind is RequestVote:
            self.env.send(src, RequestVoteResponse(term=self.term, granted=False, pre_vote=msg.pre_vote))

    def _replicate(self, peer: str, msg: Any) -> None:
        """The leader's replication traffic: it depends on no unsynced write of ours
        (entries count for us only once durable; our term was durable before we won)."""
        if self.early_replication:
            self.env.send_early(peer, msg)  # type: ignore[attr-defined]
        else:
            self.env.send(peer, msg)

    def _persist_hard_state(self) -> None:
        self.env.storage.put(HARD_STATE_KEY, HardState(term=self.term, voted_for=self.voted_for))


def _bounded_put(
    table: dict[tuple[str, int], ClientRequest], key: tuple[str, int], request: ClientRequest, limit: int
) -> None:
    """``table[key] = request``, forgetting the oldest entry beyond ``limit`` (its client
    times out, as when a message is lost)."""
    table.pop(key, None)
    table[key] = request
    if len(table) > limit:
        del table[next(iter(table))]
