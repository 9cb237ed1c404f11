"""Every PBFT seed scenario passes, and the bug knobs make the relevant ones fail."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import run_scenario
from consensuskit.scenarios.pbft import SCENARIOS

IDS = ["pbft-normal", "pbft-view-change", "pbft-equivocating-primary", "pbft-checkpoint"]
BY_ID = {s.id: s for s in SCENARIOS}


def test_every_pbft_scenario_of_the_seed_list_exists():
    assert [s.id for s in SCENARIOS] == IDS
    assert all(s.protocol == "pbft" for s in SCENARIOS)


@pytest.mark.parametrize("scenario_id", IDS)
def test_scenario_outcome_holds(scenario_id: str):
    run = run_scenario(BY_ID[scenario_id], seed=1)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


def test_the_normal_case_counts_2n_squared_minus_n_plus_1_messages():
    run = run_scenario(BY_ID["pbft-normal"])
    assert any("29 messages" in e.text and e.passed for e in run.expectations)


def test_with_crash_fault_quorums_the_equivocating_primary_wins():
    """small-quorums (f prepares, f+1 commits): each backup's own batch is decided."""
    run = run_scenario(BY_ID["pbft-equivocating-primary"], options={"bugs": ("small-quorums",)})
    assert not run.passed
    assert {v.name for v in run.violations} & {"one-request-per-seq", "committed-prepared"}


def test_scenario_is_deterministic():
    a = run_scenario(BY_ID["pbft-equivocating-primary"], seed=3).to_json()
    b = run_scenario(BY_ID["pbft-equivocating-primary"], seed=3).to_json()
    assert a == b
