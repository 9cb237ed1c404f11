"""Raft's seed scenarios (seeds 000, 002, 003, 004)."""

from __future__ import annotations

from consensuskit.scenarios.base import Scenario, ScenarioRun


def leaders(sim) -> list[str]:
    return [i for i in sim.node_ids if sim.nodes.get(i) is not None and sim.nodes[i].role == "leader"]


def raft_election(run: ScenarioRun) -> None:
    sim = run.simulation(("A", "B", "C"))
    sim.run_until_true(lambda: bool(leaders(sim)), timeout=5.0)
    first = leaders(sim)
    run.expect(len(first) == 1, "one of A,B,C becomes leader", f"leaders={first}")
    if not first:
        return
    leader = first[0]
    term = sim.nodes[leader].term
    sim.run_for(3.0)
    run.expect(
        leaders(sim) == [leader] and sim.nodes[leader].term == term,
        "heartbeats keep the same leader in the same term for 3 s",
    )


SCENARIOS = [
    Scenario(
        "raft-election",
        "Raft leader election",
        "raft",
        "A,B,C start as followers; the first to time out becomes candidate, votes for "
        "itself, wins with a majority, and heartbeats keep it leader.",
        raft_election,
    ),
]
