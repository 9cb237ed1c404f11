"""``GET /health`` (server/http_api.py, module rules): etcd's health check, on every node
of every protocol and service, for probes that carry no token."""

from __future__ import annotations

import asyncio
import time

from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

IDS = ["n1", "n2", "n3"]
HEALTHY = {"health": "true", "reason": ""}


async def health(c: Cluster, node: str, query: str = "") -> tuple[int, dict]:
    status, body, _ = await c.call("GET", node, "/health" + query)
    return status, body


async def unhealthy_within(c: Cluster, node: str, query: str = "", timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await health(c, node, query)
        if status == 503:
            assert body["health"] == "false" and body["reason"], body
            return body
        assert (status, body) == (200, HEALTHY)
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} still healthy after {timeout}s")
        await asyncio.sleep(0.05)


@async_test
async def test_every_node_of_a_cluster_with_a_leader_is_healthy(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        await c.wait_leader()
        for node in IDS:
            for query in ("", "?serializable=true", "?exclude=NOSPACE", "?serializable=false"):
                assert await health(c, node, query) == (200, HEALTHY), (node, query)
        status, body = await health(c, "n1", "?verbose=1")
        assert status == 400 and body["error"] == "bad-request"
        assert body["message"] == "unknown query parameter 'verbose'; valid: serializable, exclude"
        status, body, headers = await c.call("POST", "n1", "/health")
        assert status == 405 and headers["Allow"] == "GET"


@async_test
async def test_a_node_cut_off_from_the_majority_is_unhealthy_and_the_majority_is_not(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        cut = next(node for node in IDS if node != leader)
        c.servers[cut].set_blocked(set(IDS) - {cut})
        for node in set(IDS) - {cut}:
            c.servers[node].set_blocked({cut})
        # Its leader's word is stale at once: the linearizable read cannot be confirmed
        # (it times out), and once its election timer fires it knows no leader.
        body = await unhealthy_within(c, cut)
        assert body["reason"].startswith(("LINEARIZABLE READ FAILED: ", "NO LEADER")), body
        body = await unhealthy_within(c, cut, "?serializable=true")
        assert body == {"health": "false", "reason": "NO LEADER"}
        for node in set(IDS) - {cut}:
            assert await health(c, node) == (200, HEALTHY)
        for node in IDS:  # healed: healthy again
            c.servers[node].set_blocked(set())
        deadline = time.monotonic() + 10
        while await health(c, cut) != (200, HEALTHY):
            assert time.monotonic() < deadline, await health(c, cut)
            await asyncio.sleep(0.05)


@async_test
async def test_a_halted_node_is_unhealthy_even_to_a_serializable_probe(tmp_path):
    async with Cluster(tmp_path, ["n1"]) as c:
        await c.wait_leader()
        c.servers["n1"].runtime._halt(OSError("disk on fire"), "a sync")
        for query in ("", "?serializable=true"):
            assert await health(c, "n1", query) == (
                503,
                {"health": "false", "reason": "NODE HALTED: disk on fire"},
            )


@async_test
async def test_the_probe_needs_no_token_with_auth_enabled(tmp_path):
    async with Cluster(tmp_path, ["n1"], auth={"password_iterations": 1000}) as c:
        await c.wait_leader()
        for method, path, body in (
            ("POST", "/v1/auth/users", {"name": "root", "password": "rootpw"}),
            ("PUT", "/v1/auth/users/root/roles/root", None),
            ("POST", "/v1/auth/enable", None),
        ):
            status, answer, _ = await c.call(method, "n1", path, json=body, token=ADMIN_TOKEN)
            assert status == 200, answer
        status, body, _ = await c.call("GET", "n1", "/v1/kv/health")
        assert status == 401, body  # the key itself is not readable without a token
        assert await health(c, "n1") == (200, HEALTHY)


@async_test
async def test_a_protocol_without_leaders_or_linearizable_reads_is_healthy_while_it_runs(tmp_path):
    options = {"anti_entropy_period": 0.2, "rumor_period": 0.05}
    async with Cluster(tmp_path, IDS, protocol="gossip-kv", options=options) as c:
        for node in IDS:
            assert await health(c, node) == (200, HEALTHY)
