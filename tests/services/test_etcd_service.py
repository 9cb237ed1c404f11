"""services/etcd.py: the ops at the edge, and the service run by the simulator on each
log protocol (its histories checked by the etcd model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from consensuskit.services.etcd import MAX_TXN_OPS, make_op, single_key, validate
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


def put(key: str) -> dict[str, Any]:
    return {"put": {"key": key, "value": "v"}}


def txn(success: Sequence[Any] = (), failure: Sequence[Any] = (), compare: Sequence[Any] = ()) -> Any:
    return make_op("txn", "", {"compare": list(compare), "success": list(success), "failure": list(failure)})


@pytest.mark.parametrize(
    "op",
    [
        make_op("range", "", {}),
        make_op("delete_range", "", {"range_end": b"z"}),
        make_op("put", "", {"value": b"v"}),
        txn(compare=[{"key": b"", "target": 0, "result": 0, "version": 0}]),
        txn(success=[{"range": {"range_end": b"z"}}]),
        txn(failure=[{"txn": {"compare": [{"key": "", "target": 0, "result": 0}]}}]),
    ],
)
def test_etcds_own_checks_refuse_an_empty_key_before_the_log(op: Any) -> None:
    with pytest.raises(ValueError, match=r"^key is not provided$"):
        validate(op)


NESTED_40 = [put(f"n{i}") for i in range(40)]


def test_a_txn_holds_at_most_128_ops_in_its_compares_and_each_branch() -> None:
    validate(txn(success=[put(f"k{i}") for i in range(MAX_TXN_OPS)]))
    cmp = {"key": "a", "target": 0, "result": 0, "version": 0}
    for too_many in (
        txn(compare=[cmp] * (MAX_TXN_OPS + 1)),
        txn(failure=[put(f"k{i}") for i in range(MAX_TXN_OPS + 1)]),
        # A nested txn gets what its parent's widest list left: 100 + 40 > 128.
        txn(success=[*(put(f"k{i}") for i in range(100)), {"txn": {"success": NESTED_40}}]),
    ):
        with pytest.raises(ValueError, match=r"^too many operations in txn request$"):
            validate(too_many)


@pytest.mark.parametrize(
    ("ops", "duplicate"),
    [
        ([put("a"), put("a")], True),
        ([put("a"), {"delete_range": {"key": "0", "range_end": "b"}}], True),
        ([put("a"), {"txn": {"success": [put("a")]}}], True),
        ([put("a"), {"txn": {"failure": [{"delete_range": {"key": "a"}}]}}], True),
        ([{"delete_range": {"key": "a"}}, {"txn": {"success": [put("a")]}}], True),
        ([{"txn": {"success": [put("a")]}}, {"txn": {"failure": [put("a")]}}], True),
        # Only one branch of a nested txn runs: both may put the same key.
        ([{"txn": {"success": [put("a")], "failure": [put("a")]}}], False),
        ([put("a"), put("b"), {"delete_range": {"key": "c", "range_end": "d"}}], False),
        # etcd reads a delete to "\0" as [key, "\0"): empty, no put conflicts with it.
        ([put("a"), {"delete_range": {"key": "0", "range_end": "\0"}}], False),
        ([{"delete_range": {"key": "a", "range_end": "\0"}}, {"txn": {"success": [put("a")]}}], False),
    ],
)
def test_a_txn_writes_a_key_once_in_either_branch_nested_txns_included(ops: list[Any], duplicate: bool):
    """etcd's checkIntervals: the failure branch is checked too, though the success one runs."""
    for op in (txn(success=ops), txn(failure=ops)):
        if duplicate:
            with pytest.raises(ValueError, match=r"^duplicate key given in txn request$"):
                validate(op)
        else:
            validate(op)


def test_a_txn_is_checked_in_etcds_order_before_the_log() -> None:
    """etcd's checkTxnRequest, op by op (success, then failure, nested in place): an
    empty key, a value with ignore_value, a lease with ignore_lease, an empty request op
    ("key not found"), even in the branch that will not run.  Checked against etcd 3.4."""
    cases = (
        (txn(failure=[{"put": {"key": "a", "value": "v", "ignore_value": True}}]), "value is provided"),
        (txn(failure=[{"put": {"key": "a", "lease": 5, "ignore_lease": True}}]), "lease is provided"),
        (txn(success=[{"range": {"key": "a"}}, {}]), "key not found"),
        (txn(success=[{"txn": {"success": [{}]}}, {"put": {"key": ""}}]), "key not found"),
        (txn(success=[{"put": {"key": "", "value": "v", "ignore_value": True}}]), "key is not provided"),
        (txn(success=[{"put": {"key": "a", "value": "v", "ignore_value": True}}, {}]), "value is provided"),
    )
    for op, text in cases:
        with pytest.raises(ValueError, match=f"^{text}$"):
            validate(op)
    with pytest.raises(ValueError, match=r"^lease is provided$"):
        validate(make_op("put", "a", {"lease": 5, "ignore_lease": True}))


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
