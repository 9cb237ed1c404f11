"""Multi-Paxos seed scenarios (seeds 001, 004, 000), each asserting its outcome.

Scripts steer elections with ``MultiPaxosNode.campaign`` (an election timeout firing
"now") and count messages with a pass-through filter, so each story happens exactly
as narrated.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from consensuskit.core.capabilities import leader_of
from consensuskit.core.client import Op
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.scenarios.disk_loss import expect_writes_kept, lose_a_disk
from consensuskit.sim import SimConfig, Simulation

FIVE = ("S1", "S2", "S3", "S4", "S5")
THREE = ("S1", "S2", "S3")
PHASE_MESSAGES = ("Prepare", "Promise", "Accept", "Accepted")


# ---------------------------------------------------------------------- helpers
def simulation(run: ScenarioRun, node_ids: tuple[str, ...], **config: Any) -> Simulation:
    """``run.simulation`` with ``bugs`` as a config keyword too."""
    if run.sim is not None:
        raise RuntimeError("a scenario builds one simulation")
    options = dict(config.pop("options", {}))
    options.update(run.options)
    bugs = frozenset(options.pop("bugs", ())) | frozenset(config.pop("bugs", ()))
    cfg = SimConfig(
        bugs=bugs,
        protocol=run.scenario.protocol,
        node_ids=node_ids,
        seed=run.seed,
        trace_path=run.trace_path,
        options=options,
        **config,
    )
    run.sim = Simulation(cfg)
    return run.sim


def node(sim: Simulation, node_id: str) -> Any:
    n = sim.nodes.get(node_id)
    assert n is not None, f"{node_id} is down"
    return n


def leaders(sim: Simulation) -> list[str]:
    return leader_of((i, sim.nodes.get(i)) for i in sim.node_ids)  # the one lookup (HasLeader)


def elect(sim: Simulation, node_id: str, timeout: float = 3.0) -> bool:
    """Make ``node_id`` run phase 1 (again, after each failed round) until it leads."""
    deadline = sim.now + timeout
    while sim.now < deadline:
        sim.invoke(node_id, lambda n: n.campaign(), f"{node_id} election timeout fires")
        if sim.run_until_true(lambda: node(sim, node_id).role == "leader", timeout=0.1):
            return True
    return False


def put(key: str, value: Any) -> Op:
    return Op(kind="put", key=key, value=value)


def get(key: str) -> Op:
    return Op(kind="get", key=key)


def live(sim: Simulation) -> list[Any]:
    return [sim.nodes[i] for i in sim.node_ids if sim.nodes.get(i) is not None]


def converged(sim: Simulation, members: tuple[str, ...] | None = None) -> bool:
    nodes = [n for n in live(sim) if members is None or n.id in members]
    return len({(n.executed, n.sm.digest()) for n in nodes}) == 1


def settle(sim: Simulation, members: tuple[str, ...] | None = None, seconds: float = 3.0) -> None:
    sim.heal()
    for i in sim.node_ids:
        if sim.nodes.get(i) is None:
            sim.restart(i)
    sim.run_until_true(lambda: converged(sim, members) and len(leaders(sim)) == 1, timeout=seconds)
    sim.run_for(0.2)


def expect_converged(run: ScenarioRun, sim: Simulation, members: tuple[str, ...] | None = None) -> None:
    nodes = [n for n in live(sim) if members is None or n.id in members]
    run.expect(
        converged(sim, members),
        "every member executed the same slots and holds the same key-value state",
        "; ".join(f"{n.id}: executed={n.executed}" for n in nodes),
    )


class MessageCounter:
    """A pass-through filter counting sent messages by type (every copy, every link)."""

    def __init__(self, sim: Simulation) -> None:
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[float, str, str, str]] = []
        self.sim = sim
        sim.add_filter(self)

    def __call__(self, src: str, dst: str, msg: Any) -> None:
        name = type(msg).__name__
        self.counts[name] += 1
        self.log.append((self.sim.now, src, dst, name))
        return None

    def take(self) -> Counter[str]:
        out, self.counts = self.counts, Counter()
        return out


def phase_counts(counts: Counter[str]) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in PHASE_MESSAGES}


def lease_expiry_global(sim: Simulation, node_id: str) -> float:
    """Global time at which ``node_id``'s lease ends on its own clock."""
    n = node(sim, node_id)
    local_now = sim.local_time(node_id)
    clock = sim.clock_of(node_id)
    return sim.now + (n.lease_until - local_now) / clock.rate


