"""The gossip-map service's routes, client methods and verbs (services/gossip_map_http.py)
on in-process gossip nodes: a write on one node is read on another once it spread; a
key the node does not hold is a 404; bad keys and values are 4xx naming the limit; the
client methods (``Client.service("gossip-map")``) and the CLI verbs use the same routes."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from consensuskit.client import Client, NotFound
from consensuskit.services.gossip_map_http import CLI, GossipMapClient
from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]
OPTIONS = {"anti_entropy_period": 0.2, "rumor_period": 0.05}


async def until(c: Cluster, node: str, path: str, status: int = 200) -> tuple[int, object]:
    for _ in range(100):
        got, body, _ = await c.call("GET", node, path)
        if got == status:
            return got, body
        await asyncio.sleep(0.05)
    return got, body


@async_test
async def test_put_on_one_node_get_on_another(tmp_path) -> None:
    async with Cluster(tmp_path, IDS, protocol="gossip", options=OPTIONS, max_value_bytes=64) as c:
        status, body, _ = await c.call("PUT", "n1", "/v1/map/greeting", data="hello")
        assert status == 200 and body == {"key": "greeting", "counter": 1, "origin": "n1"}, body
        assert await until(c, "n3", "/v1/map/greeting") == (200, {"key": "greeting", "value": "hello"})
        status, body, _ = await c.call("PUT", "n2", "/v1/map/a%2Fb", data="slash")
        assert status == 200 and body["key"] == "a/b", body
        assert (await until(c, "n1", "/v1/map/a%2Fb"))[0] == 200
        status, body, _ = await c.call("GET", "n2", "/v1/map/nope")
        assert status == 404 and body["error"] == "not-found"
        status, body, _ = await c.call("PUT", "n2", "/v1/map/big", data="x" * 65)
        assert status == 413 and "64 bytes" in body["message"]
        status, body, _ = await c.call("PUT", "n2", "/v1/map/bin", data=b"\xff\xfe")
        assert status == 400 and body["error"] == "bad-value"


@async_test
async def test_client_methods_and_verbs(tmp_path) -> None:
    async with Cluster(tmp_path, IDS[:1], protocol="gossip", options=OPTIONS) as c:
        url = c.url("n1")

        def sync_part() -> tuple[dict, str, str, str]:
            with Client([url], timeout=1, deadline=5) as client:
                gm = client.service("gossip-map")
                assert isinstance(gm, GossipMapClient)
                stamp = gm.put("k", "v")
                value = gm.get("k")
                with pytest.raises(NotFound):
                    gm.get("absent")
            runner = CliRunner()
            put = runner.invoke(CLI, ["put", "k2", "v2", "--endpoints", url]).output
            get = runner.invoke(CLI, ["get", "k2", "--endpoints", url]).output
            return stamp, value, put, get

        stamp, value, put, get = await asyncio.to_thread(sync_part)
        assert stamp == {"key": "k", "counter": 1, "origin": "n1"} and value == "v"
        assert put.startswith("ok (counter 2, origin n1)") and get.strip() == "v2"
