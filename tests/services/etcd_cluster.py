"""A local cluster of real node processes serving the etcd service, for the etcd tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.statemachines.levels import RELEASE_LEVEL

OPTIONS: dict[str, Any] = {
    "request_timeout": 2.0,
    "enable_fault_injection": True,
}
# Each protocol's names for the same timing: a 0.5 s election timeout, a beat every 50 ms.
PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {
    "raft": {"election_timeout": 0.5, "heartbeat_interval": 0.05},
    "multipaxos": {"election_timeout": 0.5, "heartbeat_interval": 0.05},
    "zab": {"election_timeout": 0.5, "tick": 0.05},  # ZooKeeper's names: a PING every tick
}


class EtcdCluster:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.layout = cluster.layout

    def grpc_address(self, node_id: str) -> str:
        spec = self.layout.node(node_id)
        return f"127.0.0.1:{self.layout.listen_ports(spec)['grpc']}"

    def grpc_addresses(self) -> list[str]:
        return [self.grpc_address(n.node_id) for n in self.layout.nodes]

    def follower(self) -> str:
        leader = self.cluster.wait_for_leader(30)
        return sorted(n for n in self.cluster.nodes if n != leader)[0]


def etcd_cluster(
    tmp_path_factory: pytest.TempPathFactory, protocol: str, nodes: int = 3
) -> Iterator[EtcdCluster]:
    root = tmp_path_factory.mktemp(f"etcd-{protocol}")
    layout = ClusterLayout.prepare(
        root / "data",
        nodes,
        free_base_port(3 * nodes),
        node_options={**OPTIONS, "options": PROTOCOL_OPTIONS[protocol], "service": "etcd"},
        protocol=protocol,
    )
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_for_leader(30)
        wait_for_level(cluster, RELEASE_LEVEL)
        yield EtcdCluster(cluster)


def wait_for_level(cluster: LocalCluster, level: int, timeout: float = 30.0) -> None:
    """Until every node applied cluster level ``level``: a new cluster starts at the
    earliest release's rules and raises them within a beat (server/cluster_level.py)."""
    end = time.monotonic() + timeout
    while True:
        statuses = cluster.statuses()
        applied = {
            node: status.get("cluster_level", {}).get("applied") if isinstance(status, dict) else None
            for node, status in statuses.items()
        }
        if all(value == level for value in applied.values()):
            return
        if time.monotonic() > end:
            raise AssertionError(f"cluster level {level} not applied within {timeout} s: {applied}")
        time.sleep(0.05)
