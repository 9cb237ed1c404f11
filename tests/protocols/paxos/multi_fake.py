"""A hand-driven Env and a lock-step network for Multi-Paxos rule tests (the model is
tests/protocols/raft/fake.py): tests deliver messages and fire timers themselves."""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.paxos.multi import MultiPaxosNode, MultiPaxosOptions

from ..fake_env import FakeEnv as BaseFakeEnv


class FakeEnv(BaseFakeEnv):
    def kinds(self) -> list[str]:
        return [type(m).__name__ for _, m in self.sent]


def put(client: str, seq: int, key: str, value: object) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key=key, value=value))


def get(client: str, seq: int, key: str, consistency: str | None = None) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="get", key=key), consistency=consistency)


def make_node(node_id: str, universe: list[str], **options: Any) -> tuple[MultiPaxosNode, FakeEnv]:
    env = FakeEnv(node_id)
    node = MultiPaxosNode(node_id, env, universe, MultiPaxosOptions(**options))
    node.on_start()
    return node, env


class Cluster:
    """Nodes wired by hand: ``deliver_all`` moves every queued message, in order."""

    def __init__(self, ids: list[str], **options: Any) -> None:
        self.ids = ids
        self.options = options
        self.nodes: dict[str, MultiPaxosNode] = {}
        self.envs: dict[str, FakeEnv] = {}
        self.cut: set[tuple[str, str]] = set()
        self.down: set[str] = set()
        for i in ids:
            self.nodes[i], self.envs[i] = make_node(i, ids, **options)

    def restart(self, node_id: str) -> MultiPaxosNode:
        env = self.envs[node_id]
        fresh = FakeEnv(node_id, storage=env.storage, clock=env.clock)
        self.envs[node_id] = fresh
        self.nodes[node_id] = MultiPaxosNode(node_id, fresh, self.ids, MultiPaxosOptions(**self.options))
        self.nodes[node_id].on_start()
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

    def elect(self, node_id: str) -> MultiPaxosNode:
        self.fire(node_id, "election")
        self.deliver_all()
        node = self.nodes[node_id]
        assert node.role == "leader", node.status()
        return node

    def request(self, node_id: str, request: ClientRequest) -> None:
        self.nodes[node_id].on_request(request)
        self.deliver_all()
