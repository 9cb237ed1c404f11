"""Sharded Raft in the simulator: the bank under faults, the knob, the kv service's
linearizability, the --shards flag, determinism."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consensuskit.catalog import add_services, default_registry
from consensuskit.check.serializability import check_transactions
from consensuskit.check.sharded import committed_transactions
from consensuskit.core.registry import Registry
from consensuskit.protocols.raft import raft_spec
from consensuskit.protocols.sharded import ShardedNode, sharded_spec
from consensuskit.sim import SimConfig, Simulation

NODES = ("n1", "n2", "n3")


def bank(seed: int, **overrides: Any) -> SimConfig:
    settings = {
        "protocol": "sharded-raft",
        "service": "shard-kv",
        "node_ids": NODES,
        "seed": seed,
        "duration": 4.0,
        "clients": 4,
        "nemesis": ("partition", "crash", "pause", "loss"),
    }
    settings.update(overrides)
    return SimConfig(**settings)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_bank_under_faults_conserves_and_is_serializable(seed: int) -> None:
    result = Simulation(bank(seed)).run()
    assert result.ok, result.invariant_violations
    kinds = result.metrics["ops"]
    assert kinds.get("transfer:ok", 0) >= 5 and kinds.get("balances:ok", 0) >= 5, kinds
    assert result.metrics["serializability"]["ok"]


def test_read_ignores_locks_breaks_conservation() -> None:
    result = Simulation(bank(0, bugs=frozenset({"read-ignores-locks"}), nemesis=())).run()
    assert [v["name"] for v in result.invariant_violations] == ["conservation"]


def test_the_serializability_checker_alone_catches_the_knob() -> None:
    """Without the conservation check (no checker at all), the history itself shows the
    knob's reads in dependency cycles."""
    registry = Registry()
    registry.add(dataclasses.replace(sharded_spec(raft_spec(), name="sharded-raft"), make_checker=None))
    add_services(registry)
    cfg = bank(0, bugs=frozenset({"read-ignores-locks"}), nemesis=(), duration=3.0, clients=6)
    result = Simulation(cfg, registry).run()
    verdict = check_transactions(committed_transactions(result.history))
    assert not verdict.ok
    assert {a["type"] for a in verdict.anomalies} & {"G-single", "G2"}, verdict.anomalies


def test_kv_ops_routed_to_shards_are_linearizable() -> None:
    cfg = SimConfig(protocol="sharded-raft", service="kv", node_ids=NODES, seed=3, duration=5.0, clients=3,
                    nemesis=("partition", "crash"), options={"shards": 3})  # fmt: skip
    result = Simulation(cfg).run()
    assert result.ok and result.linearizable is True, result.invariant_violations


def test_the_shards_flag_sets_the_groups_and_bad_options_are_one_line() -> None:
    spec = default_registry().get("sharded-raft")
    assert [f.name for f in spec.flags] == ["shards"]
    sim = Simulation(SimConfig(protocol="sharded-raft", node_ids=NODES, flags={"shards": 4}, duration=0.5))
    sim.run()
    node = sim.nodes["n1"]
    assert isinstance(node, ShardedNode) and node.shards == 4
    assert spec.validate_options is not None
    for bad, text in (({"shards": 0}, "shards must be 1..64"), ({"bogus": 1}, "unknown sharded-raft option")):
        with pytest.raises(ValueError, match=text) as exc:
            spec.validate_options(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError):
        spec.validate_options({"group": {"election_timeout": -1}})


def test_same_seed_same_trace() -> None:
    first = Simulation(bank(5, duration=2.0)).run()
    second = Simulation(bank(5, duration=2.0)).run()
    assert first.trace_sha256 == second.trace_sha256
