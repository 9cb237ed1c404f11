"""The random nemesis and scripted schedules."""

from __future__ import annotations

import random

import pytest

from consensuskit.check import InvariantViolation
from consensuskit.core.client import Op
from consensuskit.sim import NEMESIS_KINDS, Schedule, SimConfig, Simulation
from consensuskit.sim.nemesis import (
    PARTITION_PATTERNS,
    Nemesis,
    bridge_cut,
    has_leader,
    leaders,
    partition_patterns,
    ring_cut,
    uncommitted,
)

from .build import interpreted_only
from .toy import toy_sim

FIVE = ("n1", "n2", "n3", "n4", "n5")


def test_nemesis_generates_every_kind_and_settle_repairs():
    sim = toy_sim(
        node_ids=FIVE,
        clients=2,
        duration=6.0,
        settle=1.0,
        nemesis=NEMESIS_KINDS,
        nemesis_interval=(0.02, 0.05),
    )
    result = sim.run()
    injected = sim.nemesis.injected
    # The toy protocol cannot survive a disk loss nor change membership: no wipe for it,
    # and no membership change.
    assert "wipe" not in sim.nemesis.kinds and "membership" not in sim.nemesis.kinds
    assert set(injected) == set(NEMESIS_KINDS) - {"wipe", "membership"}, injected
    for kind in ("partition", "crash", "restart", "pause", "resume", "network", "clock"):
        assert result.faults.get(kind, 0) > 0, kind
    assert result.invariant_violations == []
    # settle healed everything
    assert all(sim.alive(n) and not sim.paused(n) for n in FIVE)
    assert not sim._cut and sim.network == sim.config.network
    # Drift and skew are reset; the offset drift accumulated stays (clocks never jump
    # because of a drift change).
    assert all(sim._clocks[n].rate == 1.0 and sim._clocks[n].skew == 0.0 for n in FIVE)


@interpreted_only
def test_wipe_counts_a_rejoining_node_as_down_and_every_wiped_node_is_readmitted():
    sim = Simulation(
        SimConfig(
            protocol="raft",
            node_ids=FIVE,
            seed=2,
            clients=2,
            duration=6.0,
            settle=4.0,
            nemesis=("wipe", "crash"),
            nemesis_interval=(0.05, 0.2),
        )
    )
    worst = 0
    original = sim.wipe

    def watched_wipe(node_id: str) -> None:
        nonlocal worst
        original(node_id)
        down = sum(1 for n in FIVE if not sim.alive(n) or sim.rejoining(n))
        worst = max(worst, down)

    sim.wipe = watched_wipe  # type: ignore[method-assign]
    result = sim.run()
    assert sim.nemesis.injected.get("wipe", 0) >= 2, sim.nemesis.injected
    # Without "partition" among the kinds a wipe comes alone (no amnesia attack).
    assert result.faults.get("partition", 0) == 0
    assert worst <= sim.nemesis.max_down
    assert result.ok, result.invariant_violations
    assert not any(sim.rejoining(n) for n in FIVE)


def _amnesia_sim(bugs: frozenset[str] = frozenset()):
    sim = Simulation(SimConfig(protocol="multipaxos", node_ids=FIVE, seed=4, bugs=bugs))
    assert sim.run_until_true(lambda: bool(leaders(sim)), 5.0)
    nem = Nemesis(sim, ("partition", "wipe"), (0.5, 0.5), random.Random(1))
    nem._amnesia_isolate()
    # Writes chosen while the lagging minority is cut off; the strike comes 0.5 s later.
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node=leaders(sim)[0]) for i in range(10)]
    return sim, nem, writes


