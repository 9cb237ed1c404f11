"""main.serve in-process: a clean stop returns 0; a handler exception halts the node,
answers 503 and returns 70 without syncing anything more."""

from __future__ import annotations

import asyncio
import errno
import os

import aiohttp
import pytest

from consensuskit.core.compiled import is_compiled
from consensuskit.protocols.raft import node as raft_node_module
from consensuskit.protocols.raft.node import RaftNode
from consensuskit.server.cluster import free_port
from consensuskit.server.main import EXIT_HALTED, EXIT_OK, serve
from tests.server.runtime_harness import async_test, node_config

pytestmark = pytest.mark.timeout(60)


async def wait_for_leader(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                async with session.get(url + "/v1/status") as resp:
                    body = await resp.json()
                    if body["role"] == "leader" and body["commit"] >= 1:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


def single_node(tmp_path, port: int):
    return node_config(tmp_path, "solo", ["solo"], client_address=f"127.0.0.1:{port}")


@async_test
async def test_stop_event_is_a_clean_shutdown(tmp_path):
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(single_node(tmp_path, port), stop=stop))
    async with aiohttp.ClientSession() as session:
        await wait_for_leader(session, f"http://127.0.0.1:{port}")
        async with session.put(f"http://127.0.0.1:{port}/v1/kv/k", data=b"v") as resp:
            assert resp.status == 200
    stop.set()
    assert await task == EXIT_OK


@pytest.mark.skipif(is_compiled(raft_node_module), reason="patches RaftNode: needs the interpreted build")
@async_test
async def test_a_handler_exception_halts_with_status_70(tmp_path, monkeypatch):
    port = free_port()
    original = RaftNode.on_request

    def exploding(self, request):
        if request.op.key == "boom":
            raise RuntimeError("bug in a handler")
        original(self, request)

    monkeypatch.setattr(RaftNode, "on_request", exploding)
    task = asyncio.ensure_future(serve(single_node(tmp_path, port)))
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}"
        await wait_for_leader(session, url)
        async with session.put(url + "/v1/kv/boom", data=b"v") as resp:
            body = await resp.json()
            assert resp.status == 503 and body["error"] == "unavailable" and "halted" in body["message"]
    assert await asyncio.wait_for(task, 10) == EXIT_HALTED


@async_test
async def test_a_full_disk_halts_with_the_way_out_and_keeps_every_acknowledged_write(
    tmp_path, monkeypatch, caplog
):
    from consensuskit.server import wal

    port = free_port()
    config = single_node(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    disk_full = False
    original = wal.write_all

    def write_all(fd, data):
        if disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(fd, data)

    monkeypatch.setattr(wal, "write_all", write_all)
    task = asyncio.ensure_future(serve(config))
    async with aiohttp.ClientSession() as session:
        await wait_for_leader(session, url)
        async with session.put(url + "/v1/kv/kept", data=b"v") as resp:
            assert resp.status == 200
        disk_full = True
        async with session.put(url + "/v1/kv/unsynced", data=b"v") as resp:
            body = await resp.json()
            assert resp.status == 503 and "No space left on device" in body["message"]
    assert await asyncio.wait_for(task, 10) == EXIT_HALTED
    advice = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert len(advice) == 1 and f"the disk holding {config.data_dir} is full (" in advice[0]
    assert "free space there and start the node again" in advice[0]

    monkeypatch.undo()  # the operator freed space
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(config, stop=stop))
    async with aiohttp.ClientSession() as session:
        await wait_for_leader(session, url)
        async with session.get(url + "/v1/kv/kept") as resp:
            assert resp.status == 200 and (await resp.json())["value"] == "v"
        async with session.get(url + "/v1/kv/unsynced") as resp:
            assert resp.status == 404  # never acknowledged, never synced
    stop.set()
    assert await task == EXIT_OK
