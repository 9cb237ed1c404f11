"""The lean HTTP front (server/fast_http.py): same answers as the aiohttp API, hand-off
of everything else, ordering on keep-alive connections, odd byte boundaries."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from consensuskit.server.fast_http import FastConnection, json_answer
from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]


async def _open(c: Cluster, node: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(c.url(node))
    return await asyncio.open_connection(url.hostname, url.port)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def _request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "PUT":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(c: Cluster, node: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await _open(c, node)
    try:
        writer.write(raw)
        return await _read_response(reader)
    finally:
        writer.close()


def _served_fast(headers: dict[str, str]) -> bool:
    return "server" not in headers  # aiohttp always names itself; the fast path does not


@async_test
async def test_fast_answers_equal_aiohttp_answers(tmp_path):
    """Each request once on the fast path and once forced through aiohttp (a header the
    fast path does not serve): same status, same JSON.  Writes repeat their request id,
    so the second is a retry answered with the first result."""
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        follower = next(n for n in IDS if n != leader)
        cases = [
            (leader, "PUT", "/v1/kv/alpha", b"one", {"X-Request-Id": "t1:1"}),
            (leader, "PUT", "/v1/kv/alpha", b"one", {"X-Request-Id": "t1:1"}),  # retry: first result
            (leader, "GET", "/v1/kv/alpha", b"", {}),
            (leader, "GET", "/v1/kv/alpha?consistency=lease", b"", {}),
            (leader, "GET", "/v1/kv/missing", b"", {}),
            (follower, "PUT", "/v1/kv/alpha", b"two", {"X-Request-Id": "t2:1"}),
            (follower, "GET", "/v1/kv/alpha?consistency=stale", b"", {}),
            (follower, "GET", "/v1/kv/alpha", b"", {}),
            (leader, "PUT", "/v1/kv/bin", b"\xff\x00", {"X-Request-Id": "t3:1"}),
            (leader, "GET", "/v1/kv/bin", b"", {}),
            (leader, "DELETE", "/v1/kv/alpha", b"", {"X-Request-Id": "t4:1"}),
            (leader, "DELETE", "/v1/kv/alpha", b"", {"X-Request-Id": "t4:1"}),
        ]
        await c.wait_until(lambda: all(s.runtime.node.status()["commit"] >= 1 for s in c.servers.values()))
        for node, method, path, body, headers in cases:
            fast = await _exchange(c, node, _request(method, path, body, headers))
            slow = await _exchange(c, node, _request(method, path, body, {**headers, "Connection": "close"}))
            assert _served_fast(fast[1]) and not _served_fast(slow[1]), (method, path)
            fast_body, slow_body = json.loads(fast[2]), json.loads(slow[2])
            for body_ in (fast_body, slow_body):
                body_.pop("index", None)  # the second request may see a later index
                if body_.get("error") == "not-leader":
                    assert body_["leader_url"] == c.url(leader)
            assert fast[0] == slow[0], (method, path, fast, slow)
            assert fast[1]["content-type"] == "application/json; charset=utf-8"
            assert fast_body == slow_body, (method, path)


@async_test
async def test_keep_alive_connection_hands_off_to_aiohttp_in_order(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        reader, writer = await _open(c, leader)
        try:
            # Pipelined in one write: two fast writes, a route only aiohttp serves, then
            # a write that aiohttp (now owning the connection) serves too.
            writer.write(
                _request("PUT", "/v1/kv/k", b"1", {"X-Request-Id": "p:1"})
                + _request("PUT", "/v1/kv/k", b"2", {"X-Request-Id": "p:2"})
                + _request("GET", "/v1/status")
                + _request("PUT", "/v1/kv/k", b"3", {"X-Request-Id": "p:3"})
            )
            answers = [await _read_response(reader) for _ in range(4)]
        finally:
            writer.close()
        assert [a[0] for a in answers] == [200, 200, 200, 200]
        assert [json.loads(a[2]).get("version") for a in (answers[0], answers[1], answers[3])] == [1, 2, 3]
        assert json.loads(answers[2][2])["role"] == "leader"
        assert [_served_fast(a[1]) for a in answers] == [True, True, False, False]


@async_test
async def test_bytes_trickling_in_one_at_a_time(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        reader, writer = await _open(c, leader)
        try:
            raw = _request("PUT", "/v1/kv/slow", b"value", {"X-Request-Id": "s:1"}) + _request(
                "GET", "/v1/kv/slow"
            )
            for i in range(len(raw)):
                writer.write(raw[i : i + 1])
                await writer.drain()
            put_answer = await _read_response(reader)
            get_answer = await _read_response(reader)
        finally:
            writer.close()
        assert put_answer[0] == 200 and json.loads(put_answer[2])["version"] == 1
        assert get_answer[0] == 200 and json.loads(get_answer[2])["value"] == "value"
        assert _served_fast(put_answer[1]) and _served_fast(get_answer[1])


@async_test
async def test_what_the_fast_path_refuses_gets_aiohttp_answers(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        bad_id = await _exchange(c, leader, _request("PUT", "/v1/kv/x", b"v", {"X-Request-Id": "nope"}))
        assert bad_id[0] == 400 and json.loads(bad_id[2])["error"] == "bad-request-id"
        unknown = await _exchange(c, leader, _request("GET", "/v1/kv/x?bogus=1"))
        assert unknown[0] == 400 and json.loads(unknown[2])["error"] == "bad-request"
        too_big = await _exchange(c, leader, _request("PUT", "/v1/kv/x", b"v" * (2**20 + 1)))
        assert too_big[0] == 413 and json.loads(too_big[2])["error"] == "too-large"
        no_route = await _exchange(c, leader, _request("GET", "/v2/nothing"))
        assert no_route[0] == 404 and json.loads(no_route[2])["error"] == "not-found"
        escaped = await _exchange(c, leader, _request("PUT", "/v1/kv/a%2Fb", b"v", {"X-Request-Id": "e:1"}))
        assert escaped[0] == 200 and json.loads(escaped[2])["key"] == "a/b"
        assert not any(_served_fast(a[1]) for a in (bad_id, unknown, too_big, no_route, escaped))


@async_test
async def test_client_gone_before_its_answer_harms_nothing(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for i in range(20):
            _reader, writer = await _open(c, leader)
            writer.write(_request("PUT", f"/v1/kv/gone{i}", b"v", {"X-Request-Id": f"g{i}:1"}))
            await writer.drain()
            writer.close()
        status, _body, _ = await c.call("PUT", leader, "/v1/kv/after", data="v")
        assert status == 200
        runtime = c.servers[leader].runtime
        await c.wait_until(lambda: not runtime._waiters)
        assert runtime.failure is None


# ---------------------------------------------------------------------- a service's own routes
class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.protocol: object = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class _Fallback(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data


class _EchoRoutes:
    """POST /echo answers its body; a body "decline" is left to aiohttp."""

    def route(self, head):
        return ("echo", 100) if head.method == b"POST" and head.target == b"/echo" else None

    def serve(self, connection, request, body):
        if body == b"decline":
            return False
        connection.answer(json_answer(json.dumps({"echo": body.decode()}).encode()))
        return True


@async_test
async def test_a_service_declares_its_own_fast_routes():
    """FastConnection serves what a service's FastRoutes take, in order, and hands the
    connection (every byte not answered) to aiohttp at the first request they decline,
    whether from the head (an unknown route) or from the body."""
    from types import SimpleNamespace

    api = SimpleNamespace(
        auth=SimpleNamespace(enabled=False), config=SimpleNamespace(max_value_bytes=1000), reply_signer=None
    )

    def post(body: bytes) -> bytes:
        return b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    for rest, left in (
        (post(b"decline") + post(b"b"), post(b"decline") + post(b"b")),
        (b"GET /x HTTP/1.1\r\n\r\n", b"GET /x HTTP/1.1\r\n\r\n"),
    ):
        fallback = _Fallback()
        transport = _Transport()
        connection = FastConnection(api, _EchoRoutes(), lambda fallback=fallback: fallback, set())
        connection.connection_made(transport)
        data = post(b"a") + post(b"")
        connection.data_received(data[:7])  # a head cut short waits for the rest
        assert transport.written == []
        connection.data_received(data[7:] + rest)
        assert [json.loads(w.partition(b"\r\n\r\n")[2]) for w in transport.written] == [
            {"echo": "a"},
            {"echo": ""},
        ]
        assert transport.protocol is fallback and fallback.data == left


# Where a route's code runs: when the head arrives (``route``), when the body did
# (``serve``), when the node answers (the route's callback); and how each call names
# the request's key.
RAISING = {
    "route": ("route", lambda head: b"boom" in head.target),
    "serve": ("serve", lambda connection, parsed, body: parsed.key == "boom"),
    "answer": ("_answered", lambda parsed, response, error: parsed.key == "boom"),
}


@pytest.mark.parametrize("where", sorted(RAISING))
@async_test
async def test_a_route_that_raises_answers_500_and_closes_the_connection(tmp_path, monkeypatch, where):
    """A bug in a route broke the connection unanswered (the exception reached asyncio:
    "Fatal error on transport"): the client gets the aiohttp API's answer to a handler
    that raises, 500 ``internal``, and the connection closes; the node serves on."""
    from consensuskit.server import fast_http

    name, of_boom = RAISING[where]
    original = getattr(fast_http.KVFastRoutes, name)

    def with_a_bug(self, *args):
        if of_boom(*args):
            raise RuntimeError("a bug")
        return original(self, *args)

    monkeypatch.setattr(fast_http.KVFastRoutes, name, with_a_bug)
    async with Cluster(tmp_path, ["n1"]) as c:
        await c.wait_leader()
        reader, writer = await _open(c, "n1")
        try:
            # Pipelined: the request after the failing one is never read.
            writer.write(_request("PUT", "/v1/kv/boom", b"1") + _request("GET", "/v1/kv/boom"))
            status, headers, body = await asyncio.wait_for(_read_response(reader), 5)
            assert (status, json.loads(body)["error"]) == (500, "internal"), body
            assert headers["connection"] == "close" and _served_fast(headers)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing more
        finally:
            writer.close()
        status, _, body = await _exchange(c, "n1", _request("PUT", "/v1/kv/fine", b"2"))
        assert status == 200, body
