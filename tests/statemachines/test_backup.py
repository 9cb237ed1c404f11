"""The backup and restore operations every log service's state machine answers
(statemachines/backup.py): a backup is the whole state, a restore brings it back into an
empty state machine only, refusals change nothing, a backup touches no session and a
restore is remembered in the sessions it brings; every log
protocol orders them (in the simulator) as it orders any other operation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.catalog import default_registry
from consensuskit.core.client import ClientRequest, Op, ServiceOp
from consensuskit.core.messages import encode
from consensuskit.services.etcd import make_op
from consensuskit.sim import SimConfig, Simulation
from consensuskit.statemachines.backup import backup_op, restore_op, restore_op_of_encoded
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.mvcc import MVCCStateMachine
from consensuskit.statemachines.sessions import refusal

MACHINES = {"kv": KVStateMachine, "etcd": MVCCStateMachine}


def write(machine: Any, kind: str, i: int, client: str = "c", seq: int | None = None) -> Any:
    if kind == "kv":
        op: Any = Op(kind="put", key=f"k{i % 5}", value=f"v{i}")
    else:
        op = make_op("put", "", {"key": f"k{i % 5}".encode(), "value": f"v{i}".encode()})
    return machine.apply(ClientRequest(client_id=client, seq=i + 1 if seq is None else seq, op=op))


def backup(machine: Any, *, via_apply: bool = False) -> Any:
    request = ClientRequest(client_id="r", seq=1, op=backup_op())
    return machine.apply(request) if via_apply else machine.read(request)


def restore_request(snapshot: Any) -> ClientRequest:
    return ClientRequest(client_id="admin", seq=1, op=restore_op(snapshot))


def restore(machine: Any, snapshot: Any) -> Any:
    return machine.apply(restore_request(snapshot))


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize("via_apply", [False, True], ids=["read", "apply"])
def test_a_backup_restores_the_same_state_and_sessions(service: str, via_apply: bool) -> None:
    source = MACHINES[service]()
    for i in range(12):
        write(source, service, i)
    snapshot = backup(source, via_apply=via_apply)
    target = MACHINES[service]()
    result = restore(target, snapshot)
    assert refusal(result) is None and result == {"restored": len(source)}
    assert target.digest() == source.digest()
    # The sessions came with it: a retry of the last write gets its first answer.
    first = write(source, service, 11)
    assert write(target, service, 11) == first
    assert target.digest() == source.digest()
    # Nothing about the backup read itself was remembered in a session; the restore is,
    # as its client's last command.
    source.sessions.remember(restore_request(snapshot), result)
    assert encode(backup(source)) == encode(backup(target))


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_retry_of_an_applied_restore_gets_its_first_answer(service: str) -> None:
    """The answer to a restore can be lost (a large one takes long, a leader can change):
    the client retries with the same request id and must not read ``not-empty`` as a
    failure.  Another restore is still refused, and so is a refused one's retry."""
    source = MACHINES[service]()
    for i in range(4):
        write(source, service, i)
    snapshot = backup(source)
    target = MACHINES[service]()
    first = restore(target, snapshot)
    assert refusal(first) is None
    before = encode(backup(target))
    assert target.apply(restore_request(snapshot)) == first
    assert encode(backup(target)) == before
    write(target, service, 9, client="later")  # still the first answer after other writes
    assert target.apply(restore_request(snapshot)) == first
    for again in (
        ClientRequest(client_id="admin", seq=2, op=restore_op(snapshot)),  # a new restore
        ClientRequest(client_id="other", seq=1, op=restore_op(snapshot)),
        ClientRequest(client_id="admin", seq=1, op=restore_op({"not": "it"})),  # the id reused
    ):
        assert refusal(target.apply(again)) == "not-empty"
        assert refusal(target.apply(again)) == "not-empty"  # a refusal is never remembered


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_restore_into_a_machine_that_holds_data_is_refused_and_changes_nothing(service: str) -> None:
    source, target = MACHINES[service](), MACHINES[service]()
    write(source, service, 1)
    write(target, service, 2, client="other")
    before = encode(backup(target))
    assert refusal(restore(target, backup(source))) == "not-empty"
    assert encode(backup(target)) == before


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize(
    "value",
    [b"", b"\x02\x93\x01", encode({"flat": (1, 2)}), encode([1, 2, 3]), "not bytes", None],
    ids=["empty", "truncated", "bad-shape", "list", "str", "none"],
)
def test_a_bad_snapshot_is_refused_and_changes_nothing(service: str, value: Any) -> None:
    machine = MACHINES[service]()
    op = ServiceOp(kind="restore", value=value)
    assert refusal(machine.apply(ClientRequest(client_id="admin", seq=1, op=op))) == "bad-backup"
    assert len(machine) == 0
    write(machine, service, 0)  # still works
    assert len(machine) > 0


