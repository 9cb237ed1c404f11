"""Safety of single-decree Paxos per slot (Basic and Fast Paxos), checked on every step.

* agreement            - at most one value is chosen per slot.  "Chosen" is computed
                         here from the acceptors' *durable* votes, never from what nodes
                         claim: (slot, ballot, v) is chosen once a quorum of acceptors
                         (classic or fast, by the round's kind) has durably voted v in
                         that ballot.  Votes are historical: a later vote does not undo an
                         earlier one;
* learned-not-chosen   - every value a node learned (once durable) is the chosen one;
* chosen-not-proposed  - every chosen value is a no-op, a command some client sent, or a
                         value a scenario asked a proposer to propose;
* executed-divergence  - every node executes the same command at each slot;
* acknowledged-write   - an ok answer names a slot where that very command is executed.

At the end of a run, after every fault was repaired: every learner executed the same
number of slots and holds the same key-value state.

Why durable: an acceptor's vote counts once it survives a crash; a vote written and then
lost in a crash before the sync never left the node (the runtime holds its Accepted until
the write is durable).  The checker sees writes through the node's ``observer`` hook and
recognises a write as durable when the node's durable storage holds that very record
object (durable storage is a prefix of the writes, so everything written before it is
durable too).
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.check.common import check_acknowledged_write, check_converged
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot
from consensuskit.protocols.paxos.basic_messages import (
    AcceptorState,
    Noop,
    acceptor_key,
    chosen_key,
    describe,
)

ACCEPTOR = "acceptor"
ACCEPTOR_PREFIX = acceptor_key(0).rsplit("/", 1)[0]
CHOSEN = "chosen"


class PaxosChecker:
    def __init__(self) -> None:
        self.sim: Any = None
        self.watching = False
        # node -> storage key -> writes not yet seen durable: (incarnation, kind, slot, record)
        self.unsynced: dict[str, dict[str, list[tuple[int, str, int, Any]]]] = {}
        self.sync_seen: dict[str, Any] = {}  # node -> its sync state at the last poll
        # (slot, ballot) -> acceptor -> value it durably voted; and the round's kind
        self.votes: dict[tuple[int, Ballot], dict[str, Any]] = {}
        self.fast_round: dict[tuple[int, Ballot], bool] = {}
        self.chosen: dict[int, tuple[Any, Ballot]] = {}
        self.executed: dict[int, Any] = {}
        self.offered: list[Any] = []
        self.quorum: dict[bool, int] = {}
        self.errors: list[InvariantViolation] = []

    # ------------------------------------------------------------------ sim hooks
    def after_step(self, sim: Any, node_id: str) -> None:
        self.sim = sim
        if not self.watching:
            self.watching = True
            for nid in sim.node_ids:
                self._maybe_attach(sim, nid)
        else:
            self._maybe_attach(sim, node_id)
        if self.unsynced:
            self._poll(sim)
        if self.errors:
            error = self.errors[0]
            self.errors = []
            raise error

    def _maybe_attach(self, sim: Any, node_id: str) -> None:
        node = sim.nodes.get(node_id)
        if node is None or node.observer is self:
            return
        node.observer = self
        if not self.quorum:
            self.quorum = {False: node.quorum_size(False), True: node.quorum_size(True)}
        for value in node.offered:
            self.on_offered(node, value)
        # What the node wrote before we watched it (its first input, or a restart).
        for slot, rec in sorted(node.acceptor_records.items()):
            self.on_persist(node, ACCEPTOR, slot, rec)
        for slot, value in sorted(node.chosen.items()):
            self.on_persist(node, CHOSEN, slot, value)

    def on_client_response(
        self, sim: Any, invoke_time: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        if not response.ok or not self.watching:
            return
        executed = self.executed.get(response.index)
        found = f"which executes {describe(executed) if executed else 'nothing'}"
        check_acknowledged_write(executed, request, response, unit="slot", found=found)

    def final(self, sim: Any) -> None:
        live = [n for n in (sim.nodes.get(i) for i in sim.node_ids) if n is not None and n.is_learner]
        if not live:
            return
        check_converged({n.id: (n.executed, n.sm.digest()) for n in live}, what="executed slot")

    # ------------------------------------------------------------------ node observer
    def on_persist(self, node: Any, kind: str, slot: int, record: Any) -> None:
        key = acceptor_key(slot) if kind == ACCEPTOR else chosen_key(slot)
        incarnation = getattr(node.env, "incarnation", 0)
        self.unsynced.setdefault(node.id, {}).setdefault(key, []).append((incarnation, kind, slot, record))

    def on_offered(self, node: Any, value: Any) -> None:
        if value not in self.offered:
            self.offered.append(value)

    def on_execute(self, node: Any, slot: int, value: Any) -> None:
        first = self.executed.setdefault(slot, value)
        if first != value:
            self._violate(
                "executed-divergence",
                f"{node.id} executes {describe(value)} at slot {slot}, another node {describe(first)}",
            )

    # ------------------------------------------------------------------ durability
    def _poll(self, sim: Any) -> None:
        # A write becomes durable only when a sync of its node completes (or is lost with
        # a crash), so a node is looked at again only when it completed a sync (the env
        # counts them) or restarted.
        for node_id in sorted(self.unsynced):
            env = sim.env_of(node_id)
            signature = (env.incarnation, env.syncs) if env is not None else None
            if self.sync_seen.get(node_id) == signature:
                continue
            self.sync_seen[node_id] = signature
            self._poll_node(sim, node_id, env.incarnation if env is not None else None)

    def _poll_node(self, sim: Any, node_id: str, alive: int | None) -> None:
        by_key = self.unsynced[node_id]
        durable = sim.storage_of(node_id).durable
        # Votes first, so a value learned in the same sync is checked against them.
        for key in sorted(by_key, key=lambda k: not k.startswith(ACCEPTOR_PREFIX)):
            writes = by_key[key]
            current = durable.get(key)
            done = -1
            for i in range(len(writes) - 1, -1, -1):
                if writes[i][3] is current:
                    done = i
                    break
            for _, kind, slot, record in writes[: done + 1]:
                if kind == ACCEPTOR:
                    self._vote(node_id, slot, record)
                else:
                    self._learned(node_id, slot, record)
            # Writes of a crashed incarnation that never became durable are lost.
            rest = [w for w in writes[done + 1 :] if w[0] == alive]
            if rest:
                by_key[key] = rest
            else:
                del by_key[key]
        if not by_key:
            del self.unsynced[node_id]

    def _vote(self, acceptor: str, slot: int, rec: AcceptorState) -> None:
        ballot = rec.accepted_ballot
        if ballot == ZERO_BALLOT:
            return
        round_ = (slot, ballot)
        voters = self.votes.setdefault(round_, {})
        voters[acceptor] = rec.accepted_value
        fast = self.fast_round.setdefault(round_, rec.accepted_fast)
        value = rec.accepted_value
        if sum(1 for v in voters.values() if v == value) >= self.quorum[fast]:
            self._chosen(slot, value, ballot, sorted(a for a, v in voters.items() if v == value))

    def _chosen(self, slot: int, value: Any, ballot: Ballot, voters: list[str]) -> None:
        first = self.chosen.get(slot)
        if first is None:
            self.chosen[slot] = (value, ballot)
            self._check_proposed(slot, value)
        elif first[0] != value:
            self._violate(
                "agreement",
                f"slot {slot}: {describe(first[0])} was chosen in ballot {first[1]} and "
                f"{describe(value)} in ballot {ballot} (votes of {','.join(voters)})",
            )

    def _check_proposed(self, slot: int, value: Any) -> None:
        if isinstance(value, Noop):
            return
        if isinstance(value, ClientRequest):
            sent = self.sim.submitted_request(value.client_id, value.seq) if self.sim is not None else None
            if sent == value:
                return
        elif value in self.offered:
            return
        self._violate("chosen-not-proposed", f"slot {slot}: {describe(value)} was never proposed")

    def _learned(self, node_id: str, slot: int, value: Any) -> None:
        chosen = self.chosen.get(slot)
        if chosen is None or chosen[0] != value:
            what = f"{describe(chosen[0])} was chosen" if chosen else "nothing was chosen"
            self._violate(
                "learned-not-chosen", f"{node_id} learned {describe(value)} for slot {slot}, but {what}"
            )

    def _violate(self, name: str, detail: str) -> None:
        self.errors.append(InvariantViolation(name, detail))
