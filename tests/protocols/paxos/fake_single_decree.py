"""A hand-driven Env and a lock-step network for Basic/Fast Paxos unit tests.

Tests deliver messages and fire timers themselves, so each test reads as the rule it
checks.  ``Net`` keeps every message in flight in a list; a test (or hypothesis) picks
which one is delivered, dropped or duplicated next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.paxos.basic import BasicPaxosNode
from consensuskit.protocols.paxos.basic_options import BasicPaxosOptions
from consensuskit.protocols.paxos.fast import FastPaxosNode
from consensuskit.protocols.paxos.fast_options import FastPaxosOptions

from ..fake_env import FakeEnv as BaseFakeEnv


@dataclass
class FakeEnv(BaseFakeEnv):
    # Storage contents at the moment of each send: proves "persist before reply".
    storage_at_send: list[dict[str, Any]] = field(default_factory=list)

    def send(self, dst: str, msg: Any) -> None:
        super().send(dst, msg)
        self.storage_at_send.append(dict(self.storage._records))

    def take(self) -> list[tuple[str, Any]]:
        self.storage_at_send = []
        return super().take()


def basic_node(node_id: str, members: list[str], storage: MemoryStorage | None = None, **options: Any):
    env = FakeEnv(node_id, storage=storage or MemoryStorage())
    opts = BasicPaxosOptions.from_dict({"catchup_interval": 0, **options})
    node = BasicPaxosNode(node_id, env, members, opts)
    node.on_start()
    return node, env


def fast_node(node_id: str, members: list[str], storage: MemoryStorage | None = None, **options: Any):
    env = FakeEnv(node_id, storage=storage or MemoryStorage())
    opts = FastPaxosOptions.from_dict({"catchup_interval": 0, **options})
    node = FastPaxosNode(node_id, env, members, opts)
    node.on_start()
    return node, env


class Net:
    """Nodes wired by hand; messages wait in ``flight`` until a test moves them."""

    def __init__(self, ids: list[str], fast: bool = False, **options: Any) -> None:
        self.ids = ids
        self.fast = fast
        self.options = options
        self.nodes: dict[str, Any] = {}
        self.envs: dict[str, FakeEnv] = {}
        self.flight: list[tuple[str, str, Any]] = []
        for i in ids:
            self.nodes[i], self.envs[i] = self._make(i, None)
        self.collect()

    def _make(self, node_id: str, storage: MemoryStorage | None):
        make = fast_node if self.fast else basic_node
        return make(node_id, self.ids, storage, **self.options)

    def collect(self) -> None:
        for src in self.ids:
            for dst, msg in self.envs[src].take():
                self.flight.append((src, dst, msg))

    def deliver(self, index: int = 0) -> tuple[str, str, Any]:
        src, dst, msg = self.flight.pop(index)
        self.nodes[dst].on_message(src, msg)
        self.collect()
        return src, dst, msg

    def deliver_all(self, limit: int = 10_000) -> int:
        n = 0
        while self.flight and n < limit:
            self.deliver(0)
            n += 1
        return n

    def restart(self, node_id: str) -> None:
        """Crash and restart: only storage survives (MemoryStorage is always durable)."""
        self.flight = [f for f in self.flight if f[1] != node_id]
        self.nodes[node_id], self.envs[node_id] = self._make(node_id, self.envs[node_id].storage)
        self.collect()

    def fire(self, node_id: str, key: str) -> None:
        env = self.envs[node_id]
        env.clock = max(env.clock, env.timers.pop(key, env.clock))
        self.nodes[node_id].on_timer(key)
        self.collect()

    def invoke(self, node_id: str, fn) -> None:
        fn(self.nodes[node_id])
        self.collect()

    def chosen(self, slot: int) -> dict[str, Any]:
        return {i: n.chosen[slot] for i, n in self.nodes.items() if slot in n.chosen}
