"""A hand-driven Env for protocol rule tests: nothing happens unless the test says so.

Messages wait in ``sent`` until the test takes them, timers only note their deadline,
answers and records are kept for assertions.

The env is a durability driver (core/driver.py), like the simulator's and the server's.
By default every effect ends its batch at once and syncs complete at once, so outputs
reach ``sent`` / ``delivered`` as they are produced (on a MemoryStorage every write is
durable anyway).  With ``manual=True`` on a storage that tracks writes (``SimStorage``)
the test drives the barrier itself: ``end_batch()`` closes a batch, ``complete_sync()``
finishes the running sync, and durability reports wait in ``durable_reports``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.client import ClientResponse
from consensuskit.core.driver import Driver
from consensuskit.core.storage import MemoryStorage


class _InstantDisk:
    """What the driver watches when every write is durable at once: never dirty."""

    dirty = False
    truncated_below = None


@dataclass
class FakeEnv(Driver):
    node_id: str
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    clock: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    sent: list[tuple[str, Any]] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    delivered: list[ClientResponse] = field(default_factory=list)
    records: list[tuple[str, dict]] = field(default_factory=list)
    manual: bool = False
    durable_reports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Only a SimStorage tracks writes; any other storage is durable at once.
        Driver.__init__(self, self.storage if hasattr(self.storage, "journal") else _InstantDisk())
        self.sync_writes: Any = None

    def now(self) -> float:
        return self.clock

    def send(self, dst: str, msg: Any) -> None:
        self.outbox.append((dst, msg))
        if not self.manual:
            self.end_batch()

    def set_timer(self, key: str, delay: float) -> None:
        self.timers[key] = self.clock + delay

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def deliver(self, response: ClientResponse) -> None:
        self.outbox.append((None, response))
        if not self.manual:
            self.end_batch()

    def record(self, kind: str, **fields: Any) -> None:
        self.records.append((kind, fields))

    def take(self) -> list[tuple[str, Any]]:
        out, self.sent = self.sent, []
        return out

    def recorded(self, kind: str) -> list[dict]:
        return [f for k, f in self.records if k == kind]

    # -- driver hooks -------------------------------------------------------------------
    def release(self, outputs: list[Any]) -> None:
        for dst, msg in outputs:
            if dst is None:
                self.delivered.append(msg)
            else:
                self.sent.append((dst, msg))

    def run_sync(self, writes: Any) -> None:
        self.sync_writes = writes
        if not self.manual:
            self.complete_sync()

    def complete_sync(self) -> None:
        """The running sync is done: its writes are durable, its outputs leave."""
        assert self.syncing, "no sync is running"
        self.storage.finish_sync(self.sync_writes)  # type: ignore[attr-defined]
        self.sync_writes = None
        self.advance()

    def report_durable(self, position: int) -> None:
        self.durable_reports.append(position)


@dataclass
class EarlyFakeEnv(FakeEnv):
    """The server's capabilities: ``send_early`` and ``reports_durable``."""

    reports_durable: bool = True
    sent_early: list[tuple[str, Any]] = field(default_factory=list)  # what left early

    def send_early(self, dst: str, msg: Any) -> None:
        self.early.append((dst, msg))
        if not self.manual:
            self.end_batch()

    def release_early(self, outputs: list[Any]) -> None:
        self.sent_early += outputs
        self.release(outputs)


@dataclass
class AnsweringFakeEnv(EarlyFakeEnv):
    """And ``deliver_early``, as the server and the batched simulator offer."""

    def deliver_early(self, response: ClientResponse) -> None:
        self.early.append((None, response))
        if not self.manual:
            self.end_batch()


class LockstepCluster:
    """Nodes wired by hand: ``deliver_all`` moves every queued message, in order.

    Subclasses say how to build a node on an env (``build``) and may use their own env
    class (``env_class``)."""

    env_class: type[FakeEnv] = FakeEnv

    def __init__(self, ids: list[str], **options: Any) -> None:
        self.ids = ids
        self.options = options
        self.nodes: dict[str, Any] = {}
        self.envs: dict[str, Any] = {}
        self.down: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        for i in ids:
            self.envs[i] = self.env_class(i)
            self.nodes[i] = self._start(i, self.envs[i])

    def build(self, node_id: str, env: FakeEnv) -> Any:
        raise NotImplementedError

    def _start(self, node_id: str, env: FakeEnv) -> Any:
        node = self.build(node_id, env)
        node.on_start()
        return node

    def restart(self, node_id: str) -> Any:
        """A new incarnation on the same storage and clock (memory lost)."""
        env = self.envs[node_id]
        fresh = self.env_class(node_id, storage=env.storage, clock=env.clock)
        self.envs[node_id] = fresh
        self.nodes[node_id] = self._start(node_id, fresh)
        return self.nodes[node_id]

    def partition(self, *groups: list[str]) -> None:
        side = {n: g for g, members in enumerate(groups) for n in members}
        self.cut = {(a, b) for a in self.ids for b in self.ids if side.get(a) != side.get(b)}

    def heal(self) -> None:
        self.cut = set()

    def advance(self, dt: float) -> None:
        for env in self.envs.values():
            env.clock += dt

    def fire(self, node_id: str, key: str) -> None:
        env = self.envs[node_id]
        env.clock = max(env.clock, env.timers.get(key, env.clock))
        env.timers.pop(key, None)
        self.nodes[node_id].on_timer(key)

    def deliver_all(self, rounds: int = 50) -> int:
        delivered = 0
        for _ in range(rounds):
            batch = [(src, dst, m) for src in self.ids for dst, m in self.envs[src].take()]
            if not batch:
                return delivered
            for src, dst, msg in batch:
                if dst not in self.nodes or dst in self.down or src in self.down or (src, dst) in self.cut:
                    continue
                self.nodes[dst].on_message(src, msg)
                delivered += 1
        return delivered

    def elect(self, node_id: str) -> Any:
        self.fire(node_id, "election")
        self.deliver_all()
        node = self.nodes[node_id]
        assert node.role == "leader", node.status()
        return node
