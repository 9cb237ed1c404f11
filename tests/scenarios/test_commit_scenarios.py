"""Every atomic-commit seed scenario passes (SCENARIOS.md, seed 004), and the knobs
that break the rule each one leans on make it fail."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import run_scenario
from consensuskit.scenarios.commit import SCENARIOS

IDS = [
    "2pc-commit",
    "2pc-abort",
    "2pc-coordinator-crash",
    "3pc-coordinator-crash",
    "3pc-partition",
    "paxoscommit-coordinator-crash",
]
BY_ID = {s.id: s for s in SCENARIOS}


def test_every_commit_scenario_of_the_seed_list_exists():
    assert [s.id for s in SCENARIOS] == IDS


@pytest.mark.parametrize("scenario_id", IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(BY_ID[scenario_id], seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


def test_2pc_blocks_where_paxos_commit_does_not():
    """The same crash, side by side: 2PC participants wait for the coordinator, Paxos
    Commit's finish without it (blocked time from the checker's accounting)."""
    two = run_scenario(BY_ID["2pc-coordinator-crash"])
    paxos = run_scenario(BY_ID["paxoscommit-coordinator-crash"])
    assert two.sim is not None and paxos.sim is not None
    assert two.sim.checker.report()["blocked"]["seconds_max"] > 1.0
    assert paxos.sim.checker.report()["blocked"]["seconds_max"] < 0.3


@pytest.mark.parametrize(
    ("scenario_id", "bug", "violation"),
    [
        # The scenario's filter drops C's Commit before the checker sees it leave, so
        # what shows is the consequence: C restarts without its decision, presumes
        # abort, and the participants abort what C had decided to commit.
        ("2pc-coordinator-crash", "decide-before-log", "atomicity"),
        ("2pc-commit", "vote-before-log", "vote-not-durable"),
        ("paxoscommit-coordinator-crash", "vote-before-log", "vote-not-durable"),
    ],
)
def test_scenario_fails_with_the_knob(scenario_id: str, bug: str, violation: str):
    run = run_scenario(BY_ID[scenario_id], options={"bugs": (bug,)})
    assert not run.passed
    assert [v.name for v in run.violations] == [violation]
