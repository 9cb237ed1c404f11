"""etcd's HTTP endpoints beside the gateway: ``/health`` (every node's,
server/http_api.py) answers an etcd-service node as etcd's does, with auth enabled too,
and ``/version`` answers etcd's version JSON (services/etcd_gateway.py)."""

from __future__ import annotations

import pytest

from consensuskit.services.etcd_api import VERSION
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from tests.server.runtime_harness import async_test
from tests.services.test_etcd_auth import etcd_node_running

pytestmark = pytest.mark.timeout(90)


@async_test
async def test_health_and_version_as_etcds_client_port_answers_them(tmp_path):
    async with etcd_node_running(tmp_path) as node:
        for query in ("", "?serializable=true"):
            async with node.http.get(node.url + "/health" + query) as resp:
                assert (resp.status, await resp.json()) == (200, {"health": "true", "reason": ""})
        async with node.http.get(node.url + "/version") as resp:
            major, minor, _ = VERSION.split(".")
            assert resp.status == 200
            assert await resp.json() == {"etcdserver": VERSION, "etcdcluster": f"{major}.{minor}.0"}
        # With auth enabled a probe still needs no token (etcd's /health takes none), and
        # the read it makes through the log is not refused for want of one.
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        async with node.http.get(node.url + "/health") as resp:
            assert (resp.status, await resp.json()) == (200, {"health": "true", "reason": ""})