def test_the_amnesia_attack_wipes_a_holder_of_the_newest_writes_and_sides_it_with_the_laggers():
    sim, nem, writes = _amnesia_sim()
    laggers = nem.amnesia
    assert laggers is not None and len(laggers) == 2 and not set(laggers) & set(leaders(sim))
    assert (laggers[0], leaders(sim)[0]) in sim._cut
    sim.run_for(0.49)
    assert all(w.done and w.status == "ok" for w in writes)
    assert not any(sim.rejoining(n) for n in FIVE)
    sim.run_for(0.02)
    assert nem.amnesia is None and nem.injected == {"partition": 1, "wipe": 1}
    (victim,) = [n for n in FIVE if sim.rejoining(n)]
    assert victim not in laggers
    side = {victim, *laggers}
    assert not any((a, b) in sim._cut for a in side for b in side)
    assert all((a, b) in sim._cut for a in side for b in FIVE if b not in side)
    # The correct protocol: the wiped acceptor keeps silent, the new majority side cannot
    # choose, and nothing chosen is lost once the partition heals (the next decided
    # command readmits the wiped acceptor).
    sim.run_for(2.0)
    sim.heal()
    late = sim.submit(Op(kind="put", key="late", value="x"))
    assert sim.run_until_true(lambda: late.done and not sim.rejoining(victim), 10.0)
    reads = [sim.submit(Op(kind="get", key=f"k{i}")) for i in range(10)]
    assert sim.run_until_true(lambda: all(r.done for r in reads), 5.0)
    assert [r.result["value"] for r in reads] == [str(i) for i in range(10)]
    assert not sim.violations, sim.violations[0]


def test_the_amnesia_attack_catches_an_acceptor_that_promises_after_a_wipe():
    sim, _, _ = _amnesia_sim(frozenset({"promise-after-wipe"}))
    with pytest.raises(InvariantViolation):  # the step check raises on the first one
        sim.run_for(3.0)
    # A second value for a chosen slot, or (the forgotten promise also held a lease) two
    # leaders serving lease reads at once.
    assert sim.violations and sim.violations[0].name in {
        "one-value-per-slot",
        "learned-agreement",
        "execution-agreement",
        "lease-uniqueness",
    }


def test_an_amnesia_attack_in_a_random_run_is_deterministic(tmp_path):
    import itertools
    import json

    from consensuskit.cli import build_config

    # Seed 0 (CLI defaults but 3 nodes): n1 cut off, n3 wiped and sided with it at 2.52.
    runs = []
    for name in ("a", "b"):
        cfg = build_config("multipaxos", 3, 0, 10.0, 3, "all", None)
        cfg.trace_path = str(tmp_path / f"{name}.jsonl")
        result = Simulation(cfg).run()
        assert result.ok
        runs.append((result.trace_sha256, cfg.trace_path))
    assert runs[0][0] == runs[1][0]
    with open(runs[0][1]) as trace:
        records = [json.loads(line) for line in trace]
    faults = [r for r in records if r["ev"] == "fault" and r["kind"] in ("wipe", "partition")]
    strikes = [
        (wipe["node"], nxt["groups"])
        for wipe, nxt in itertools.pairwise(faults)
        if wipe["kind"] == "wipe" and nxt["kind"] == "partition" and nxt["t"] == wipe["t"]
    ]
    assert strikes == [("n3", "n1,n3|n2")]


def test_nemesis_keeps_a_majority_up():
    sim = toy_sim(node_ids=FIVE, duration=0.0, settle=0.0)
    nem = Nemesis(sim, ("crash", "pause"), (0.01, 0.02), random.Random(1))
    nem.start()
    worst = 0
    for _ in range(300):
        sim.run_for(0.01)
        worst = max(worst, sum(not sim.alive(n) or sim.paused(n) for n in FIVE))
    assert worst == 2


def test_nemesis_partition_patterns_are_all_used():
    sim = toy_sim(node_ids=FIVE, duration=0.0, settle=0.0)
    nem = Nemesis(sim, ("partition",), (0.01, 0.02), random.Random(2))
    nem.start()
    sim.run_for(5.0)
    faults = [r for r in sim.trace.tail(2000) if r["ev"] == "fault" and r["kind"] == "partition"]
    text = " ".join(str(r.get("pattern", r.get("groups"))) for r in faults)
    assert "bridge" in text and "ring" in text and "|" in text


def test_bridge_and_ring_cuts():
    order = ["a", "b", "c", "d", "e"]
    cut = set(bridge_cut(order))
    assert not any("a" in pair for pair in cut)  # the bridge talks to everybody
    assert ("b", "d") in cut and ("d", "b") in cut and ("b", "c") not in cut
    ring = set(ring_cut(order))
    assert ("a", "b") not in ring and ("a", "e") not in ring and ("a", "c") in ring
    assert len(ring) == 5 * 4 - 10


