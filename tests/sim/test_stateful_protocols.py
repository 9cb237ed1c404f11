"""Hypothesis stateful test, once per catalog protocol: any interleaving of crashes,
restarts, pauses, partitions, lossy networks and client operations keeps the
protocol's invariants (its checker runs after every simulator step), every client
operation ends by the rules, and the history is linearizable.

test_stateful.py runs the same rules on the toy protocol; here they run on the real
ones, named only through ``catalog.default_registry()``.  Runs are kept short: every
protocol together stays well under a minute.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from consensuskit.catalog import default_registry
from consensuskit.check.linearizability import check_history
from consensuskit.core.client import Op
from consensuskit.sim import SimConfig, Simulation

# Four nodes: the smallest cluster every catalog protocol accepts (Fast Paxos needs
# n >= 3f + 1 acceptors), and an even one, where a 2-2 partition leaves no majority.
NODES = ("n1", "n2", "n3", "n4")
# The kv-serving log protocols (gossip has no linearizable service: tests/check/test_gossip_monitor.py).
PROTOCOLS = [name for name in default_registry().names() if default_registry().get(name).log]


def machine_for(
    protocol: str,
    bugs: frozenset[str] = frozenset(),
    *,
    make_sim: Callable[[], Simulation] | None = None,
    nodes: tuple[str, ...] = NODES,
    model: str | None = "kv",
    run_steps: tuple[float, ...] = (0.01, 0.1, 0.5),
) -> type[RuleBasedStateMachine]:
    """A stateful test of ``protocol``: any interleaving of faults and client ops keeps
    its invariants (checked after every step), the client rules and, with a ``model``,
    a linearizable history.  ``make_sim`` builds the simulation (default: the catalog's
    protocol on ``nodes``)."""
    node = st.sampled_from(nodes)

    class ProtocolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            if make_sim is not None:
                self.sim = make_sim()
            else:
                self.sim = Simulation(
                    SimConfig(protocol=protocol, node_ids=nodes, bugs=bugs, op_timeout=0.2, op_deadline=0.6)
                )
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

        @rule(k=st.integers(1, len(nodes) - 1))
        def partition(self, k):
            self.sim.partition([list(nodes[:k]), list(nodes[k:])])

        @rule()
        def heal(self):
            self.sim.heal()

        @rule(loss=st.sampled_from([0.0, 0.3]), dup=st.sampled_from([0.0, 0.3]))
        def network(self, loss, dup):
            self.sim.set_network(loss=loss, duplicate=dup, reorder=0.2)

        @rule(
            kind=st.sampled_from(["get", "put", "delete"]),
            key=st.sampled_from(["k0", "k1"]),
            at=st.none() | node,
            seed=st.integers(0, 2**16),
        )
        def submit(self, kind, key, at, seed):
            self.value += 1
            if self.sim.service.name != "kv":
                # A protocol with its own service: an operation of its workload.
                op = self.sim.service.make_workload(1, 2).next_op(random.Random(seed))
            else:
                op = Op(kind=kind, key=key, value=self.value if kind == "put" else None)
            self.handles.append(self.sim.submit(op, node=at))

        @rule(dt=st.sampled_from(run_steps))
        def run(self, dt):
            self.sim.run_for(dt)

        @invariant()
        def no_violation_and_statuses_follow_the_rules(self):
            assert not self.sim.violations, [str(v) for v in self.sim.violations]
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
            self.sim.run_for(1.5)
            assert all(h.done for h in self.handles)
            assert not self.sim.violations, [str(v) for v in self.sim.violations]
            if model is not None and self.sim.service.name == "kv":
                result = check_history(self.sim.history, model=model, timeout=20)
                assert result.ok is not False, result

    ProtocolMachine.__name__ = ProtocolMachine.__qualname__ = f"{protocol.title().replace('-', '')}Machine"
    return ProtocolMachine


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stateful(protocol: str):
    machine = machine_for(protocol)
    machine.TestCase.settings = settings(
        max_examples=20,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()


def test_stateful_test_can_fail():
    """The same machine catches a broken rule: Raft granting two votes per term."""
    machine = machine_for("raft", frozenset({"vote-twice"}))
    machine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # no shrinking: finding it is the point
        suppress_health_check=[HealthCheck.too_slow],
    )
    with pytest.raises(Exception, match="election-safety"):
        machine.TestCase().runTest()


def test_stateful_test_can_fail_on_zab():
    """The machine catches a broken ZAB rule: a follower logging a PROPOSAL it holds."""
    machine = machine_for("zab", frozenset({"paper-redundant-propose"}))
    machine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    with pytest.raises(Exception, match="zxid-order"):
        machine.TestCase().runTest()
