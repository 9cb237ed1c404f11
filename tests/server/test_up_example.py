"""``consensuskit up`` suggests a first command for the cluster's service (ServiceSpec.example)."""

from __future__ import annotations

from pathlib import Path

from consensuskit.server.cluster import ClusterLayout, free_base_port
from consensuskit.server.commands import _service_example


def test_the_example_follows_the_clusters_service(tmp_path: Path) -> None:
    kv = ClusterLayout.prepare(tmp_path / "kv", 3, free_base_port(6))
    assert _service_example(kv) == f"consensuskit kv put hello world --endpoints {','.join(kv.endpoints)}"
    swim = ClusterLayout.prepare(tmp_path / "swim", 3, free_base_port(6), protocol="swim")
    assert _service_example(swim) == f"curl {swim.endpoints[0]}/v1/members"
    etcd = ClusterLayout.prepare(tmp_path / "etcd", 3, free_base_port(9), node_options={"service": "etcd"})
    example = _service_example(etcd)
    assert example.startswith("etcdctl --endpoints 127.0.0.1:") and example.count(",") == 2
    # A later start without --service still runs (and suggests) etcd.
    assert _service_example(ClusterLayout.prepare(tmp_path / "etcd")) == example
