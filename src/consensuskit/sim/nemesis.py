"""Faults: the random nemesis and scripted schedules.

Random nemesis rules:
  * every ``uniform(*interval)`` seconds pick one enabled kind (in NEMESIS_KINDS order,
    by the nemesis's own seeded rng) and either inject a fault of that kind or repair
    one already injected;
  * at most ``max_down`` nodes (default floor((n-1)/2)) are crashed, paused or
    rejoining after a wipe at once, so a majority can make progress; safety must hold
    regardless;
  * ``wipe`` (crash, lose all storage, restart at once as a rejoining node) picks a
    running node that is not rejoining, within max_down; it is dropped from the kinds
    of a protocol whose registry entry lacks ``survives_disk_loss``;
  * when ``partition`` is enabled too, half of the wipes are an amnesia attack instead
    (a lost disk matters where it held the newest writes and the nodes lacking them can
    use it to form a majority): cut the largest minority, leader excluded, away from
    the rest; one interval later wipe a running node of the majority side (each one
    acknowledged the writes chosen meanwhile) and partition it together with the cut
    nodes against the others.  It uses only who leads, like ``isolate-leader``; no
    other wipe starts while one is under way;
  * who leads is read through the ``HasLeader`` capability (core/capabilities.py), in
    ``leaders`` alone; ``isolate-leader`` is a partition pattern only for a protocol
    whose nodes have a leader at all (a scripted one isolates nobody elsewhere);
  * clock faults: skew in [-0.5, 0.5] s (a step of the node's clock), drift in
    [-1%, +1%] (small enough that lease bounds hold unless a protocol has a bug);
  * ``strike`` (BUGGIFY: faults aimed at the moments bugs hide in) runs on its own clock
    (every ``uniform(*interval)`` s, one at a time) and its own rng derived from the
    nemesis's, so the other kinds keep their frequencies.  It waits up to STRIKE_WAIT
    for the leader (``leaders``) to hold entries it does not know committed
    (``uncommitted``: right after it replicated to at most a minority), then: crashes it
    and restarts it quickly; cuts it off with the largest minority (a leader of a later
    term must finish the old term's entries and meets the old leader's divergent tail
    at the heal); cuts it off while a paused minority of followers thaws at one instant
    (their overdue election timers fire together: candidates of one term); or slows one
    of its links only.  Then it watches for the next leader's election and, inside that
    handler (``Simulation.watch_roles``), stalls its disk (``set_disk``) so its first
    writes sync slowly while its followers answer fast; half the time it crashes that
    leader during the stall.  Within max_down, like every kind.  Protocols without a
    leader get the same faults on a random node;
  * ``membership`` (not in "all": sim/config.py) changes the configuration through the
    leader, as an operator would (``Simulation.change_membership``), one change at a
    time: a node the leader's configuration lacks is added back as a voter, else a
    voter (the leader too; never a rejoining one) is removed while more than three
    remain.  A removed node keeps running with its state (clients may still reach it)
    and is added back with it.  Only for protocols whose nodes have the
    ``MembershipChange`` capability (dropped from the kinds elsewhere);
  * the nemesis only injects; ``Simulation.settle`` heals everything at the end.

Schedule text (one action per line, ``#`` starts a comment, times are absolute
virtual seconds)::

    1.5 partition n1,n2|n3,n4,n5     # groups; unlisted nodes form one more group
    2.0 isolate n1                   # n1 alone vs everybody else
    2.0 isolate-leader               # every node that says it leads vs the rest
    2.5 bridge                       # two halves sharing one node (random by sim.rng)
    2.5 ring                         # each node sees only its ring neighbours
    3.0 heal                         # clear partitions and one-way blocks
    3.1 block n1 n2                  # one-way: n1 -> n2 cut (unblock n1 n2)
    4.0 crash n1 | restart n1 | pause n1 | resume n1
    4.0 wipe n1                      # crash, lose all storage, restart as rejoining
    5.0 clock n1 skew=0.3 drift=0.01
    5.0 network loss=0.3 duplicate=0.1 reorder=0.2
    6.0 link n1 n2 loss=0.5 latency_min=0.05 latency_max=0.1
    6.0 link n1 n2                   # clear that link's overrides
    7.0 member remove n3             # through the leader (also add-voter, add-learner)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from consensuskit.core.capabilities import (
    CONFIG_CHANGES,
    FixedVoters,
    HasLeader,
    MembershipChange,
    ReplicatedLog,
    implements,
    leader_of,
)
from consensuskit.sim.config import NEMESIS_KINDS

if TYPE_CHECKING:
    from consensuskit.sim.simulation import Simulation

PARTITION_PATTERNS = ("halves", "majority", "isolate-leader", "bridge", "ring")

# The strike's timings (virtual seconds; see Nemesis._strike).
# isolate twice as often; amnesia only where wipes are on (else it isolates)
# tuple[str, ...]: tests swap in a shorter tuple (a compiled build checks the global's type).
STRIKE_ACTIONS: tuple[str, ...] = ("crash", "isolate", "thaw", "slow-link", "isolate", "amnesia")
STRIKE_WAIT = 0.3  # longest wait for a leader with entries it does not know committed
STRIKE_POLL = 0.002
QUICK_RESTART = (0.02, 0.3)
THAW_AFTER = (0.8, 1.6)  # paused followers resume together after this
SLOW_LINK = (0.02, 0.3)  # one link's latency range while it is slow
SUCCESSOR_WATCH = 2.0  # how long step 3 waits for the next leader
ISOLATE_FOR = (1.0, 3.0)  # an isolating strike's cut lasts this long
FLIP_FOR = (1.5, 3.0)  # the flipped cut lasts this long: an election and a lease wait fit
# The new leader's disk stays slow this long (past a Multi-Paxos leader's wait for the
# old lease, 0.5 s by default, before it proposes anything) ...
STALL_FOR = (0.6, 1.2)
STALL_LATENCY = (0.01, 0.05)  # ... each sync taking this long


# ------------------------------------------------------------------ partition maths
def bridge_cut(order: list[str]) -> list[tuple[str, str]]:
    """Two halves that share ``order[0]``: the bridge talks to both, they not to each other."""
    bridge, rest = order[0], order[1:]
    half = len(rest) // 2
    left, right = rest[:half], rest[half:]
    del bridge  # connected to everybody: no link of it is cut
    cut = []
    for a in left:
        for b in right:
            cut.append((a, b))
            cut.append((b, a))
    return cut


def ring_cut(order: list[str]) -> list[tuple[str, str]]:
    """Each node keeps only the links to its two neighbours in ``order`` (a ring)."""
    n = len(order)
    keep = set()
    for i, a in enumerate(order):
        for b in (order[(i - 1) % n], order[(i + 1) % n]):
            keep.add((a, b))
            keep.add((b, a))
    return [(a, b) for a in order for b in order if a != b and (a, b) not in keep]


# ------------------------------------------------------------------ what faults observe
# The nemesis reads nodes only through these functions (the HasLeader and ReplicatedLog
# capabilities), so a protocol family without leaders or logs just gets fewer aims.
def leaders(sim: Simulation) -> list[str]:
    """The nodes that say they lead (``HasLeader``), in node order; the one lookup."""
    return leader_of((n, sim.nodes[n]) for n in sim.node_ids)


def has_leader(sim: Simulation) -> bool:
    """The protocol's nodes have a leader at all (judged on a live one)."""
    return any(implements(node, HasLeader) for node in sim.nodes.values() if node is not None)


