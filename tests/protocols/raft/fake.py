"""A hand-driven Env and a tiny lock-step network for Raft unit tests.

Everything is explicit: tests deliver messages and fire timers themselves, so each
test reads as the rule it checks.
"""

from __future__ import annotations

from typing import Any

from consensuskit.protocols.raft import RaftNode, RaftOptions

from ..fake_env import FakeEnv


def make_node(node_id: str, members: list[str], **options: Any) -> tuple[RaftNode, FakeEnv]:
    env = FakeEnv(node_id)
    node = RaftNode(node_id, env, members, RaftOptions(**options))
    node.on_start()
    return node, env


class Cluster:
    """Nodes wired by hand: ``deliver_all`` moves every queued message, in order."""

    def __init__(self, ids: list[str], **options: Any) -> None:
        self.ids = ids
        self.options = options
        self.nodes: dict[str, RaftNode] = {}
        self.envs: dict[str, FakeEnv] = {}
        self.down: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        for i in ids:
            self.nodes[i], self.envs[i] = make_node(i, ids, **options)

    def restart(self, node_id: str) -> None:
        env = self.envs[node_id]
        fresh = FakeEnv(node_id, storage=env.storage, clock=env.clock)
        self.envs[node_id] = fresh
        self.nodes[node_id] = RaftNode(node_id, fresh, self.ids, RaftOptions(**self.options))
        self.nodes[node_id].on_start()

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

    def elect(self, node_id: str) -> RaftNode:
        self.fire(node_id, "election")
        self.deliver_all()
        node = self.nodes[node_id]
        assert node.role == "leader", node.status()
        return node

    def leaders(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].role == "leader" and i not in self.down]
