"""A hand-driven Env and a tiny lock-step network for Raft unit tests.

Everything is explicit: tests deliver messages and fire timers themselves, so each
test reads as the rule it checks.
"""

from __future__ import annotations

from typing import Any

from consensuskit.protocols.raft import RaftNode, RaftOptions

from ..fake_env import FakeEnv, LockstepCluster


def make_node(node_id: str, members: list[str], **options: Any) -> tuple[RaftNode, FakeEnv]:
    env = FakeEnv(node_id)
    node = RaftNode(node_id, env, members, RaftOptions(**options))
    node.on_start()
    return node, env


class Cluster(LockstepCluster):
    def build(self, node_id: str, env: FakeEnv) -> RaftNode:
        return RaftNode(node_id, env, self.ids, RaftOptions(**self.options))

    def leaders(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].role == "leader" and i not in self.down]
