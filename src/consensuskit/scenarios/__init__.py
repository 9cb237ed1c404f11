"""The seed scenarios (../shared/SCENARIOS.md) as scripted, self-checking simulations."""

from __future__ import annotations

from consensuskit.scenarios.base import Scenario, ScenarioRun, run_scenario


def all_scenarios() -> dict[str, Scenario]:
    """Every scenario by id, in the order of SCENARIOS.md."""
    from consensuskit.scenarios import fastpaxos, multipaxos, paxos, raft

    return {
        s.id: s for s in [*paxos.SCENARIOS, *fastpaxos.SCENARIOS, *multipaxos.SCENARIOS, *raft.SCENARIOS]
    }


def get_scenario(scenario_id: str) -> Scenario:
    scenarios = all_scenarios()
    try:
        return scenarios[scenario_id]
    except KeyError:
        raise KeyError(
            f"unknown scenario {scenario_id!r}; valid: {', '.join(scenarios)}"
        ) from None


__all__ = ["Scenario", "ScenarioRun", "all_scenarios", "get_scenario", "run_scenario"]
