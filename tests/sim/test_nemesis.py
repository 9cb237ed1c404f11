"""The random nemesis and scripted schedules."""

from __future__ import annotations

import random

import pytest

from consensuskit.sim import NEMESIS_KINDS, Schedule
from consensuskit.sim.nemesis import Nemesis, bridge_cut, ring_cut

from .toy import toy_sim

FIVE = ("n1", "n2", "n3", "n4", "n5")


def test_nemesis_generates_every_kind_and_settle_repairs():
    sim = toy_sim(
        node_ids=FIVE, clients=2, duration=6.0, settle=1.0,
        nemesis=NEMESIS_KINDS, nemesis_interval=(0.02, 0.05),
    )
    result = sim.run()
    injected = sim.nemesis.injected
    # The toy protocol cannot survive a disk loss: no wipe for it.
    assert "wipe" not in sim.nemesis.kinds
    assert set(injected) == set(NEMESIS_KINDS) - {"wipe"}, injected
    for kind in ("partition", "crash", "restart", "pause", "resume", "network", "clock"):
        assert result.faults.get(kind, 0) > 0, kind
    assert result.invariant_violations == []
    # settle healed everything
    assert all(sim.alive(n) and not sim.paused(n) for n in FIVE)
    assert not sim._cut and sim.network == sim.config.network
    # Drift and skew are reset; the offset drift accumulated stays (clocks never jump
    # because of a drift change).
    assert all(sim._clocks[n].rate == 1.0 and sim._clocks[n].skew == 0.0 for n in FIVE)


def test_wipe_counts_a_rejoining_node_as_down_and_every_wiped_node_is_readmitted():
    from consensuskit.sim import SimConfig, Simulation

    sim = Simulation(
        SimConfig(protocol="raft", node_ids=FIVE, seed=2, clients=2, duration=6.0, settle=4.0,
                  nemesis=("wipe", "crash"), nemesis_interval=(0.05, 0.2))
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
    assert worst <= sim.nemesis.max_down
    assert result.ok, result.invariant_violations
    assert not any(sim.rejoining(n) for n in FIVE)


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
    for kind in ("partition", "block", "unblock", "heal", "crash", "restart", "pause",
                 "resume", "clock", "network", "link"):
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
