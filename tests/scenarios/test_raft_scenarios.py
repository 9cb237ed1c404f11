"""Every Raft seed scenario passes, and the ones built to expose a wrong rule fail with it."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.scenarios import run_scenario

CATALOG = default_catalog()

RAFT_IDS = [
    "raft-election",
    "raft-split-vote",
    "raft-partition-5",
    "raft-partition-set",
    "raft-figure-8",
    "raft-disk-loss",
    "raft-log-divergence",
    *(f"raft-leader-crash-{i}" for i in range(1, 8)),
]


def test_every_raft_scenario_of_the_seed_list_exists():
    assert [s for s in CATALOG.scenarios() if s.startswith("raft-")] == RAFT_IDS


@pytest.mark.parametrize("scenario_id", RAFT_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(CATALOG.scenario(scenario_id), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lease_reads_are_fresh_within_the_drift_bound(seed: int):
    run = run_scenario(CATALOG.scenario("lease-read"), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beyond_the_drift_bound_the_old_leader_serves_a_stale_read(seed: int):
    run = run_scenario(CATALOG.scenario("lease-read"), seed=seed, params={"drift": 0.3})
    assert not run.passed
    assert [v.name for v in run.violations] == ["read-freshness"]
    assert all(e.passed for e in run.expectations), [e.text for e in run.expectations if not e.passed]


@pytest.mark.parametrize("seed", [0, 1])
def test_cached_reads_are_fresh_within_the_drift_bound(seed: int):
    run = run_scenario(CATALOG.scenario("lease-cache"), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


def test_beyond_the_drift_bound_a_cached_read_is_stale_and_the_checker_says_so():
    run = run_scenario(CATALOG.scenario("lease-cache"), params={"drift": 0.3})
    failed = [e.text for e in run.expectations if not e.passed]
    assert failed == [
        "C answered x=1 after x=2 committed",
        "the history, cached reads included, is linearizable",
    ]


def test_a_scenario_refuses_a_parameter_it_does_not_declare():
    with pytest.raises(ValueError, match="valid: drift"):
        run_scenario(CATALOG.scenario("lease-read"), params={"speed": 2})


def test_scenario_is_deterministic():
    a = run_scenario(CATALOG.scenario("raft-partition-5"), seed=3).to_json()
    b = run_scenario(CATALOG.scenario("raft-partition-5"), seed=3).to_json()
    assert a["trace_sha256"] == b["trace_sha256"] and a["events"] == b["events"]


def test_figure_8_with_the_unsafe_commit_rule_loses_a_committed_entry():
    run = run_scenario(CATALOG.scenario("raft-figure-8"), options={"bugs": ["commit-previous-term"]})
    assert not run.passed
    assert {v.name for v in run.violations} & {"commit-rule", "leader-completeness", "unsafe-commit"}


def test_split_vote_does_not_split_when_servers_vote_twice():
    run = run_scenario(CATALOG.scenario("raft-split-vote"), options={"bugs": ["vote-twice"]})
    assert not run.passed
    failed = [e.text for e in run.expectations if not e.passed]
    assert "votes split 2-2: no majority of four in term 1" in failed


def test_unknown_scenario_names_the_valid_ones():
    with pytest.raises(KeyError, match="raft-election"):
        CATALOG.scenario("raft-nope")


def test_the_disk_loss_scenario_elects_a_leader_without_the_writes_when_an_empty_server_votes():
    run = run_scenario(CATALOG.scenario("raft-disk-loss"), options={"bugs": ["vote-after-wipe"]})
    assert not run.passed
    assert [str(v).split(":")[0] for v in run.violations] == ["leader-completeness"], run.violations
