"""Hypothesis stateful test: any interleaving of faults and client ops keeps the toy's
prefix invariant (checked by the simulator after every step) and the client rules."""

from __future__ import annotations

from hypothesis import settings

from consensuskit.sim import SimResult

from .test_stateful_protocols import machine_for
from .toy import toy_registry, toy_sim

# The catalog protocols' machine (test_stateful_protocols.py), over the toy.
SimMachine = machine_for(
    "toy",
    make_sim=lambda: toy_sim(op_timeout=0.2, op_deadline=0.6),
    nodes=("n1", "n2", "n3"),
    model=None,
    run_steps=(0.001, 0.01, 0.1, 0.5),
)
SimMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestSimMachine = SimMachine.TestCase


class HistoryChecker:
    def __init__(self, bugs: frozenset[str]) -> None:
        self.seen = None

    def check_history(self, history):
        self.seen = len(history)
        return False


def test_check_history_hook_and_result_json():
    registry = toy_registry()
    spec = registry.get("toy")
    from consensuskit.core.registry import ProtocolSpec, Registry
    from consensuskit.sim import SimConfig, Simulation

    reg = Registry()
    reg.add(ProtocolSpec(name="toy", description="", make_node=spec.make_node, make_checker=HistoryChecker))
    sim = Simulation(SimConfig(protocol="toy", clients=2, duration=1.0, settle=0.5), reg)
    result = sim.run()
    assert isinstance(result, SimResult)
    assert result.linearizable is False and sim.checker.seen == len(result.history) > 0
    j = result.to_json()
    assert "history" not in j
    assert {
        "protocol",
        "nodes",
        "node_ids",
        "seed",
        "duration",
        "ops",
        "invariant_violations",
        "linearizable",
        "trace_sha256",
        "events",
        "wall_seconds",
        "faults",
    } <= set(j)
    assert j["nodes"] == 3 and j["events"] == sim.events > 0
