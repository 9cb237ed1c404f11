"""A service's own listeners (core/service.py ``listeners`` and ``ports``): the server
starts them once the node runs, with the addresses of its ``[listen]`` table; what they
add to ``/v1/status`` shows there; stopping the node closes them."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest

from consensuskit.catalog import builtin_registry
from consensuskit.server.cluster import free_port
from consensuskit.server.config import ConfigError, load_config
from consensuskit.server.main import NodeServer
from consensuskit.services.kv import kv_service
from tests.server.runtime_harness import async_test, node_config

pytestmark = pytest.mark.timeout(60)

EVENTS: list[str] = []


async def start_echo(api: Any, listen: dict[str, tuple[str, int]]) -> Any:
    """A toy listener: echoes one line on the ``echo`` port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    host, port = listen["echo"]
    server = await asyncio.start_server(echo, host, port)
    api.status_extra["echo_url"] = f"tcp://{host}:{port}"
    EVENTS.append("started")

    async def close() -> None:
        server.close()
        await server.wait_closed()
        EVENTS.append("closed")

    return close


ECHO_KV = dataclasses.replace(
    kv_service(), name="echo-kv", listeners="tests.server.test_service_listeners:start_echo", ports=("echo",)
)


def registry():
    reg = builtin_registry()
    reg.add_service(ECHO_KV)
    return reg


def config(tmp_path, port: int):
    base = node_config(tmp_path, "solo", ["solo"])
    raw_listen = {"echo": f"127.0.0.1:{port}"}
    loaded = load_config(
        None,
        {
            "id": "solo",
            "peer_address": "127.0.0.1:0",
            "client_address": "127.0.0.1:0",
            "data_dir": str(tmp_path / "solo"),
            "secret_file": str(tmp_path / "secret"),
            "service": "echo-kv",
            "listen": raw_listen,
        },
        registry=registry(),
    )
    return dataclasses.replace(base, service=loaded.service, listen=loaded.listen)


@async_test
async def test_the_server_starts_and_closes_a_services_listeners(tmp_path):
    EVENTS.clear()
    port = free_port()
    server = NodeServer(config(tmp_path, port), registry=registry())
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.close()
        async with aiohttp.ClientSession() as http, http.get(server.config.client_url + "/v1/status") as resp:
            assert (await resp.json())["echo_url"] == f"tcp://127.0.0.1:{port}"
    finally:
        await server.stop()
    assert EVENTS == ["started", "closed"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@async_test
async def test_a_listener_that_cannot_bind_is_a_configuration_error(tmp_path):
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    server = NodeServer(config(tmp_path, port), registry=registry())
    try:
        with pytest.raises(ConfigError, match="echo-kv: cannot start its listeners"):
            await server.start()
    finally:
        blocker.close()


def test_a_listen_address_is_checked(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"listen\.grpc"):
        node_config(tmp_path, "a", ["a"], listen={"grpc": "no-port"})


@async_test
async def test_a_service_may_keep_fsyncs_out_of_the_loop_thread(tmp_path):
    """``sync_inline=False`` (etcd's gRPC front): the runtime never fsyncs inline."""
    cfg = dataclasses.replace(node_config(tmp_path, "solo", ["solo"]), inline_sync_bytes=4096)
    for sync_inline, expected in ((True, 4096), (False, 0)):
        reg = builtin_registry()
        reg.add_service(dataclasses.replace(kv_service(), name="kv-threaded", sync_inline=sync_inline))
        server = NodeServer(dataclasses.replace(cfg, service="kv-threaded"), registry=reg)
        await server.start()
        try:
            assert server.runtime._inline_sync_bytes == expected
        finally:
            await server.stop()


def test_up_gives_each_node_a_port_per_listener_or_from_a_given_base(tmp_path) -> None:
    from consensuskit.server.cluster import ClusterError, ClusterLayout

    layout = ClusterLayout.prepare(tmp_path / "a", 3, 27500, node_options={"service": "etcd"})
    assert [layout.listen_ports(n)["grpc"] for n in layout.nodes] == [27506, 27507, 27508]
    assert 'grpc = "127.0.0.1:27506"' in layout.nodes[0].config_path.read_text()
    assert (27508, "n3 grpc") in layout.ports()
    given = ClusterLayout.prepare(
        tmp_path / "b", 3, 27500, node_options={"service": "etcd"}, listen_base={"grpc": 28000}
    )
    assert [given.listen_ports(n)["grpc"] for n in given.nodes] == [28000, 28001, 28002]
    again = ClusterLayout.prepare(tmp_path / "b")  # a restart remembers the base and the service
    assert [again.listen_ports(n)["grpc"] for n in again.nodes] == [28000, 28001, 28002]
    with pytest.raises(ClusterError, match="listens on: grpc"):
        ClusterLayout.prepare(
            tmp_path / "c", 3, 27500, node_options={"service": "etcd"}, listen_base={"http2": 1}
        )
    with pytest.raises(ClusterError, match="listens on: none"):
        ClusterLayout.prepare(tmp_path / "d", 3, 27500, listen_base={"grpc": 28000})
