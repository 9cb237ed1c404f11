"""ZAB's read paths: a plain (local) follower read is sequentially consistent, not
linearizable; the default linearizable read is, also when sent to a follower."""

from __future__ import annotations

from typing import Any

from consensuskit.check.linearizability import check_history
from consensuskit.core.client import Op
from consensuskit.sim import SimConfig, Simulation


def established(sim: Simulation) -> str | None:
    for node_id in sim.node_ids:
        node = sim.nodes.get(node_id)
        if node is not None and node.is_leader() and node.established:
            return node_id
    return None


def run_op(sim: Simulation, op: Op, node: str, timeout: float = 1.0) -> Any:
    handle = sim.submit(op, node=node, client_id=f"c-{node}-{op.kind}-{sim.now:.3f}")
    sim.run_until_true(lambda: handle.status is not None, timeout=timeout)
    return handle


def stale_read_story(read_mode: str) -> tuple[Simulation, Any]:
    """x=1 everywhere; follower n1 is cut off; x=2 commits on the majority; a read of x
    goes to n1, which still believes it follows the leader."""
    sim = Simulation(
        SimConfig(
            protocol="zab",
            node_ids=("n1", "n2", "n3"),
            seed=0,
            clients=0,
            options={"read_mode": read_mode},
            op_timeout=0.1,
            op_deadline=0.1,
        )
    )
    sim.run_until_true(lambda: established(sim) is not None, timeout=5.0)
    leader = established(sim)
    assert leader == "n3"
    assert run_op(sim, Op(kind="put", key="x", value=1), leader).status == "ok"
    sim.run_for(0.2)
    sim.partition([["n1"], ["n2", "n3"]])
    assert run_op(sim, Op(kind="put", key="x", value=2), leader).status == "ok"
    sim.run_for(0.001)  # the read starts strictly after the write was answered
    read = run_op(sim, Op(kind="get", key="x"), "n1", timeout=0.15)
    return sim, read


def test_a_local_follower_read_is_not_linearizable():
    sim, read = stale_read_story("local")
    assert read.status == "ok" and read.result["value"] == 1  # the old value
    assert check_history(sim.history, model="kv", timeout=10).ok is False


def test_the_default_read_is_linearizable_at_a_follower():
    sim, read = stale_read_story("linearizable")
    # Forwarded to a leader n1 cannot reach: no answer rather than a stale one.
    assert read.status != "ok" or read.result["value"] == 2
    assert check_history(sim.history, model="kv", timeout=10).ok is not False


def test_a_follower_forwards_a_linearizable_read_and_a_write():
    sim = Simulation(SimConfig(protocol="zab", node_ids=("n1", "n2", "n3"), seed=1, clients=0))
    sim.run_until_true(lambda: established(sim) is not None, timeout=5.0)
    assert run_op(sim, Op(kind="put", key="y", value=7), "n1").status == "ok"
    read = run_op(sim, Op(kind="get", key="y"), "n1")
    assert read.status == "ok" and read.result["value"] == 7
