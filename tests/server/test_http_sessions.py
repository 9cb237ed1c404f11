"""Client sessions over HTTP (statemachines/sessions.py, docs/server.md "Client
sessions"): a reused request id is refused with 409 request-id-reused, a forgotten
session with 409 session-expired, on the fast path and on aiohttp, under Raft and
Multi-Paxos, with sessions that expire over real time through the leader's clock
commands."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from consensuskit.server.session_clock import clock_interval
from tests.server.runtime_harness import Cluster, async_test
from tests.server.test_http_multipaxos import mp_cluster
from tests.server.test_http_multipaxos import wait_leader as mp_wait_leader

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]
PROTOCOLS = ["raft", "multipaxos", "zab"]
PATHS = ["fast", "aiohttp"]


def cluster(protocol: str, tmp_path: Any, **settings: Any) -> Cluster:
    if protocol == "raft":
        return Cluster(tmp_path, IDS, **settings)
    return mp_cluster(tmp_path, **settings)


async def leader_of(c: Cluster, protocol: str) -> str:
    return await (c.wait_leader() if protocol == "raft" else mp_wait_leader(c))


async def send(
    c: Cluster, node: str, method: str, key: str, body: bytes, request_id: str, path: str
) -> tuple[int, dict[str, Any], bool]:
    """One request on a fresh connection: (status, JSON body, served by the fast path)."""
    headers = [f"{method} /v1/kv/{key} HTTP/1.1", "Host: test", f"X-Request-Id: {request_id}"]
    if path == "aiohttp":
        headers.append("Connection: close")  # the fast path hands such a request to aiohttp
    if method == "PUT":
        headers.append(f"Content-Length: {len(body)}")
    url = urlsplit(c.url(node))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        data = await reader.readexactly(int(fields["content-length"]))
    finally:
        writer.close()
    return int(head[0].split(" ")[1]), json.loads(data), "server" not in fields


async def get(c: Cluster, node: str, key: str) -> tuple[int, Any]:
    status, body, _ = await c.call("GET", node, f"/v1/kv/{key}")
    return status, body


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_a_reused_request_id_is_409_and_changes_nothing(tmp_path, protocol, path):
    """Issue 10 item 7, as reproduced: the second PUT used to answer 200 for a key it
    never wrote, and a DELETE with the reused id answered deleted:false."""
    async with cluster(protocol, tmp_path) as c:
        leader = await leader_of(c, protocol)
        entry = next(n for n in IDS if n != leader) if protocol == "multipaxos" else leader
        status, body, fast = await send(c, entry, "PUT", "idem", b"v", "dupc:1", path)
        assert (status, body["version"], fast) == (200, 1, path == "fast")
        status, body, fast = await send(c, entry, "PUT", "other-key", b"v", "dupc:1", path)
        assert (status, body["error"], body["outcome"]) == (409, "request-id-reused", "not-applied")
        assert fast == (path == "fast") and "X-Request-Id" in body["message"]
        assert (await get(c, leader, "other-key"))[0] == 404
        status, body, _ = await send(c, entry, "DELETE", "idem", b"", "dupc:1", path)
        assert (status, body["error"]) == (409, "request-id-reused")
        status, body = await get(c, leader, "idem")
        assert (status, body["value"], body["version"]) == (200, "v", 1)
        # The very same command again is a retry: the first answer.
        status, body, _ = await send(c, entry, "PUT", "idem", b"v", "dupc:1", path)
        assert (status, body["key"], body["version"]) == (200, "idem", 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_sessions_expire_over_real_time_and_a_retry_is_refused(tmp_path, protocol):
    """A short session_ttl: the leader's clock commands make an idle session expire on
    every replica; its retry is 409 session-expired (outcome unknown), never re-applied,
    and a new session (seq 1) works."""
    async with cluster(protocol, tmp_path, session_ttl=0.4) as c:
        leader = await leader_of(c, protocol)
        for n, path in enumerate(PATHS):
            status, body, _ = await send(c, leader, "PUT", f"k{n}", b"once", f"idle{n}:1", path)
            assert (status, body["version"]) == (200, 1)
        tables = [s.runtime.node.sm.sessions for s in c.servers.values()]
        assert all("idle0" in t for t in tables)
        await c.wait_until(lambda: all("idle0" not in t and "idle1" not in t for t in tables), 10)
        assert all(t.clock > 400 for t in tables)
        assert c.servers[leader].session_clock.ticks > 0
        for n, path in enumerate(PATHS):
            status, body, fast = await send(c, leader, "PUT", f"k{n}", b"once", f"idle{n}:1", path)
            assert (status, body["error"], body["outcome"]) == (409, "session-expired", "unknown")
            assert fast == (path == "fast")
            status, body, _ = await send(c, leader, "PUT", f"k{n}", b"next", f"idle{n}:2", path)
            assert (status, body["error"]) == (409, "session-expired")
            status, body = await get(c, leader, f"k{n}")
            assert (body["value"], body["version"]) == ("once", 1)  # never re-applied
            status, body, _ = await send(c, leader, "PUT", f"k{n}", b"fresh", f"new{n}:1", path)
            assert (status, body["version"]) == (200, 2)
        # Writes without a request id (the node's own anonymous session) never expire.
        await asyncio.sleep(0.6)
        status, body, _ = await c.call("PUT", leader, "/v1/kv/anon", data=b"x")
        assert status == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_max_sessions_evicts_the_least_recently_used(tmp_path, protocol):
    async with cluster(protocol, tmp_path, max_sessions=4) as c:
        leader = await leader_of(c, protocol)
        table = c.servers[leader].runtime.node.sm.sessions
        await c.wait_until(lambda: table.max_sessions == 4)  # the first clock command carried it
        for i in range(6):
            status, _, _ = await send(c, leader, "PUT", "k", b"v", f"c{i}:1", "fast")
            assert status == 200
        assert "c0" not in table and "c1" not in table and "c5" in table
        status, body, _ = await send(c, leader, "PUT", "k", b"v", "c1:1", "aiohttp")
        assert (status, body["error"]) == (409, "session-expired")


@async_test
async def test_session_ttl_zero_writes_no_clock_commands(tmp_path):
    async with Cluster(tmp_path, IDS, session_ttl=0) as c:
        leader = await c.wait_leader()
        assert c.servers[leader].session_clock is None
        await asyncio.sleep(0.3)
        assert c.servers[leader].runtime.node.sm.sessions.max_sessions == 0  # no cap either


def test_the_clock_interval_is_a_quarter_of_the_ttl_within_bounds():
    assert clock_interval(3600) == 60.0
    assert clock_interval(40) == 10.0
    assert clock_interval(0.001) == 0.05