# ---------------------------------------------------------------------- steady state
def multipaxos_steady_state(run: ScenarioRun) -> None:
    sim = simulation(run, THREE, op_timeout=2.0, op_deadline=4.0)
    counter = MessageCounter(sim)
    sim.run_for(0.001)
    first = sim.submit(put("x", 1), node="S1", client_id="c1")
    sim.run_until_true(lambda: first.done, timeout=1.0)
    run.expect(first.status == "ok", "the first command (to S1, no leader yet) succeeds", f"{first.status}")
    run.expect(leaders(sim) == ["S1"], "S1 ran phase 1 for it and leads", f"leaders={leaders(sim)}")
    first_counts = phase_counts(counter.take())
    run.expect(
        first_counts == {"Prepare": 2, "Promise": 2, "Accept": 2, "Accepted": 2},
        "the first command pays Prepare/Promise and Accept/Accepted",
        f"{first_counts}",
    )
    following = []
    for i in range(2, 6):
        op = sim.submit(put("x", i), node="S1", client_id="c1")
        sim.run_until_true(lambda op=op: op.done, timeout=1.0)
        following.append((op.status, phase_counts(counter.take())))
    run.expect(
        all(status == "ok" for status, _ in following),
        "four following commands to the leader succeed",
        f"{[s for s, _ in following]}",
    )
    run.expect(
        all(c == {"Prepare": 0, "Promise": 0, "Accept": 2, "Accepted": 2} for _, c in following),
        "each following command pays only Accept/Accepted (no phase 1 under the same leader)",
        f"{[c for _, c in following]}",
    )
    delays = {slot: sim.learned_delays.get(slot) for slot in range(1, 6)}
    run.expect(
        delays == {1: 4, 2: 2, 3: 2, 4: 2, 5: 2},
        "message delays until the command is learned: 4 for the first, then 2 each",
        f"{delays}",
    )
    run.note(f"message delays: {sim.message_delays}")
    sim.run_for(0.3)
    expect_converged(run, sim)


# ---------------------------------------------------------------------- election
def multipaxos_leader_election(run: ScenarioRun) -> None:
    sim = simulation(run, FIVE, op_timeout=1.0, op_deadline=6.0)
    sim.run_until_true(lambda: bool(leaders(sim)), timeout=5.0)
    first = leaders(sim)
    run.expect(len(first) == 1, "the first node to time out wins phase 1 and leads", f"leaders={first}")
    if not first:
        return
    leader = first[0]
    ballot = node(sim, leader).ballot
    run.expect(
        str(ballot).endswith(f".{node(sim, leader).number}"),
        "'who leads' is decided by Paxos itself: the winning ballot carries the leader's number",
        f"ballot={ballot}",
    )
    sim.run_for(0.1)
    lease_before = node(sim, leader).lease_until
    sim.run_for(2.0)
    run.expect(
        leaders(sim) == [leader] and node(sim, leader).ballot == ballot,
        "heartbeats keep the same leader, in the same ballot, for 2 s",
    )
    run.expect(
        node(sim, leader).lease_until > lease_before + 1.5 and node(sim, leader).serving_lease_reads(),
        "the leader's lease is renewed by heartbeat rounds",
        f"lease until {lease_before:.3f} -> {node(sim, leader).lease_until:.3f}",
    )
    followers = [i for i in FIVE if i != leader]
    run.expect(
        all(node(sim, i).leader_id == leader for i in followers),
        "every other node follows it",
        f"{ {i: node(sim, i).leader_id for i in followers} }",
    )
    counter = MessageCounter(sim)
    via = followers[-1]
    forwarded = sim.submit(put("x", "via-follower"), node=via, client_id="c1")
    sim.run_until_true(lambda: forwarded.done, timeout=2.0)
    run.expect(
        forwarded.status == "ok" and forwarded.attempts == 1 and counter.counts["Forward"] == 1,
        f"a command sent to follower {via} is forwarded to the leader and answered through {via}",
        f"status={forwarded.status} attempts={forwarded.attempts} forwards={counter.counts['Forward']}",
    )
    sim.crash(leader)
    run.note(f"{leader} (ballot {ballot}) crashes")
    sim.run_until_true(lambda: bool(leaders(sim)), timeout=5.0)
    second = leaders(sim)
    run.expect(len(second) == 1, "after the leader crashes a new one is elected", f"leaders={second}")
    if not second:
        return
    new = node(sim, second[0])
    run.expect(new.ballot > ballot, "with a higher ballot", f"{ballot} -> {new.ballot}")
    after = sim.submit(put("x", "after-crash"), node=followers[0], client_id="c2")
    sim.run_until_true(lambda: after.done, timeout=5.0)
    run.expect(after.status == "ok", "commands keep flowing, forwarded to the new leader", f"{after.status}")
    run.expect(
        all(n.sm.get("x") == "after-crash" for n in live(sim) if n.executed >= new.executed),
        "the new leader's write is executed after the old one",
    )
    settle(sim)
    expect_converged(run, sim)