SCRIPT = """
# a comment line
0.5 partition n1,n2|n3      # trailing comment
0.7 block n1->n3
0.8 unblock n1 n3
1.0 heal
1.2 crash n2
1.4 restart n2
1.5 pause n3
1.6 resume n3
1.7 clock n1 skew=0.2 drift=0.01
1.8 network loss=0.1 reorder=0.2
1.9 link n1 n2 loss=0.5
1.95 link n1->n2
2.0 isolate n1
2.1 isolate-leader
2.2 bridge
2.3 ring
2.4 heal
"""


def test_schedule_parse_and_install():
    sched = Schedule.parse(SCRIPT)
    assert sched.items[0] == (0.5, "partition", ("n1,n2|n3",))
    assert sched.items[1] == (0.7, "block", ("n1->n3",))
    assert len(sched.items) == 17
    assert Schedule.parse(sched.to_text()) == sched
    sim = toy_sim(node_ids=("n1", "n2", "n3", "n4"), clients=1, duration=3.0, settle=0.5)
    sched.install(sim)
    result = sim.run()
    assert result.invariant_violations == []
    labels = [r["label"] for r in sim.trace.tail(2000) if r["ev"] == "sched"]
    assert len(labels) == 17 and labels[0] == "partition n1,n2|n3"
    for kind in (
        "partition",
        "block",
        "unblock",
        "heal",
        "crash",
        "restart",
        "pause",
        "resume",
        "clock",
        "network",
        "link",
    ):
        assert result.faults.get(kind, 0) > 0, kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0 explode n1", "unknown action"),
        ("abc crash n1", "bad time"),
        ("1.0 crash", "takes 1..1"),
        ("1.0", "expected"),
        ("-1 heal", ">= 0"),
    ],
)
def test_schedule_errors(text, message):
    with pytest.raises(ValueError, match=message):
        Schedule.parse(text)


def test_schedule_bad_arguments_fail_when_applied():
    sim = toy_sim()
    Schedule.parse("0.1 crash n9").install(sim)
    with pytest.raises(KeyError, match="valid: n1, n2, n3"):
        sim.run_for(1.0)
    sim = toy_sim()
    Schedule.parse("0.1 network loss=lots").install(sim)
    with pytest.raises(ValueError, match="needs a number"):
        sim.run_for(1.0)


# ---------------------------------------------------------------------- capabilities
def test_isolate_leader_is_a_pattern_only_where_there_is_a_leader():
    assert partition_patterns(5, True) == list(PARTITION_PATTERNS)
    assert partition_patterns(5, False) == ["halves", "majority", "bridge", "ring"]
    assert partition_patterns(3, True) == ["halves", "majority", "isolate-leader", "bridge"]
    raft = Simulation(SimConfig(protocol="raft", seed=1))
    assert has_leader(raft) and raft.run_until_true(lambda: len(leaders(raft)) == 1, 5.0)
    basic = Simulation(SimConfig(protocol="basic-paxos", seed=1, clients=1))
    basic.start_workload()
    basic.run_for(1.0)
    assert not has_leader(basic) and leaders(basic) == []


def test_the_random_nemesis_never_isolates_a_leader_in_a_leaderless_protocol(monkeypatch):
    chosen: list[list[str]] = []
    real_choice = random.Random.choice

    def spy(self, seq):
        pick = real_choice(self, seq)
        if pick in PARTITION_PATTERNS:
            chosen.append(list(seq))
        return pick

    monkeypatch.setattr(random.Random, "choice", spy)
    sim = Simulation(SimConfig(protocol="basic-paxos", seed=3, clients=1))
    nem = Nemesis(sim, ("partition",), (0.1, 0.1), random.Random(2))
    for _ in range(30):
        nem.partitioned = False
        nem._partition()
    assert chosen and all("isolate-leader" not in patterns for patterns in chosen)
    sim = Simulation(SimConfig(protocol="raft", seed=3, clients=1))
    chosen.clear()
    Nemesis(sim, ("partition",), (0.1, 0.1), random.Random(2))._partition()
    assert chosen == [["halves", "majority", "isolate-leader", "bridge"]]  # 3 nodes: no ring


