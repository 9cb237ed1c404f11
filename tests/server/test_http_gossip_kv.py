"""The gossip kv behind the kv routes (server/kv_routes.py), in-process nodes over TCP:
any node takes writes, reads are local (``consistency=stale``), the writes spread; a
request the protocol never serves (compare-and-swap, a linearizable read) answers 501
``not-implemented`` with the node's reason (the platform's ``unsupported`` refusal,
core/client.py), never a 500."""

from __future__ import annotations

import pytest

from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]
OPTIONS = {"anti_entropy_period": 0.2, "rumor_period": 0.05}


@async_test
async def test_any_node_writes_reads_are_local_and_writes_spread(tmp_path) -> None:
    async with Cluster(tmp_path, IDS, protocol="gossip-kv", options=OPTIONS) as c:
        status, body, _ = await c.call("PUT", "n1", "/v1/kv/hello", data="world")
        assert status == 200 and body["version"] > 0, body
        status, body, _ = await c.call("PUT", "n2", "/v1/kv/other", data="x")
        assert status == 200, body

        async def everywhere() -> bool:
            for node in IDS:
                status, body, _ = await c.call("GET", node, "/v1/kv/hello?consistency=stale")
                if status != 200 or body["value"] != "world":
                    return False
            return True

        for _ in range(100):
            if await everywhere():
                break
            await __import__("asyncio").sleep(0.05)
        assert await everywhere()
        status, body, _ = await c.call("DELETE", "n3", "/v1/kv/hello")
        assert status == 200 and body["deleted"] is True
        status, body, _ = await c.call("GET", "n3", "/v1/kv/hello")
        assert status == 404
        status, body, _ = await c.call("GET", "n2", "/v1/kv?prefix=o")
        assert status == 200 and [i["key"] for i in body["items"]] == ["other"]
        status, body, _ = await c.call("GET", "n1", "/v1/status")
        assert body["role"] == "replica" and body["leader"] is None and body["capabilities"] == []


@async_test
async def test_what_the_protocol_never_serves_is_a_501_with_the_reason(tmp_path) -> None:
    async with Cluster(tmp_path, IDS[:1], protocol="gossip-kv", options=OPTIONS) as c:
        status, body, _ = await c.call("PUT", "n1", "/v1/kv/k?cas_version=1", data="v")
        assert status == 501 and body["error"] == "not-implemented", body
        assert "compare-and-swap needs consensus" in body["message"] and body["outcome"] == "not-applied"
        status, body, _ = await c.call("GET", "n1", "/v1/kv/k?consistency=linearizable")
        assert status == 501 and "local replica" in body["message"], body
