"""Every Basic and Fast Paxos seed scenario passes, deterministically, and the ones built
to expose a wrong rule fail with it."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import fastpaxos, paxos
from consensuskit.scenarios.base import run_scenario

BASIC_IDS = [
    "paxos-x-wins",
    "paxos-y-wins",
    "paxos-three-acceptors",
    "paxos-three-acceptors-accepted",
    "paxos-acceptor-fails",
    "paxos-learner-fails",
    "paxos-proposer-fails",
    "paxos-dueling-proposers",
]
FAST_IDS = ["fastpaxos-no-collision", "fastpaxos-collision", "fastpaxos-collision-uncoordinated"]
BY_ID = {s.id: s for s in [*paxos.SCENARIOS, *fastpaxos.SCENARIOS]}


def outcome(run) -> tuple:
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    return failed, [str(v) for v in run.violations], run.error


def test_every_basic_and_fast_paxos_scenario_of_the_seed_list_exists():
    assert [s.id for s in paxos.SCENARIOS] == BASIC_IDS
    assert [s.id for s in fastpaxos.SCENARIOS] == FAST_IDS


@pytest.mark.parametrize("scenario_id", BASIC_IDS + FAST_IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(BY_ID[scenario_id], seed=seed)
    assert run.passed, outcome(run)


def test_scenario_is_deterministic():
    a = run_scenario(BY_ID["paxos-y-wins"], seed=3).to_json()
    b = run_scenario(BY_ID["paxos-y-wins"], seed=3).to_json()
    assert a["trace_sha256"] == b["trace_sha256"] and a["events"] == b["events"]


@pytest.mark.parametrize("seed", range(10))
def test_randomized_backoff_ends_the_duel_in_every_seed(seed: int):
    run = run_scenario(BY_ID["paxos-dueling-proposers"], seed=seed)
    assert run.passed, outcome(run)


def test_collision_scenario_follows_the_recovery_option():
    run = run_scenario(BY_ID["fastpaxos-collision"], options={"recovery": "uncoordinated"})
    assert run.passed, outcome(run)
    assert any("3 message delays" in e.text for e in run.expectations)


def test_y_wins_with_acceptors_that_accept_lower_ballots_chooses_x_too():
    run = run_scenario(BY_ID["paxos-y-wins"], options={"bugs": ["accept-lower-ballot"]})
    assert not run.passed
    assert {v.name for v in run.violations} == {"agreement"}


def test_three_acceptors_with_a_proposer_ignoring_promises_chooses_two_values():
    run = run_scenario(BY_ID["paxos-three-acceptors-accepted"], options={"bugs": ["ignore-promise"]})
    assert not run.passed
    assert {v.name for v in run.violations} == {"agreement"}
