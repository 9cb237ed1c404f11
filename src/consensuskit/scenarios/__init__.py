"""The seed scenarios (../shared/SCENARIOS.md) as scripted, self-checking simulations.

Each module holds one protocol's ``SCENARIOS``; the catalog (``consensuskit.catalog``)
registers them per protocol, and ``consensuskit scenario list/run`` and the demo read
them from there (``default_catalog().scenarios()`` / ``.scenario(id)``).
"""

from __future__ import annotations

from consensuskit.scenarios.base import BadParam, Scenario, ScenarioRun, run_scenario

__all__ = ["BadParam", "Scenario", "ScenarioRun", "run_scenario"]
