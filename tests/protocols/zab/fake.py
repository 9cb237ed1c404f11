"""A lock-step ZAB cluster for rule tests: the test delivers messages and fires
timers itself (tests/protocols/fake_env.py)."""

from __future__ import annotations

from typing import Any

from consensuskit.protocols.zab.node import ZabNode
from consensuskit.protocols.zab.options import ZabOptions

from ..fake_env import FakeEnv, LockstepCluster


class Cluster(LockstepCluster):
    def build(self, node_id: str, env: FakeEnv) -> ZabNode:
        return ZabNode(node_id, env, self.ids, ZabOptions(**self.options))

    def establish(self) -> ZabNode:
        """Run FLE, discovery and sync to an established leader (the highest id wins a
        fresh cluster's election)."""
        for _ in range(10):
            self.deliver_all()
            for node_id, node in self.nodes.items():
                if "finalize" in self.envs[node_id].timers and node.state == "looking":
                    self.fire(node_id, "finalize")
            leaders = [n for n in self.nodes.values() if n.is_leader() and n.established]
            if leaders:
                self.deliver_all()
                return leaders[0]
        raise AssertionError({i: n.status() for i, n in self.nodes.items()})

    def node(self, node_id: str) -> Any:
        return self.nodes[node_id]
