"""A hand-driven Env and a lock-step network for Multi-Paxos rule tests (the model is
tests/protocols/raft/fake.py): tests deliver messages and fire timers themselves."""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.paxos.multi import MultiPaxosNode, MultiPaxosOptions

from ..fake_env import FakeEnv as BaseFakeEnv
from ..fake_env import LockstepCluster


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


class Cluster(LockstepCluster):
    env_class = FakeEnv

    def build(self, node_id: str, env: BaseFakeEnv) -> MultiPaxosNode:
        return MultiPaxosNode(node_id, env, self.ids, MultiPaxosOptions(**self.options))

    def request(self, node_id: str, request: ClientRequest) -> None:
        self.nodes[node_id].on_request(request)
        self.deliver_all()
