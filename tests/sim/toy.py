"""A tiny primary-backup register used to exercise the simulator without Raft.

The first member is the primary forever.  It appends every client request to its
log, replicates it, and answers once a majority (counting itself) holds it; followers
append in order and acknowledge their last index.  Heartbeats carry the primary's
last index so followers that lost messages ask again (by acknowledging what they
have, which makes the primary resend the gap).

The checker's invariant ("prefix"): every follower's log is a prefix of the
primary's.  It holds only because the simulator releases Replicate messages after
the primary's append is durable — a crash can lose unsynced entries, never sent ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensuskit.core.client import NOT_LEADER, ClientRequest, ClientResponse, Op
from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.sim import InvariantViolation

HEARTBEAT = 0.05
RESEND = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Replicate:
    index: int
    entry: ClientRequest

    def summary(self) -> str:
        return f"Replicate {self.index}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    last: int
    gap: bool = False  # sent on a heartbeat that showed missing entries: resend them


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    last: int


def execute(kv: dict[str, tuple[Any, int]], op: Op) -> Any:
    cur = kv.get(op.key)
    if op.kind == "get":
        return {"value": cur[0] if cur else None, "version": cur[1] if cur else 0}
    if op.kind == "put":
        kv[op.key] = (op.value, (cur[1] if cur else 0) + 1)
        return {"version": kv[op.key][1]}
    if op.kind == "delete":
        return {"deleted": kv.pop(op.key, None) is not None}
    if op.expected_version is not None:
        ok = (cur[1] if cur else 0) == op.expected_version
    else:
        ok = (cur[0] if cur else None) == op.expected
    if not ok:
        return {"swapped": False}
    kv[op.key] = (op.value, (cur[1] if cur else 0) + 1)
    return {"swapped": True, "version": kv[op.key][1]}


class ToyNode:
    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.node_id = node_id
        self.env = env
        self.members = tuple(members)
        self.primary = self.members[0]
        self.role = "leader" if node_id == self.primary else "follower"
        self.options = options
        self.others = [m for m in self.members if m != node_id]
        self.kv: dict[str, tuple[Any, int]] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}
        self.acked: dict[str, int] = dict.fromkeys(self.others, 0)
        self.commit = 0
        self.applied = 0
        self.timer_fires = 0
        self.messages: list[tuple[float, str, Any]] = []  # (local time, src, msg) seen

    # -- capabilities (core/capabilities.py): a fixed primary leads -----------------------
    def is_leader(self) -> bool:
        return self.role == "leader"

    def current_leader(self) -> str | None:
        return self.primary

    # -- helpers -----------------------------------------------------------------------
    def _entry(self, index: int) -> ClientRequest:
        storage = self.env.storage
        return storage.log_records()[index - storage.log_first()]

    def _quorum(self) -> int:
        return len(self.members) // 2 + 1

    # -- inputs ------------------------------------------------------------------------
    def on_start(self) -> None:
        self.env.record("role", role=self.role)
        if self.role == "leader":
            self.env.set_timer("heartbeat", HEARTBEAT)

    def on_timer(self, key: str) -> None:
        self.timer_fires += 1
        if key == "heartbeat":
            last = self.env.storage.log_last()
            for m in self.others:
                self.env.send(m, Heartbeat(last=last))
            self.env.set_timer("heartbeat", HEARTBEAT)

    def on_request(self, request: ClientRequest) -> None:
        env = self.env
        if self.options.get("reject_all") or self.role != "leader":
            hint = None if self.options.get("reject_all") else self.primary
            env.deliver(
                ClientResponse(
                    client_id=request.client_id,
                    seq=request.seq,
                    ok=False,
                    error=NOT_LEADER,
                    leader_hint=hint,
                )
            )
            return
        session = self.sessions.get(request.client_id)
        if session is not None and session[0] == request.seq:
            env.deliver(
                ClientResponse(client_id=request.client_id, seq=request.seq, ok=True, result=session[1])
            )
            return
        env.storage.log_append([request])
        last = env.storage.log_last()
        for m in self.others:
            env.send(m, Replicate(index=last, entry=request))
        self._advance()

    def on_message(self, src: str, msg: Any) -> None:
        self.messages.append((self.env.now(), src, msg))
        storage = self.env.storage
        if isinstance(msg, Replicate):
            if msg.index == storage.log_last() + 1:
                storage.log_append([msg.entry])
            self.env.send(src, Ack(last=storage.log_last()))
        elif isinstance(msg, Heartbeat):
            if msg.last != storage.log_last():
                self.env.send(src, Ack(last=storage.log_last(), gap=True))
        elif isinstance(msg, Ack) and self.role == "leader":
            self.acked[src] = max(self.acked[src], msg.last)
            if msg.gap:
                last = storage.log_last()
                for i in range(msg.last + 1, min(last, msg.last + RESEND) + 1):
                    self.env.send(src, Replicate(index=i, entry=self._entry(i)))
            self._advance()

    def _advance(self) -> None:
        storage = self.env.storage
        votes = sorted([storage.log_last(), *self.acked.values()], reverse=True)
        commit = votes[self._quorum() - 1]
        while self.applied < commit:
            self.applied += 1
            request = self._entry(self.applied)
            session = self.sessions.get(request.client_id)
            if session is not None and session[0] == request.seq:
                result = session[1]
            else:
                result = execute(self.kv, request.op)
                self.sessions[request.client_id] = (request.seq, result)
            self.env.record("apply", index=self.applied)
            self.env.deliver(
                ClientResponse(
                    client_id=request.client_id,
                    seq=request.seq,
                    ok=True,
                    result=result,
                    index=self.applied,
                )
            )


class ToyChecker:
    def __init__(self, bugs: frozenset[str]) -> None:
        self.bugs = bugs
        self.steps = 0
        self.responses = 0
        self.finals = 0

    def after_step(self, sim: Any, node_id: str) -> None:
        self.steps += 1
        if "boom" in self.bugs and self.steps >= 50:
            raise InvariantViolation("boom", f"step {self.steps} on {node_id}")
        primary = sim.node_ids[0]
        lead = sim.storage_of(primary).log_records()
        for n in sim.node_ids[1:]:
            log = sim.storage_of(n).log_records()
            if log != lead[: len(log)]:
                raise InvariantViolation("prefix", f"{n} log is not a prefix of {primary}'s")

    def on_client_response(
        self, sim: Any, invoke: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        self.responses += 1
        assert invoke <= sim.now
        assert (request.client_id, request.seq) == (response.client_id, response.seq)

    def final(self, sim: Any) -> None:
        self.finals += 1


def toy_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="toy",
        description="primary-backup register for simulator tests",
        make_node=ToyNode,
        make_checker=ToyChecker,
        bugs=("boom",),
    )


def toy_registry() -> Registry:
    registry = Registry()
    registry.add(toy_spec())
    return registry


def toy_sim(**overrides: Any) -> Any:
    """A Simulation of the toy protocol; keyword args override SimConfig fields."""
    from consensuskit.sim import SimConfig, Simulation

    fields: dict[str, Any] = {"protocol": "toy", "duration": 2.0, "settle": 1.0}
    fields.update(overrides)
    return Simulation(SimConfig(**fields), toy_registry())


# -- a bare node for barrier / clock / pause tests -------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    key: str
    value: Any


class EchoNode:
    """On a request: write ``key=value`` (puts only), tell every other node, answer.

    Records every message and timer it sees, with its local clock, so tests can see
    exactly what the simulator delivered and when.
    """

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.node_id = node_id
        self.env = env
        self.others = [m for m in members if m != node_id]
        self.seen: list[tuple[float, str, Any]] = []
        self.fired: list[tuple[float, str]] = []
        self.role = "leader" if node_id == members[0] else "follower"

    def on_start(self) -> None:
        pass

    def on_timer(self, key: str) -> None:
        self.fired.append((self.env.now(), key))

    def on_message(self, src: str, msg: Any) -> None:
        self.seen.append((self.env.now(), src, msg))

    def on_request(self, request: ClientRequest) -> None:
        op = request.op
        if op.kind == "put":
            self.env.storage.put(op.key, op.value)
        for m in self.others:
            self.env.send(m, Note(key=op.key, value=op.value))
        self.env.deliver(
            ClientResponse(client_id=request.client_id, seq=request.seq, ok=True, result=op.value)
        )


def echo_sim(**overrides: Any) -> Any:
    from consensuskit.sim import SimConfig, Simulation

    registry = Registry()
    registry.add(ProtocolSpec(name="echo", description="test node", make_node=EchoNode))
    # These tests pin exact timings of the unbatched runtime (a fixed sync time; the
    # batched one has its own tests).
    fields: dict[str, Any] = {"protocol": "echo", "runtime": "unbatched"}
    fields.update(overrides)
    return Simulation(SimConfig(**fields), registry)
