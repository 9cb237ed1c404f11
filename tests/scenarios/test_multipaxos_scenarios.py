"""Every Multi-Paxos seed scenario passes, and the bug knobs make the relevant ones fail."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import run_scenario
from consensuskit.scenarios.multipaxos import SCENARIOS

IDS = [
    "multipaxos-steady-state",
    "multipaxos-leader-election",
    "multipaxos-lease-read",
    "multipaxos-membership",
    "multipaxos-disk-loss",
    "multipaxos-partition-5",
]
BY_ID = {s.id: s for s in SCENARIOS}


def test_every_multipaxos_scenario_of_the_seed_list_exists():
    assert [s.id for s in SCENARIOS] == IDS
    assert all(s.protocol == "multipaxos" for s in SCENARIOS)


@pytest.mark.parametrize("scenario_id", IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(BY_ID[scenario_id], seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


def test_steady_state_counts_four_then_two_delays():
    run = run_scenario(BY_ID["multipaxos-steady-state"])
    assert run.sim is not None
    assert [run.sim.learned_delays[s] for s in range(1, 6)] == [4, 2, 2, 2, 2]


def test_scenario_is_deterministic():
    a = run_scenario(BY_ID["multipaxos-partition-5"], seed=3).to_json()
    b = run_scenario(BY_ID["multipaxos-partition-5"], seed=3).to_json()
    assert a["trace_sha256"] == b["trace_sha256"] and a["events"] == b["events"]


def test_lease_read_without_the_wait_serves_a_stale_lease():
    run = run_scenario(BY_ID["multipaxos-lease-read"], options={"bugs": ["lease-without-wait"]})
    assert not run.passed
    assert {v.name for v in run.violations} & {"lease-uniqueness", "read-freshness"}


def test_partition_with_skipped_phase_1_is_caught():
    run = run_scenario(BY_ID["multipaxos-partition-5"], options={"bugs": ["skip-phase1-on-takeover"]})
    assert not run.passed


def test_the_disk_loss_scenario_loses_the_writes_when_an_empty_replica_promises():
    run = run_scenario(BY_ID["multipaxos-disk-loss"], options={"bugs": ["promise-after-wipe"]})
    assert not run.passed
    names = {str(v).split(":")[0] for v in run.violations}
    assert names and names <= {"read-freshness", "one-value-per-slot"}, run.violations
