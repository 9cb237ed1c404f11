"""The cluster level in the replicated state (statemachines/levels.py): every log
service's state machine raises it through the log and never lowers it, refuses a
malformed level op without a change, keeps the level in its snapshots and leaves it out
of a backup; a restore keeps the restoring cluster's level.  The etcd edge makes level
2's ops only at level 2."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.services.etcd import make_op
from consensuskit.sim import SimConfig, Simulation
from consensuskit.statemachines import levels
from consensuskit.statemachines.backup import backup_op, restore_op
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.levels import BASE_LEVEL, RELEASE_LEVEL, level_of, level_op
from consensuskit.statemachines.mvcc import MVCCStateMachine
from consensuskit.statemachines.sessions import BAD_COMMAND
from tests.statemachines.test_backup import LOG_PROTOCOLS, _node_ids, _settled, write

MACHINES = {"kv": KVStateMachine, "etcd": MVCCStateMachine}


def apply(machine: Any, op: ServiceOp, seq: int = 1) -> Any:
    return machine.apply(ClientRequest(client_id="anon.level.n1", seq=seq, op=op))


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_level_op_raises_the_level_and_never_lowers_it(service: str) -> None:
    machine = MACHINES[service]()
    assert machine.cluster_level == BASE_LEVEL == 1
    assert apply(machine, level_op(2)) == {"level": 2}
    assert machine.cluster_level == 2
    # A raise to a lower level (a slow writer's older look) changes nothing.
    assert apply(machine, level_op(1), seq=2) == {"level": 2}
    assert machine.cluster_level == 2


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize(
    "op",
    [
        level_op(0),
        level_op(RELEASE_LEVEL + 1),  # a level this release cannot apply
        ServiceOp(kind=levels.LEVEL, value="2"),
        ServiceOp(kind=levels.LEVEL, value=True),
        ServiceOp(kind=levels.LEVEL, value=2.0),
        ServiceOp(kind=levels.LEVEL, value=None),
        ServiceOp(kind=levels.LEVEL, key="n1", value=2),
        ServiceOp(kind=levels.LEVEL, value=2, read=True),
    ],
    ids=["zero", "above", "str", "bool", "float", "none", "keyed", "read"],
)
def test_a_malformed_level_op_is_refused_and_changes_nothing(service: str, op: ServiceOp) -> None:
    machine = MACHINES[service]()
    before = machine.snapshot()
    assert apply(machine, op) == BAD_COMMAND
    assert machine.cluster_level == BASE_LEVEL
    assert machine.snapshot().keys() == before.keys()


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_level_read_is_refused(service: str) -> None:
    machine = MACHINES[service]()
    request = ClientRequest(client_id="read.1", seq=1, op=ServiceOp(kind=levels.LEVEL, value=2, read=True))
    assert machine.read(request) == BAD_COMMAND
    assert machine.cluster_level == BASE_LEVEL


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_the_level_travels_in_snapshots_and_an_earlier_snapshot_is_level_one(service: str) -> None:
    machine = MACHINES[service]()
    write(machine, service, 1)
    assert levels.SNAPSHOT_KEY not in machine.snapshot()  # as every earlier release wrote it
    apply(machine, level_op(2))
    snapshot = machine.snapshot()
    assert snapshot[levels.SNAPSHOT_KEY] == 2
    copy = MACHINES[service]()
    copy.restore(snapshot)
    assert copy.cluster_level == 2 and copy.digest() == machine.digest()
    earlier = {k: v for k, v in snapshot.items() if k != levels.SNAPSHOT_KEY}
    copy.restore(earlier)
    assert copy.cluster_level == BASE_LEVEL


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize("bad", [0, RELEASE_LEVEL + 1, "2", [2], True])
def test_a_snapshot_with_a_bad_level_is_refused_and_changes_nothing(service: str, bad: Any) -> None:
    machine = MACHINES[service]()
    apply(machine, level_op(2))
    source = MACHINES[service]()
    write(source, service, 1)
    snapshot = {**source.snapshot(), levels.SNAPSHOT_KEY: bad}
    with pytest.raises(ValueError, match="'level' must be an integer"):
        machine.restore(snapshot)
    assert machine.cluster_level == 2 and len(machine) == 0


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_backup_leaves_the_level_out_and_a_restore_keeps_the_clusters(service: str) -> None:
    source = MACHINES[service]()
    write(source, service, 1)
    apply(source, level_op(2), seq=5)
    backup = source.read(ClientRequest(client_id="read.1", seq=1, op=backup_op()))
    assert levels.SNAPSHOT_KEY not in backup
    # Into a cluster at level 1 (the backup's own level is not the restoring cluster's) ...
    target = MACHINES[service]()
    assert apply(target, restore_op(backup)) == {"restored": len(source)}
    assert target.cluster_level == BASE_LEVEL
    # ... and into one at level 2, even from a snapshot that says otherwise.
    raised = MACHINES[service]()
    apply(raised, level_op(2))
    assert apply(raised, restore_op({**backup, levels.SNAPSHOT_KEY: 1}), seq=2) == {"restored": len(source)}
    assert raised.cluster_level == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-3, max_value=RELEASE_LEVEL + 2), max_size=8))
def test_property_the_level_is_the_largest_valid_one_applied(values: list[int]) -> None:
    machine = KVStateMachine()
    for seq, value in enumerate(values, 1):
        apply(machine, ServiceOp(kind=levels.LEVEL, value=value), seq=seq)
    valid = [v for v in values if BASE_LEVEL <= v <= RELEASE_LEVEL]
    assert machine.cluster_level == max([BASE_LEVEL, *valid])


def test_level_of_reads_a_nodes_state_machine() -> None:
    machine = KVStateMachine()
    apply(machine, level_op(2))
    assert level_of(SimpleNamespace(sm=machine)) == 2
    assert level_of(SimpleNamespace(sm=object())) is None  # a state machine of its own
    assert level_of(object()) is None  # a protocol that is not a log


def test_the_etcd_edge_makes_level_twos_ops_only_at_level_two() -> None:
    body = {"compare": [], "success": [], "failure": []}
    assert make_op("txn", "", body, level=1).value == body
    assert make_op("delete_range", "", {"key": b"a"}, level=1).value == {"key": b"a"}
    assert make_op("txn", "", body, level=2).value == {**body, "precheck": True, "empty_ranges": True}
    assert make_op("delete_range", "", {"key": b"a"}, level=2).value["empty_ranges"] is True
    assert make_op("txn", "", body).value["precheck"] is True  # the simulator: one release


@pytest.mark.parametrize("protocol", LOG_PROTOCOLS)
def test_every_log_protocol_orders_a_raise_as_its_other_operations(protocol: str) -> None:
    """In the simulator: the raise submitted at one node reaches every replica's state."""
    ids = _node_ids(protocol)
    sim = Simulation(SimConfig(protocol=protocol, node_ids=ids, seed=5, clients=0))
    sim.run_for(2.0)
    handle = _settled(sim, level_op(2), ids[-1])
    assert (handle.status, handle.result) == ("ok", {"level": 2})
    sim.run_for(2.0)
    assert {i: sim.nodes[i].sm.cluster_level for i in ids} == dict.fromkeys(ids, 2)


