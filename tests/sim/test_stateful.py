"""Hypothesis stateful test: any interleaving of faults and client ops keeps the toy's
prefix invariant (checked by the simulator after every step) and the client rules."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from consensuskit.core.client import Op
from consensuskit.sim import SimResult

from .toy import toy_registry, toy_sim

NODES = ("n1", "n2", "n3")
node = st.sampled_from(NODES)


class SimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = toy_sim(op_timeout=0.2, op_deadline=0.6)
        self.handles = []
        self.value = 0

    @rule(n=node)
    def crash(self, n):
        self.sim.crash(n)

    @rule(n=node)
    def restart(self, n):
        self.sim.restart(n)

    @rule(n=node)
    def pause(self, n):
        self.sim.pause(n)

    @rule(n=node)
    def resume(self, n):
        self.sim.resume(n)

    @rule(k=st.integers(1, 2))
    def partition(self, k):
        self.sim.partition([list(NODES[:k]), list(NODES[k:])])

    @rule()
    def heal(self):
        self.sim.heal()

    @rule(loss=st.sampled_from([0.0, 0.3]), dup=st.sampled_from([0.0, 0.3]))
    def network(self, loss, dup):
        self.sim.set_network(loss=loss, duplicate=dup, reorder=0.2)

    @rule(kind=st.sampled_from(["get", "put", "delete"]), at=st.none() | node)
    def submit(self, kind, at):
        self.value += 1
        op = Op(kind=kind, key="k0", value=self.value if kind == "put" else None)
        self.handles.append(self.sim.submit(op, node=at))

    @rule(dt=st.sampled_from([0.001, 0.01, 0.1, 0.5]))
    def run(self, dt):
        self.sim.run_for(dt)

    @invariant()
    def statuses_follow_the_rules(self):
        now = self.sim.now
        for h in self.handles:
            rec = h.record
            if h.status is None:
                assert now <= rec.invoke + self.sim.config.op_deadline + 1e-9
            elif h.status == "unknown":
                assert rec.complete is None
            else:
                assert rec.complete is not None and rec.complete >= rec.invoke

    def teardown(self) -> None:
        self.sim.settle()
        self.sim.run_for(1.0)
        assert all(h.done for h in self.handles)
        assert not self.sim.violations


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
    reg.add(ProtocolSpec(name="toy", description="", make_node=spec.make_node,
                         make_checker=HistoryChecker))
    sim = Simulation(SimConfig(protocol="toy", clients=2, duration=1.0, settle=0.5), reg)
    result = sim.run()
    assert isinstance(result, SimResult)
    assert result.linearizable is False and sim.checker.seen == len(result.history) > 0
    j = result.to_json()
    assert "history" not in j
    assert {"protocol", "nodes", "node_ids", "seed", "duration", "ops", "invariant_violations",
            "linearizable", "trace_sha256", "events", "wall_seconds", "faults"} <= set(j)
    assert j["nodes"] == 3 and j["events"] == sim.events > 0