# ---------------------------------------------------------------------- lease reads
def multipaxos_lease_read(run: ScenarioRun) -> None:
    sim = simulation(run, FIVE, options={"check_quorum": False}, op_timeout=5.0, op_deadline=5.0)
    unsafe = "lease-without-wait" in sim.config.bugs
    # Drift within the bound (1% each way, bound 5%): S1's clock slow, S2's fast.
    sim.set_clock("S1", drift=-0.01)
    sim.set_clock("S2", drift=0.01)
    sim.run_for(0.01)
    run.expect(elect(sim, "S1"), "S1 leads S1..S5")
    write1 = sim.submit(put("x", 1), node="S1", client_id="w")
    sim.run_until_true(lambda: write1.done, timeout=1.0)
    sim.run_for(0.1)
    counter = MessageCounter(sim)
    read1 = sim.submit(get("x"), node="S1", client_id="r1")
    sim.run_until_true(lambda: read1.done, timeout=1.0)
    ignore = ("Heartbeat", "HeartbeatAck", "ClientRequest", "ClientResponse")
    peer_msgs = {k: v for k, v in counter.take().items() if k not in ignore}
    run.expect(
        read1.status == "ok" and read1.result == {"value": 1, "version": 1} and not peer_msgs,
        "S1 serves the read from its own state under its lease: no message to any other node",
        f"result={read1.result} messages={dict(peer_msgs)}",
    )
    # S1 is cut off from everybody; clients can still reach it.
    sim.partition([["S1"], ["S2", "S3", "S4", "S5"]])
    s1_lease_end = lease_expiry_global(sim, "S1")
    run.expect(elect(sim, "S2", timeout=1.0), "S2 wins phase 1 with S3,S4,S5 while S1 is cut off")
    elected_at = sim.now
    run.expect(
        elected_at < s1_lease_end,
        "S2 is elected while S1's lease still runs",
        f"elected at {elected_at:.3f}, S1's lease ends at {s1_lease_end:.3f}",
    )
    write2 = sim.submit(put("x", 2), node="S2", client_id="w")
    sim.run_for(0.01)
    stale_window = sim.now < s1_lease_end and node(sim, "S1").serving_lease_reads()
    read_old = sim.submit(get("x"), node="S1", client_id="r2")
    sim.run_until_true(lambda: read_old.done, timeout=0.05)
    run.expect(
        stale_window and read_old.status == "ok",
        "during its lease S1 still answers reads by itself",
        f"status={read_old.status} result={read_old.result}",
    )
    ready_at: list[float] = []
    sim.run_until_true(lambda: node(sim, "S2").ready, timeout=2.0)
    ready_at.append(sim.now)
    if unsafe:
        run.note("--bug lease-without-wait: S2 decides and serves at once")
    else:
        run.expect(
            ready_at[0] >= s1_lease_end,
            "S2 decides nothing and serves no read until S1's lease has expired (drift bound applied)",
            f"S2 ready at {ready_at[0]:.3f}, S1's lease ended at {s1_lease_end:.3f}",
        )
        run.expect(
            read_old.result == {"value": 1, "version": 1} and not write2.done,
            "so S1's read (x=1) is not stale: the write x=2 is still pending",
            f"read={read_old.result} write2={write2.status}",
        )
    sim.run_until_true(lambda: write2.done, timeout=2.0)
    run.expect(write2.status == "ok", "then S2 commits x=2", f"{write2.status}")
    read_new = sim.submit(get("x"), node="S2", client_id="r3")
    sim.run_until_true(lambda: read_new.done, timeout=1.0)
    run.expect(
        read_new.result == {"value": 2, "version": 2},
        "a read at the new leader S2 returns x=2",
        f"{read_new.result}",
    )
    run.expect(
        not node(sim, "S1").serving_lease_reads(),
        "S1's lease has run out: it no longer serves reads by itself",
    )
    settle(sim)
    expect_converged(run, sim)


