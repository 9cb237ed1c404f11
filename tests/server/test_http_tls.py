"""A cluster with mutual TLS between peers and HTTPS for clients (``[tls]``)."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from tests.server.runtime_harness import Cluster, async_test
from tests.server.test_transport_tls import make_certificate

pytestmark = pytest.mark.timeout(60)


@async_test
async def test_peers_over_mutual_tls_and_clients_over_https(tmp_path):
    cert, key = make_certificate(tmp_path, "cluster")
    tls = {"cert": str(cert), "key": str(key), "ca": str(cert), "client_api": True}
    async with Cluster(tmp_path, ["n1", "n2", "n3"], tls=tls) as c:
        for server in c.servers.values():
            assert server.config.client_url.startswith("https://127.0.0.1:")
        c.url = lambda node_id: c.servers[node_id].config.client_url  # type: ignore[method-assign]
        c.wire()
        leader = await c.wait_leader()
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as https:
            async with https.put(c.url(leader) + "/v1/kv/k", data=b"secure") as resp:
                assert resp.status == 200
            follower = next(i for i in c.ids if i != leader)
            only = {"X-Leader-Only": "true"}  # else the follower passes the write on
            async with https.put(c.url(follower) + "/v1/kv/k", data=b"x", headers=only) as resp:
                body = await resp.json()
                assert resp.status == 421 and body["leader_url"] == c.url(leader)
            async with https.get(c.url(leader) + "/v1/kv/k") as resp:
                assert (await resp.json())["value"] == "secure"
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(c.url(leader).replace("https", "http") + "/v1/status") as resp:
                    await resp.read()
