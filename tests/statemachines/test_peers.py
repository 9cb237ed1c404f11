"""The replicated directory of member addresses (statemachines/peers.py): every log
service's state machine records and drops a node's addresses through the log, refuses a
malformed peer op without a change, keeps the directory in its snapshots, and leaves it
out of a backup; a restore keeps the restoring cluster's directory."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines import peers
from consensuskit.statemachines.backup import backup_op, restore_op
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.mvcc import MVCCStateMachine
from consensuskit.statemachines.peers import forget_peer_op, peer_op
from consensuskit.statemachines.sessions import BAD_COMMAND, refusal
from tests.statemachines.test_backup import write

MACHINES = {"kv": KVStateMachine, "etcd": MVCCStateMachine}
N4 = ("10.0.0.4:7004", "http://10.0.0.4:8004")


def apply(machine: Any, op: ServiceOp, seq: int = 1) -> Any:
    return machine.apply(ClientRequest(client_id="admin", seq=seq, op=op))


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_peer_op_records_and_drops_a_nodes_addresses(service: str) -> None:
    machine = MACHINES[service]()
    assert machine.peer_directory == {}
    assert apply(machine, peer_op("n4", *N4)) == {"peer": "n4", "known": True}
    first = machine.peer_directory
    assert first == {"n4": N4}
    # Replaced on every change, never changed in place (the server follows it by identity).
    assert apply(machine, peer_op("n5", "10.0.0.5:7005", "http://10.0.0.5:8005"), seq=2)["known"]
    assert first == {"n4": N4} and machine.peer_directory is not first
    assert apply(machine, peer_op("n4", "10.0.0.9:7004", N4[1]), seq=3)["known"]
    assert machine.peer_directory["n4"] == ("10.0.0.9:7004", N4[1])
    assert apply(machine, forget_peer_op("n4"), seq=4) == {"peer": "n4", "known": False}
    assert set(machine.peer_directory) == {"n5"}
    # Dropping a node that is not there changes nothing (and says so).
    before = machine.peer_directory
    assert apply(machine, forget_peer_op("n9"), seq=5) == {"peer": "n9", "known": False}
    assert machine.peer_directory is before
    assert len(machine) == 0  # the directory is not the service's data


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize(
    "op",
    [
        ServiceOp(kind="peer", key="", value=N4),
        ServiceOp(kind="peer", key="x" * 256, value=N4),
        ServiceOp(kind="peer", key="n4", value="10.0.0.4:7004"),
        ServiceOp(kind="peer", key="n4", value=("10.0.0.4", N4[1])),
        ServiceOp(kind="peer", key="n4", value=("10.0.0.4:99999", N4[1])),
        ServiceOp(kind="peer", key="n4", value=("10.0.0.4:x", N4[1])),
        ServiceOp(kind="peer", key="n4", value=(N4[0], "")),
        ServiceOp(kind="peer", key="n4", value=(N4[0], 7)),
        ServiceOp(kind="peer", key="n4", value=(N4[0], N4[1], "extra")),
        ServiceOp(kind="peer", key="n4", value=("h" * 3000 + ":1", N4[1])),
    ],
    ids=lambda op: repr(op.value)[:20] + "/" + op.key[:4],
)
def test_a_malformed_peer_op_is_refused_and_changes_nothing(service: str, op: ServiceOp) -> None:
    machine = MACHINES[service]()
    apply(machine, peer_op("n5", "10.0.0.5:7005", "http://10.0.0.5:8005"))
    before = machine.peer_directory
    result = apply(machine, op, seq=2)
    assert result is BAD_COMMAND and refusal(result) == "bad-command"
    assert machine.peer_directory is before


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_peer_op_is_never_served_as_a_read(service: str) -> None:
    machine = MACHINES[service]()
    read = ServiceOp(kind="peer", key="n4", value=N4, read=True)
    assert machine.read(ClientRequest(client_id="r", seq=1, op=read)) is BAD_COMMAND
    assert machine.peer_directory == {}


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_snapshots_carry_the_directory_and_older_ones_restore_an_empty_one(service: str) -> None:
    machine = MACHINES[service]()
    for i in range(5):
        write(machine, service, i)
    assert peers.SNAPSHOT_KEY not in machine.snapshot()  # unused: the format is unchanged
    apply(machine, peer_op("n4", *N4))
    snapshot = decode(encode(machine.snapshot()))
    assert [list(e) for e in snapshot[peers.SNAPSHOT_KEY]] == [["n4", *N4]]
    copy = MACHINES[service]()
    copy.restore(snapshot)
    assert copy.peer_directory == {"n4": N4} and copy.digest() == machine.digest()
    older = {k: v for k, v in snapshot.items() if k != peers.SNAPSHOT_KEY}
    copy.restore(older)
    assert copy.peer_directory == {}


@pytest.mark.parametrize("service", sorted(MACHINES))
@pytest.mark.parametrize("part", [[["n4", "nohost", "u"]], "n4", [["n4", *N4, "x"]], ["", *N4]])
def test_a_snapshot_with_a_bad_directory_is_refused_and_changes_nothing(service: str, part: Any) -> None:
    machine = MACHINES[service]()
    write(machine, service, 1)
    apply(machine, peer_op("n5", "10.0.0.5:7005", "http://10.0.0.5:8005"))
    bad = {**machine.snapshot(), peers.SNAPSHOT_KEY: part}
    before = (machine.digest(), machine.peer_directory)
    with pytest.raises(ValueError):
        machine.restore(decode(encode(bad)))
    assert (machine.digest(), machine.peer_directory) == before


@pytest.mark.parametrize("service", sorted(MACHINES))
def test_a_backup_leaves_the_directory_out_and_a_restore_keeps_the_targets(service: str) -> None:
    source = MACHINES[service]()
    for i in range(5):
        write(source, service, i)
    apply(source, peer_op("n4", *N4))
    backup = source.read(ClientRequest(client_id="r", seq=1, op=backup_op()))
    assert peers.SNAPSHOT_KEY not in backup
    target = MACHINES[service]()
    apply(target, peer_op("m7", "10.1.0.7:7007", "http://10.1.0.7:8007"))
    result = target.apply(ClientRequest(client_id="admin", seq=2, op=restore_op(backup)))
    assert refusal(result) is None and target.digest() == source.digest()
    assert target.peer_directory == {"m7": ("10.1.0.7:7007", "http://10.1.0.7:8007")}
    # A refused restore keeps it too.
    assert (
        refusal(target.apply(ClientRequest(client_id="admin", seq=3, op=restore_op(backup)))) == "not-empty"
    )
    assert set(target.peer_directory) == {"m7"}


NODE = st.sampled_from(["n1", "n2", "n3", "n4"])
ENTRY = st.tuples(st.sampled_from(["10.0.0.1:1", "h:65535", "[::1]:7"]), st.sampled_from(["http://a", "u"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(NODE, st.none() | ENTRY), max_size=12))
def test_property_the_directory_is_the_last_word_on_each_node(changes: list[tuple[str, Any]]) -> None:
    machine = KVStateMachine()
    expected: dict[str, tuple[str, str]] = {}
    for seq, (node, entry) in enumerate(changes, 1):
        op = forget_peer_op(node) if entry is None else peer_op(node, *entry)
        apply(machine, op, seq)
        if entry is None:
            expected.pop(node, None)
        else:
            expected[node] = entry
        copy = KVStateMachine()
        copy.restore(decode(encode(machine.snapshot())))
        assert copy.peer_directory == machine.peer_directory
    assert machine.peer_directory == expected
