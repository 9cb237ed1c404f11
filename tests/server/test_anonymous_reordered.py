"""Concurrent writes without ``X-Request-Id`` through a forwarding follower (in-process
3-node clusters, Raft and Multi-Paxos).

The follower numbers them in its one anonymous session; on their way to the leader they
may be reordered (a lost connection, a leader change), and the later-numbered one applied
first makes the other ``stale-session``: refused, not applied.  Nobody can retry an
anonymous write with its id, so the node submits it again under a new number, on the
aiohttp path and on the fast path alike (http_api.py, fast_http.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.server.runtime_harness import Cluster, async_test
from tests.server.test_auth_at_apply import PROTOCOLS, cluster, leader_of

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]
FORWARDS = {"ForwardRequest", "Forward"}  # Raft's, Multi-Paxos's


def reorder_first_two_forwards(c: Cluster, follower: str) -> None:
    """The follower's first forward is held until its second went, then sent late."""
    transport = c.network.transports[follower]  # type: ignore[union-attr]
    send = transport.send
    held: list[tuple[str, Any]] = []

    def filtered(dst: str, msg: Any) -> None:
        if type(msg).__name__ not in FORWARDS or len(held) > 1:
            send(dst, msg)
        elif not held:
            held.append((dst, msg))
        else:
            held.append((dst, msg))
            send(dst, msg)
            asyncio.get_running_loop().call_later(0.3, send, *held[0])

    transport.send = filtered  # type: ignore[method-assign]


@pytest.mark.parametrize("path", ["fast", "aiohttp"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_reordered_anonymous_writes_through_a_follower_all_apply(tmp_path, protocol, path):
    async with cluster(tmp_path, protocol) as c:
        leader = await leader_of(c, protocol)
        follower = next(i for i in IDS if i != leader)
        reorder_first_two_forwards(c, follower)
        # X-Leader-Only: false changes nothing but leaves the request to aiohttp.
        headers = {"X-Leader-Only": "false"} if path == "aiohttp" else {}
        first = asyncio.create_task(c.call("PUT", follower, "/v1/kv/a", data="1", headers=headers))
        await asyncio.sleep(0.05)  # numbered first
        second = asyncio.create_task(c.call("PUT", follower, "/v1/kv/b", data="2", headers=headers))
        answers = [(await first)[:2], (await second)[:2]]
        assert [status for status, _ in answers] == [200, 200], answers
        sm = c.servers[leader].runtime.node.sm
        await c.wait_until(lambda: sm.get("a") == "1" and sm.get("b") == "2")
