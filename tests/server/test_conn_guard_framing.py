"""The guard's request framing and accounting, sans sockets: bytes fed in every split
(h11's one-byte-at-a-time style), a recording inner protocol and a fake transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensuskit.server import conn_guard
from consensuskit.server.conn_guard import ConnectionLimits, Guards

PUT = b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
GET = b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED_HEAD = b"PUT /v1/kv/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: Any = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def feed(chunks: list[bytes], limits: ConnectionLimits | None = None) -> tuple[Any, Recorder, FakeTransport]:
    async def go() -> tuple[Any, Recorder, FakeTransport]:
        guards = Guards(limits or ConnectionLimits())
        inner = Recorder()
        guard = guards.factory(lambda: inner)()
        transport = FakeTransport()
        guard.connection_made(transport)
        for chunk in chunks:
            guard.data_received(chunk)
        guards.close_all()
        return guard, inner, transport

    return asyncio.run(go())


def splits(stream: bytes) -> list[list[bytes]]:
    return [[stream[:i], stream[i:]] for i in range(1, len(stream))] + [[bytes([b]) for b in stream]]


@pytest.mark.parametrize("chunks", splits(PUT + GET + b"\r\n" + PUT))
def test_pipelined_requests_in_any_split_are_framed_and_passed_on_unchanged(chunks):
    guard, inner, _ = feed(chunks)
    assert bytes(inner.data) == b"".join(chunks)
    assert guard._state == conn_guard.WAIT and guard.deadline == float("inf")
    assert guard._guards.buffered == len(b"".join(chunks))


@pytest.mark.parametrize("cut", range(1, len(PUT)))
def test_a_cut_request_leaves_the_right_clock_running(cut):
    guard, _, _ = feed([PUT[:cut]])
    head_end = PUT.index(b"\r\n\r\n") + 4
    expected = conn_guard._HEADER_CLOCK if cut < head_end else conn_guard._BODY_CLOCK
    assert guard._clock == expected


def test_a_chunked_body_keeps_the_body_clock_until_the_answer():
    guard, inner, _ = feed([CHUNKED_HEAD, b"5\r\nhello\r\n0\r\n\r\n"])
    assert guard._state == conn_guard.OPEN and guard._clock == conn_guard._BODY_CLOCK
    inner.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert guard._state == conn_guard.IDLE and guard._clock == conn_guard._IDLE_CLOCK
    assert guard._guards.buffered == 0


def test_an_answer_releases_the_bytes_and_starts_the_idle_clock():
    guard, inner, transport = feed([PUT])
    assert guard._guards.buffered == len(PUT)
    inner.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert guard._guards.buffered == 0 and guard._clock == conn_guard._IDLE_CLOCK
    assert transport.written == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_head_too_long_to_keep_still_ends_and_its_body_is_open():
    long_head = b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * (2 * conn_guard.HEAD_KEEP_BYTES) + b"\r\n\r\n"
    guard, _, _ = feed([long_head[i : i + 1000] for i in range(0, len(long_head), 1000)])
    assert guard._state == conn_guard.OPEN and len(guard._head) == 0


def test_the_hand_off_keeps_the_guard():
    """``set_protocol`` on what the inner protocol sees swaps only the inner protocol."""

    async def go() -> None:
        guards = Guards(ConnectionLimits())
        first, second = Recorder(), Recorder()
        guard = guards.factory(lambda: first)()
        transport = FakeTransport()
        guard.connection_made(transport)
        guard.data_received(GET)
        first.transport.set_protocol(second)
        second.connection_made(first.transport)
        guard.data_received(PUT)
        assert first.data == GET and second.data == PUT
        assert first.transport.get_protocol() is second
        guard.connection_lost(None)
        assert second.lost and not first.lost
        assert guards.connections == set()
        guards.close_all()

    asyncio.run(go())


def test_expiry_answers_408_once_and_detaches_the_parser():
    async def go() -> None:
        guards = Guards(ConnectionLimits(header_timeout=0.05))
        inner = Recorder()
        guard = guards.factory(lambda: inner)()
        transport = FakeTransport()
        guard.connection_made(transport)
        guard.data_received(PUT[:10])
        await asyncio.sleep(0.2)  # the sweep runs every header_timeout / 10
        assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b'"error":"request-timeout"' in transport.written
        assert transport.eof and inner.lost and guards.buffered == 0
        guard.data_received(b"more")  # dropped during the lingering close
        assert inner.data == PUT[:10]
        inner.transport.write(b"late answer")  # the parser's late writes are dropped
        assert b"late answer" not in transport.written
        assert guards.stats.header_timeouts == 1
        guard.connection_lost(None)
        guards.close_all()

    asyncio.run(go())
