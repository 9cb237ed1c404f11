"""services/etcd.py: the ops at the edge, and the service run by the simulator on each
log protocol (its histories checked by the etcd model)."""

from __future__ import annotations

import pytest

from consensuskit.services.etcd import make_op, single_key, validate
from consensuskit.sim.config import SimConfig
from consensuskit.sim.simulation import Simulation


def test_validate_names_the_problem() -> None:
    validate(make_op("put", "k", {"value": b"v", "lease": 3}))
    with pytest.raises(ValueError, match="unknown field 'valeu'"):
        validate(make_op("put", "k", {"valeu": b"v"}))
    with pytest.raises(ValueError, match="lease must be int"):
        validate(make_op("put", "k", {"lease": "x"}))
    with pytest.raises(ValueError, match="unknown request 'get'"):
        validate(make_op("txn", "", {"success": [{"get": {}}]}))
    with pytest.raises(ValueError, match="prev_kv must be bool"):
        validate(make_op("txn", "", {"success": [{"put": {"key": "a", "prev_kv": 1}}]}))


def test_an_op_names_its_key_only_when_it_touches_one() -> None:
    assert make_op("range", "k", {}).key == "k"
    assert make_op("range", "", {"key": b"a", "range_end": b"b"}).key == ""
    body = {
        "compare": [{"key": "k"}],
        "success": [{"put": {"key": "k"}}],
        "failure": [{"range": {"key": "j"}}],
    }
    assert single_key("txn", body) == ""
    assert make_op("lease_grant", "", {"ttl": 5}).key == ""
    assert make_op("range", "", {}).is_read() and not make_op("put", "", {}).is_read()


@pytest.mark.parametrize("protocol", ["raft", "multipaxos"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_simulator_runs_etcd_linearizably_under_faults(protocol: str, seed: int) -> None:
    config = SimConfig(
        protocol=protocol,
        node_ids=("n1", "n2", "n3", "n4", "n5"),
        seed=seed,
        duration=6.0,
        clients=3,
        nemesis=("partition", "crash", "pause", "loss", "dup", "reorder"),
        service="etcd",
    )
    result = Simulation(config).run()
    assert result.ok, result
    assert result.linearizable is True
    assert result.ops["ok"] > 100
