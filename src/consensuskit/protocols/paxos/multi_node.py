"""A Multi-Paxos server in the Chubby style, as a deterministic, I/O-free state machine.

Every node is acceptor and learner; the one that wins phase 1 is the leader (the only
proposer).  Seed 001 describes Chubby's choices; the rules below fill in the details
the seed leaves open.

Rules this module owns:
  * pre-vote (``pre_vote``, on for real processes): a node whose election timer fires
    first asks the members ``PrePrepare`` -- "would you promise me a ballot now?" --
    changing and writing nothing; a node refuses while it leads or heard from a leader
    within the election timeout.  Only with a majority's grants does it run phase 1, so a
    node that was cut off or paused (its rounds climbing alone) rejoins without
    deposing a leader that a majority still hears (Raft §9.6's rule, for phase 1);
  * election: a candidate runs phase 1 once for every slot from its first unexecuted
    one, with ballot ``Ballot(round, node)`` above every round it has seen; acceptors
    promise a ballot above their promise (persisted before the promise leaves) and
    report their votes, the values they know were chosen, and a snapshot when they
    compacted slots the candidate lacks;
  * recovery: for each reported slot the new leader re-proposes the value voted in the
    highest ballot (or the chosen value), fills gaps with no-ops, and only then starts
    new slots; slots execute strictly in order on every node;
  * steady state: one Accept/Accepted round per command (2 message delays); a slot is
    chosen when a majority of its configuration voted for it in the leader's ballot;
    the leader's executed prefix rides on Accept and Heartbeat, and a follower whose
    vote at such a slot carries the same ballot knows the chosen value;
  * leases (Chubby): each heartbeat round acknowledged by a majority gives the leader a
    lease of ``lease_duration * (1 - drift)`` from the round's send time; an acceptor's
    grant lasts ``lease_duration`` from the heartbeat's arrival.  Promises report the
    grant still running, and a new leader waits (scaled by the drift bound) until it has
    run out before it decides anything or serves a read: a value chosen meanwhile would
    make the old leader's lease reads stale.  A restarted acceptor cannot remember its
    grant and reports one full lease;
  * reads: served by the leader from its state under its lease once every slot it knows
    chosen is executed; without a lease (or on request) after a heartbeat round that a
    majority acknowledged; ``stale`` reads anywhere;
  * client commands reaching a follower are forwarded to the leader, whose answer comes
    back through the follower; a node that knows no leader campaigns;
  * membership: a configuration decided at slot s governs slots s + alpha on, so a
    leader never has more than alpha slots in flight past its executed prefix;
  * catch-up by chosen values (``Learn``) or, behind the compaction point, a snapshot;
  * disk loss (Paxos Made Live §5.1; README): an acceptor built on a storage holding the
    platform's REJOINING_KEY sends no Promise and no Accepted, acknowledges heartbeats
    only for catch-up (round 0: no lease, no quorum read) and never campaigns.  Caught
    up, it asks the leader (``RejoinRequest``) for a phase 1 started after the request;
    leading it, the leader answers ``Readmit``: every value chosen before lies at a slot
    up to its recovery end.  Once the acceptor executed through that slot, it stores
    its state in a snapshot (the values may stand in for votes it lost), promises the
    highest ballot prepared since its restart and clears the key.
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Iterable, Sequence
from typing import Any

from consensuskit.core.capabilities import LogPosition, NodeStatus
from consensuskit.core.capabilities import Membership as MembershipView
from consensuskit.core.client import (
    BUSY,
    CACHE,
    LEASE,
    LINEARIZABLE,
    NOT_LEADER,
    STALE_OK,
    ClientRequest,
    ClientResponse,
)
from consensuskit.core.env import Env
from consensuskit.core.quorum import quorum_size
from consensuskit.core.service import StateMachine
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.common import replies
from consensuskit.protocols.common.batching import batch_length, entry_size
from consensuskit.protocols.common.check_quorum import CheckQuorum
from consensuskit.protocols.common.config_history import ConfigHistory
from consensuskit.protocols.common.heartbeat_rounds import HeartbeatRounds
from consensuskit.protocols.common.number_bounds import CEILING, out_of_reach, within_reach
from consensuskit.protocols.common.read_index import ReadIndex
from consensuskit.protocols.common.snapshot_policy import entries_kept, snapshot_due, stagger_turn
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot, node_numbers
from consensuskit.protocols.paxos.multi_log import AcceptorLog
from consensuskit.protocols.paxos.multi_messages import (
    BATCH,
    COMMAND,
    CONFIG,
    NOOP_ENTRY,
    Accept,
    Accepted,
    AcceptedValue,
    Entry,
    Forward,
    ForwardReply,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Learn,
    Membership,
    Nack,
    Prepare,
    PrePrepare,
    PrePromise,
    Promise,
    Readmit,
    RejoinRequest,
    SlotValue,
    Snapshot,
)
from consensuskit.protocols.paxos.multi_options import MultiPaxosOptions
from consensuskit.statemachines import default_state_machine

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"

ELECTION_TIMER = "election"
HEARTBEAT_TIMER = "heartbeat"
CHECK_QUORUM_TIMER = "check-quorum"
LEASE_WAIT_TIMER = "lease-wait"

PROMISED_KEY = "multipaxos/promised"
SNAPSHOT_KEY = "multipaxos/snapshot"

CONFIG_CHANGES = ("add", "remove")
# A ballot round beyond this comes only from a broken or hostile peer; such messages are
# ignored (see on_message).
MAX_ROUND = CEILING
# The server's names for membership changes (docs/server.md); "add-voter" means "add".
# There are no learners: every member is an acceptor.
SERVER_CONFIG_CHANGES = ("add-voter", "remove")
UNKNOWN_HOLDER = ""  # lease_holder of a restarted acceptor: it may have granted anyone

Config = tuple[int, tuple[str, ...]]  # (first slot it governs, members)


class MultiPaxosNode:
    """Capabilities (core/capabilities.py): HasLeader, ReplicatedLog, MembershipChange,
    LeaseReads; no LeaderTransfer."""

    # Membership changes the server may ask for (docs/server.md).
    config_changes = SERVER_CONFIG_CHANGES

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: MultiPaxosOptions | None = None,
        *,
        state_machine: StateMachine | None = None,
    ) -> None:
        self.id = node_id
        self.env = env
        self.opts = options or MultiPaxosOptions()
        self.bugs = self.opts.bugs
        # The service's state machine (the protocol serves any log service).
        self.sm: Any = state_machine if state_machine is not None else default_state_machine()
        # Set by checkers to watch votes, decisions and executions; never used for control.
        self.observer: Any = None
        universe = list(members)
        for extra in self.opts.members:
            if extra not in universe:
                universe.append(extra)
        if node_id not in universe:
            universe.append(node_id)
        self.numbers = node_numbers(universe)
        self.ids_by_number = {n: i for i, n in self.numbers.items()}
        self.number = self.numbers[node_id]

        storage = env.storage
        # Lost its disk (the platform's key): a silent acceptor until readmitted (see
        # _rejoin_check).  The bug knob ignores the key.
        self.rejoining = bool(storage.get(REJOINING_KEY)) and "promise-after-wipe" not in self.bugs
        # While rejoining: names our RejoinRequests, so that only a Readmit answering this
        # incarnation's request counts (one for an earlier one, delayed, may predate a
        # second disk loss); the highest ballot prepared since the restart (the promise
        # we adopt); when we last asked; the Readmit we hold (ballot, through).
        self.rejoin_nonce = env.rng.getrandbits(31) + 1 if self.rejoining else 0
        self.rejoin_ballot = ZERO_BALLOT
        self.rejoin_asked_at = float("-inf")
        self.readmit: tuple[Ballot, int] | None = None
        self.promised: Ballot = storage.get(PROMISED_KEY) or ZERO_BALLOT
        self.log = AcceptorLog(storage)
        self.snapshot: Snapshot | None = storage.get(SNAPSHOT_KEY)
        snap = self.snapshot
        if snap is not None:
            self.sm.restore(snap.data)
            self.config_history = ConfigHistory.of((first, tuple(m)) for first, m in snap.configs)
        else:
            initial = tuple(sorted(self.opts.members or members))
            self.config_history = ConfigHistory(1, initial)
        # Invariant: log.offset <= executed; every slot <= executed is chosen and applied.
        self.executed = snap.last_slot if snap else 0
        # Commands (a slot counts its batch, at least 1) executed since the last snapshot:
        # what the snapshot policy counts.  Counting slots let a slot batching 64 commands
        # keep 64 times the log of an unbatched one; under load a leader held some 64,000
        # commands between snapshots and paused ~50 ms in each full garbage collection.
        self.executed_since_snapshot = 0
        # Chosen values above the compaction point (kept for catch-up), incl. executed ones.
        self.chosen: dict[int, Entry] = {}
        # The highest slot ever put in ``chosen``: a read's target is max(executed, this),
        # without a pass over ``chosen`` (up to a snapshot's worth of slots) per read.  A
        # slot leaves ``chosen`` only at or below ``executed``, so the two agree.
        self.top_chosen = 0
        # Slot that decided the newest configuration executed since start (0: none).
        self.config_slot = 0
        self.max_round = max([self.promised.round, *(v.ballot.round for v in self.log.votes.values())])

        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.ballot: Ballot = ZERO_BALLOT  # ours, as candidate or leader
        # Pre-vote: when a leader's message last arrived (our clock), the round we asked
        # about as pre-candidate, and who granted it.
        self.leader_heard_at = float("-inf")
        self.pre_round = 0
        self.pre_votes: set[str] = set()
        # Acceptor side of the lease: whom we last granted one, until when (our clock).
        self.grant_holder: str | None = None
        self.grant_expiry = 0.0
        # Candidate and leader state.
        self.promises: dict[str, Promise] = {}
        self.prepare_from = 0
        self.best_votes: dict[int, AcceptedValue] = {}
        self.wait_until = 0.0
        self.queue: list[tuple[Entry, str]] = []  # (entry, origin) not yet given a slot
        # Leader state.
        self.next_slot = 0
        self.to_recover: set[int] = set()
        self.recovery_end = 0
        self.proposals: dict[int, Entry] = {}  # proposed in our ballot, not yet chosen
        self.acks: dict[int, set[str]] = {}
        self.proposed_at: dict[int, float] = {}
        # Command -> the nodes that answer it (each one that handed it to us, in order).
        self.waiting: dict[tuple[str, int], list[str]] = {}
        self.ready = False
        self.rounds = HeartbeatRounds(node_id)
        self.round_commit: dict[int, int] = {}  # round -> commit it carried (recent rounds)
        self.lease_until = 0.0
        self.peer_executed: dict[str, int] = {}
        self.catchup_sent: dict[str, tuple[int, float]] = {}
        self.activity = CheckQuorum()
        self.prepare_sent: set[str] = set()
        # Quorum and lease reads (origin: the node the answer goes back through): held
        # until ready, then waiting for a heartbeat round, then for execution.
        self.reads = ReadIndex()
        # A runtime that calls on_batch_end() after each batch of inputs says so; then the
        # quorum reads of a batch share one heartbeat round, started at the batch's end,
        # instead of one round each (the simulator's unbatched runtime: one round per read).
        self.share_read_rounds = bool(getattr(env, "calls_batch_end", False))
        # Likewise the commands of a batch go out in one Accept, proposed at its end.
        self.pump_due = False
        # Parallel leader writes (as Raft's §10.2.1, raft/node.py): a runtime that reports
        # which log prefix is durable (``on_durable``) and offers ``send_early`` lets the
        # leader's Accepts leave before its own vote is synced, because the leader then
        # counts its vote toward a slot's quorum only once it is durable: a crash during
        # the sync must not leave a slot "chosen" by votes a majority does not hold.
        # Elsewhere every Accept waits for the barrier and the vote counts at once (the
        # two are equivalent there).  The bug knob counts the unsynced vote.
        self.reports_durable = bool(getattr(env, "reports_durable", False))
        self.early_replication = self.reports_durable and hasattr(env, "send_early")
        self.early_answers = hasattr(env, "deliver_early")  # see _reply
        self.count_own_vote_at_once = not self.reports_durable or "count-self-before-durable" in self.bugs
        # Invariant (when reports_durable): every vote at a slot <= durable_slot is on disk.
        self.durable_slot = self.log.last
        # Leader: slots of our ballot whose own vote counts once durable_slot reaches them.
        self.unsynced_votes: set[int] = set()
        # Leader: rejoining acceptors whose RejoinRequest started our phase 1 -> its nonce
        # (a previous release's request has none: it is answered with a no-op instead).
        self.readmit_pending: dict[str, int] = {}
        self.noop_on_lead = False
        self._handlers: dict[type, Any] = {
            Prepare: self.handle_prepare,
            PrePrepare: self.handle_pre_prepare,
            PrePromise: self.handle_pre_promise,
            Promise: self.handle_promise,
            Nack: self.handle_nack,
            Accept: self.handle_accept,
            Accepted: self.handle_accepted,
            Heartbeat: self.handle_heartbeat,
            HeartbeatAck: self.handle_heartbeat_ack,
            Learn: self.handle_learn,
            InstallSnapshot: self.handle_install_snapshot,
            Forward: self.handle_forward,
            ForwardReply: self.handle_forward_reply,
            RejoinRequest: self.handle_rejoin_request,
            Readmit: self.handle_readmit,
        }

    # ------------------------------------------------------------------ inspection
    def is_leader(self) -> bool:
        return self.role == LEADER

    def members(self) -> tuple[str, ...]:
        """Every node of a configuration in force from our next slot on."""
        return self._members_from(self.executed + 1)

    def config_at(self, slot: int) -> tuple[str, ...]:
        """Members governing ``slot``; known for ``slot <= executed + alpha``."""
        return self.config_history.at(slot)

    @property
    def configs(self) -> list[Config]:
        """Every configuration known, as (first slot it governs, members), oldest first."""
        return self.config_history.entries

    def serving_lease_reads(self) -> bool:
        """True while this node would answer a lease read from its own state now."""
        return self.role == LEADER and self.ready and self.env.now() < self.lease_until

    def current_leader(self) -> str | None:
        return self.leader_id

    def _shown_ballot(self) -> Ballot:
        """Our own ballot while we campaign or lead, else the one we promised."""
        return self.ballot if self.role in (CANDIDATE, LEADER) else self.promised

    def node_status(self) -> NodeStatus:
        ballot = self._shown_ballot()
        return NodeStatus(
            id=self.id,
            role=self.role,
            leader=self.leader_id,
            generation_name="round",
            generation=ballot.round,
            details={
                "term": ballot.round,  # the name the server's status used before
                "ballot": str(ballot),
                "promised": str(self.promised),
                "executed": self.executed,
                "last_slot": self.log.last,
                "snapshot_slot": self.snapshot.last_slot if self.snapshot else 0,
                "members": list(self.members()),
                "ready": self.ready,
                "rejoining": self.rejoining,
                "peers": {p: {"executed": e, "match": e} for p, e in sorted(self.peer_executed.items())},
            },
        )

    def log_position(self) -> LogPosition:
        # Slots are executed as soon as they are known chosen in order: commit == applied.
        return LogPosition(
            commit=self.executed,
            applied=self.executed,
            last_index=self.log.last,
            snapshot_index=self.snapshot.last_slot if self.snapshot else 0,
        )

    def membership(self) -> MembershipView:
        return MembershipView(
            # The newest decided configuration (in force alpha slots after config_index).
            voters=tuple(self.configs[-1][1]),
            learners=(),
            config_index=self.config_slot,
            # Proposed and not yet in force (the capability's meaning): an operator's next
            # change would be refused until then.
            config_pending=self._config_change_pending(),
        )

    def lease_remaining(self) -> float:
        return max(0.0, self.lease_until - self.env.now()) if self.role == LEADER else 0.0

    def status(self) -> dict[str, Any]:
        """What the node says about itself (the simulator's and tests' view; the server
        reads ``node_status()`` and the capabilities instead)."""
        ballot = self._shown_ballot()
        return {
            "id": self.id,
            "role": self.role,
            "term": ballot.round,
            "ballot": str(ballot),
            "promised": str(self.promised),
            "leader": self.leader_id,
            "executed": self.executed,
            "commit": self.executed,
            "applied": self.executed,
            "last_slot": self.log.last,
            "last_index": self.log.last,
            "snapshot_slot": self.snapshot.last_slot if self.snapshot else 0,
            "snapshot_index": self.snapshot.last_slot if self.snapshot else 0,
            "members": list(self.members()),
            # The newest decided configuration (in force alpha slots after config_index).
            "voters": list(self.config_history.latest()[1]),
            "learners": [],
            "config_index": self.config_slot,
            "config_pending": self._config_change_pending(),
            "ready": self.ready,
            "rejoining": self.rejoining,
            "lease_remaining": max(0.0, self.lease_until - self.env.now()) if self.role == LEADER else 0.0,
            "peers": {p: {"executed": e, "match": e} for p, e in sorted(self.peer_executed.items())},
        }

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        if self.promised != ZERO_BALLOT or self.rejoining:
            # We may have granted a lease just before a crash and cannot remember to whom.
            self.grant_holder = UNKNOWN_HOLDER
            self.grant_expiry = self.env.now() + self.opts.lease_duration
        self.env.record("role", role=self.role, term=str(self.promised))
        self._reset_election_timer()

    def on_timer(self, key: str) -> None:
        if key == ELECTION_TIMER:
            self._on_election_timeout()
        elif key == HEARTBEAT_TIMER:
            if self.role == LEADER:
                self._broadcast_heartbeat()
                self._resend_proposals()
                self._resend_prepares()
                self.env.set_timer(HEARTBEAT_TIMER, self.opts.heartbeat_interval)
        elif key == CHECK_QUORUM_TIMER:
            if self.role == LEADER:
                self._check_quorum()
        elif key == LEASE_WAIT_TIMER and self.role == LEADER:
            # The timer ran for the wait on our clock; rounding must not re-open it.
            self.wait_until = min(self.wait_until, self.env.now())
            self.env.record("lease-wait-over")
            self._pump()

    def on_request(self, request: ClientRequest) -> None:
        self._handle_request(request, self.id)

    def on_durable(self, slot: int) -> None:
        """The runtime made the log durable up to ``slot`` (log position == slot): the
        leader now counts its own votes there."""
        slot = min(slot, self.log.last)
        if slot <= self.durable_slot:
            return
        self.durable_slot = slot
        if self.role != LEADER or not self.unsynced_votes:
            return
        for s in sorted(s for s in self.unsynced_votes if s <= slot):
            self.unsynced_votes.discard(s)
            acks = self.acks.get(s)
            if acks is not None:
                acks.add(self.id)
                self._maybe_chosen(s)
        self._execute()
        self._pump()

    def on_batch_end(self) -> None:
        """Called by batching runtimes after each batch: propose the batch's commands in
        one Accept, and start the heartbeat round the batch's quorum reads wait for,
        unless a round sent since they arrived serves."""
        if self.pump_due:
            self.pump_due = False
            self._pump()
        if self.role == LEADER and self.reads.round_due(self.rounds.current):
            self._broadcast_heartbeat()

    def on_message(self, src: str, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.env.record("ignored", src=src, reason=f"unknown message {type(msg).__name__}")
            return
        for field in ("ballot", "promised"):
            ballot = getattr(msg, field, None)
            if isinstance(ballot, Ballot) and not within_reach(ballot.round, self.max_round, MAX_ROUND):
                # Rounds grow by one per phase 1: only a broken or hostile peer sends one
                # far above ours, and promising one at the ceiling would leave no higher
                # round to lead with (protocols/common/number_bounds.py).
                reason = out_of_reach(f"{field} round", ballot.round, self.max_round, MAX_ROUND)
                self.env.record("ignored", src=src, reason=reason)
                return
        handler(src, msg)

    # ------------------------------------------------------------------ admin inputs
    def campaign(self) -> None:
        """Campaign now (the pre-vote first, when on), as if the election timer fired."""
        if self.role == LEADER or not self._may_campaign():
            return
        self._campaign()

    def propose_config_change(self, change: str, node: str) -> str | None:
        """Add or remove one member through the log; effective alpha slots after the
        slot that decides it.  Returns an error or None."""
        if change == "add-voter":
            change = "add"
        if change not in CONFIG_CHANGES:
            return f"unknown change {change!r}; valid: {', '.join(CONFIG_CHANGES)}"
        if self.role != LEADER:
            return NOT_LEADER
        if self._config_change_pending():
            return "a configuration change is already in progress"
        members = set(self.config_history.latest()[1])
        if change == "add":
            if node in members:
                return f"{node} is already a member"
            members.add(node)
        else:
            if node not in members:
                return f"{node} is not a member"
            members.discard(node)
            if not members:
                return "cannot remove the last member"
        if node not in self.numbers and not self._admit(node):
            return f"{node} is not a known node"
        entry = Entry(kind=CONFIG, data=Membership(members=tuple(sorted(members))))
        self.queue.append((entry, self.id))
        self._pump()
        return None

    # ------------------------------------------------------------------ client commands
    def _handle_request(self, request: ClientRequest, origin: str) -> None:
        op = request.op
        if op.is_read() and request.consistency == STALE_OK:
            self._answer_read(request, origin)
            return
        if self.role == LEADER:
            if op.is_read() and self._read_mode(request) != "log":
                self._read(request, origin)
            else:
                self._submit_command(request, origin)
            return
        if self.role in (PRE_CANDIDATE, CANDIDATE):
            self._hold(request, origin)
            return
        if self.leader_id is not None and self.leader_id != self.id and origin == self.id:
            self.env.send(self.leader_id, Forward(request=request, origin=self.id))
            return
        if origin == self.id and self.opts.campaign_on_request and self._may_campaign():
            self._campaign()
            if self.role in (PRE_CANDIDATE, CANDIDATE, LEADER):
                self._handle_request(request, origin)
                return
        self._refuse(origin, request, NOT_LEADER)

    def _hold(self, request: ClientRequest, origin: str) -> None:
        if len(self.queue) >= self.opts.max_queue:
            self._reply(origin, self._rejection(request, BUSY))
            return
        self.queue.append((Entry(kind=COMMAND, data=request), origin))

    def _submit_command(self, request: ClientRequest, origin: str) -> None:
        key = (request.client_id, request.seq)
        origins = self.waiting.get(key)
        if origins is not None:  # a retry of a command already in flight
            if origin not in origins:
                origins.append(origin)  # its client may wait there too: answer both
            return
        if len(self.queue) >= self.opts.max_queue:
            self._refuse(origin, request, BUSY)
            return
        self.waiting[key] = [origin]
        self.queue.append((Entry(kind=COMMAND, data=request), origin))
        if self.share_read_rounds:
            self.pump_due = True
            return
        self._pump()

    def _read_mode(self, request: ClientRequest) -> str:
        if request.consistency == LEASE:
            return "lease"
        if request.consistency in (LINEARIZABLE, CACHE):  # no cache leases here: linearizable
            return "quorum"
        return self.opts.read_mode

    def handle_forward(self, src: str, m: Forward) -> None:
        if self.role == FOLLOWER:
            # No second hop: a chain of stale hints could loop.
            self._refuse(m.origin, m.request, NOT_LEADER)
            return
        self._handle_request(m.request, m.origin)

    def handle_forward_reply(self, src: str, m: ForwardReply) -> None:
        self.env.deliver(m.response)

    def _reply(self, origin: str, response: ClientResponse, *, chosen: bool = False) -> None:
        """``chosen``: the answer to an executed command, which depends on no unsynced
        write of ours (the slot is durable on a quorum): with a runtime that offers
        ``deliver_early`` it need not wait for the sync of writes made meanwhile."""
        if origin == self.id:
            if chosen and self.early_answers:
                self.env.deliver_early(response)  # type: ignore[attr-defined]
            else:
                self.env.deliver(response)
        else:
            self.env.send(origin, ForwardReply(response=response))

    def _refuse(self, origin: str, request: ClientRequest, error: str) -> None:
        """Refuse ``request`` (definitely not applied), unless it is a write this node
        may apply after all: then it stays unanswered (replies.may_apply)."""
        if request.op.is_read() or not self._may_apply(request):
            self._reply(origin, self._rejection(request, error))

    def _may_apply(self, request: ClientRequest) -> bool:
        """Applied here, or a copy of it proposed, accepted or chosen in a slot not yet
        executed."""
        executed = self.executed
        entries = itertools.chain(
            self.proposals.values(),
            (entry for slot, entry in self.chosen.items() if slot > executed),
            (vote.entry for slot, vote in self.log.votes.items() if slot > executed),
        )
        return replies.may_apply(
            self.sm, request, replies.command_ids(c for entry in entries for c in entry.commands())
        )

    def _rejection(self, request: ClientRequest, error: str) -> ClientResponse:
        hint = self.leader_id if self.leader_id != self.id or self.role == LEADER else None
        return replies.refused(request, error, hint)

    # ------------------------------------------------------------------ reads
    def _read(self, request: ClientRequest, origin: str) -> None:
        if not self.ready:
            self.reads.hold(request, origin)
            return
        target = self._max_chosen()
        if self._read_mode(request) == "lease" and self.env.now() < self.lease_until:
            self.reads.wait_for_apply(target, request, origin)
            self._serve_ready_reads()
            return
        # No lease (or a linearizable read asked for): confirm leadership with a round.
        self.reads.wait_for_round(self.rounds.current + 1, target, request, origin)
        if not self.share_read_rounds:
            self._broadcast_heartbeat()

    def _serve_ready_reads(self) -> None:
        self.reads.release(self.executed, self._answer_read)

    def _answer_read(self, request: ClientRequest, origin: str) -> None:
        self._reply(origin, replies.read_answer(self.sm, request, self.env, self.leader_id, self.executed))

    def _max_chosen(self) -> int:
        return max(self.executed, self.top_chosen)

    # ------------------------------------------------------------------ phase 1
    def _on_election_timeout(self) -> None:
        if self.role == LEADER:
            return
        if not self._may_campaign():
            # Removed, not yet added, or rejoining after a disk loss: never campaign.
            self._reset_election_timer()
            return
        self._campaign()

    def _campaign(self) -> None:
        if self.opts.pre_vote:
            self._start_pre_vote()
        else:
            self._start_phase1()

    def _start_pre_vote(self) -> None:
        self.role = PRE_CANDIDATE
        self.leader_id = None
        self.pre_round = self.max_round + 1
        self.pre_votes = {self.id}
        self.env.record("role", role=PRE_CANDIDATE, term=str(Ballot(self.pre_round, self.number)))
        self._reset_election_timer()
        ask = PrePrepare(round=self.pre_round)
        for peer in self.members():
            if peer != self.id:
                self.env.send(peer, ask)
        self._maybe_end_pre_vote()

    def handle_pre_prepare(self, src: str, m: PrePrepare) -> None:
        """Grant unless we lead or a leader was heard within the election timeout (its
        lower bound: every follower of a live leader hears it that often).  Nothing is
        changed or written, and the election timer keeps running."""
        if self.rejoining:
            return  # silent, as to a Prepare (module rules)
        why = ""
        if src not in self.members():
            why = "not a member"
        elif self.role == LEADER:
            why = "this node leads"
        elif self.env.now() - self.leader_heard_at < self.opts.election_timeout:
            why = f"heard leader {self.leader_id} within the election timeout"
        granted = not why
        if not granted:
            self.env.record("ignored", src=src, reason=f"pre-vote refused: {why}")
        self.env.send(src, PrePromise(round=m.round, granted=granted, promised=self.promised))

    def handle_pre_promise(self, src: str, m: PrePromise) -> None:
        self._see_round(m.promised.round)
        if self.role != PRE_CANDIDATE or m.round != self.pre_round or not m.granted:
            return
        self.pre_votes.add(src)
        self._maybe_end_pre_vote()

    def _maybe_end_pre_vote(self) -> None:
        # The quorums phase 1 will need: a majority of every configuration governing
        # the next alpha slots (handle_promise).
        first = self.executed + 1
        window = self._configs_between(first, first + self.opts.alpha - 1)
        if all(self._majority_of(members, self.pre_votes) for members in window):
            self._start_phase1()

    def _start_phase1(self) -> None:
        was = self.role
        self.max_round += 1
        self.ballot = Ballot(self.max_round, self.number)
        self.promised = self.ballot
        self.env.storage.put(PROMISED_KEY, self.ballot)
        self.leader_id = None
        self.promises = {}
        self.best_votes = {}
        self.prepare_sent = set()
        # wait_until is kept: a lease an earlier phase 1 of ours learned of may still run
        # (on our clock), and this one's promises may no longer tell of it, their grants
        # having passed to us since (seed 92175: a leader that ran phase 1 again for a
        # rejoining acceptor served at once while the old leader's lease ran).
        self.prepare_from = self.executed + 1
        self._reset_election_timer()
        if was == LEADER:
            self._drop_leader_state(None)
        if "skip-phase1-on-takeover" in self.bugs:
            # The bug: lead at once, knowing nothing of what earlier leaders got accepted.
            self.role = CANDIDATE
            self._become_leader(skip_recovery=True)
            return
        self.role = CANDIDATE
        self.env.record("role", role=CANDIDATE, term=str(self.ballot))
        self.handle_promise(self.id, self._promise_for(self.ballot, self.prepare_from))
        if self.role != CANDIDATE:
            return
        prepare = Prepare(ballot=self.ballot, from_slot=self.prepare_from)
        for peer in self._members_from(self.prepare_from):
            if peer != self.id:
                self.prepare_sent.add(peer)
                self.env.send(peer, prepare)

    def handle_prepare(self, src: str, m: Prepare) -> None:
        """Phase 1b: promise a ballot above our promise (a retransmission of the one we
        promised gets the same answer); persisted before the promise leaves."""
        self._see_round(m.ballot.round)
        if self.rejoining:
            # Silent: we cannot know what we promised before the disk loss.  Note the
            # ballot: readmitted, we promise the highest one seen.
            self.rejoin_ballot = max(self.rejoin_ballot, m.ballot)
            return
        if src not in self._members_from(min(self.executed + 1, m.from_slot)) and src != self.id:
            self.env.send(src, Nack(ballot=m.ballot, promised=self.promised, leader_hint=self.leader_id))
            return
        if m.ballot < self.promised:
            self.env.send(src, Nack(ballot=m.ballot, promised=self.promised, leader_hint=self.leader_id))
            return
        if m.ballot > self.promised:
            self.promised = m.ballot
            self.env.storage.put(PROMISED_KEY, m.ballot)
            if self.role != FOLLOWER:
                self._become_follower(src)
            else:
                self.leader_id = src
            self._reset_election_timer()
        self.env.send(src, self._promise_for(m.ballot, m.from_slot))

    def _promise_for(self, ballot: Ballot, from_slot: int) -> Promise:
        snapshot = self.snapshot if self.snapshot is not None and from_slot <= self.log.offset else None
        chosen = tuple(SlotValue(slot=s, entry=self.chosen[s]) for s in sorted(self.chosen) if s >= from_slot)
        remaining = max(0.0, self.grant_expiry - self.env.now()) if self.grant_holder is not None else 0.0
        return Promise(
            ballot=ballot,
            from_slot=from_slot,
            accepted=self.log.votes_from(from_slot),
            chosen=chosen,
            executed=self.executed,
            snapshot=snapshot,
            lease_holder=self.grant_holder if remaining > 0 else None,
            lease_remaining=remaining,
        )

    def handle_promise(self, src: str, m: Promise) -> None:
        if self.role not in (CANDIDATE, LEADER) or m.ballot != self.ballot:
            return
        self.promises[src] = m
        self._absorb_promise(m)
        if m.lease_remaining > 0 and m.lease_holder != self.id and "lease-without-wait" not in self.bugs:
            eps = self.opts.clock_drift_bound
            wait = m.lease_remaining * (1 + eps) / (1 - eps)
            if self.env.now() + wait > self.wait_until:
                self.wait_until = self.env.now() + wait
                if self.role == LEADER:
                    self.env.set_timer(LEASE_WAIT_TIMER, wait)
        if self.role == CANDIDATE:
            window = self._configs_between(self.prepare_from, self.prepare_from + self.opts.alpha - 1)
            if all(self._prepared(members) for members in window):
                self._become_leader(skip_recovery=False)
        else:
            self._pump()

    def _absorb_promise(self, m: Promise) -> None:
        """Learn what the acceptor knows: a snapshot ahead of us, chosen values, votes."""
        if m.snapshot is not None and m.snapshot.last_slot > self.executed:
            self._install(m.snapshot)
        for value in m.chosen:
            self._decide(value.slot, value.entry)
        for vote in m.accepted:
            best = self.best_votes.get(vote.slot)
            if best is None or vote.ballot > best.ballot:
                self.best_votes[vote.slot] = vote
        if self.role == LEADER:
            # A late promise (a new configuration's member) may report slots we have not
            # assigned yet: they join the recovery.
            top = max((v.slot for v in m.accepted), default=0)
            top = max(top, max((v.slot for v in m.chosen), default=0))
            for s in range(self.next_slot, top + 1):
                if s > self.executed and s not in self.chosen:
                    self.to_recover.add(s)
            if top >= self.next_slot:
                self.next_slot = top + 1
                self.recovery_end = max(self.recovery_end, top)
        self._execute()

    def handle_nack(self, src: str, m: Nack) -> None:
        self._see_round(m.promised.round)
        if self.role == FOLLOWER or m.ballot != self.ballot or m.promised <= self.ballot:
            return
        self.env.record("preempted", by=str(m.promised))
        hint = m.leader_hint if m.leader_hint != self.id else None
        if hint is None:
            hint = self.ids_by_number.get(m.promised.node)
        self._become_follower(hint)

    def _prepared(self, members: tuple[str, ...]) -> bool:
        return self._majority_of(members, self.promises)

    @staticmethod
    def _majority_of(members: tuple[str, ...], granted: Container[str]) -> bool:
        return sum(1 for p in members if p in granted) >= quorum_size(len(members))

    # ------------------------------------------------------------------ role changes
    def _become_leader(self, *, skip_recovery: bool) -> None:
        self.role = LEADER
        self.leader_id = self.id
        self.env.cancel_timer(ELECTION_TIMER)
        self.env.record("role", role=LEADER, term=str(self.ballot))
        self.proposals, self.acks, self.proposed_at = {}, {}, {}
        self.unsynced_votes = set()
        self.peer_executed, self.catchup_sent = {}, {}
        self.rounds.reset()
        self.round_commit = {}
        self.lease_until = 0.0
        self.activity.reset()
        self.ready = False
        if skip_recovery:
            self.next_slot = max(self.executed, self.log.last) + 1
            self.to_recover = set()
            self.wait_until = 0.0
        else:
            top = max([self.executed, *self.best_votes, *self.chosen])
            self.next_slot = top + 1
            self.to_recover = {s for s in range(self.executed + 1, top + 1) if s not in self.chosen}
        self.recovery_end = self.next_slot - 1
        for node, nonce in sorted(self.readmit_pending.items()):
            self.env.send(node, Readmit(ballot=self.ballot, through=self.recovery_end, nonce=nonce))
        self.readmit_pending = {}
        if self.wait_until > self.env.now():
            self.env.set_timer(LEASE_WAIT_TIMER, self.wait_until - self.env.now())
            self.env.record("lease-wait", seconds=round(self.wait_until - self.env.now(), 6))
        self.env.set_timer(HEARTBEAT_TIMER, self.opts.heartbeat_interval)
        self.env.set_timer(CHECK_QUORUM_TIMER, self.opts.election_timeout)
        self._broadcast_heartbeat()
        if self.noop_on_lead:
            self.noop_on_lead = False
            self.queue.append((NOOP_ENTRY, self.id))
        held, self.queue = self.queue, []
        for entry, origin in held:
            if entry.kind == COMMAND:
                self._handle_request(entry.data, origin)
            else:
                self.queue.append((entry, origin))
        self._pump()

    def _become_follower(self, leader: str | None) -> None:
        was = self.role
        self.role = FOLLOWER
        self.leader_id = leader
        self.readmit_pending = {}  # they ask the next leader
        if was == LEADER:
            self._drop_leader_state(leader)
        elif was in (PRE_CANDIDATE, CANDIDATE):
            self._release_queue(leader)
        self.env.record("role", role=FOLLOWER, term=str(self.promised), leader=leader)
        self._reset_election_timer()

    def _drop_leader_state(self, leader: str | None) -> None:
        for key in (HEARTBEAT_TIMER, CHECK_QUORUM_TIMER, LEASE_WAIT_TIMER):
            self.env.cancel_timer(key)
        self.lease_until = 0.0
        self.ready = False
        self.proposals, self.acks, self.proposed_at, self.to_recover = {}, {}, {}, set()
        self.unsynced_votes = set()
        # Reads have no effect, so refusing them is a definite answer.  Proposed writes
        # are left unanswered: they may still be chosen under the next leader.
        for request, origin in self.reads.drain():
            self._reply(origin, self._rejection(request, NOT_LEADER))
        self.waiting = {}
        self._release_queue(leader)

    def _release_queue(self, leader: str | None) -> None:
        """Commands that never got a slot: pass them to the new leader, or refuse them
        (definitely not applied)."""
        held, self.queue = self.queue, []
        for entry, origin in held:
            if entry.kind != COMMAND:
                continue
            request = entry.data
            if leader is not None and leader != self.id and origin == self.id:
                self.env.send(leader, Forward(request=request, origin=origin))
            else:
                self._refuse(origin, request, NOT_LEADER)

    def _step_down_if_behind(self, ballot: Ballot, leader: str) -> None:
        if self.role == PRE_CANDIDATE or (self.role != FOLLOWER and ballot > self.ballot):
            self._become_follower(leader)

    def _follow(self, ballot: Ballot, leader: str) -> None:
        """A message from the leader of a ballot we accept: adopt it, restart the timer."""
        self.leader_heard_at = self.env.now()
        if ballot > self.promised:
            self.promised = ballot
            self.env.storage.put(PROMISED_KEY, ballot)
        self._step_down_if_behind(ballot, leader)
        if self.role == FOLLOWER and self.leader_id != leader:
            self.leader_id = leader
            self.env.record("role", role=FOLLOWER, term=str(ballot), leader=leader)
        if self.role == FOLLOWER:
            self._reset_election_timer()

    def _check_quorum(self) -> None:
        self.env.set_timer(CHECK_QUORUM_TIMER, self.opts.election_timeout)
        if not self.opts.check_quorum:
            self.activity.reset()
            return
        if not self.activity.check(self.id, self.config_at(self.executed + 1)):
            self.env.record("step-down", reason="check-quorum")
            self._become_follower(None)

    # ------------------------------------------------------------------ phase 2
    def _pump(self) -> None:
        """Propose whatever may be proposed now: recovered slots first, then new ones,
        within the alpha window, after the old leader's lease ran out."""
        if self.role != LEADER:
            return
        if self.env.now() < self.wait_until:
            return
        limit = self.executed + self.opts.alpha
        values: list[SlotValue] = []
        sizes: list[int] = []  # each value's estimated bytes, to split the Accepts
        for s in sorted(self.to_recover):
            if s > limit or not self._ready_for_slot(s):
                break
            self.to_recover.discard(s)
            if s in self.chosen or s <= self.executed:
                continue
            vote = self.best_votes.get(s)
            entry = vote.entry if vote is not None else NOOP_ENTRY
            values.append(self._propose(s, entry))
            sizes.append(entry_size(entry.data))
        while self.queue and self.next_slot <= limit and self._ready_for_slot(self.next_slot):
            slot = self.next_slot
            self.next_slot += 1
            entry, size = self._next_value()
            values.append(self._propose(slot, entry))
            sizes.append(size)
        # A configuration decided at slot s governs slots from s + alpha on: with no
        # command to carry the log there, no-ops do, so that it comes into force (and the
        # next change may start) on an idle cluster too.
        in_force_at = self.config_history.latest()[0]
        while (
            not self.queue
            and self.next_slot < in_force_at
            and self.next_slot <= limit
            and self._ready_for_slot(self.next_slot)
        ):
            values.append(self._propose(self.next_slot, NOOP_ENTRY))
            sizes.append(entry_size(NOOP_ENTRY.data))
            self.next_slot += 1
        if values:
            self._send_accepts(values, sizes)
            for v in values:
                self._maybe_chosen(v.slot)
            self._execute()
        self._maybe_ready()

    def _next_value(self) -> tuple[Entry, int]:
        """The queue's head, or its leading run of commands as one batch (at most
        ``commands_per_slot`` commands and, past the first, ``max_batch_bytes``), with
        its estimated size."""
        entry, _ = self.queue.pop(0)
        size = entry_size(entry.data)
        if entry.kind != COMMAND or self.opts.commands_per_slot == 1:
            return entry, size
        commands = [entry.data]
        queue = self.queue
        while queue and len(commands) < self.opts.commands_per_slot and queue[0][0].kind == COMMAND:
            more = entry_size(queue[0][0].data)
            if size + more > self.opts.max_batch_bytes:
                break
            commands.append(queue.pop(0)[0].data)
            size += more
        return (entry, size) if len(commands) == 1 else (Entry(kind=BATCH, data=tuple(commands)), size)

    def _ready_for_slot(self, slot: int) -> bool:
        """We may propose at ``slot``: its configuration is known and promised us."""
        if "skip-phase1-on-takeover" in self.bugs:
            return True
        members = self.config_at(slot)
        if self._prepared(members):
            return True
        missing = [p for p in members if p not in self.promises and p not in self.prepare_sent]
        prepare = Prepare(ballot=self.ballot, from_slot=self.prepare_from)
        for peer in missing:
            self.prepare_sent.add(peer)
            self.env.send(peer, prepare)
        return False

    def _resend_prepares(self) -> None:
        """A leader's Prepare to a member of a later configuration may be lost, or reach
        it down; the slots that configuration governs wait for a majority of its
        promises.  Unanswered Prepares go out again each heartbeat while a slot waits
        (seed 121113, with membership changes: a leader that had its old configuration's
        promises sent heartbeats for 5 s, its recovered slots stuck behind the new one)."""
        unanswered = self.prepare_sent - self.promises.keys()
        if unanswered:
            self.prepare_sent -= unanswered
            self._pump()

    def _propose(self, slot: int, entry: Entry) -> SlotValue:
        self.proposals[slot] = entry
        self.acks[slot] = set()
        self.proposed_at[slot] = self.env.now()
        if self.promised <= self.ballot:
            self._vote([AcceptedValue(slot=slot, ballot=self.ballot, entry=entry)])
            if self.count_own_vote_at_once:
                self.acks[slot].add(self.id)
            else:
                self.unsynced_votes.add(slot)
        return SlotValue(slot=slot, entry=entry)

    def _send_accepts(self, values: list[SlotValue], sizes: list[int]) -> None:
        """One Accept per peer for ``values``, or several when their estimated bytes
        (``sizes``) pass ``max_batch_bytes``: alpha slots of large batches in one message
        would hold the peer link for alpha times a slot's bytes (common/batching.py)."""
        peers: set[str] = set()
        for v in values:
            peers.update(self.config_at(v.slot))
        peers.update(self.members())
        targets = [peer for peer in sorted(peers) if peer != self.id]
        start = 0
        while start < len(values):
            n, _ = batch_length(sizes[start:], len(values), self.opts.max_batch_bytes)
            msg = Accept(ballot=self.ballot, values=tuple(values[start : start + n]), commit=self.executed)
            for peer in targets:
                self._replicate(peer, msg)
            start += n

    def _replicate(self, peer: str, msg: Accept) -> None:
        """An Accept depends on no unsynced write of ours: our promise of the ballot was
        durable before any Promise answered it, and our own vote counts only once
        durable (see ``early_replication``)."""
        if self.early_replication:
            self.env.send_early(peer, msg)  # type: ignore[attr-defined]
        else:
            self.env.send(peer, msg)

    def _resend_proposals(self) -> None:
        """Re-send undecided proposals to the members that have not voted (lost messages)."""
        if not self.proposals:
            return
        per_peer: dict[str, list[SlotValue]] = {}
        overdue = self.env.now() - 2 * self.opts.heartbeat_interval
        for slot in sorted(self.proposals)[: self.opts.max_batch]:
            if self.proposed_at.get(slot, 0.0) > overdue:
                continue
            for peer in self.config_at(slot):
                if peer != self.id and peer not in self.acks[slot]:
                    per_peer.setdefault(peer, []).append(SlotValue(slot=slot, entry=self.proposals[slot]))
        for peer in sorted(per_peer):
            pending = per_peer[peer]
            n, _ = batch_length(
                [entry_size(v.entry.data) for v in pending], len(pending), self.opts.max_batch_bytes
            )
            # The rest wait for the next resend round: a lost Accept is the rare case.
            self._replicate(peer, Accept(ballot=self.ballot, values=tuple(pending[:n]), commit=self.executed))

    def handle_accept(self, src: str, m: Accept) -> None:
        """Phase 2b: vote unless we promised a higher ballot."""
        self._see_round(m.ballot.round)
        if m.ballot < self.promised:
            self.env.send(src, Nack(ballot=m.ballot, promised=self.promised, leader_hint=self.leader_id))
            return
        self._follow(m.ballot, src)
        if self.rejoining:
            self._rejoin_check(m.ballot, m.commit, src)
            return  # no vote, no Accepted: we take part in no quorum yet
        self._vote([AcceptedValue(slot=v.slot, ballot=m.ballot, entry=v.entry) for v in m.values])
        self._decide_by_commit(m.ballot, m.commit)
        slots = tuple(v.slot for v in m.values)
        self.env.send(src, Accepted(ballot=m.ballot, slots=slots, executed=self.executed))

    def _vote(self, votes: list[AcceptedValue]) -> None:
        self.log.record(votes)
        if self.reports_durable and votes:
            # record() rewrites every slot from the lowest one on: not durable until reported.
            self.durable_slot = min(self.durable_slot, min(v.slot for v in votes) - 1)
        if self.observer is not None:
            for v in votes:
                self.observer.on_vote(self, v)

    def handle_accepted(self, src: str, m: Accepted) -> None:
        if self.role != LEADER or m.ballot != self.ballot:
            return
        self.activity.heard.add(src)
        self.peer_executed[src] = max(self.peer_executed.get(src, 0), m.executed)
        for slot in m.slots:
            acks = self.acks.get(slot)
            if acks is not None:
                acks.add(src)
                self._maybe_chosen(slot)
        self._execute()
        self._pump()

    def _maybe_chosen(self, slot: int) -> None:
        entry = self.proposals.get(slot)
        if entry is None:
            return
        members = self.config_at(slot)
        votes = sum(1 for p in members if p in self.acks[slot])
        if votes >= quorum_size(len(members)):
            self._decide(slot, entry)

    # ------------------------------------------------------------------ learning
    def _decide(self, slot: int, entry: Entry) -> None:
        """``entry`` is chosen at ``slot``; execution happens in slot order."""
        self.proposals.pop(slot, None)
        self.acks.pop(slot, None)
        self.proposed_at.pop(slot, None)
        if slot <= self.executed or slot in self.chosen:
            return
        self.chosen[slot] = entry
        if slot > self.top_chosen:
            self.top_chosen = slot
        self.env.record("learned", slot=slot)
        if self.observer is not None:
            self.observer.on_decide(self, slot, entry)

    def _decide_by_commit(self, ballot: Ballot, commit: int) -> None:
        """Every slot up to ``commit`` is chosen; where our vote carries the leader's
        ballot we hold the chosen value (a leader proposes one value per slot)."""
        for s in range(self.executed + 1, min(commit, self.log.last) + 1):
            if s in self.chosen:
                continue
            vote = self.log.vote(s)
            if vote is not None and vote.ballot == ballot:
                self._decide(s, vote.entry)
        self._execute()

    def _execute(self) -> None:
        step_down = False
        while self.executed + 1 in self.chosen:
            slot = self.executed + 1
            entry = self.chosen[slot]
            self.executed = slot
            if entry.kind in (COMMAND, BATCH):
                commands = entry.commands()
                self.executed_since_snapshot += len(commands) or 1
                for request in commands:
                    result = replies.applied(self.sm, request, self.env)
                    origins = self.waiting.pop((request.client_id, request.seq), ())
                    if self.role == LEADER:
                        for origin in origins:
                            self._answer_command(request, result, slot, origin)
            else:
                self.executed_since_snapshot += 1
            if entry.kind == CONFIG:
                members = tuple(entry.data.members)
                self.config_slot = slot
                self.config_history.record(slot + self.opts.alpha, members)
                self.env.record("config", slot=slot, effective=slot + self.opts.alpha, members=list(members))
            if self.observer is not None:
                self.observer.on_execute(self, slot, entry)
            if self.role == LEADER and self.id not in self.config_at(self.executed + 1):
                step_down = True
        if self.reads.awaiting_apply:
            self._serve_ready_reads()
        self._maybe_snapshot()
        if step_down and self.role == LEADER:
            self.env.record("step-down", reason="removed from the configuration")
            self._become_follower(None)

    def _answer_command(self, request: ClientRequest, result: Any, slot: int, origin: str) -> None:
        # A session refusal (nothing applied) is refused; as leader, leader_id is us.
        self._reply(origin, replies.command_answer(request, result, self.id, slot), chosen=True)

    def _maybe_ready(self) -> None:
        """A new leader serves reads once the old lease ran out and every slot it
        recovered is executed."""
        if self.role != LEADER or self.ready:
            return
        if self.env.now() < self.wait_until or self.executed < self.recovery_end:
            return
        self.ready = True
        self.env.record("ready", executed=self.executed)
        for request, origin in self.reads.take_held():
            self._read(request, origin)

    # ------------------------------------------------------------------ heartbeats
    def _broadcast_heartbeat(self) -> None:
        now = self.env.now()
        round_ = self.rounds.start(now)
        self.round_commit[round_] = self.executed
        self.round_commit.pop(round_ - 20, None)
        self.grant_holder, self.grant_expiry = self.id, now + self.opts.lease_duration
        msg = Heartbeat(ballot=self.ballot, leader=self.id, commit=self.executed, round=round_)
        for peer in self.members():
            if peer != self.id:
                self.env.send(peer, msg)
        self._round_acknowledged()

    def handle_heartbeat(self, src: str, m: Heartbeat) -> None:
        self._see_round(m.ballot.round)
        if m.ballot < self.promised:
            self.env.send(src, Nack(ballot=m.ballot, promised=self.promised, leader_hint=self.leader_id))
            return
        self._follow(m.ballot, m.leader)
        self.grant_holder, self.grant_expiry = m.leader, self.env.now() + self.opts.lease_duration
        if self.rejoining:
            # Round 0: an answer that asks for catch-up but counts for no lease or read.
            self.env.send(src, HeartbeatAck(ballot=m.ballot, round=0, executed=self.executed))
            self._rejoin_check(m.ballot, m.commit, m.leader)
            return
        self._decide_by_commit(m.ballot, m.commit)
        self.env.send(src, HeartbeatAck(ballot=m.ballot, round=m.round, executed=self.executed))

    def handle_heartbeat_ack(self, src: str, m: HeartbeatAck) -> None:
        if self.role != LEADER or m.ballot != self.ballot:
            return
        self.activity.heard.add(src)
        self.peer_executed[src] = max(self.peer_executed.get(src, 0), m.executed)
        if self.rounds.ack(src, m.round):
            self._round_acknowledged()
        # Behind what it should know from the heartbeat's commit (it lacks votes in our
        # ballot), or still catching up after a Learn/snapshot: send chosen values.
        target = self.round_commit.get(m.round, 0) if m.round else self.executed
        if m.executed < target:
            self._maybe_catch_up(src, m.executed)

    def _round_acknowledged(self) -> None:
        """The newest round a majority of every configuration in force acknowledged
        confirms our leadership (quorum reads) and starts the lease."""
        window = self._configs_between(self.executed + 1, self.executed + self.opts.alpha)
        quorum_round = min(self.rounds.quorum_round(members) for members in window)
        if quorum_round <= 0:
            return
        sent_at = self.rounds.settle(quorum_round)
        if sent_at is not None:
            lease = self.opts.lease_duration * (1.0 - self.opts.clock_drift_bound)
            self.lease_until = max(self.lease_until, sent_at + lease)
        self.reads.confirm(quorum_round, self.executed, self._answer_read)

    # ------------------------------------------------------------------ catch-up
    def _maybe_catch_up(self, peer: str, executed: int) -> None:
        if executed >= self.executed:
            return
        now = self.env.now()
        sent = self.catchup_sent.get(peer)
        # Answer only an ack that shows progress past the last one answered (or one
        # that waited two heartbeats: a Learn was lost).  Answering each ack that
        # differs from the last let duplicated and reordered acks multiply: a peer
        # catching up one slot a Learn (max_batch=1) got 2.3 million Learns in 0.4
        # virtual seconds (seed 195060: minutes of wall time for one 30 s run).
        if sent is not None and executed <= sent[0] and now - sent[1] < 2 * self.opts.heartbeat_interval:
            return
        self.catchup_sent[peer] = (executed, now)
        nxt = executed + 1
        if nxt in self.chosen:
            values = []
            for s in range(nxt, min(self.executed, executed + self.opts.max_batch) + 1):
                entry = self.chosen.get(s)
                if entry is None:
                    break
                values.append(SlotValue(slot=s, entry=entry))
            # Within max_batch_bytes: the peer's next HeartbeatAck asks for the rest.
            sizes = (entry_size(v.entry.data) for v in values)
            n, _ = batch_length(sizes, len(values), self.opts.max_batch_bytes)
            self.env.send(peer, Learn(ballot=self.ballot, leader=self.id, values=tuple(values[:n])))
        elif self.snapshot is not None and self.snapshot.last_slot >= nxt:
            self.env.send(peer, InstallSnapshot(ballot=self.ballot, leader=self.id, snapshot=self.snapshot))

    def handle_learn(self, src: str, m: Learn) -> None:
        """Chosen values are facts whoever sends them; we follow only a current ballot."""
        self._see_round(m.ballot.round)
        if m.ballot >= self.promised:
            self._follow(m.ballot, m.leader)
        for v in m.values:
            self._decide(v.slot, v.entry)
        self._execute()
        self.env.send(src, HeartbeatAck(ballot=m.ballot, round=0, executed=self.executed))
        if self.rejoining:
            self._rejoin_check(m.ballot, None, m.leader)

    def handle_install_snapshot(self, src: str, m: InstallSnapshot) -> None:
        self._see_round(m.ballot.round)
        if m.ballot >= self.promised:
            self._follow(m.ballot, m.leader)
        if m.snapshot.last_slot > self.executed:
            self._install(m.snapshot)
            self._execute()
        self.env.send(src, HeartbeatAck(ballot=m.ballot, round=0, executed=self.executed))
        if self.rejoining:
            self._rejoin_check(m.ballot, None, m.leader)

    # ------------------------------------------------------------------ disk loss
    def _rejoin_check(self, ballot: Ballot, commit: int | None, leader: str) -> None:
        """While rejoining, on a message of ``ballot``'s leader carrying its ``commit``
        (None: a catch-up message): readmit ourselves once we executed through our
        Readmit's slot; without one, once caught up, ask the leader for one."""
        if self.readmit is not None:
            if self.executed >= self.readmit[1]:
                self._rejoined()
            return  # (the slots it names will come)
        if commit is None or self.executed < commit:
            return
        # Its answer is a phase 1 and then a Readmit: while they travel, messages of the
        # ballot we asked in (or of the new one) show us caught up again; asking again
        # then would start another phase 1, and again.  A lost answer is asked for anew.
        if self.env.now() - self.rejoin_asked_at < 2 * self.opts.election_timeout:
            return
        self.rejoin_asked_at = self.env.now()
        self.env.send(leader, RejoinRequest(ballot=ballot, nonce=self.rejoin_nonce))

    def handle_readmit(self, src: str, m: Readmit) -> None:
        if not self.rejoining or m.nonce != self.rejoin_nonce:
            why = "not rejoining" if not self.rejoining else "it answers another incarnation's request"
            self.env.record("ignored", src=src, reason=f"readmit: {why}")
            return
        self.rejoin_ballot = max(self.rejoin_ballot, m.ballot)
        if self.readmit is None or m.through < self.readmit[1]:
            self.readmit = (m.ballot, m.through)
        self._rejoin_check(m.ballot, None, src)

    def _rejoined(self) -> None:
        """Vote again.  The values we executed may be all that is left of votes we cast
        before the loss (a slot chosen by a bare majority that included us): they go
        into a snapshot first, and the log is compacted behind it, so that a Promise of
        ours reports them to any candidate that lacks them, as the lost votes would."""
        self._take_snapshot(compact_to=self.executed)
        # Promise the highest ballot prepared since the restart: our Readmit's, or one
        # we may have promised before the loss and whose candidate is still counting.
        ballot = self.rejoin_ballot
        self.rejoining = False
        self.rejoin_asked_at, self.readmit = float("-inf"), None
        if ballot > self.promised:
            self.promised = ballot
            self.env.storage.put(PROMISED_KEY, ballot)
        self.env.storage.put(REJOINING_KEY, False)
        self.env.record("rejoined", ballot=str(ballot), executed=self.executed)

    def handle_rejoin_request(self, src: str, m: RejoinRequest) -> None:
        """A caught-up acceptor that lost its disk needs a phase 1 started after its
        request: every value chosen before it then lies at a slot our Promises reported
        (a majority without the silent acceptor still meets every chosen value's
        majority in a node that kept its vote), up to ``recovery_end``.  Readmit names
        that slot once we lead the new ballot."""
        if self.role != LEADER or m.ballot != self.ballot or src not in self.members():
            return
        self.env.record("rejoin-ballot", node=src)
        if m.nonce:
            self.readmit_pending[src] = m.nonce
        else:
            self.noop_on_lead = True  # the previous release's rule: readmitted by a decided slot
        self._start_phase1()

    def _may_campaign(self) -> bool:
        return self._is_member() and not self.rejoining

    # ------------------------------------------------------------------ snapshots
    def _snapshot_turn(self) -> tuple[int, int]:
        # The replicas of the newest configuration take turns (snapshot_policy).
        return stagger_turn(self.id, self.members())

    def _maybe_snapshot(self) -> None:
        if not snapshot_due(
            self.executed_since_snapshot,
            self.opts.snapshot_threshold,
            len(self.sm),
            self.executed,
            self._snapshot_turn,
        ):
            return
        kept = entries_kept(self.opts.snapshot_trailing, len(self.sm))
        self._take_snapshot(compact_to=self.executed - kept)

    def _take_snapshot(self, *, compact_to: int) -> None:
        self.executed_since_snapshot = 0
        snap = Snapshot(
            last_slot=self.executed,
            configs=self._configs_from(self.executed + 1),
            data=self.sm.snapshot(),
        )
        self.snapshot = snap
        self.env.storage.put(SNAPSHOT_KEY, snap)
        self.env.record("snapshot", slot=snap.last_slot)
        self._compact(compact_to)

    def _install(self, snap: Snapshot) -> None:
        """Replace our state with a snapshot ahead of our executed prefix."""
        configs = [(first, tuple(m)) for first, m in snap.configs if isinstance(m, tuple)]
        try:
            if len(configs) != len(snap.configs) or not all(
                type(first) is int and all(type(n) is str for n in m) for first, m in configs
            ):
                raise ValueError("malformed")
            history = ConfigHistory.of(configs)  # none, or slots out of order: ValueError
        except ValueError:
            self.env.record("ignored", reason="snapshot with malformed configurations")
            return
        try:  # before any change: a snapshot that does not restore (a peer's garbage) changes nothing
            self.sm.restore(snap.data)
        except ValueError as exc:
            self.env.record("ignored", reason=f"snapshot does not restore: {exc}")
            return
        self.snapshot = snap
        self.env.storage.put(SNAPSHOT_KEY, snap)
        self.executed = snap.last_slot
        self.executed_since_snapshot = 0
        self.config_history = history
        self._compact(snap.last_slot)
        if self.role == LEADER and self.next_slot <= snap.last_slot:
            self.next_slot = snap.last_slot + 1
        for s in [s for s in self.to_recover if s <= snap.last_slot]:
            self.to_recover.discard(s)
        for s in [s for s in self.proposals if s <= snap.last_slot]:
            del self.proposals[s]
            self.acks.pop(s, None)
            self.proposed_at.pop(s, None)
        self.env.record("restore", slot=snap.last_slot)
        if self.observer is not None:
            self.observer.on_restore(self, snap)

    def _compact(self, upto: int) -> None:
        if upto <= self.log.offset:
            return
        self.log.compact(upto)
        for s in [s for s in self.chosen if s <= upto]:
            del self.chosen[s]

    # ------------------------------------------------------------------ configurations
    def _configs_from(self, slot: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
        """The configuration in force at ``slot`` and every later one, as (first, members)."""
        return tuple(self.config_history.since(slot))

    def _configs_between(self, lo: int, hi: int) -> list[tuple[str, ...]]:
        return self.config_history.between(lo, hi)

    def _members_from(self, slot: int) -> tuple[str, ...]:
        members: set[str] = set()
        for _, m in self.config_history.since(slot):
            members.update(m)
        return tuple(sorted(members))

    def _is_member(self) -> bool:
        return self.id in self.members()

    def _config_change_pending(self) -> bool:
        if self.config_history.latest()[0] > self.executed + 1:
            return True
        return self._config_change_undecided()

    def _config_change_undecided(self) -> bool:
        """A configuration change is queued, proposed, or chosen but not executed."""
        pending: Iterable[Entry] = [*self.proposals.values(), *(e for e, _ in self.queue)]
        if any(e.kind == CONFIG for e in pending):
            return True
        return any(e.kind == CONFIG for s, e in self.chosen.items() if s > self.executed)

    def _admit(self, node: str) -> bool:
        """Give a node we never heard of a ballot number, if that leaves every known
        node's number as it is (so all nodes agree on it); False otherwise."""
        numbers = node_numbers([*self.numbers, node])
        if any(numbers[known] != number for known, number in self.numbers.items()):
            return False
        self.numbers = numbers
        self.ids_by_number = {n: i for i, n in numbers.items()}
        return True

    # ------------------------------------------------------------------ helpers
    def _see_round(self, round_: int) -> None:
        if round_ > self.max_round:
            self.max_round = round_

    def _reset_election_timer(self) -> None:
        timeout = self.opts.election_timeout
        self.env.set_timer(ELECTION_TIMER, timeout + self.env.rng.random() * timeout)
