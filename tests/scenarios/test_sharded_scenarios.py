"""Every sharded-raft scenario passes, and the gateway-crash story needs the shards'
own recovery: with it switched off (a recovery delay longer than the run), the locks of
the dead gateway's transfer stay until a transaction that needs them pushes their holder
(which then commits: pushing alone also unblocks)."""

from __future__ import annotations

import pytest

from consensuskit.scenarios import run_scenario
from consensuskit.scenarios.sharded import SCENARIOS

IDS = ["sharded-cross-shard-transfer", "sharded-gateway-crash", "sharded-minority-cut-off"]
BY_ID = {s.id: s for s in SCENARIOS}


def test_the_scenarios_exist():
    assert [s.id for s in SCENARIOS] == IDS


@pytest.mark.parametrize("scenario_id", IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(BY_ID[scenario_id], seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


def test_without_recovery_the_dead_gateways_locks_stay():
    run = run_scenario(BY_ID["sharded-gateway-crash"], options={"recover_after": 1000.0})
    failed = {e.text for e in run.expectations if not e.passed}
    assert failed == {
        "shard 0 released the locks without n1",
        "shard 1 released the locks without n1",
        "the coordinator shard recorded abort",
    }