# ---------------------------------------------------------------------- membership
def multipaxos_membership(run: ScenarioRun) -> None:
    alpha = 3
    sim = simulation(
        run,
        FIVE,
        options={"members": list(THREE), "alpha": alpha},
        op_timeout=1.0,
        op_deadline=10.0,
    )
    sim.run_for(0.01)
    run.expect(elect(sim, "S1"), "S1 leads the initial configuration S1,S2,S3")
    done: list[Any] = []
    stop = [False]

    def writer() -> None:
        if stop[0]:
            return
        n = len(done) + 1
        done.append(sim.submit(put(f"k{n % 3}", n), node="S1"))
        sim.schedule(sim.now + 0.02, writer, "next write")

    writer()
    sim.run_for(0.1)
    error = sim.invoke("S1", lambda n: n.propose_config_change("add", "S4"), "add S4")
    run.expect(error is None, "S1 proposes adding S4 while commands flow", f"{error}")
    sim.run_until_true(lambda: "S4" in node(sim, "S1").config_at(node(sim, "S1").executed + 1), timeout=2.0)
    configs = list(node(sim, "S1").configs)
    run.expect(
        len(configs) == 2 and configs[1][1] == ("S1", "S2", "S3", "S4"),
        "the configuration S1,S2,S3,S4 is decided through the log",
        f"{configs}",
    )
    add_slot = configs[1][0] - alpha
    run.expect(
        node(sim, "S1").config_at(add_slot + alpha - 1) == THREE
        and node(sim, "S1").config_at(add_slot + alpha) == ("S1", "S2", "S3", "S4"),
        f"it takes effect alpha={alpha} slots after the slot that decided it ({add_slot})",
    )
    sim.run_until_true(lambda: node(sim, "S4").executed >= node(sim, "S1").executed - 2, timeout=2.0)
    run.expect(
        node(sim, "S4").executed >= add_slot,
        "S4 catches up (chosen values / snapshot) and votes",
        f"S4 executed {node(sim, 'S4').executed}, S1 {node(sim, 'S1').executed}",
    )
    error = sim.invoke("S1", lambda n: n.propose_config_change("remove", "S2"), "remove S2")
    run.expect(error is None, "S1 proposes removing S2", f"{error}")
    new = ("S1", "S3", "S4")
    sim.run_until_true(lambda: node(sim, "S1").config_at(node(sim, "S1").executed + 1) == new, timeout=2.0)
    run.expect(node(sim, "S1").members() == new, "the configuration S1,S3,S4 is in force", f"{new}")
    sim.run_for(0.3)
    # Only the new configuration can make progress now: S2 and S3 down leaves S1,S4.
    sim.crash("S2")
    sim.crash("S3")
    late = sim.submit(put("after", "removal"), node="S1", client_id="late")
    sim.run_until_true(lambda: late.done, timeout=3.0)
    run.expect(
        late.status == "ok",
        "with S2 and S3 down, S1 and S4 are a majority of S1,S3,S4 and a write commits",
        f"{late.status}",
    )
    stop[0] = True
    sim.run_until_true(lambda: all(op.done for op in done), timeout=10.0)
    statuses = Counter(op.status for op in done)
    run.expect(
        statuses.get("ok", 0) == len(done),
        "every command sent while the membership changed succeeded",
        f"{dict(statuses)}",
    )
    sim.restart("S3")
    sim.run_until_true(lambda: converged(sim, new), timeout=3.0)
    sim.run_for(0.2)
    run.expect(
        node(sim, "S1").role == "leader" and "S5" not in node(sim, "S1").members(),
        "S1 still leads; S5 was never a member",
    )
    expect_converged(run, sim, new)