def test_the_gate_matters_the_same_txn_by_both_rules_leaves_different_states() -> None:
    """Why level 2's ops wait for level 2: a nested txn comparing a key the same txn
    wrote picks its branch on the state before the txn by etcd's order (``precheck``),
    after the put by the earlier rules; two replicas applying one op by the two rules
    would hold different values.  The edge at level 1 makes the op every release applies
    alike."""
    then = {"key": b"k/then", "value": b"success"}
    nested = {
        "compare": [{"key": b"k", "target": 0, "result": 0, "version": 0}],  # VERSION == 0
        "success": [{"put": then}],
        "failure": [{"put": {**then, "value": b"failure"}}],
    }
    body = {"compare": [], "success": [{"put": {"key": b"k", "value": b"v"}}, {"txn": nested}], "failure": []}

    def value_after(op: ServiceOp) -> bytes:
        machine = MVCCStateMachine()
        machine.apply(ClientRequest(client_id="c", seq=1, op=op))
        read = make_op("range", "", {"key": b"k/then"})
        return machine.read(ClientRequest(client_id="read.1", seq=1, op=read))["kvs"][0][4]

    assert value_after(make_op("txn", "", body, level=2)) == b"success"  # etcd's order
    earlier = make_op("txn", "", body, level=1)
    assert "precheck" not in earlier.value
    assert value_after(earlier) == b"failure"  # what an earlier release does with either
