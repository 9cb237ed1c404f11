"""The etcd service on an in-process node (NodeServer): what a real-process test cannot
reach, such as a short progress-notify interval."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from consensuskit.server.cluster import free_port
from consensuskit.server.main import NodeServer
from consensuskit.services.etcd_api import etcd_node
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.server.runtime_harness import async_test, node_config

pytestmark = pytest.mark.timeout(60)


@async_test
async def test_a_quiet_watch_with_progress_notify_hears_the_revision(tmp_path):
    port = free_port()
    config = node_config(tmp_path, "solo", ["solo"], service="etcd", listen={"grpc": f"127.0.0.1:{port}"})
    server = NodeServer(config)
    await server.start()
    try:
        assert server.api is not None
        etcd_node(server.api).progress_interval = 0.3
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            kv = pb_grpc.KVStub(channel)
            async with asyncio.timeout(20):
                while True:
                    try:
                        put = await kv.Put(pb.PutRequest(key=b"p", value=b"1"))
                        break
                    except grpc.aio.AioRpcError:  # no leader yet
                        await asyncio.sleep(0.1)
            watch = pb_grpc.WatchStub(channel)

            async def requests(progress: bool):
                yield pb.WatchRequest(
                    create_request=pb.WatchCreateRequest(key=b"q", progress_notify=progress)
                )
                await asyncio.Event().wait()

            notified = watch.Watch(requests(True))
            silent = watch.Watch(requests(False))
            assert (await notified.read()).created and (await silent.read()).created
            async with asyncio.timeout(5):
                progress = await notified.read()
            assert not progress.events and not progress.canceled
            assert progress.header.revision == put.header.revision
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await silent.read()
            notified.cancel()
            silent.cancel()
    finally:
        await server.stop()