# ---------------------------------------------------------------------- partition
def multipaxos_partition_5(run: ScenarioRun) -> None:
    sim = simulation(run, FIVE, options={"check_quorum": False}, op_timeout=10.0, op_deadline=10.0)
    sim.run_for(0.01)
    run.expect(elect(sim, "S1"), "S1 is elected leader of S1..S5")
    sim.run_for(0.2)
    old_ballot = node(sim, "S1").ballot
    sim.partition([["S1", "S2"], ["S3", "S4", "S5"]])
    minority_write = sim.submit(put("x", "from-S1"), node="S1", client_id="c1")
    sim.run_for(0.05)
    slot = node(sim, "S1").next_slot - 1
    run.expect(
        node(sim, "S2").log.vote(slot) is not None and node(sim, "S3").log.vote(slot) is None,
        f"S1 proposes x=from-S1 at slot {slot}; only S1,S2 vote for it",
    )
    run.expect(elect(sim, "S3"), "S3 times out first and wins phase 1 with S4,S5")
    s3 = node(sim, "S3")
    run.expect(
        s3.ballot > old_ballot and sorted(s3.promises) == ["S3", "S4", "S5"],
        "S3's ballot is higher than S1's and its promises came from S3,S4,S5",
        f"S1 {old_ballot}, S3 {s3.ballot}, promises {sorted(s3.promises)}",
    )
    majority_write = sim.submit(put("x", "from-S3"), node="S3", client_id="c2")
    sim.run_for(1.5)
    run.expect(majority_write.status == "ok", "the write sent to S3 commits", f"{majority_write.status}")
    run.expect(
        minority_write.status is None and node(sim, "S1").executed < slot,
        "the write sent to S1 never commits (S1 still believes it leads, without a majority)",
        f"S1 role={node(sim, 'S1').role} executed={node(sim, 'S1').executed}",
    )
    run.expect(set(leaders(sim)) == {"S1", "S3"}, "two leaders coexist, with different ballots")
    run.expect(
        not node(sim, "S1").serving_lease_reads(),
        "S1's lease ran out: nobody renewed it without a majority",
    )
    sim.heal()
    sim.run_until_true(lambda: node(sim, "S1").role == "follower", timeout=1.0)
    run.expect(
        node(sim, "S1").role == "follower" and node(sim, "S1").promised >= s3.ballot,
        "on heal S1 sees the higher ballot and steps down",
    )
    settle(sim)
    run.expect(
        all(node(sim, i).sm.get("x") == "from-S3" for i in FIVE),
        f"S1 and S2 learn the value chosen at slot {slot}: x=from-S3 everywhere",
    )
    expect_converged(run, sim)