def test_a_scripted_isolate_leader_cuts_nothing_without_a_leader():
    sim = Simulation(SimConfig(protocol="basic-paxos", seed=1))
    Schedule.parse("0.1 isolate-leader").install(sim)
    sim.run_for(0.5)
    assert not sim._cut
    sim = Simulation(SimConfig(protocol="raft", seed=1))
    assert sim.run_until_true(lambda: len(leaders(sim)) == 1, 5.0)
    Schedule.parse(f"{sim.now + 0.01} isolate-leader").install(sim)
    [leader] = leaders(sim)
    sim.run_for(0.05)
    assert (leader, next(n for n in sim.node_ids if n != leader)) in sim._cut


# ---------------------------------------------------------------------- the strike
def _raft_with_a_leader(seed: int = 3) -> tuple[Simulation, str]:
    # unbatched: the strike tests time faults against the old fixed sync latency
    sim = Simulation(SimConfig(protocol="raft", node_ids=FIVE, seed=seed, runtime="unbatched"))
    assert sim.run_until_true(lambda: bool(leaders(sim)), 5.0)
    sim.run_for(0.2)  # the leader's no-op committed: nothing uncommitted now
    return sim, leaders(sim)[0]


def _striker(sim: Simulation, action: str, monkeypatch, interval: float = 0.5) -> Nemesis:
    from consensuskit.sim import nemesis

    monkeypatch.setattr(nemesis, "STRIKE_ACTIONS", (action,))
    return Nemesis(sim, ("strike",), (interval, interval), random.Random(1))


def _faults(sim: Simulation) -> list[dict]:
    return [r for r in sim.trace.tail(5000) if r["ev"] == "fault"]


def test_a_strike_waits_for_the_leader_to_hold_an_uncommitted_entry_then_hits_it(monkeypatch):
    sim, leader = _raft_with_a_leader()
    nem = _striker(sim, "crash", monkeypatch)
    assert uncommitted(sim, leader) is False
    nem._strike()
    sim.run_for(0.1)
    assert _faults(sim) == []  # nothing to aim at yet: the strike waits
    write_at = sim.now
    sim.submit(Op(kind="put", key="k", value="v"), node=leader)
    sim.run_for(0.05)
    [crash] = [f for f in _faults(sim) if f["kind"] == "crash"]
    # The moment: the leader appended and replicated, nobody acknowledged yet.
    assert crash["node"] == leader and write_at <= crash["t"] < write_at + 0.01
    sim.run_for(0.5)
    assert sim.alive(leader)  # restarted quickly
    assert nem.injected == {"strike": 1}


def test_a_strike_thaws_a_paused_minority_at_one_instant_while_the_leader_is_cut_off(monkeypatch):
    sim, leader = _raft_with_a_leader()
    nem = _striker(sim, "thaw", monkeypatch)
    sim.submit(Op(kind="put", key="k", value="v"), node=leader)
    nem._strike()
    sim.run_for(0.05)
    paused = [n for n in FIVE if sim.paused(n)]
    assert len(paused) == nem.max_down and leader not in paused
    assert all((leader, n) in sim._cut for n in FIVE if n != leader)
    sim.run_for(2.0)
    resumes = [f for f in _faults(sim) if f["kind"] == "resume"]
    assert sorted(f["node"] for f in resumes) == paused and len({f["t"] for f in resumes}) == 1
    assert not sim._cut and not any(sim.paused(n) for n in FIVE)


