"""The service layer: ServiceSpec's op validation, the registry's choice of a service for
a protocol, the kv service's spec, and the generic exactly-once sessions (Sessioned)."""

from __future__ import annotations

import random

import pytest

from consensuskit.catalog import builtin_registry, service_for
from consensuskit.core.client import ClientRequest, Op, ServiceOp
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.core.service import ServiceSpec, resolve
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.sessioned import Sessioned
from consensuskit.statemachines.sessions import BAD_COMMAND, STALE, clock_op, refusal


class Tally:
    def __init__(self) -> None:
        self.n = 0

    def execute(self, op):  # type: ignore[no-untyped-def]
        if op.kind == "add":
            self.n += op.value
        return self.n

    def snapshot(self):  # type: ignore[no-untyped-def]
        return self.n

    def restore(self, snapshot):  # type: ignore[no-untyped-def]
        if type(snapshot) is not int:
            raise ValueError("not a tally")
        self.n = snapshot

    def digest(self):  # type: ignore[no-untyped-def]
        return self.n

    def __len__(self) -> int:
        return 1


def tally() -> Sessioned:
    return Sessioned(Tally(), ("add", "get"), ("get",))


TALLY = ServiceSpec(
    name="tally",
    description="one number",
    kinds=("add", "get"),
    read_kinds=("get",),
    make_state_machine=tally,
    make_workload=lambda index, keys: None,  # type: ignore[arg-type,return-value]
    log=True,
)


def req(seq: int, op: object, client: str = "c") -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=op)  # type: ignore[arg-type]


def test_op_builds_and_validates():
    assert TALLY.op("add", value=2) == ServiceOp(kind="add", value=2)
    assert TALLY.op("get").is_read() and not TALLY.op("add").is_read()
    with pytest.raises(ValueError, match=r"^unknown tally operation 'mul'; valid: add, get$"):
        TALLY.op("mul")
    with pytest.raises(ValueError, match="marked read=True"):
        TALLY.check(ServiceOp(kind="add", read=True))


def test_kv_service_is_the_catalogs_default_and_keeps_kv_ops():
    reg = builtin_registry()
    kv = reg.service("kv")
    assert kv.make_state_machine().__class__ is KVStateMachine
    assert kv.op("put", "k", "v") == Op(kind="put", key="k", value="v")
    assert "clock" not in kv.kinds  # the runtime's own command
    with pytest.raises(ValueError, match="unknown kv operation 'incr'"):
        kv.op("incr", "k")
    for name in reg.names():
        expected = "kv" if reg.get(name).log else reg.get(name).default_service  # gossip, swim: their own
        assert service_for(reg, reg.get(name)).name == expected
    assert resolve(kv.http).mount and resolve(kv.cli).registered_commands


def test_service_for_refuses_what_a_protocol_cannot_serve():
    reg = builtin_registry()
    reg.add_service(TALLY)
    solo = ProtocolSpec(name="solo", description="", make_node=lambda *a: None, services=("own",))  # type: ignore[arg-type,return-value]
    reg.add(solo)
    assert service_for(reg, reg.get("raft"), "tally") is TALLY  # a log service on a log protocol
    with pytest.raises(KeyError, match=r"unknown service 'nope'; valid: .*kv, .*tally"):
        service_for(reg, reg.get("raft"), "nope")
    with pytest.raises(KeyError, match=r"solo cannot serve 'kv'; valid: \(none\)"):
        service_for(reg, solo, "kv")
    with pytest.raises(KeyError, match="unknown service 'own'"):
        service_for(reg, solo)  # its own service was never registered
    with pytest.raises(ValueError, match="registered twice"):
        reg.add_service(TALLY)


def test_a_registry_without_services_borrows_the_built_in_ones():
    reg = Registry()
    reg.add(ProtocolSpec(name="p", description="", make_node=lambda *a: None))  # type: ignore[arg-type,return-value]
    assert service_for(reg, reg.get("p")).name == "kv"


def test_log_protocols_get_the_services_state_machine():
    from tests.protocols.fake_env import FakeEnv

    reg = builtin_registry()
    for name in reg.names():
        spec = reg.get(name)
        if not spec.log:
            continue  # brings its own service (gossip: gossip-map; swim: membership)
        members = ["n1", "n2", "n3", "n4", "n5"]
        node = spec.build("n1", FakeEnv("n1"), members, dict(spec.default_options), TALLY)
        assert isinstance(node.sm, Sessioned)  # type: ignore[attr-defined]


def test_sessioned_applies_once_and_refuses_what_it_does_not_know():
    sm = tally()
    add = ServiceOp(kind="add", value=3)
    assert sm.apply(req(1, add)) == 3
    assert sm.apply(req(1, add)) == 3  # the retry: answered from the session
    assert sm.apply(req(0, add)) is STALE
    assert refusal(sm.apply(req(2, ServiceOp(kind="mul", value=2)))) == BAD_COMMAND["error"]
    assert refusal(sm.apply(req(3, ServiceOp(kind="add", value=1, read=True)))) == BAD_COMMAND["error"]
    assert sm.read(req(9, ServiceOp(kind="get", read=True))) == 3
    with pytest.raises(ValueError):
        sm.read(req(9, ServiceOp(kind="add", value=1, read=True)))
    assert sm.apply(req(1, clock_op("e", 1000, 60_000, 10), client="leader"))["sessions"] == 1
    assert sm.digest() == 3 and len(sm) == 1


def test_sessioned_snapshot_round_trip_and_a_bad_one_changes_nothing():
    sm = tally()
    sm.apply(req(1, ServiceOp(kind="add", value=5)))
    copy = tally()
    copy.restore(sm.snapshot())
    assert copy.digest() == 5 and copy.apply(req(1, ServiceOp(kind="add", value=5))) == 5  # session kept
    with pytest.raises(ValueError):
        copy.restore({"state": "x", **sm.snapshot()} | {"state": "x"})
    with pytest.raises(ValueError):
        copy.restore({"nope": 1})
    assert copy.digest() == 5


def test_kv_workload_is_deterministic_per_rng():
    kv = builtin_registry().service("kv")
    one, two = kv.make_workload(1, 3), kv.make_workload(1, 3)
    a, b = random.Random(7), random.Random(7)
    assert [one.next_op(a) for _ in range(50)] == [two.next_op(b) for _ in range(50)]
