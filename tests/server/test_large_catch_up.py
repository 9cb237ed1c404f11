"""A node far behind catches up when what it needs is larger than one peer frame.

Raft streams its snapshot in chunks (here each larger than a frame too); Multi-Paxos
(InstallSnapshot) and ZAB (NEWLEADER in SNAP mode) send theirs as one message, which
the transport fragments over several frames.  Before the transport did, the sender
refused such a message, forever: measured on three processes with the default 64 MiB
frames, a Multi-Paxos or ZAB node 72 MB behind never rejoined, and its leader
re-encoded the snapshot every 0.2 s.  Here: in-process 3-node clusters over real TCP
with 64 KiB frames and an 8-message queue (so the queue cannot carry the whole backlog
and the snapshot is needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]
FRAME = 64 * 1024
VALUE = "v" * 8 * 1024


async def status(c: Cluster, node: str) -> dict[str, Any]:
    code, body, _ = await c.call("GET", node, "/v1/status")
    assert code == 200
    return body


async def leader_of(c: Cluster) -> str:
    found: list[str] = []

    async def poll() -> None:
        for node in c.servers:
            body = await status(c, node)
            if body["role"] == "leader":
                found.append(node)
                return

    for _ in range(500):
        await poll()
        if found:
            code, _, _ = await c.call("PUT", found[0], "/v1/kv/ready", data="1")
            if code == 200:
                return found[0]
            found.clear()
        await asyncio.sleep(0.02)
    raise AssertionError("no leader")


@pytest.mark.parametrize("protocol", ["raft", "multipaxos", "zab"])
@async_test
async def test_a_node_behind_a_snapshot_larger_than_a_frame_catches_up(tmp_path, protocol):
    options = {"snapshot_threshold": 20, "snapshot_trailing": 0}
    transport = {"max_frame_bytes": FRAME, "queue_limit": 8}
    async with Cluster(tmp_path, IDS, protocol=protocol, options=options, transport_options=transport) as c:
        leader = await leader_of(c)
        lagging = next(n for n in IDS if n != leader)
        await c.stop_node(lagging)
        for i in range(40):  # 320 kB of state: five frames' worth
            code, _, _ = await c.call("PUT", leader, f"/v1/kv/big{i}", data=VALUE)
            assert code == 200
        for i in range(60):  # snapshots and compaction past what the lagging node holds
            code, _, _ = await c.call("PUT", leader, f"/v1/kv/small{i % 3}", data=str(i))
            assert code == 200
        target = (await status(c, leader))["applied"]
        await c.start_node(lagging)
        for _ in range(1500):
            if (await status(c, lagging))["applied"] >= target:
                break
            await asyncio.sleep(0.02)
        assert (await status(c, lagging))["applied"] >= target, await status(c, lagging)
        code, body, _ = await c.call("GET", lagging, "/v1/kv/big39?consistency=stale")
        assert code == 200 and body["value"] == VALUE
        sent = c.servers[leader].transport.stats.peers[lagging]
        assert sent.dropped_oversize == 0
        # Raft's chunks (snapshot_chunk_bytes, 1 MiB) are fragmented too at these frames.
        assert sent.fragmented >= 1