def multipaxos_disk_loss(run: ScenarioRun) -> None:
    sim = simulation(run, ("S1", "S2", "S3"))
    sim.run_for(0.01)
    run.expect(elect(sim, "S1"), "S1 leads")
    lose_a_disk(run, sim, lead="S1", stale="S3", wiped="S2", how="chosen")
    sim.run_for(3.0)
    stale = "S3, which lacks the writes, cannot win phase 1: S2 promises nothing"
    run.expect(not leaders(sim), stale, f"{leaders(sim)}")
    sim.restart("S1")
    sim.run_until_true(lambda: len(leaders(sim)) == 1 and not node(sim, "S2").rejoining, timeout=5.0)
    lead = leaders(sim)[0] if len(leaders(sim)) == 1 else "S1"
    run.expect(
        len(leaders(sim)) == 1,
        "with S1 back a leader is elected (a phase 1 that hears S1 learns the chosen values)",
        f"{leaders(sim)}",
    )
    run.expect(
        not node(sim, "S2").rejoining,
        "S2 is caught up, asks for a new phase 1, and promises again once it saw a slot decided in it",
    )
    expect_writes_kept(run, sim, via=lead)
    settle(sim)
    expect_converged(run, sim)


SCENARIOS = [
    Scenario(
        "multipaxos-steady-state",
        "Steady state: phase 1 once, then phase 2 only",
        "multipaxos",
        "Seed 001/004: the first command reaches S1 with no leader; S1 runs Prepare/Promise for "
        "every slot, then Accept/Accepted (4 message delays). The next commands under the same "
        "leader pay only Accept/Accepted (2 message delays). Message counts and delays asserted.",
        multipaxos_steady_state,
    ),
    Scenario(
        "multipaxos-leader-election",
        "Leader election by Paxos, lease renewal, failover, forwarding",
        "multipaxos",
        "Seed 001 (Chubby): the leader is chosen by running Paxos (phase 1 with the node's ballot); "
        "it keeps a lease by renewing it with heartbeats; a command sent to a follower is forwarded "
        "to the leader; after the leader crashes a new one is elected with a higher ballot.",
        multipaxos_leader_election,
    ),
    Scenario(
        "multipaxos-lease-read",
        "Lease reads and the new leader's wait",
        "multipaxos",
        "Seed 001/004: the leader serves reads locally under its lease. Cut off from the others, "
        "S1 keeps answering reads until its lease ends; S2, elected meanwhile, decides nothing and "
        "serves nothing until that lease has expired (clock drift within the 5% bound). With --bug "
        "lease-without-wait S2 commits x=2 while S1 still serves x=1: a stale read.",
        multipaxos_lease_read,
    ),
    Scenario(
        "multipaxos-membership",
        "Membership change through the log",
        "multipaxos",
        "Chubby's group membership: S4 is added and S2 removed by configuration commands chosen "
        "in the log, each taking effect alpha=3 slots later, while a client keeps writing; then "
        "only the new configuration's majority (S1,S4) is needed to commit.",
        multipaxos_membership,
    ),
    Scenario(
        "multipaxos-disk-loss",
        "A replica that lost its disk promises nothing until caught up",
        "multipaxos",
        "S1 and S2 choose writes while S3 is cut off; S1 dies and S2 loses its disk. S3 "
        "cannot win phase 1 without S2, which promises and votes nothing while rejoining; once "
        "S1 returns a phase 1 that hears it learns the chosen values, S2 is caught up and "
        "speaks again after a slot decided in a later phase 1 (Paxos Made Live 5.1), and no "
        "write is lost. With --bug promise-after-wipe "
        "S2 promises at once and S3 chooses other values in the writes' slots.",
        multipaxos_disk_loss,
    ),
    Scenario(
        "multipaxos-partition-5",
        "Partition S1,S2 | S3,S4,S5",
        "multipaxos",
        "The raft-partition-5 story with Multi-Paxos: S3 wins a higher ballot with S4,S5; a write "
        "to S1 never commits, a write to S3 does; on heal S1 steps down and S1,S2 learn the value "
        "chosen at the slot S1 had proposed. Check-quorum is off so S1 keeps believing it leads.",
        multipaxos_partition_5,
    ),
]

__all__ = ["SCENARIOS"]