def test_a_strike_stalls_the_next_leaders_disk_as_it_is_elected(monkeypatch):
    sim, leader = _raft_with_a_leader()
    nem = _striker(sim, "isolate", monkeypatch)
    sim.submit(Op(kind="put", key="k", value="v"), node=leader)
    nem._strike()
    assert sim.run_until_true(lambda: any(n != leader for n in leaders(sim)), 3.0)
    [new] = [n for n in leaders(sim) if n != leader]
    records = sim.trace.tail(5000)
    [elected] = [
        r
        for r in records
        if r["ev"] == "rec" and r["kind"] == "role" and r["node"] == new and r["role"] == "leader"
    ]
    [stall] = [f for f in _faults(sim) if f["kind"] == "disk"]
    assert stall["node"] == new and stall["t"] == elected["t"] and stall["latency"] > 0.005
    sim.run_for(0.1)
    # Its first sync (the election's no-op) took the stalled disk's latency.
    [first] = [
        r for r in sim.trace.tail(5000) if r["ev"] == "sync" and r["node"] == new and r["t"] > elected["t"]
    ][:1]
    assert first["t"] == pytest.approx(elected["t"] + stall["latency"])
    sim.run_for(1.2)  # STALL_FOR is at most 1.2 s
    assert [f["latency"] for f in _faults(sim) if f["kind"] == "disk"] == [stall["latency"], None]


def test_a_slow_link_is_one_directed_link_of_the_leader(monkeypatch):
    sim, leader = _raft_with_a_leader()
    nem = _striker(sim, "slow-link", monkeypatch)
    sim.submit(Op(kind="put", key="k", value="v"), node=leader)
    nem._strike()
    sim.run_for(0.05)
    [link] = [f for f in _faults(sim) if f["kind"] == "link"]
    assert link["src"] == leader and link["latency_min"] >= 0.02
    assert list(sim._link_overrides) == [(leader, link["dst"])]
    sim.run_for(1.0)
    assert sim._link_overrides == {}


def test_set_disk_validates_and_settle_restores_the_disks():
    sim = toy_sim(node_ids=FIVE, clients=1, duration=0.5, settle=0.2)
    with pytest.raises(ValueError, match=">= 0"):
        sim.set_disk("n1", -1.0)
    sim.set_disk("n2", 0.05)
    sim.run()
    assert sim._disk_latency == {}


def test_the_flip_sides_the_crashed_stalled_leader_with_the_nodes_the_strike_cut_off(monkeypatch):
    sim, leader = _raft_with_a_leader()
    nem = _striker(sim, "isolate", monkeypatch, interval=3.0)  # the cut lasts 3 s
    sim.submit(Op(kind="put", key="k", value="v"), node=leader)
    nem._strike()
    sim.run_for(0.05)
    [cut] = [f["groups"] for f in _faults(sim) if f["kind"] == "partition"]
    cut_off = cut.split("|")[0].split(",")
    assert leader in cut_off and len(cut_off) == 2  # the largest minority of five
    assert sim.run_until_true(lambda: any(f["kind"] == "crash" for f in _faults(sim)), 3.0)
    [crash] = [f for f in _faults(sim) if f["kind"] == "crash"]
    new = crash["node"]
    assert new not in cut_off and any(f["kind"] == "disk" and f["node"] == new for f in _faults(sim))
    flip = [f["groups"] for f in _faults(sim) if f["kind"] == "partition"][-1]
    assert flip.split("|")[0].split(",") == sorted([*cut_off, new])  # now a majority of five


# ------------------------------------------------------------------ membership
def test_all_names_every_kind_but_membership_which_is_asked_for_by_name():
    from consensuskit.cli import parse_nemesis
    from consensuskit.sim import ALL_NEMESIS

    assert "membership" in NEMESIS_KINDS and "membership" not in ALL_NEMESIS
    assert parse_nemesis("all") == ALL_NEMESIS
    assert parse_nemesis("all,membership") == NEMESIS_KINDS
    assert parse_nemesis("membership,crash") == ("crash", "membership")