def partition_patterns(n: int, with_leader: bool) -> list[str]:
    """The partition patterns that mean something on ``n`` nodes (in
    PARTITION_PATTERNS order): isolate-leader only where there is a leader."""
    return [
        p
        for p in PARTITION_PATTERNS
        if (p != "bridge" or n >= 3) and (p != "ring" or n >= 4) and (p != "isolate-leader" or with_leader)
    ]


def log_position(sim: Simulation, node_id: str) -> tuple[int, int] | None:
    """(last index, commit index) of the node's log (``ReplicatedLog``); None for a
    crashed node or a protocol without a replicated log."""
    node: Any = sim.nodes[node_id]  # a ReplicatedLog once implements() says so
    if not implements(node, ReplicatedLog):
        return None
    pos = node.log_position()
    return pos.last_index, pos.commit


def uncommitted(sim: Simulation, node_id: str) -> bool | None:
    """True while the node holds log entries it does not know to be committed: for a
    leader, the moment right after it replicated an entry a majority may not hold yet.
    None where ``log_position`` is."""
    pos = log_position(sim, node_id)
    return None if pos is None else pos[0] > pos[1]


# ------------------------------------------------------------------ random nemesis
class Nemesis:
    def __init__(
        self,
        sim: Simulation,
        kinds: tuple[str, ...],
        interval: tuple[float, float],
        rng: random.Random,
        max_down: int | None = None,
    ) -> None:
        unknown = [k for k in kinds if k not in NEMESIS_KINDS]
        if unknown:
            raise ValueError(f"unknown nemesis kind(s) {unknown}; valid: {NEMESIS_KINDS}")
        self.sim = sim
        # Canonical order: the same set of kinds means the same choices.
        if not sim.spec.survives_disk_loss:
            kinds = tuple(k for k in kinds if k != "wipe")
        if not any(implements(node, MembershipChange) for node in sim.nodes.values() if node is not None):
            kinds = tuple(k for k in kinds if k != "membership")
        self.kinds = tuple(k for k in NEMESIS_KINDS if k in kinds)
        self.interval = interval
        self.rng = rng
        n = len(sim.node_ids)
        self.down_limit = (n - 1) // 2 if max_down is None else max_down
        # Members (voters and learners) of the smallest configuration that may be in
        # force: only the membership kind changes it; fewer members tolerate fewer down.
        # Observers (FixedVoters) add nothing to what the voters tolerate: two rejoining
        # voters of ZAB's four never find a quorum without them again.
        fixed = [len(cast(FixedVoters, v).voters) for v in sim.nodes.values() if implements(v, FixedVoters)]
        self.members = min([n, *fixed])
        self.stopped = False
        self.partitioned = False
        self.bursts: dict[str, bool] = {"loss": False, "dup": False, "reorder": False}
        self.skewed: list[str] = []
        self.injected: dict[str, int] = {}
        # The nodes cut off by the first step of an amnesia attack, until its second.
        self.amnesia: tuple[str, ...] | None = None
        # A strike (faults aimed at a leader's dangerous moments) under way; its own
        # partition (a token: a later partition or heal by another kind is not undone)
        # and the node whose election it watches for.
        self.striking = False
        self.strike_cut = 0
        self.successor_of: str | None = None
        self.successor_until = 0.0
        # The group an isolating strike cut off, with its partition's token.
        self.cutoff: tuple[tuple[str, ...], int] | None = None
        self.strike_token = -1  # strike_cut while the partition in force is a flip's
        # Strikes come on their own clock and rng (derived only when enabled, so the
        # other kinds' choices are those of a nemesis without strikes).
        self.tick_kinds = tuple(k for k in self.kinds if k != "strike")
        self.srng = random.Random(rng.random()) if "strike" in self.kinds else rng
        if "strike" in self.kinds:
            sim.watch_roles(self._on_role)

    def start(self) -> None:
        if self.tick_kinds:
            self._schedule_next()
        if "strike" in self.kinds:
            self._schedule_strike()

    def _schedule_strike(self) -> None:
        sim = self.sim
        sim._push_fn(sim.now + self.srng.uniform(*self.interval), self._strike_tick, None)

    def _strike_tick(self, _: object) -> None:
        if self.stopped:
            return
        self._strike()
        self._schedule_strike()

    def stop(self) -> None:
        self.stopped = True

    def _schedule_next(self) -> None:
        sim = self.sim
        sim._push_fn(sim.now + self.rng.uniform(*self.interval), self._tick, None)

    def _tick(self, _: object) -> None:
        if self.stopped:
            return
        kind = self.rng.choice(self.tick_kinds)
        getattr(self, "_" + kind)()
        self._schedule_next()

    @property
    def max_down(self) -> int:
        return min(self.down_limit, (self.members - 1) // 2)

    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    # Each kind: repair what it injected (coin flip) or inject a new fault.
    def _partition(self) -> None:
        sim, rng = self.sim, self.rng
        if self._flipped():
            return  # the flip's cut stands until the strike heals it
        if self.partitioned and rng.random() < 0.5:
            sim.heal()
            self.partitioned = False
            return
        self.strike_cut += 1  # a strike's pending heal no longer applies
        ids = list(sim.node_ids)
        n = len(ids)
        if n < 2:
            return
        pattern = rng.choice(partition_patterns(n, has_leader(sim)))
        order = ids[:]
        rng.shuffle(order)
        if pattern == "halves":
            k = n // 2
            sim.partition([sorted(order[:k]), sorted(order[k:])])
        elif pattern == "majority":
            k = rng.randint(1, max(1, (n - 1) // 2))
            sim.partition([sorted(order[:k]), sorted(order[k:])])
        elif pattern == "isolate-leader":
            lead = leaders(sim) or [order[0]]
            sim.partition([lead, [x for x in ids if x not in lead]])
        elif pattern == "bridge":
            sim.partition_links(bridge_cut(order), f"bridge via {order[0]}")
        else:
            sim.partition_links(ring_cut(order), "ring " + ",".join(order))
        self.partitioned = True
        self._count("partition")

    def _down(self) -> int:
        sim = self.sim
        return sum(1 for n in sim.node_ids if not sim.alive(n) or sim.paused(n) or sim.rejoining(n))

    def _crash(self) -> None:
        sim, rng = self.sim, self.rng
        crashed = [n for n in sim.node_ids if not sim.alive(n)]
        if crashed and (self._down() >= self.max_down or rng.random() < 0.5):
            sim.restart(rng.choice(crashed))
            return
        if self._down() < self.max_down:
            up = [n for n in sim.node_ids if sim.alive(n) and not sim.paused(n)]
            if up:
                sim.crash(rng.choice(up))
                self._count("crash")

    def _pause(self) -> None:
        sim, rng = self.sim, self.rng
        paused = [n for n in sim.node_ids if sim.paused(n)]
        if paused and (self._down() >= self.max_down or rng.random() < 0.5):
            sim.resume(rng.choice(paused))
            return
        if self._down() < self.max_down:
            up = [n for n in sim.node_ids if sim.alive(n) and not sim.paused(n)]
            if up:
                sim.pause(rng.choice(up))
                self._count("pause")

    def _membership(self) -> None:
        sim, rng = self.sim, self.rng
        leader = sim.membership_leader()
        if leader is None:
            return
        view = cast("MembershipChange", sim.nodes[leader]).membership()
        members = len(view.voters) + len(view.learners)
        if view.config_pending:
            self.members = min(self.members, members)
            return
        self.members = members
        absent = [n for n in sim.node_ids if n not in view.voters and n not in view.learners]
        if absent:
            sim.change_membership("add-voter", rng.choice(absent))
            return
        removable = [n for n in view.voters if not sim.rejoining(n)]
        # Removing one must leave the faults in place within the smaller budget.
        if len(view.voters) <= 3 or not removable or self._down() > (members - 2) // 2:
            return
        if sim.change_membership("remove", rng.choice(removable)) is None:
            self.members = members - 1
            self._count("membership")

    def _wipe(self) -> None:
        sim, rng = self.sim, self.rng
        if self._down() >= self.max_down or self.amnesia is not None:
            return
        if "partition" in self.kinds and len(sim.node_ids) >= 3 and rng.random() < 0.5:
            if not self._flipped():
                self._amnesia_isolate()
            return
        up = [n for n in sim.node_ids if sim.alive(n) and not sim.paused(n) and not sim.rejoining(n)]
        if up:
            sim.wipe(rng.choice(up))
            self._count("wipe")

    # The amnesia attack (wipe combined with partitions): a lost disk is dangerous only
    # where it held the newest writes and the nodes that lack them could, with its help,
    # form a majority.  Step 1 cuts the largest minority (not the leader) away, so the
    # majority side goes on choosing writes without it; step 2, an interval later, wipes
    # a node of the majority side (every one of them acknowledged those writes) and moves
    # it to the lagging side, which now is a majority holding none of them.
    def _amnesia_isolate(self, rng: random.Random | None = None) -> None:
        sim, rng = self.sim, rng or self.rng
        ids = list(sim.node_ids)
        lead = set(leaders(sim))
        order = [n for n in ids if n not in lead]
        rng.shuffle(order)
        order += sorted(lead)  # the leader is the last to be cut off
        laggers = sorted(order[: (len(ids) - 1) // 2])
        sim.partition([laggers, [n for n in ids if n not in laggers]])
        self.partitioned = True
        self.strike_cut += 1
        self._count("partition")
        self.amnesia = tuple(laggers)
        sim._push_fn(sim.now + rng.uniform(*self.interval), self._amnesia_strike, rng)

    def _amnesia_strike(self, rng: random.Random) -> None:
        sim = self.sim
        laggers, self.amnesia = self.amnesia or (), None
        if self.stopped or self._down() >= self.max_down:
            return
        holders = [
            n
            for n in sim.node_ids
            if n not in laggers and sim.alive(n) and not sim.paused(n) and not sim.rejoining(n)
        ]
        if not holders:
            return
        victim = rng.choice(holders)
        sim.wipe(victim)
        self._count("wipe")
        side = sorted((*laggers, victim))
        sim.partition([side, [n for n in sim.node_ids if n not in side]])
        self.partitioned = True
        self.strike_cut += 1

    # The strike (BUGGIFY: faults at the moments bugs hide in).  Step 1 waits, up to
    # STRIKE_WAIT, for a leader holding entries it does not know committed (it just
    # replicated them to at most a minority as far as it knows); step 2 then either
    # crashes it and restarts it quickly, cuts it off (with the largest minority, so the
    # others elect a leader of a later term that must finish the old term's entries and
    # meet the old leader's divergent tail at the heal), or cuts it off while a minority
    # of followers is paused and resumes them all at the same instant (their election
    # timers fire together: concurrent candidates of one term), or slows one of its links.
    # Step 3 watches for the next leader's election and stalls its disk right then (its
    # first writes sync slowly while its followers answer fast), and may crash it at the
    # moment it counts everything committed while its sync is still in flight; after an
    # isolating strike the crashed leader then joins the cut-off nodes (the flip).
    def _strike(self) -> None:
        if self.striking:
            return
        self.striking = True
        self._count("strike")
        self._strike_wait(self.sim.now + STRIKE_WAIT)

    def _running(self, node_id: str) -> bool:
        sim = self.sim
        return sim.alive(node_id) and not sim.paused(node_id)

    def _strike_wait(self, deadline: float) -> None:
        sim, rng = self.sim, self.srng
        if self.stopped:
            self.striking = False
            return
        lead = [n for n in leaders(sim) if self._running(n)]
        moment = uncommitted(sim, lead[0]) if lead else False
        if moment is False and sim.now < deadline:
            sim._push_fn(sim.now + STRIKE_POLL, lambda _: self._strike_wait(deadline), None)
            return
        up = [n for n in sim.node_ids if self._running(n)]
        if not up:
            self.striking = False
            return
        victim = lead[0] if lead else rng.choice(up)
        action = rng.choice(STRIKE_ACTIONS)
        if (self.amnesia is not None or self._flipped()) and action in ("isolate", "thaw"):
            action = "slow-link"  # a new partition now would undo the attack's or the flip's cut
        self.cutoff = None
        if action == "crash" and self._down() < self.max_down:
            sim.crash(victim)
            sim._push_fn(sim.now + rng.uniform(*QUICK_RESTART), self._restart_if_down, victim)
        elif action == "thaw" and self._down() < self.max_down:
            frozen = [n for n in up if n != victim]
            rng.shuffle(frozen)
            frozen = sorted(frozen[: self.max_down - self._down()])
            for n in frozen:
                sim.pause(n)
            self._cut_off([victim])
            sim._push_fn(sim.now + rng.uniform(*THAW_AFTER), self._thaw, (frozen, self.strike_cut))
        elif (
            action == "amnesia"
            and "wipe" in self.kinds
            and self.amnesia is None
            and not self._flipped()
            and self._down() < self.max_down
            and len(sim.node_ids) >= 3
        ):
            self._amnesia_isolate(rng)  # the amnesia attack, at strike pace (the wipe kind's)
        elif action == "slow-link" and len(sim.node_ids) > 1:
            # One link only (the victim's to one peer): its messages arrive late and out
            # of order with the others', after newer terms or ballots were seen.
            peer = rng.choice([n for n in sim.node_ids if n != victim])
            lo = round(rng.uniform(*SLOW_LINK), 4)
            hi = round(rng.uniform(lo, 2 * SLOW_LINK[1]), 4)
            sim.set_link(victim, peer, latency_min=lo, latency_max=hi)
            sim._push_fn(sim.now + rng.uniform(*self.interval), self._fast_link, (victim, peer))
        else:
            others = [n for n in sim.node_ids if n != victim]
            rng.shuffle(others)
            # The largest minority: the others are a bare majority, so the flip (see
            # _crash_stalled) can turn the nodes that acknowledged a write into a minority.
            group = [victim, *others[: max(0, (len(sim.node_ids) - 1) // 2 - 1)]]
            self._cut_off(group)
            self.cutoff = (tuple(sorted(group)), self.strike_cut)
            sim._push_fn(sim.now + rng.uniform(*ISOLATE_FOR), self._heal_strike, self.strike_cut)
        self.successor_of, self.successor_until = victim, sim.now + SUCCESSOR_WATCH
        self.striking = False

    def _flipped(self) -> bool:
        """The partition in force is the flip's (see _crash_stalled)."""
        return self.partitioned and self.strike_token == self.strike_cut

    def _cut_off(self, group: list[str]) -> None:
        sim = self.sim
        sim.partition([sorted(group), [n for n in sim.node_ids if n not in group]])
        self.partitioned = True
        self.strike_cut += 1

    def _heal_strike(self, token: int) -> None:
        if token == self.strike_cut and self.partitioned and not self.stopped:
            self.sim.heal()
            self.partitioned = False

    def _thaw(self, arg: tuple[list[str], int]) -> None:
        frozen, token = arg
        if self.stopped:
            return
        for n in frozen:  # all at once: their overdue timers fire together
            self.sim.resume(n)
        self._heal_strike(token)

    def _fast_link(self, link: tuple[str, str]) -> None:
        if not self.stopped:
            self.sim.set_link(*link)

    def _restart_if_down(self, node_id: str) -> None:
        if not self.stopped and not self.sim.alive(node_id):
            self.sim.restart(node_id)

    def _on_role(self, node_id: str, fields: dict[str, Any]) -> None:
        """Step 3, inside the new leader's handler: its disk stalls before the writes of
        its election are synced."""
        sim, rng = self.sim, self.srng
        if (
            self.successor_of is None
            or fields.get("role") != "leader"
            or node_id == self.successor_of
            or self.stopped
        ):
            return
        self.successor_of = None
        if sim.now > self.successor_until:
            return
        stall = rng.uniform(*STALL_FOR)
        sim.set_disk(node_id, round(rng.uniform(*STALL_LATENCY), 4))
        sim._push_fn(sim.now + stall, self._unstall, node_id)
        if self.cutoff is not None or rng.random() < 0.5:
            pos = log_position(sim, node_id)
            self._watch_stalled((node_id, sim.now + stall, pos[0] if pos else 0))

    def _watch_stalled(self, arg: tuple[str, float, int]) -> None:
        """Crash the stalled leader at the moment it counts as committed everything it
        holds, some of it written since its election, while a sync of its writes is
        still in flight (or, missing that moment, at the stall's end)."""
        node_id, until, last_at_election = arg
        sim = self.sim
        if self.stopped or not self._running(node_id):
            return
        if sim.now < until and sim.syncing(node_id):
            pos = log_position(sim, node_id)
            moment = pos is not None and pos[1] >= pos[0] > last_at_election
        else:
            moment = sim.now >= until
        if moment:
            self._crash_stalled(node_id)
            return
        sim._push_fn(sim.now + STRIKE_POLL, self._watch_stalled, arg)

    def _unstall(self, node_id: str) -> None:
        if not self.stopped:
            self.sim.set_disk(node_id, None)

    def _crash_stalled(self, node_id: str) -> None:
        sim = self.sim
        if self.stopped or not self._running(node_id) or self._down() >= self.max_down:
            return
        sim.crash(node_id)
        sim._push_fn(sim.now + self.srng.uniform(*QUICK_RESTART), self._restart_if_down, node_id)
        # The flip: the crashed leader (its unsynced writes lost) joins the group the
        # strike cut off; where they make a majority, the nodes that acknowledged its
        # writes are now the minority.  A write counted on an unsynced copy is then held
        # by too few nodes, and the new majority can decide without it.
        if self.cutoff is None:
            return
        group, token = self.cutoff
        self.cutoff = None
        side = sorted({*group, node_id})
        if (
            token == self.strike_cut
            and self.partitioned
            and self.amnesia is None
            and 2 * len(side) > len(sim.node_ids)
        ):
            self._cut_off(side)
            self.strike_token = self.strike_cut  # the partition kind leaves this cut alone
            sim._push_fn(sim.now + self.srng.uniform(*FLIP_FOR), self._heal_strike, self.strike_cut)

    def _burst(self, kind: str, field_name: str, lo: float, hi: float) -> None:
        sim, rng = self.sim, self.rng
        if self.bursts[kind]:
            sim.set_network(**{field_name: getattr(sim.config.network, field_name)})
            self.bursts[kind] = False
        else:
            sim.set_network(**{field_name: round(rng.uniform(lo, hi), 3)})
            self.bursts[kind] = True
            self._count(kind)

    def _loss(self) -> None:
        self._burst("loss", "loss", 0.2, 0.5)

    def _dup(self) -> None:
        self._burst("dup", "duplicate", 0.1, 0.5)

    def _reorder(self) -> None:
        self._burst("reorder", "reorder", 0.2, 0.6)

    def _skew(self) -> None:
        sim, rng = self.sim, self.rng
        if self.skewed and rng.random() < 0.5:
            node = self.skewed.pop(rng.randrange(len(self.skewed)))
            sim.set_clock(node, 0.0, 0.0)
            return
        node = rng.choice(sim.node_ids)
        if node not in self.skewed:
            self.skewed.append(node)
        sim.set_clock(node, round(rng.uniform(-0.5, 0.5), 4), round(rng.uniform(-0.01, 0.01), 5))
        self._count("skew")


# ------------------------------------------------------------------ schedules
# action -> (min args, max args); key=value args are counted too.
ACTIONS: dict[str, tuple[int, int]] = {
    "partition": (1, 1),
    "isolate": (1, 1),
    "isolate-leader": (0, 0),
    "bridge": (0, 0),
    "ring": (0, 0),
    "heal": (0, 0),
    "block": (1, 2),
    "unblock": (1, 2),
    "crash": (1, 1),
    "restart": (1, 1),
    "pause": (1, 1),
    "resume": (1, 1),
    "wipe": (1, 1),
    "clock": (1, 3),
    "network": (1, 8),
    "link": (1, 9),
    "member": (2, 2),
}


def _kv(args: tuple[str, ...], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for a in args:
        name, sep, value = a.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected name=value, got {a!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"{what}: {name} needs a number, got {value!r}") from None
    return out


def _pair(args: tuple[str, ...]) -> tuple[str, str]:
    if len(args) == 1:
        src, sep, dst = args[0].partition("->")
        if not sep:
            raise ValueError(f"expected 'src dst' or 'src->dst', got {args[0]!r}")
        return src, dst
    return args[0], args[1]


def apply_action(sim: Simulation, action: str, args: tuple[str, ...]) -> None:
    """Perform one schedule action on ``sim`` now."""
    if action == "partition":
        sim.partition([g.split(",") for g in args[0].split("|") if g])
    elif action == "isolate":
        sim.partition([[args[0]], [n for n in sim.node_ids if n != args[0]]])
    elif action == "isolate-leader":
        lead = leaders(sim)
        if lead:
            sim.partition([lead, [n for n in sim.node_ids if n not in lead]])
    elif action == "bridge":
        order = list(sim.node_ids)
        sim.rng.shuffle(order)
        sim.partition_links(bridge_cut(order), f"bridge via {order[0]}")
    elif action == "ring":
        order = list(sim.node_ids)
        sim.rng.shuffle(order)
        sim.partition_links(ring_cut(order), "ring " + ",".join(order))
    elif action == "heal":
        sim.heal()
    elif action == "block":
        sim.block(*_pair(args))
    elif action == "unblock":
        sim.unblock(*_pair(args))
    elif action in ("crash", "restart", "pause", "resume", "wipe"):
        getattr(sim, action)(args[0])
    elif action == "clock":
        fields = _kv(args[1:], "clock")
        bad = sorted(set(fields) - {"skew", "drift"})
        if bad:
            raise ValueError(f"clock: unknown field(s) {bad}; valid: skew, drift")
        sim.set_clock(args[0], fields.get("skew", 0.0), fields.get("drift", 0.0))
    elif action == "network":
        sim.set_network(**_kv(args, "network"))
    elif action == "member":  # (Schedule.parse checked the change's name)
        sim.change_membership(args[0], args[1])
    elif action == "link":
        src, dst = _pair(args[:1]) if "->" in args[0] else (args[0], args[1])
        rest = args[1:] if "->" in args[0] else args[2:]
        sim.set_link(src, dst, **_kv(rest, "link"))
    else:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")


@dataclass(slots=True)
class Schedule:
    """A scripted list of faults: ``(time, action, args)``."""

    items: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        items: list[tuple[float, str, tuple[str, ...]]] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if len(words) < 2:
                raise ValueError(f"line {lineno}: expected '<time> <action> [args]': {raw!r}")
            try:
                at = float(words[0])
            except ValueError:
                raise ValueError(f"line {lineno}: bad time {words[0]!r}") from None
            if at < 0:
                raise ValueError(f"line {lineno}: time must be >= 0")
            action, args = words[1], tuple(words[2:])
            if action not in ACTIONS:
                raise ValueError(f"line {lineno}: unknown action {action!r}; valid: {', '.join(ACTIONS)}")
            lo, hi = ACTIONS[action]
            if not lo <= len(args) <= hi:
                raise ValueError(f"line {lineno}: {action} takes {lo}..{hi} arguments, got {len(args)}")
            if action == "member" and args[0] not in CONFIG_CHANGES:
                valid = ", ".join(CONFIG_CHANGES)
                raise ValueError(f"line {lineno}: unknown membership change {args[0]!r}; valid: {valid}")
            items.append((at, action, args))
        items.sort(key=lambda item: item[0])  # stable: equal times keep file order
        return cls(items)

    def to_text(self) -> str:
        return "".join(f"{at:g} {action} {' '.join(args)}".rstrip() + "\n" for at, action, args in self.items)

    def install(self, sim: Simulation) -> None:
        """Schedule every action as a traced event on ``sim``."""
        for at, action, args in self.items:
            label = f"{action} {' '.join(args)}".rstrip()
            sim.schedule(at, partial(apply_action, sim, action, args), label)
