"""Multi-Paxos safety properties, checked on every simulation step.

* one value per slot   - computed from the acceptors' votes: a value is chosen at a slot
                         when a majority of that slot's configuration voted for it in one
                         ballot.  A vote counts once it is durable (a vote lost in a crash
                         never left the acceptor).  Two different chosen values fail;
* learned agreement    - every value a node learns as chosen at a slot is the one other
                         nodes learned there and the one the votes chose;
* execution agreement  - every node executes the same command at each slot, in order;
* lease uniqueness     - at every instant at most one node would serve a lease read from
                         its own state.  The drift bound is the lease arithmetic's premise;
                         a clock *step* (the nemesis's skew) is outside it, as a monotonic
                         clock never steps: a lease measured before its holder's clock
                         jumped back is not counted until it could have been renewed, and
                         no lease counts as exclusive while a grant or wait measured before
                         some clock jumped forward may still run (``_note_clock_steps``).

Client-visible properties (global knowledge of the simulator):
* read freshness       - a read (other than a requested ``stale`` one) reflects every slot
                         executed anywhere before it was invoked (linearizability needs it);
* acknowledged writes  - a write answered ok was executed at the slot it names.

At the end of a run, after every fault was repaired: the members of the newest
configuration executed the same prefix and hold the same key-value state.

The checker watches nodes through their ``observer`` hook; it never changes them.
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.check.common import check_converged, check_read_fresh
from consensuskit.core.client import STALE_OK, ClientRequest, ClientResponse
from consensuskit.protocols.paxos.multi_messages import BATCH, COMMAND, CONFIG, AcceptedValue, Entry, Snapshot


def _key(entry: Entry) -> Any:
    """What makes two slot values the same command (cheap: no deep hashing)."""
    if entry.kind == COMMAND:
        request = entry.data
        return (COMMAND, request.client_id, request.seq)
    if entry.kind == BATCH:
        return (BATCH, tuple((r.client_id, r.seq) for r in entry.data))
    if entry.kind == CONFIG:
        return (CONFIG, tuple(entry.data.members))
    return (entry.kind,)


class MultiPaxosChecker:
    def __init__(self) -> None:
        self.sim: Any = None
        self.watching = False
        # slot -> (ballot, value key) -> acceptors whose vote is durable
        self.votes: dict[int, dict[tuple[Any, Any], set[str]]] = {}
        # Votes not yet durable: (node id, env, storage journal holding the write, vote)
        self.pending_votes: list[tuple[str, Any, Any, AcceptedValue]] = []
        self.chosen: dict[int, Entry] = {}
        self.learned: dict[int, tuple[str, Entry]] = {}
        self.executed: dict[int, tuple[str, Entry]] = {}
        self.to_compare: list[tuple[str, int, Entry]] = []
        self.alpha: int | None = None
        # Clock steps backward (sim fault or the settle phase's reset) lie outside the
        # drift bound lease arithmetic assumes: node -> last skew seen, and until when
        # (global time) a lease it measured before a step may outlive its grant.
        self.skews: dict[str, float] = {}
        self.excused_until: dict[str, float] = {}
        # Until when (global time) a forward step of some clock may have cut a grant or a
        # new leader's wait short: no lease counts as exclusive then.
        self.forward_step_until = float("-inf")
        self.configs: list[tuple[int, tuple[str, ...]]] = []
        # (global time, highest executed slot anywhere) whenever it grew
        self.exec_times: list[float] = []
        self.exec_values: list[int] = []
        self.max_executed = 0
        self.pending: list[InvariantViolation] = []

    # ------------------------------------------------------------------ sim hooks
    def after_step(self, sim: Any, node_id: str) -> None:
        self.sim = sim
        self.watching = True
        for other in sim.node_ids:
            node = sim.nodes.get(other)
            if node is not None and node.observer is not self:
                self._adopt(node)
        if self.pending_votes:
            self._confirm_votes()
        if self.to_compare:
            self._compare_learned()
        self._check_leases(sim)
        if self.pending:
            violation = self.pending[0]
            self.pending = []
            raise violation

    def on_client_response(
        self, sim: Any, invoke_time: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        self.sim = sim
        if not response.ok or not self.watching:
            return
        if request.op.is_read():
            if request.consistency == STALE_OK:
                return
            check_read_fresh(
                self.exec_times,
                self.exec_values,
                invoke_time,
                request,
                response,
                unit="slot",
                reached="executed",
            )
            return
        known = self.executed.get(response.index)
        entry = known[1] if known is not None else None
        commands = entry.commands() if entry is not None else ()
        if not any((c.client_id, c.seq) == (request.client_id, request.seq) for c in commands):
            raise InvariantViolation(
                "acknowledged-write",
                f"{request.client_id}#{request.seq} {request.op.describe()} answered ok at slot "
                f"{response.index}, which did not execute that command",
            )

    def final(self, sim: Any) -> None:
        self.sim = sim
        live = [n for n in (sim.nodes.get(i) for i in sim.node_ids) if n is not None]
        if not live:
            return
        newest = max(live, key=lambda n: n.executed)
        members = set(newest.members())
        states = {n.id: (n.executed, n.sm.digest()) for n in live if n.id in members}
        check_converged(states, what="executed prefix")

    # ------------------------------------------------------------------ node observer
    def on_vote(self, node: Any, vote: AcceptedValue) -> None:
        env = node.env
        storage = getattr(env, "storage", None)
        journal = getattr(storage, "journal", None)
        if journal is None:  # not the simulator's storage: nothing to wait for
            self._count_vote(node.id, vote)
            return
        self.pending_votes.append((node.id, env, journal, vote))

    def on_decide(self, node: Any, slot: int, entry: Entry) -> None:
        seen = self.learned.get(slot)
        if seen is None:
            self.learned[slot] = (node.id, entry)
        elif _key(seen[1]) != _key(entry):
            self._violate(
                "learned-agreement",
                f"{node.id} learned {entry.summary()} at slot {slot}, where {seen[0]} learned "
                f"{seen[1].summary()}",
            )
        self.to_compare.append((node.id, slot, entry))

    def on_execute(self, node: Any, slot: int, entry: Entry) -> None:
        seen = self.executed.get(slot)
        if seen is None:
            self.executed[slot] = (node.id, entry)
            if entry.kind == CONFIG and self.alpha is not None:
                self.configs.append((slot + self.alpha, tuple(entry.data.members)))
                self.configs.sort(key=lambda c: c[0])
        elif _key(seen[1]) != _key(entry):
            self._violate(
                "execution-agreement",
                f"{node.id} executed {entry.summary()} at slot {slot}, where {seen[0]} executed "
                f"{seen[1].summary()}",
            )
        if slot > self.max_executed:
            self.max_executed = slot
            self.exec_times.append(self.sim.now if self.sim is not None else 0.0)
            self.exec_values.append(slot)

    def on_restore(self, node: Any, snapshot: Snapshot) -> None:
        if snapshot.last_slot > self.max_executed:
            self._violate(
                "execution-agreement",
                f"{node.id} installed a snapshot through slot {snapshot.last_slot}, beyond every "
                f"slot executed anywhere ({self.max_executed})",
            )

    # ------------------------------------------------------------------ helpers
    def _adopt(self, node: Any) -> None:
        """Watch a node from now on, and replay what it did before we were watching (a
        node's first input is handled before the simulator's first check)."""
        node.observer = self
        if not self.configs:
            self.configs = [(1, tuple(node.configs[0][1]))]
            self.alpha = node.opts.alpha
        for vote in node.log.votes.values():
            self.on_vote(node, vote)
        for slot in sorted(node.chosen):
            if slot <= node.executed:
                self.on_execute(node, slot, node.chosen[slot])
            else:
                self.on_decide(node, slot, node.chosen[slot])

    def _confirm_votes(self) -> None:
        still = []
        for node_id, env, journal, vote in self.pending_votes:
            if getattr(env, "dead", False):
                continue  # crashed before the vote was durable: it never happened
            if journal is env.storage.journal or journal is getattr(env, "sync_batch", None):
                still.append((node_id, env, journal, vote))
                continue
            self._count_vote(node_id, vote)
        self.pending_votes = still

    def _count_vote(self, node_id: str, vote: AcceptedValue) -> None:
        slot = vote.slot
        value = _key(vote.entry)
        voters = self.votes.setdefault(slot, {}).setdefault((vote.ballot, value), set())
        voters.add(node_id)
        members = self._config_at(slot)
        count = sum(1 for m in members if m in voters)
        if count < len(members) // 2 + 1:
            return
        known = self.chosen.get(slot)
        if known is None:
            self.chosen[slot] = vote.entry
        elif _key(known) != value:
            self._violate(
                "one-value-per-slot",
                f"slot {slot}: {vote.entry.summary()} chosen in ballot {vote.ballot} by "
                f"{','.join(sorted(voters))}, but {known.summary()} was chosen before",
            )

    def _compare_learned(self) -> None:
        for node_id, slot, entry in self.to_compare:
            chosen = self.chosen.get(slot)
            if chosen is not None and _key(chosen) != _key(entry):
                self._violate(
                    "learned-agreement",
                    f"{node_id} learned {entry.summary()} at slot {slot}, but the votes chose "
                    f"{chosen.summary()}",
                )
        self.to_compare = []

    def _config_at(self, slot: int) -> tuple[str, ...]:
        members: tuple[str, ...] = self.configs[0][1] if self.configs else ()
        for first, m in self.configs:
            if first > slot:
                break
            members = m
        return members

    def _check_leases(self, sim: Any) -> None:
        self._note_clock_steps(sim)
        if sim.now < self.forward_step_until:
            return
        holders = []
        for node_id in sim.node_ids:
            node = sim.nodes.get(node_id)
            if node is None or sim.paused(node_id):
                continue
            if node.role == "leader" and node.serving_lease_reads() and not self._stepped_back(sim, node):
                holders.append(node_id)
        if len(holders) > 1:
            detail = ", ".join(
                f"{h} (ballot {sim.nodes[h].ballot}, lease until {sim.nodes[h].lease_until:.6f} "
                f"on its clock {sim.local_time(h):.6f})"
                for h in holders
            )
            self._violate("lease-uniqueness", f"two leaders would serve lease reads at once: {detail}")

    def _note_clock_steps(self, sim: Any) -> None:
        for node_id in sim.node_ids:
            skew = sim.clock_of(node_id).skew
            back = self.skews.get(node_id, 0.0) - skew
            self.skews[node_id] = skew
            if back == 0:
                continue
            node = sim.nodes.get(node_id)
            period = 2 * node.opts.lease_duration if node is not None else 0.0
            if back < 0:
                # A clock that jumps forward ends what it measures early: an acceptor's
                # grant (seed 91187: a new leader elected with no wait while the old one's
                # lease ran) or a new leader's wait for the old lease (seed 90730).  The
                # effect lasts until every grant or wait measured before the jump is over.
                self.forward_step_until = max(self.forward_step_until, sim.now + period - back)
            else:
                # A lease measured before the step runs ``back`` seconds longer than its
                # grantors allowed (and one measured before an earlier step, too).
                until = max(self.excused_until.get(node_id, 0.0), sim.now + period)
                self.excused_until[node_id] = until + back

    def _stepped_back(self, sim: Any, node: Any) -> bool:
        """Could this node's lease have been measured before its clock jumped backward?
        Such a lease outlives what its grantors allowed by the size of the step: a
        broken assumption (real monotonic clocks never step back), not a protocol bug,
        so it is not counted until a lease taken after the step could have replaced it
        (two lease periods and the step; seed 70085 at 3 nodes: a 0.79 s step, a lease
        taken 38 ms before it, another leader 1.01 s after it)."""
        return sim.now < self.excused_until.get(node.id, float("-inf"))

    def _violate(self, name: str, detail: str) -> None:
        self.pending.append(InvariantViolation(name, detail))