def test_another_services_snapshot_is_refused() -> None:
    kv, etcd = KVStateMachine(), MVCCStateMachine()
    write(kv, "kv", 0)
    write(etcd, "etcd", 0)
    assert refusal(restore(MVCCStateMachine(), backup(kv))) == "bad-backup"
    assert refusal(restore(KVStateMachine(), backup(etcd))) == "bad-backup"


def test_kv_refuses_any_other_service_op_deterministically() -> None:
    """Before, a ServiceOp that reached kv's apply raised (a node halts on that)."""
    machine = KVStateMachine()
    result = machine.apply(ClientRequest(client_id="c", seq=1, op=ServiceOp(kind="put", key="k", value=1)))
    assert refusal(result) == "bad-command" and len(machine) == 0


def test_the_restore_of_encoded_bytes_is_the_same_command() -> None:
    source = KVStateMachine()
    write(source, "kv", 3)
    snapshot = backup(source)
    assert restore_op_of_encoded(encode(snapshot)) == restore_op(snapshot)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "delete", "cas"]), st.integers(0, 6), st.text(max_size=3))))
def test_property_restore_of_a_backup_is_the_identity_on_kv(ops: list[tuple[str, int, str]]) -> None:
    source = KVStateMachine()
    for seq, (kind, key, value) in enumerate(ops, 1):
        op = Op(kind=kind, key=f"k{key}", value=value, expected=value if kind == "cas" else None)
        source.apply(ClientRequest(client_id="p", seq=seq, op=op))
    target = KVStateMachine()
    snapshot = backup(source)
    result = restore(target, snapshot)
    if len(source) == 0:
        assert result == {"restored": 0}
    assert target.digest() == source.digest() and target.items() == source.items()
    source.sessions.remember(restore_request(snapshot), result)  # the only difference
    assert encode(target.sessions.snapshot()) == encode(source.sessions.snapshot())


# ---------------------------------------------------------------------- every log protocol
REGISTRY = default_registry()
LOG_PROTOCOLS = [name for name in REGISTRY.names() if REGISTRY.get(name).log]


def _node_ids(protocol: str) -> tuple[str, ...]:
    return tuple(f"n{i + 1}" for i in range(max(3, REGISTRY.get(protocol).min_nodes)))


def _settled(sim: Simulation, op: Any, node: str) -> Any:
    handle = sim.submit(op, node=node)
    sim.run_until_true(lambda: handle.status is not None, timeout=10.0)
    return handle


def _agreeing(sim: Simulation, ids: tuple[str, ...], digest: Any) -> int:
    return sum(1 for i in ids if sim.nodes.get(i) is not None and sim.nodes[i].sm.digest() == digest)


@pytest.mark.parametrize("protocol", LOG_PROTOCOLS)
def test_every_log_protocol_orders_a_backup_and_a_restore_as_its_other_operations(protocol: str) -> None:
    """In the simulator, after a run with partitions and crashes: the backup asked of one
    node is the state every replica converged to; restored into a new cluster of the same
    protocol it becomes every replica's state; a second restore changes nothing."""
    ids = _node_ids(protocol)
    # PBFT: a replica may trail by a checkpoint interval; the others agree.
    quorum = len(ids) - (len(ids) - 1) // 3 if protocol == "pbft" else len(ids)
    config = SimConfig(
        protocol=protocol,
        node_ids=ids,
        seed=3,
        duration=4.0,
        settle=3.0,
        clients=3,
        keys=12,
        nemesis=("partition", "crash"),
    )
    sim = Simulation(config)
    assert sim.run().ok
    backup = _settled(sim, backup_op(), ids[-1])
    assert backup.status == "ok"
    expected = KVStateMachine()
    expected.restore(backup.result)
    assert len(expected) > 0
    sim.run_for(2.0)
    assert _agreeing(sim, ids, expected.digest()) >= quorum

    target = Simulation(SimConfig(protocol=protocol, node_ids=ids, seed=4, clients=0))
    target.run_for(2.0)
    restored = _settled(target, restore_op(backup.result), ids[0])
    assert (restored.status, restored.result) == ("ok", {"restored": len(expected)})
    target.run_for(2.0)
    assert _agreeing(target, ids, expected.digest()) == len(ids)
    again = _settled(target, restore_op(backup.result), ids[0])
    assert again.status != "ok"  # refused not-empty (PBFT's client: no f+1 alike "ok")
    target.run_for(1.0)
    assert _agreeing(target, ids, expected.digest()) == len(ids)