@pytest.mark.parametrize("protocol", ["raft", "multipaxos"])
def test_the_membership_kind_removes_a_voter_and_adds_it_back_through_the_leader(protocol):
    sim = Simulation(
        SimConfig(
            protocol=protocol,
            node_ids=FIVE,
            seed=4,
            clients=3,
            duration=12.0,
            settle=3.0,
            nemesis=("membership",),
            nemesis_interval=(0.3, 0.6),
        )
    )
    changes: list[tuple[str, str, str | None]] = []
    original = sim.change_membership

    def watched(change: str, node_id: str) -> str | None:
        error = original(change, node_id)
        changes.append((change, node_id, error))
        return error

    sim.change_membership = watched  # type: ignore[method-assign]
    result = sim.run()
    assert result.invariant_violations == [] and result.linearizable is True
    removed = [node for change, node, error in changes if change == "remove" and error is None]
    added = [node for change, node, error in changes if change == "add-voter" and error is None]
    assert len(removed) >= 2 and added, changes
    # Only a node a removal was proposed for is added back (a proposal may come to
    # nothing when its leader is deposed); at most one is out at a time.
    assert set(added) <= set(removed), changes
    assert sim.nemesis.injected["membership"] == len(removed)
    for node in sim.nodes.values():
        view = node.membership()
        assert len(view.voters) >= 4


def test_no_membership_change_for_a_protocol_without_the_capability():
    sim = Simulation(SimConfig(protocol="zab", node_ids=FIVE, seed=1, nemesis=("membership", "crash")))
    assert sim.nemesis is None or "membership" not in sim.nemesis.kinds
    sim.start_nemesis()
    assert sim.nemesis.kinds == ("crash",)


def test_a_removal_shrinks_the_fault_budget():
    sim = Simulation(SimConfig(protocol="raft", node_ids=FIVE, seed=1, nemesis=("membership",)))
    assert sim.run_until_true(lambda: sim.membership_leader() is not None, 5.0)
    sim.run_for(0.5)  # (Raft changes membership once an entry of the leader's term committed)
    sim.start_nemesis()
    nemesis = sim.nemesis
    assert nemesis.max_down == 2
    nemesis._membership()  # five voters, none absent: one is removed
    assert nemesis.members == 4 and nemesis.max_down == 1
    assert sim.run_until_true(lambda: not sim.nodes[sim.membership_leader()].membership().config_pending, 5.0)
    nemesis._membership()  # the removed node is added back
    assert nemesis.members == 4
    assert sim.run_until_true(lambda: len(sim.nodes[sim.membership_leader()].membership().voters) == 5, 5.0)
    nemesis._membership()
    assert nemesis.max_down == 2 or nemesis.members == 4  # (the next removal may follow at once)


def test_observers_add_nothing_to_the_fault_budget():
    # ZAB with one observer of five: four voters tolerate one down (or rejoining) voter,
    # and two rejoining voters would never find a quorum without them again.
    sim = Simulation(
        SimConfig(protocol="zab", node_ids=FIVE, seed=1, options={"observers": 1}, nemesis=("wipe",))
    )
    sim.start_nemesis()
    assert (sim.nemesis.members, sim.nemesis.max_down) == (4, 1)
    plain = Simulation(SimConfig(protocol="zab", node_ids=FIVE, seed=1, nemesis=("wipe",)))
    plain.start_nemesis()
    assert (plain.nemesis.members, plain.nemesis.max_down) == (5, 2)


def test_a_scripted_membership_change_and_its_errors():
    sim = Simulation(SimConfig(protocol="multipaxos", node_ids=FIVE, seed=1))
    assert sim.run_until_true(lambda: sim.membership_leader() is not None, 5.0)
    leader = sim.membership_leader()
    gone = "n5" if leader != "n5" else "n4"
    Schedule.parse(f"{sim.now + 0.1} member remove {gone}\n").install(sim)

    def removed() -> bool:
        view = sim.nodes[leader].membership()
        return gone not in view.voters and not view.config_pending

    assert sim.run_until_true(removed, 5.0)  # in force on an idle cluster too (no-ops)
    assert sim.change_membership("remove", gone) == f"{gone} is not a member"
    with pytest.raises(ValueError, match="line 1: unknown membership change 'evict'; valid: add-voter"):
        Schedule.parse("1.0 member evict n5\n")
    with pytest.raises(ValueError, match=r"member takes 2\.\.2 arguments"):
        Schedule.parse("1.0 member remove\n")
    sim.crash(leader)
    for node in FIVE:
        if node != leader:
            sim.pause(node)
    assert sim.change_membership("add-voter", gone) == "no running leader that changes membership"
