"""Fast Paxos (Lamport 2006; seed 004 "Fast-Paxos") driving a log of slots.

Quorums over n acceptors: classic = floor(n/2)+1, fast = ceil(3n/4).  Safe because any
two fast quorums and any classic quorum share an acceptor (2*fast + classic > 2n, see
``quorum.py``): two values cannot both collect a fast quorum in one round, and a
classic quorum of phase-1b reports always contains enough votes of a value that might
have been chosen in a fast round to recognise it (rule O4, ``quorum.safe_value``).
A fast round must survive ``f`` failed acceptors, so we require n >= 3f+1 and
fast <= n-f (the defaults: f=1, n >= 4).

Rounds of a slot (ballots ``(round, node)``, c = the coordinator's number):
  * ``1.c`` - the fast round.  The coordinator sends ``AcceptAny(1.c, from_slot=1)``
    once (re-sent periodically); no phase 1 is needed because no lower round exists.
    A node that receives a client request acts as the client: it sends ``Propose`` to
    every acceptor, each votes for the first value it gets and sends ``Accepted`` to
    the learners, which learn on a fast quorum: 2 message delays from the client;
  * ``2.c`` - the recovery round after a collision (no value can reach a fast quorum
    in round 1).  Coordinated: the coordinator treats the 2b messages of round 1 as
    the 1b messages of classic round 2, picks the value by O4 and sends ``Accept`` to
    the acceptors (4 delays in all).  Uncoordinated: every acceptor does the same
    computation itself and votes in *fast* round 2 (3 delays); if round 2 collides
    too, the coordinator recovers it in classic round ``3.c``.  Skipping phase 1 is
    only safe if the acceptors did not promise anything between the base round and
    the recovery round; ``Accept.base`` makes acceptors check exactly that;
  * rounds >= 4 (any proposer) - classic rounds with a full phase 1, used when a fast
    or recovery round stalls (lost messages, crashed coordinator): the proposer of a
    command that is not learned within ``retry_timeout`` runs Basic Paxos for the slot
    with the O4 rule, after a randomized backoff.  A hole is filled the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.service import StateMachine
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic import (
    PROPOSE_TIMER,
    BasicPaxosNode,
    Instance,
    round_key,
)
from consensuskit.protocols.paxos.basic_messages import Accept, Accepted, AcceptorState, Nack, describe
from consensuskit.protocols.paxos.fast_messages import AcceptAny, Propose
from consensuskit.protocols.paxos.fast_options import FastPaxosOptions
from consensuskit.protocols.paxos.quorum import fast_quorum, safe_value

FAST = "fast"
FAST_ROUND = 1
RECOVERY_ROUND = 2
CLASSIC_FLOOR = 4  # first round of full-phase-1 classic rounds

ANY_TIMER = "any"
RECOVER_TIMER = "recover/"  # + f"{slot}/{round}"
ANY_KEY = "fastpaxos/any"


def check_acceptor_count(n: int, f: int) -> None:
    """n >= 3f+1 and a fast quorum survives f failures, or a ValueError saying why."""
    if n < 3 * f + 1 or n - fast_quorum(n) < f:
        smallest = next(m for m in range(3 * f + 1, 8 * f + 8) if m - fast_quorum(m) >= f)
        raise ValueError(
            f"fast paxos with f={f} needs n >= 3f+1 acceptors and a fast quorum "
            f"ceil(3n/4) <= n-f: at least {smallest}, got {n} (lower f to run with fewer)"
        )


class FastPaxosNode(BasicPaxosNode):
    protocol = "fast-paxos"
    opts: FastPaxosOptions

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: FastPaxosOptions | None = None,
        *,
        state_machine: StateMachine | None = None,
    ) -> None:
        opts = options or FastPaxosOptions()
        super().__init__(node_id, env, members, opts, state_machine=state_machine)
        check_acceptor_count(len(self.acceptors), opts.f)
        self.fast_q = fast_quorum(len(self.acceptors))
        self.coordinator = opts.coordinator or self.members[0]
        if self.coordinator not in self.members:
            raise ValueError(
                f"coordinator {self.coordinator!r} is not a member; valid: {', '.join(self.members)}"
            )
        self.coord_number = self.numbers[self.coordinator]
        self.fast_ballot = Ballot(FAST_ROUND, self.coord_number)
        self.uncoordinated = opts.recovery == "uncoordinated"
        self.grant: AcceptAny | None = env.storage.get(ANY_KEY)
        self._handlers[AcceptAny] = self.handle_any
        self._handlers[Propose] = self.handle_propose

    # ------------------------------------------------------------------ basics
    def quorum_size(self, fast: bool) -> int:
        return self.fast_q if fast else self.quorum

    def min_round(self) -> int:
        return CLASSIC_FLOOR

    def on_start(self) -> None:
        super().on_start()
        if self.id == self.coordinator:
            self._send_any()
        self._drain()

    def on_timer(self, key: str) -> None:
        if key == ANY_TIMER:
            self._send_any()
        elif key.startswith(RECOVER_TIMER):
            slot, round_ = key[len(RECOVER_TIMER) :].split("/")
            self._recover(int(slot), Ballot(int(round_), self.coord_number))
        else:
            super().on_timer(key)
            return
        self._drain()

    # ------------------------------------------------------------------ coordinator: any
    def _send_any(self) -> None:
        msg = AcceptAny(ballot=self.fast_ballot, from_slot=1)
        for acceptor in self.acceptors:
            self._send(acceptor, msg)
        self.env.set_timer(ANY_TIMER, self.opts.any_interval)

    def handle_any(self, src: str, m: AcceptAny) -> None:
        if not self.is_acceptor or src != self.coordinator or m.ballot != self.fast_ballot:
            return
        if self.grant != m:
            self.grant = m
            self.env.storage.put(ANY_KEY, m)

    # ------------------------------------------------------------------ client side
    def _begin(self, inst: Instance) -> None:
        """The node acts as the client: its proposal goes straight to the acceptors."""
        inst.phase = FAST
        inst.ballot = self.fast_ballot
        inst.value = inst.own
        msg = Propose(slot=inst.slot, ballot=self.fast_ballot, value=inst.own)
        for acceptor in self.acceptors:
            self._send(acceptor, msg)
        self.env.set_timer(PROPOSE_TIMER, self.opts.retry_timeout)

    # ------------------------------------------------------------------ acceptor
    def handle_propose(self, src: str, m: Propose) -> None:
        """Vote for the first value proposed in the fast round we were given "any" for."""
        if not self.is_acceptor:
            return
        grant = self.grant
        if grant is None or grant.ballot != m.ballot or m.slot < grant.from_slot:
            self.env.record("ignored", src=src, reason=f"no any for {m.ballot} slot {m.slot}")
            return
        rec = self.acceptor_state(m.slot)
        if rec.promised > m.ballot and "accept-lower-ballot" not in self.bugs:
            self._send(src, Nack(slot=m.slot, ballot=m.ballot, promised=rec.promised))
            return
        if rec.accepted_ballot >= m.ballot:
            # Already voted in this round (or later): tell the proposer how.
            vote = Accepted(
                slot=m.slot, ballot=rec.accepted_ballot, value=rec.accepted_value, fast=rec.accepted_fast
            )
            self._send(src, vote)
            return
        rec = AcceptorState(
            promised=max(rec.promised, m.ballot),
            accepted_ballot=m.ballot,
            accepted_value=m.value,
            accepted_fast=True,
        )
        self._persist_acceptor(m.slot, rec)
        self._announce(Accepted(slot=m.slot, ballot=m.ballot, value=m.value, fast=True), src)

    def _vote_listeners(self, requester: str) -> list[str]:
        listeners = set(self.knowers)
        listeners.add(requester)
        listeners.add(self.coordinator)
        if self.uncoordinated:
            listeners.update(self.acceptors)
        return sorted(listeners)

    # ------------------------------------------------------------------ collisions
    def _vote_counted(self, src: str, m: Accepted) -> None:
        if m.fast and self._recovers(m.ballot):
            self._check_collision(m.slot, m.ballot)

    def _recovers(self, ballot: Ballot) -> bool:
        """Whether this node recovers a collision in ``ballot``."""
        if ballot.node != self.coord_number:
            return False
        if ballot.round == FAST_ROUND:
            return self.is_acceptor if self.uncoordinated else self.id == self.coordinator
        return ballot.round == RECOVERY_ROUND and self.uncoordinated and self.id == self.coordinator

    def _check_collision(self, slot: int, ballot: Ballot) -> None:
        votes = self.votes.get(slot, {}).get(ballot, {})
        n = len(self.acceptors)
        values = list(votes.values())
        top = max(sum(1 for v in values if v == value) for value in values)
        if top + (n - len(values)) >= self.fast_q or len(values) < self.quorum:
            return  # a value may still reach a fast quorum (or too few votes to recover)
        if len(values) == n:
            self._recover(slot, ballot)
        else:
            key = f"{RECOVER_TIMER}{slot}/{ballot.round}"
            self.env.set_timer(key, self.opts.recovery_wait)

    def _recover(self, slot: int, ballot: Ballot) -> None:
        """Round i collided: run round i+1 with the 2b messages of round i as its 1b."""
        self.env.cancel_timer(f"{RECOVER_TIMER}{slot}/{ballot.round}")
        votes = self.votes.get(slot, {}).get(ballot, {})
        if slot in self.chosen or len(votes) < self.quorum:
            return
        reports = [(ballot, value, True) for value in votes.values()]
        _, value = safe_value(reports, len(self.acceptors))
        nxt = Ballot(ballot.round + 1, self.coord_number)
        if self.uncoordinated and ballot.round == FAST_ROUND:
            rec = self.acceptor_state(slot)
            if rec.promised > ballot or rec.accepted_ballot >= nxt:
                return
            self.env.record(
                "recover",
                slot=slot,
                mode="uncoordinated",
                base=str(ballot),
                ballot=str(nxt),
                value=describe(value),
            )
            rec = AcceptorState(promised=nxt, accepted_ballot=nxt, accepted_value=value, accepted_fast=True)
            self._persist_acceptor(slot, rec)
            self._announce(Accepted(slot=slot, ballot=nxt, value=value, fast=True), self.id)
            return
        used = self.env.storage.get(round_key(slot), 0)
        if used >= nxt.round:
            return  # this node already ran that round (or a later one) for the slot
        self.env.storage.put(round_key(slot), nxt.round)
        self._saw_round(nxt.round)
        self.env.record(
            "recover", slot=slot, mode="coordinated", base=str(ballot), ballot=str(nxt), value=describe(value)
        )
        msg = Accept(slot=slot, ballot=nxt, value=value, base=ballot)
        for acceptor in self.acceptors:
            self._send(acceptor, msg)


# ---------------------------------------------------------------------- registry entry
def make_fast_paxos_node(
    node_id: str,
    env: Env,
    members: Sequence[str],
    options: dict[str, Any],
    *,
    state_machine: StateMachine | None = None,
) -> FastPaxosNode:
    opts = FastPaxosOptions.from_dict(dict(options))
    return FastPaxosNode(node_id, env, members, opts, state_machine=state_machine)


def validate_fast_options(options: dict[str, Any]) -> None:
    opts = FastPaxosOptions.from_dict(dict(options))
    if opts.acceptors:
        check_acceptor_count(len(opts.acceptors), opts.f)


def fast_paxos_spec() -> Any:
    from consensuskit.core.registry import ProtocolSpec
    from consensuskit.protocols.paxos.basic_options import BUGS

    return ProtocolSpec(
        name="fast-paxos",
        description="Fast Paxos per slot of a replicated log: proposals go straight to the "
        "acceptors (2 message delays), collisions recovered by the coordinator or by the "
        "acceptors themselves",
        make_node=make_fast_paxos_node,
        bugs=BUGS,
        validate_options=validate_fast_options,
        log=True,
        min_nodes=3 * FastPaxosOptions().f + 1,
    )
