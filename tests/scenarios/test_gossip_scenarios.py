"""Every gossip scenario of SCENARIOS.md passes, deterministically; the ones that measure
say what they measured."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import gossip
from consensuskit.scenarios.base import run_scenario

IDS = ["gossip-rumor", "gossip-partial-mesh", "gossip-churn", "gossip-modes"]
BY_ID = {s.id: s for s in gossip.SCENARIOS}


def outcome(run) -> tuple:
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    return failed, [str(v) for v in run.violations], run.error


def test_every_gossip_scenario_of_the_seed_list_exists() -> None:
    assert [s.id for s in gossip.SCENARIOS] == IDS


@pytest.mark.parametrize(
    ("scenario_id", "seed"),
    [
        ("gossip-rumor", 0),
        ("gossip-rumor", 3),
        ("gossip-partial-mesh", 1),
        ("gossip-churn", 2),
        ("gossip-modes", 0),
    ],
)
def test_scenario_outcome_holds(scenario_id: str, seed: int) -> None:
    run = run_scenario(BY_ID[scenario_id], seed=seed)
    assert run.passed, outcome(run)


def test_modes_reports_traffic_and_residue_of_each_mode() -> None:
    run = run_scenario(BY_ID["gossip-modes"], seed=1)
    assert run.passed, outcome(run)
    assert [note.split(":")[0] for note in run.notes] == list(gossip.MODES)
    assert all("bytes" in note and "residue" in note for note in run.notes)


def test_rumor_without_forwarding_rules_is_caught() -> None:
    """The scenario can fail: with fan-out 1 and k=1 the rumor dies before reaching all."""
    run = run_scenario(BY_ID["gossip-rumor"], seed=0, options={"fanout": 1, "rumor_k": 1})
    assert not run.passed
    assert any("every one of the 16 nodes" in e.text and not e.passed for e in run.expectations)


def test_churn_is_deterministic() -> None:
    a = run_scenario(BY_ID["gossip-churn"], seed=4).to_json()
    b = run_scenario(BY_ID["gossip-churn"], seed=4).to_json()
    assert a["passed"] and a["trace_sha256"] == b["trace_sha256"]
