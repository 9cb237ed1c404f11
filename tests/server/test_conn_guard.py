"""Bounded client connections (conn_guard.py): timeouts, caps, and the guard staying in
place through the fast path's hand-off to aiohttp and on the TLS listener.

In-process nodes over real sockets; the clients are raw sockets, so every byte and its
timing is the test's."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

import pytest

from consensuskit.server.conn_guard import SMALL_REQUEST_BYTES
from tests.server.runtime_harness import Cluster, async_test
from tests.server.test_transport_tls import make_certificate

pytestmark = pytest.mark.timeout(60)

LIMITS = {"header_timeout": 0.6, "body_timeout": 0.6, "idle_timeout": 0.8}


async def connect(cluster: Cluster, node: str = "n1", tls: ssl.SSLContext | None = None) -> Any:
    port = cluster.servers[node].http_port
    return await asyncio.open_connection("127.0.0.1", port, ssl=tls)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails on timeout)."""
    async with asyncio.timeout(timeout):
        chunks = []
        while chunk := await reader.read(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


async def read_one_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return int(head.split(b" ", 2)[1]), json.loads(body)


def guards(cluster: Cluster, node: str = "n1") -> Any:
    site = cluster.servers[node].client_site
    assert site is not None
    return site.guards


@async_test
async def test_a_head_dribbled_byte_by_byte_gets_408_within_the_header_timeout(tmp_path):
    """Each byte arrives well within the timeout, the whole head does not: bytes do not
    reset the clock, which runs from the request's first byte."""
    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        reader, writer = await connect(c)
        head = b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"

        async def dribble() -> None:
            for byte in head[:-8]:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        started = time.monotonic()
        dribbler = asyncio.ensure_future(dribble())
        answer = await read_until_closed(reader)
        elapsed = time.monotonic() - started
        dribbler.cancel()
        await asyncio.gather(dribbler, return_exceptions=True)
        status, body = status_and_body(answer)
        assert status == 408 and body["error"] == "request-timeout" and "head" in body["message"]
        assert 0.5 <= elapsed < 0.6 + 1.0
        assert guards(c).stats.header_timeouts == 1
        writer.close()


@pytest.mark.parametrize(
    "target",
    [
        "/v1/kv/k",  # the fast path holds the body
        "/v1/kv/k?cas_version=0",  # a query the fast path hands to aiohttp: the guard stays
    ],
)
@async_test
async def test_a_stalled_body_gets_408_and_the_connection_closes(tmp_path, target):
    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        reader, writer = await connect(c)
        head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        writer.write(head + b"v" * 999)
        started = time.monotonic()
        status, body = status_and_body(await read_until_closed(reader))
        assert status == 408 and body == {
            "error": "request-timeout",
            "message": "the request body did not arrive within 0.6s",
        }
        assert time.monotonic() - started < 0.6 + 1.0
        assert guards(c).stats.body_timeouts == 1
        assert guards(c).buffered == 0  # released on close
        writer.close()


@async_test
async def test_a_stalled_chunked_body_gets_408(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        reader, writer = await connect(c)
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        status, body = status_and_body(await read_until_closed(reader))
        assert status == 408 and body["error"] == "request-timeout"
        writer.close()


@async_test
async def test_a_chunked_body_that_arrives_is_served_and_the_connection_kept(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        reader, writer = await connect(c)
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        assert (await read_one_answer(reader))[0] == 200
        writer.write(b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = await read_one_answer(reader)
        assert status == 200 and body["value"] == "hello"
        writer.close()


@async_test
async def test_an_idle_keep_alive_connection_is_closed(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        reader, writer = await connect(c)
        for i in range(3):  # requests spaced closer than the idle timeout keep it open
            writer.write(f"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{i}".encode())
            assert (await read_one_answer(reader))[0] == 200
            await asyncio.sleep(0.4)
        started = time.monotonic()
        assert await read_until_closed(reader) == b""  # closed silently, as keep-alive is
        assert 0.3 <= time.monotonic() - started < 0.8 + 1.0
        writer.close()
        # A connection that never sends anything is idle from the start.
        reader, writer = await connect(c)
        assert await read_until_closed(reader) == b""
        assert guards(c).stats.idle_closed == 2
        writer.close()


@async_test
async def test_a_request_waiting_for_its_answer_is_not_cut_off(tmp_path):
    """No guard clock runs while the node works on a request read in full: a write to a
    leader that lost its followers waits up to request_timeout (longer than every guard
    timeout) and gets the node's answer, not a 408 or a closed connection."""
    ids = ["n1", "n2", "n3"]
    short = {"header_timeout": 0.2, "body_timeout": 0.2, "idle_timeout": 0.3}
    slow_step_down = {"election_timeout": 1.0, "heartbeat_interval": 0.1}
    async with Cluster(
        tmp_path, ids, transport="loopback", request_timeout=1.5, options=slow_step_down, **short
    ) as c:
        leader = await c.wait_leader()
        for node in ids:
            if node != leader:
                await c.stop_node(node)
        reader, writer = await connect(c, leader)
        started = time.monotonic()
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        status, body = await read_one_answer(reader)
        assert status in (421, 503), body
        assert time.monotonic() - started > 0.5  # longer than every guard timeout
        writer.close()


@async_test
async def test_beyond_max_connections_a_new_connection_gets_503(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", max_connections=3) as c:
        await c.wait_leader()
        held = [await connect(c) for _ in range(3)]
        await asyncio.sleep(0.1)
        reader, writer = await connect(c)
        status, body = status_and_body(await read_until_closed(reader))
        assert status == 503 and body["error"] == "too-many-connections"
        writer.close()
        assert guards(c).stats.refused_connections == 1
        _, text, _ = await c.call("GET", "n1", "/metrics")  # a fourth connection: refused too
        assert guards(c).stats.refused_connections == 2
        for w in held[1:]:
            w[1].close()
        held = held[:1]
        await asyncio.sleep(0.1)
        _, text, _ = await c.call("GET", "n1", "/metrics")
        assert 'consensuskit_http_connection_closes_total{reason="too-many-connections"} 2.0' in text
        # The held connections are served; closing one makes room again.
        r0, w0 = held[0]
        w0.write(b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_one_answer(r0))[0] == 404
        w0.close()
        await asyncio.sleep(0.1)
        reader, writer = await connect(c)
        writer.write(b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_one_answer(reader))[0] == 404
        writer.close()


@async_test
async def test_beyond_max_buffered_bytes_large_bodies_get_503_and_small_requests_pass(tmp_path):
    budget = 4 * SMALL_REQUEST_BYTES
    async with Cluster(
        tmp_path, ["n1"], transport="loopback", max_buffered_bytes=budget, max_value_bytes=budget
    ) as c:
        await c.wait_leader()
        size = 3 * SMALL_REQUEST_BYTES
        head = f"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        first = await connect(c)
        first[1].write(head + b"a" * (size - 1))  # stalls holding 3/4 of the budget
        await asyncio.sleep(0.2)
        second = await connect(c)
        second[1].write(head + b"b" * (size - 1))
        status, body = status_and_body(await read_until_closed(second[0]))
        assert status == 503 and body["error"] == "too-many-buffered-bytes"
        assert guards(c).stats.refused_buffered == 1
        # Small requests are let through while the budget is spent.
        status, _, _ = await c.call("PUT", "n1", "/v1/kv/small", data=b"s" * 1000)
        assert status == 200
        first[1].close()
        second[1].close()


@async_test
async def test_the_tls_listener_is_guarded_too(tmp_path):
    cert, key = make_certificate(tmp_path, "cluster")
    tls = {"cert": str(cert), "key": str(key), "ca": str(cert), "client_api": True}
    async with Cluster(tmp_path, ["n1"], tls=tls, **LIMITS) as c:
        await c.wait_leader()
        trusted = ssl.create_default_context(cafile=str(cert))
        reader, writer = await connect(c, tls=trusted)
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        status, body = status_and_body(await read_until_closed(reader))
        assert status == 408 and body["error"] == "request-timeout"
        assert time.monotonic() - started < 0.6 + 1.0
        # A complete request on the same listener is served.
        reader, writer = await connect(c, tls=trusted)
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        assert (await read_one_answer(reader))[0] == 200
        writer.close()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("header_timeout", 0), ("body_timeout", -1), ("idle_timeout", "x"), ("max_connections", 0),
     ("max_buffered_bytes", 1.5)],
)  # fmt: skip
def test_bad_limits_are_config_errors(tmp_path, setting, value):
    from consensuskit.server.config import ConfigError
    from tests.server.runtime_harness import node_config

    with pytest.raises(ConfigError, match=setting):
        node_config(tmp_path, "n1", ["n1"], **{setting: value})


def test_limits_come_from_the_file_and_the_flags(tmp_path):
    from consensuskit.server.config import ConfigError
    from consensuskit.server.main import build_config

    (tmp_path / "secret").write_text("s")
    path = tmp_path / "node.toml"
    path.write_text(
        'id = "n1"\npeer_address = "127.0.0.1:0"\nclient_address = "127.0.0.1:0"\n'
        'data_dir = "d"\nsecret_file = "secret"\nheader_timeout = 2\nmax_connections = 7\n'
    )
    config = build_config(path)
    assert config.limits.header_timeout == 2.0 and config.limits.max_connections == 7
    assert config.limits.body_timeout == 30.0 and config.limits.idle_timeout == 60.0
    assert config.limits.max_buffered_bytes == 64 * 2**20
    flagged = build_config(
        path, header_timeout=0.5, body_timeout=4.0, max_buffered_bytes=1000, max_value_bytes=1000
    )
    assert flagged.limits.header_timeout == 0.5 and flagged.limits.body_timeout == 4.0
    assert flagged.limits.max_buffered_bytes == 1000 and flagged.limits.max_connections == 7
    with pytest.raises(ConfigError, match="max_buffered_bytes: 1000 is below max_value_bytes"):
        build_config(path, max_buffered_bytes=1000)


@async_test
async def test_an_upgraded_connection_is_no_longer_framed_as_http_requests(tmp_path):
    """A websocket (``GET /v1/events``) after its 101: the client's frames are not a
    request head (no 408 at the header timeout) and it outlives the idle timeout."""
    import aiohttp

    from tests.server.runtime_harness import ADMIN_TOKEN

    async with Cluster(tmp_path, ["n1"], transport="loopback", **LIMITS) as c:
        await c.wait_leader()
        url = c.servers["n1"].config.client_url + "/v1/events"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=auth) as ws:
            first = await ws.receive(timeout=5)
            assert "snapshot" in json.loads(first.data)
            end = time.monotonic() + 3 * LIMITS["idle_timeout"]
            while time.monotonic() < end:  # frames from the client, then silence
                await ws.ping()
                await asyncio.sleep(0.1)
            await asyncio.sleep(2 * LIMITS["idle_timeout"])
            c.servers["n1"].runtime.record("still-here")
            while True:  # the record arrives: the stream is still open
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                if any(r.get("kind") == "still-here" for r in json.loads(msg.data).get("records", ())):
                    break
        assert guards(c).stats.header_timeouts == 0
