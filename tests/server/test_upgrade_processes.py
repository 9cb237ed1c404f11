"""A rolling upgrade from the release before cluster levels, with real processes of both
releases (server/cluster_level.py; docs/server.md, "Upgrades and the cluster level").

The previous release is taken from this clone's history (``git archive``) and run from its
own source tree.  It applies an etcd txn by its old rules, which differ from this
release's etcd order for a nested txn comparing a key the same txn wrote: were a node of
this release to make a txn of the new rules while a node of the old one is a member, the
replicas would hold different values.  The test checks they never do, that the cluster
moves to the new rules with its last upgraded node, and that a node put back on the old
release is then refused.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from consensuskit.statemachines.levels import RELEASE_LEVEL
from tests.services.etcd_cluster import OPTIONS, PROTOCOL_OPTIONS, wait_for_level

pytestmark = pytest.mark.timeout(240)

# A release before cluster levels and before txns in etcd's order (it applies every txn by
# its old rules): what a cluster upgrades from.  A later one (1106763: etcd's order, no
# levels) upgrades the same way.
PREVIOUS_RELEASE = "1a50179"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's ``src`` directory, or a skip when this clone lacks it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("no git history to take the previous release from")
    dest = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "src"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE} is not in this clone's history")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


@pytest.fixture()
def cluster(tmp_path: Path, previous_release: Path) -> Iterator[LocalCluster]:
    layout = ClusterLayout.prepare(
        tmp_path / "data",
        3,
        free_base_port(9),
        node_options={**OPTIONS, "options": PROTOCOL_OPTIONS["raft"], "service": "etcd"},
        protocol="raft",
    )
    # Every node starts on the previous release (its source first on the path).
    with LocalCluster(layout, extra_env={"PYTHONPATH": str(previous_release)}) as local:
        local.start()
        local.wait_for_leader(30)
        yield local


def _stub(cluster: LocalCluster, node: str) -> pb_grpc.KVStub:
    port = cluster.layout.listen_ports(cluster.layout.node(node))["grpc"]
    return pb_grpc.KVStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def _restart(cluster: LocalCluster, node: str, *, previous: Path | None) -> None:
    """``node`` stopped and started again on this release, or on ``previous``'s."""
    process = cluster.nodes[node]
    process.stop()
    process.extra_env = {"PYTHONPATH": str(previous)} if previous is not None else {}
    process.start()
    cluster.wait_ready(30, every_node=True)


def _nested_txn(cluster: LocalCluster, node: str, key: str) -> None:
    """Put KEY, and in a nested txn compare KEY's version with 0: etcd's order compares on
    the state before the txn (version 0: KEY/then = "success"), the previous release's
    after the put (version 1: "failure")."""
    then = f"{key}/then".encode()
    nested = pb.TxnRequest(
        compare=[pb.Compare(key=key.encode(), target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=then, value=b"success"))],
        failure=[pb.RequestOp(request_put=pb.PutRequest(key=then, value=b"failure"))],
    )
    txn = pb.TxnRequest(
        success=[
            pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=b"v")),
            pb.RequestOp(request_txn=nested),
        ]
    )
    for _ in range(50):
        try:
            _stub(cluster, node).Txn(txn, timeout=5)
            return
        except grpc.RpcError as exc:  # a leader change under way: try again
            last: Any = exc
            time.sleep(0.2)
    raise AssertionError(f"the txn through {node} failed: {last}")


def _values(cluster: LocalCluster, key: str, nodes: tuple[str, ...]) -> dict[str, str | None]:
    """Each node's own value of KEY/then (a serializable read: its applied state)."""
    request = pb.RangeRequest(key=f"{key}/then".encode(), serializable=True)
    deadline = time.monotonic() + 10
    while True:
        values = {}
        for node in nodes:
            kvs = _stub(cluster, node).Range(request, timeout=5).kvs
            values[node] = kvs[0].value.decode() if kvs else None
        if None not in values.values() or time.monotonic() > deadline:
            return values
        time.sleep(0.1)


def _level(cluster: LocalCluster, node: str) -> Any:
    status = cluster.statuses()[node]
    assert isinstance(status, dict), status
    return status.get("cluster_level", {}).get("applied")


def test_a_rolling_upgrade_never_lets_replicas_apply_a_txn_by_different_rules(
    cluster: LocalCluster, previous_release: Path
) -> None:
    nodes = ("n1", "n2", "n3")
    # n1 and n2 upgraded, n3 not yet: the cluster keeps the previous release's rules, and
    # a txn through either upgraded node applies alike on all three.
    _restart(cluster, "n1", previous=None)
    _restart(cluster, "n2", previous=None)
    time.sleep(1.5)  # several looks of the leader's level raiser
    assert (_level(cluster, "n1"), _level(cluster, "n2"), _level(cluster, "n3")) == (1, 1, None)
    for i, node in enumerate(nodes):
        _nested_txn(cluster, node, f"mixed{i}")
        assert _values(cluster, f"mixed{i}", nodes) == dict.fromkeys(nodes, "failure")
    # The last node upgraded: the cluster raises its level, and txns run in etcd's order.
    _restart(cluster, "n3", previous=None)
    wait_for_level(cluster, RELEASE_LEVEL)
    _nested_txn(cluster, "n3", "upgraded")
    assert _values(cluster, "upgraded", nodes) == dict.fromkeys(nodes, "success")
    # n3 put back on the previous release is refused by both others; they go on serving.
    _restart(cluster, "n3", previous=previous_release)
    deadline = time.monotonic() + 20
    while True:
        statuses = cluster.statuses()
        refused = {n: statuses[n]["peers"]["n3"]["refused"] for n in ("n1", "n2")}  # type: ignore[index]
        if all(refused.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for text in refused.values():
        assert text is not None and "cluster level 1 at most, this cluster's level is 2" in text
    _nested_txn(cluster, "n1", "after")
    assert _values(cluster, "after", ("n1", "n2")) == dict.fromkeys(("n1", "n2"), "success")
    assert _values(cluster, "after", ("n3",)) == {"n3": None}  # nothing to apply by its rules
