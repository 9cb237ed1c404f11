"""Basic Paxos ("Paxos Made Simple", seeds 003/004) driving a log of independent slots.

Each slot is one single-decree Paxos instance; there is no leader, so every command
pays phase 1 and phase 2 (4 message delays from the proposer that got it).

Rules this module owns:
  * acceptor (§2.2 P1a): promise ``b`` if ``b`` >= every ballot promised; accept
    ``(b, v)`` if ``b`` >= the promise.  The per-slot ``AcceptorState`` is written to
    storage before the answer is sent (the runtime releases it once durable).  A
    refusal is a ``Nack`` carrying the promise, so the proposer jumps past it;
  * proposer (§2.2 P2c): after a classic quorum of promises it proposes the value of
    the highest-ballot vote they report, else its own value; ballots are
    ``(round, node)`` with the round persisted per slot before the Prepare leaves, so a
    restarted proposer never reuses one; after a pre-emption (a Nack, or no quorum
    within ``retry_timeout``) it waits a randomized, growing backoff (switchable off);
  * learner (§2.3): a value is chosen when a quorum of acceptors sent ``Accepted`` for
    the same ballot; every proposer learns too (it must execute the log to answer its
    clients).  Learned values are persisted; ``CatchUp``/``Chosen`` fill what a node
    missed, and a hole that outlives ``gap_timeout`` is filled by proposing a no-op;
  * the log: a client request is proposed by the node that received it in its lowest
    slot not known chosen; if another value wins that slot the command is retried in
    a later one.  Chosen values are executed strictly in slot order on the key-value
    state machine (sessions give exactly-once) and that node answers the client.
    Reads go through the log too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.capabilities import LogPosition, NodeStatus
from consensuskit.core.client import NOT_LEADER, ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.service import StateMachine
from consensuskit.protocols.common import replies
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot, node_numbers
from consensuskit.protocols.paxos.basic_messages import (
    EMPTY_ACCEPTOR,
    NOOP,
    Accept,
    Accepted,
    AcceptorState,
    CatchUp,
    Chosen,
    Nack,
    Noop,
    Prepare,
    Promise,
    acceptor_key,
    chosen_key,
    describe,
)
from consensuskit.protocols.paxos.basic_options import BasicPaxosOptions
from consensuskit.protocols.paxos.quorum import classic_quorum, safe_value
from consensuskit.statemachines import default_state_machine
from consensuskit.statemachines.sessions import refusal

PREPARE = "prepare"
ACCEPT = "accept"
BACKOFF = "backoff"

PROPOSE_TIMER = "propose"
CATCHUP_TIMER = "catchup"

CHOSEN_MAX_KEY = "paxos/chosen-max"


def round_key(slot: int) -> str:
    return f"paxos/round/{slot}"


@dataclass(slots=True)
class Instance:
    """The one slot this proposer is working on."""

    slot: int
    own: Any  # the value this node wants chosen: a command, a no-op or a scenario value
    ballot: Ballot = ZERO_BALLOT
    phase: str = BACKOFF
    value: Any = None  # what phase 2 proposes (own, or the value a promise forced)
    promises: dict[str, Promise] = field(default_factory=dict)
    preemptions: int = 0
    own_done: bool = False  # own was executed in another slot meanwhile
    first_round: int = 0  # a scenario may ask for a literal first round (3 in "3.1")


class BasicPaxosNode:
    """Capabilities (core/capabilities.py): ReplicatedLog only.  There is no leader (any
    proposer takes a request; the server's session clock runs on one designated node),
    no membership change and no lease."""

    protocol = "basic-paxos"

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: BasicPaxosOptions | None = None,
        *,
        state_machine: StateMachine | None = None,
    ) -> None:
        self.id = node_id
        self.env = env
        self.opts = options or BasicPaxosOptions()
        self.bugs = self.opts.bugs
        self.members = tuple(members)
        if node_id not in self.members:
            raise ValueError(f"node {node_id!r} is not a member; valid: {', '.join(self.members)}")
        self.numbers = node_numbers(self.members)
        self.number = self.numbers[node_id]
        self.proposers, self.acceptors, self.learners = self.opts.roles(self.members)
        if not self.acceptors:
            raise ValueError("Paxos needs at least one acceptor")
        self.is_proposer = node_id in self.proposers
        self.is_acceptor = node_id in self.acceptors
        # Proposers learn too: they execute the log to answer their clients.
        self.knowers = tuple(sorted(set(self.learners) | set(self.proposers)))
        self.is_learner = node_id in self.knowers
        self.quorum = classic_quorum(len(self.acceptors))
        # Set by checkers to watch persisted state and execution; never used for control.
        self.observer: Any = None
        # The service's state machine (the protocol serves any log service).
        self.sm: Any = state_machine if state_machine is not None else default_state_machine()

        # Acceptor: per-slot state, loaded lazily from storage.
        self.acceptor_records: dict[int, AcceptorState] = {}
        # Learner: chosen values and the votes seen for slots not yet chosen.
        self.chosen: dict[int, Any] = {}
        self.votes: dict[int, dict[Ballot, dict[str, Any]]] = {}
        self.executed = 0  # Invariant: slots 1..executed are chosen and applied in order
        self.max_known = 0
        # The highest ballot round this node used, promised, accepted or was told of since
        # it started (its generation in node_status).  Invariant: never decreases.
        self.max_round = 0
        self.hole: tuple[int, float] | None = None  # (slot, since) of the oldest hole
        # Proposer.
        self.queue: deque[Any] = deque()
        self.instance: Instance | None = None
        self.seen_round: dict[int, int] = {}
        self.waiting: dict[tuple[str, int], ClientRequest] = {}
        self.offered: list[Any] = []  # values given to propose() (checkers' candidates)
        # Messages to ourselves are handled after the current input, in order.
        self.local: deque[tuple[str, Any]] = deque()
        self._handlers: dict[type, Any] = {
            Prepare: self.handle_prepare,
            Promise: self.handle_promise,
            Accept: self.handle_accept,
            Accepted: self.handle_accepted,
            Nack: self.handle_nack,
            CatchUp: self.handle_catchup,
            Chosen: self.handle_chosen,
        }
        self._restore()

    # ------------------------------------------------------------------ setup
    def _restore(self) -> None:
        storage = self.env.storage
        top = storage.get(CHOSEN_MAX_KEY, 0)
        for slot in range(1, top + 1):
            value = storage.get(chosen_key(slot))
            if value is not None:
                self.chosen[slot] = value
        self.max_known = top
        self._execute_ready()

    def on_start(self) -> None:
        self.env.record("role", role=self.role_names(), executed=self.executed)
        if self.is_learner and self.opts.catchup_interval > 0:
            self.env.set_timer(CATCHUP_TIMER, self.opts.catchup_interval * (0.5 + self.env.rng.random()))

    def role_names(self) -> str:
        roles = [
            name
            for name, on in (
                ("proposer", self.is_proposer),
                ("acceptor", self.is_acceptor),
                ("learner", self.id in self.learners),
            )
            if on
        ]
        return "+".join(roles) or "none"

    # ------------------------------------------------------------------ inspection
    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.role_names(),
            leader=None,
            generation_name="round",
            generation=self.max_round,
            details=self.status(),
        )

    def log_position(self) -> LogPosition:
        # Chosen slots execute as soon as every earlier one is chosen: the executed prefix
        # is the committed one; ``max_known`` the highest slot known chosen.
        return LogPosition(commit=self.executed, applied=self.executed, last_index=self.max_known)

    def _saw_round(self, round_: int) -> None:
        if round_ > self.max_round:
            self.max_round = round_

    def status(self) -> dict[str, Any]:
        inst = self.instance
        return {
            "id": self.id,
            "roles": self.role_names(),
            "executed": self.executed,
            "max_known": self.max_known,
            "queued": len(self.queue),
            "instance": None
            if inst is None
            else {"slot": inst.slot, "ballot": str(inst.ballot), "phase": inst.phase},
        }

    def quorum_size(self, fast: bool) -> int:
        """Acceptors needed to choose a value in a round of this kind."""
        return self.quorum

    def acceptor_state(self, slot: int) -> AcceptorState:
        rec = self.acceptor_records.get(slot)
        if rec is None:
            rec = self.env.storage.get(acceptor_key(slot)) or EMPTY_ACCEPTOR
            self.acceptor_records[slot] = rec
        return rec

    # ------------------------------------------------------------------ inputs
    def on_message(self, src: str, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.env.record("ignored", src=src, reason=f"unknown message {type(msg).__name__}")
            return
        handler(src, msg)
        self._drain()

    def on_timer(self, key: str) -> None:
        if key == PROPOSE_TIMER:
            self._on_propose_timer()
        elif key == CATCHUP_TIMER:
            self._on_catchup_timer()
        self._drain()

    def on_request(self, request: ClientRequest) -> None:
        if not self.is_proposer:
            hint = self.env.rng.choice(self.proposers) if self.proposers else None
            self._reply_error(request, NOT_LEADER, hint)
            return
        key = (request.client_id, request.seq)
        if key in self.waiting:
            return  # a duplicate of a request already on its way through the log
        self.waiting[key] = request
        self.queue.append(request)
        self._kick()
        self._drain()

    # ------------------------------------------------------------------ admin inputs
    def propose(self, value: Any, *, slot: int | None = None, round: int | None = None) -> None:
        """Propose ``value`` (a scenario's "X"); ``slot``/``round`` pin the first ballot
        (seed 003's S1 proposing with 3.1 is ``propose("X", slot=1, round=3)``)."""
        if not self.is_proposer:
            raise RuntimeError(f"{self.id} is not a proposer")
        self.offered.append(value)
        if self.observer is not None:
            self.observer.on_offered(self, value)
        if slot is None and round is None:
            self.queue.append(value)
            self._kick()
        else:
            if self.instance is not None:
                raise RuntimeError(f"{self.id} is busy with slot {self.instance.slot}")
            inst = Instance(slot=slot if slot is not None else self._free_slot(), own=value)
            inst.first_round = round or 0
            self.instance = inst
            self._start_round(inst)
        self._drain()

    def set_backoff(self, enabled: bool) -> None:
        """Switch randomized backoff on or off (the dueling-proposers scenario)."""
        self.opts.backoff = enabled

    # ------------------------------------------------------------------ plumbing
    def _send(self, dst: str, msg: Any) -> None:
        if dst == self.id:
            self.local.append((dst, msg))
        else:
            self.env.send(dst, msg)

    def _drain(self) -> None:
        local = self.local
        while local:
            src, msg = local.popleft()
            self._handlers[type(msg)](src, msg)

    # ------------------------------------------------------------------ acceptor
    def _persist_acceptor(self, slot: int, rec: AcceptorState) -> None:
        self.acceptor_records[slot] = rec
        self._saw_round(rec.promised.round)
        self.env.storage.put(acceptor_key(slot), rec)
        if self.observer is not None:
            self.observer.on_persist(self, "acceptor", slot, rec)

    def handle_prepare(self, src: str, m: Prepare) -> None:
        """P1b: promise unless a higher ballot was promised; report our vote."""
        if not self.is_acceptor:
            return
        rec = self.acceptor_state(m.slot)
        if m.ballot < rec.promised:
            self._send(src, Nack(slot=m.slot, ballot=m.ballot, promised=rec.promised))
            return
        if m.ballot > rec.promised:
            rec = AcceptorState(
                promised=m.ballot,
                accepted_ballot=rec.accepted_ballot,
                accepted_value=rec.accepted_value,
                accepted_fast=rec.accepted_fast,
            )
            self._persist_acceptor(m.slot, rec)
        self._send(
            src,
            Promise(
                slot=m.slot,
                ballot=m.ballot,
                accepted_ballot=rec.accepted_ballot,
                accepted_value=rec.accepted_value,
                accepted_fast=rec.accepted_fast,
            ),
        )

    def handle_accept(self, src: str, m: Accept) -> None:
        """P2b: accept unless a higher ballot was promised (or, for a Fast Paxos
        recovery round, anything above its base round)."""
        if not self.is_acceptor:
            return
        rec = self.acceptor_state(m.slot)
        refused = m.ballot < rec.promised and "accept-lower-ballot" not in self.bugs
        if m.base is not None and m.base < rec.promised and rec.promised != m.ballot:
            refused = True
        if refused:
            self._send(src, Nack(slot=m.slot, ballot=m.ballot, promised=rec.promised))
            return
        if rec.accepted_ballot != m.ballot or rec.accepted_value != m.value:
            rec = AcceptorState(
                promised=max(rec.promised, m.ballot),
                accepted_ballot=m.ballot,
                accepted_value=m.value,
                accepted_fast=False,
            )
            self._persist_acceptor(m.slot, rec)
        self._announce(Accepted(slot=m.slot, ballot=m.ballot, value=m.value), src)

    def _announce(self, msg: Accepted, requester: str) -> None:
        for dst in self._vote_listeners(requester):
            self._send(dst, msg)

    def _vote_listeners(self, requester: str) -> list[str]:
        listeners = set(self.knowers)
        listeners.add(requester)
        return sorted(listeners)

    # ------------------------------------------------------------------ learner
    def handle_accepted(self, src: str, m: Accepted) -> None:
        if m.slot in self.chosen or src not in self.acceptors:
            return
        by_ballot = self.votes.setdefault(m.slot, {})
        votes = by_ballot.setdefault(m.ballot, {})
        votes[src] = m.value
        same = sum(1 for v in votes.values() if v == m.value)
        if same >= self.quorum_size(m.fast):
            self._learn(m.slot, m.value)
        else:
            self._vote_counted(src, m)

    def _vote_counted(self, src: str, m: Accepted) -> None:
        """Hook for Fast Paxos collision detection."""

    def handle_catchup(self, src: str, m: CatchUp) -> None:
        values = []
        for slot in range(max(1, m.from_slot), self.max_known + 1):
            value = self.chosen.get(slot)
            if value is not None:
                values.append((slot, value))
                if len(values) >= self.opts.catchup_batch:
                    break
        if values:
            self._send(src, Chosen(values=tuple(values)))

    def handle_chosen(self, src: str, m: Chosen) -> None:
        for slot, value in m.values:
            if isinstance(slot, int) and slot >= 1 and value is not None:
                self._learn(slot, value)

    def _learn(self, slot: int, value: Any) -> None:
        known = self.chosen.get(slot)
        if known is not None:
            if known != value:  # only possible with a protocol bug; the checker reports it
                self.env.record("anomaly", slot=slot, known=describe(known), told=describe(value))
            return
        self.chosen[slot] = value
        self.votes.pop(slot, None)
        storage = self.env.storage
        storage.put(chosen_key(slot), value)
        if slot > self.max_known:
            self.max_known = slot
            storage.put(CHOSEN_MAX_KEY, slot)
        if self.observer is not None:
            self.observer.on_persist(self, "chosen", slot, value)
        self.env.record("learned", slot=slot, value=describe(value))
        self._execute_ready()
        self._slot_chosen(slot, value)

    def _execute_ready(self) -> None:
        chosen = self.chosen
        while self.executed + 1 in chosen:
            slot = self.executed + 1
            value = chosen[slot]
            self.executed = slot
            if isinstance(value, ClientRequest):
                result = replies.applied(self.sm, value, self.env)
                self._executed_command(slot, value, result)
            if self.observer is not None:
                self.observer.on_execute(self, slot, value)
        if self.hole is not None and self.hole[0] <= self.executed:
            self.hole = None

    def _executed_command(self, slot: int, command: ClientRequest, result: Any) -> None:
        key = (command.client_id, command.seq)
        request = self.waiting.pop(key, None)
        if request is not None:
            error = refusal(result)  # stale, expired or reused session: nothing applied
            if error is not None:
                self._reply_error(request, error, None)
            else:
                self.env.deliver(
                    ClientResponse(
                        client_id=request.client_id,
                        seq=request.seq,
                        ok=True,
                        result=result,
                        leader_hint=self.id,
                        index=slot,
                    )
                )
        inst = self.instance
        if inst is not None and inst.own == command:
            inst.own_done = True
        if self.queue and command in self.queue:
            self.queue.remove(command)

    def _reply_error(self, request: ClientRequest, error: str, hint: str | None) -> None:
        self.env.deliver(
            ClientResponse(
                client_id=request.client_id, seq=request.seq, ok=False, error=error, leader_hint=hint
            )
        )

    def _on_catchup_timer(self) -> None:
        peers = [k for k in self.knowers if k != self.id]
        if peers:
            self._send(self.env.rng.choice(peers), CatchUp(from_slot=self.executed + 1))
        next_slot = self.executed + 1
        if self.max_known > self.executed and next_slot not in self.chosen:
            now = self.env.now()
            if self.hole is None or self.hole[0] != next_slot:
                self.hole = (next_slot, now)
            elif now - self.hole[1] >= self.opts.gap_timeout and self.is_proposer and self.instance is None:
                self.env.record("fill-hole", slot=next_slot)
                self.hole = (next_slot, now)
                self.instance = Instance(slot=next_slot, own=NOOP)
                self._start_round(self.instance)
        self.env.set_timer(CATCHUP_TIMER, self.opts.catchup_interval)

    # ------------------------------------------------------------------ proposer
    def _free_slot(self) -> int:
        slot = self.executed + 1
        while slot in self.chosen:
            slot += 1
        return slot

    def _kick(self) -> None:
        """Start working on the next queued value if idle."""
        if self.instance is not None or not self.queue or not self.is_proposer:
            return
        own = self.queue.popleft()
        self.instance = Instance(slot=self._free_slot(), own=own)
        self._begin(self.instance)

    def _begin(self, inst: Instance) -> None:
        """How a fresh instance starts (Fast Paxos overrides it with a fast proposal)."""
        self._start_round(inst)

    def min_round(self) -> int:
        return 1

    def _new_ballot(self, slot: int, wanted: int = 0) -> Ballot:
        used = self.env.storage.get(round_key(slot), 0)
        round_ = max(used + 1, self.seen_round.get(slot, 0) + 1, wanted, self.min_round())
        self.env.storage.put(round_key(slot), round_)
        self._saw_round(round_)
        return Ballot(round_, self.number)

    def _start_round(self, inst: Instance) -> None:
        """Phase 1a with a ballot above every one seen for the slot."""
        if inst.slot in self.chosen:
            self._slot_chosen(inst.slot, self.chosen[inst.slot])
            return
        inst.ballot = self._new_ballot(inst.slot, inst.first_round)
        inst.first_round = 0
        inst.phase = PREPARE
        inst.promises = {}
        inst.value = None
        msg = Prepare(slot=inst.slot, ballot=inst.ballot)
        for acceptor in self.acceptors:
            self._send(acceptor, msg)
        self.env.set_timer(PROPOSE_TIMER, self.opts.retry_timeout)

    def handle_promise(self, src: str, m: Promise) -> None:
        inst = self.instance
        if (
            inst is None
            or inst.phase != PREPARE
            or m.slot != inst.slot
            or m.ballot != inst.ballot
            or src not in self.acceptors
        ):
            return
        inst.promises[src] = m
        if len(inst.promises) < self.quorum:
            return
        value = self._choose_value(inst)
        inst.phase = ACCEPT
        inst.value = value
        msg = Accept(slot=inst.slot, ballot=inst.ballot, value=value)
        for acceptor in self.acceptors:
            self._send(acceptor, msg)
        self.env.set_timer(PROPOSE_TIMER, self.opts.retry_timeout)

    def _choose_value(self, inst: Instance) -> Any:
        """P2c: the value of the highest-ballot vote reported, else our own."""
        if "ignore-promise" in self.bugs:
            return inst.own
        reports = [(p.accepted_ballot, p.accepted_value, p.accepted_fast) for p in inst.promises.values()]
        forced, value = safe_value(reports, len(self.acceptors))
        return value if forced else inst.own

    def handle_nack(self, src: str, m: Nack) -> None:
        if m.promised.round > self.seen_round.get(m.slot, 0):
            self.seen_round[m.slot] = m.promised.round
            self._saw_round(m.promised.round)
        inst = self.instance
        if inst is None or m.slot != inst.slot or m.ballot != inst.ballot or inst.phase == BACKOFF:
            return
        self._preempted(inst, f"{src} promised {m.promised}")

    def _preempted(self, inst: Instance, reason: str) -> None:
        inst.preemptions += 1
        inst.phase = BACKOFF
        self.env.record("preempted", slot=inst.slot, ballot=str(inst.ballot), reason=reason)
        if not self.opts.backoff:
            self._start_round(inst)
            return
        window = min(self.opts.backoff_cap, self.opts.backoff_base * 2 ** (inst.preemptions - 1))
        self.env.set_timer(PROPOSE_TIMER, self.env.rng.uniform(0.0, window))

    def _on_propose_timer(self) -> None:
        inst = self.instance
        if inst is None:
            return
        if inst.phase == BACKOFF:
            self._start_round(inst)
        else:
            self._preempted(inst, f"no quorum within {self.opts.retry_timeout}s")

    def _slot_chosen(self, slot: int, value: Any) -> None:
        inst = self.instance
        if inst is not None and inst.slot == slot:
            self.env.cancel_timer(PROPOSE_TIMER)
            self.instance = None
            if value != inst.own and not inst.own_done and not isinstance(inst.own, Noop):
                self.queue.appendleft(inst.own)  # another value won the slot: try a later one
        self._kick()


# ---------------------------------------------------------------------- registry entry
def make_basic_paxos_node(
    node_id: str,
    env: Env,
    members: Sequence[str],
    options: dict[str, Any],
    *,
    state_machine: StateMachine | None = None,
) -> BasicPaxosNode:
    opts = BasicPaxosOptions.from_dict(dict(options))
    return BasicPaxosNode(node_id, env, members, opts, state_machine=state_machine)


def validate_basic_options(options: dict[str, Any]) -> None:
    BasicPaxosOptions.from_dict(dict(options))


def basic_paxos_spec() -> Any:
    from consensuskit.core.registry import ProtocolSpec
    from consensuskit.protocols.paxos.basic_options import BUGS

    return ProtocolSpec(
        name="basic-paxos",
        description="Basic Paxos per slot of a replicated log (no leader: 4 message delays "
        "per command), with separable proposer/acceptor/learner roles and randomized backoff",
        make_node=make_basic_paxos_node,
        bugs=BUGS,
        validate_options=validate_basic_options,
        log=True,
    )
