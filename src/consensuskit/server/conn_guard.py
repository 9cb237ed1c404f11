"""Bounded client connections: one guard per connection, whichever protocol parses it.

A ``GuardProtocol`` is the protocol of every accepted client transport (the plain fast
path and the TLS listener alike).  It passes bytes to the protocol that parses HTTP
(``fast_http.FastConnection`` or aiohttp's ``RequestHandler``) through a thin transport
proxy, so it sees every byte in and every answer out, and it keeps owning the
connection when the fast path hands it to aiohttp (``set_protocol`` on the proxy only
swaps the inner protocol).

Rules this module owns (limits in ``ConnectionLimits``; docs/server.md, "Connection
limits"):
  * a request's head must arrive within ``header_timeout`` of its first byte, its body
    within ``body_timeout`` of the end of its head (bytes dribbled in do not reset
    either clock); on expiry the client gets 408 ``request-timeout`` (unless an answer
    was already written for that request) and the connection is closed;
  * the guard frames requests itself, only as far as it needs: the head ends at the
    first empty line, the body is ``Content-Length`` bytes; a body of unknown length
    (chunked, or a head too long to keep) ends when the answer starts;
  * an answer ``101 Switching Protocols`` (a websocket) ends the guard's work on that
    connection but its count: no framing, no clock (the new protocol keeps its own);
  * a connection with no request in progress is closed after ``idle_timeout`` (a fresh
    connection too), silently, as keep-alive connections are.  The idle clock starts
    again with every answer written; a request read in full and waiting for its
    answer has no guard clock (``request_timeout`` bounds it);
  * at most ``max_connections`` connections at once per listener: one more is answered
    503 ``too-many-connections`` and closed before any byte of it is parsed;
  * request bytes received and not yet answered count against ``max_buffered_bytes``,
    across the listener's connections.  Beyond it, a connection whose own unanswered
    bytes exceed ``SMALL_REQUEST_BYTES`` gets 503 ``too-many-buffered-bytes`` and is
    closed; smaller requests always pass (they are bounded by
    ``max_connections * SMALL_REQUEST_BYTES``), so normal requests keep being served
    while large stalled bodies hold the budget until their body timeout;
  * a refusal (408, 503) is a lingering close: the answer, our end of stream, and the
    client's further bytes read and dropped for at most ``LINGER_SECONDS``;
  * no timer per request or connection (the fast path's rule): each guard keeps one
    deadline, and one sweep per listener, every ``sweep_interval`` while it has
    connections, expires those past theirs (so a limit fires up to one interval late).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_BUFFERED_BYTES = 64 * 2**20
SMALL_REQUEST_BYTES = 64 * 2**10
HEAD_KEEP_BYTES = 64 * 2**10  # the guard keeps at most this much of a head to frame it
LINGER_SECONDS = 2.0  # after a refusal, how long bytes still arriving are read and dropped

# Where the current request is.  WAIT: read in full, answer pending.  OPEN: a body of
# unknown length, read until the answer starts.  UPGRADED: no more requests (after a 101).
IDLE, HEAD, BODY, OPEN, WAIT, UPGRADED = range(6)
# Which clock runs.
_NO_CLOCK, _HEADER_CLOCK, _BODY_CLOCK, _IDLE_CLOCK = range(4)
_NEVER = float("inf")
_now = time.monotonic  # deadlines: cheaper than loop.time() on asyncio's loop


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES


@dataclass(slots=True)
class GuardStats:
    """Counters of one listener (a live object; read it, do not keep a copy)."""

    header_timeouts: int = 0
    body_timeouts: int = 0
    idle_closed: int = 0
    refused_connections: int = 0  # over max_connections
    refused_buffered: int = 0  # over max_buffered_bytes


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Guards:
    """The connections of one listener and what they hold, shared by their guards."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.connections: set[GuardProtocol] = set()
        self.buffered = 0  # unanswered request bytes, all connections
        self.stats = GuardStats()
        shortest = min(limits.header_timeout, limits.body_timeout, limits.idle_timeout)
        self.sweep_interval = min(0.5, max(0.01, shortest / 10))
        self._sweep: asyncio.TimerHandle | None = None

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], GuardProtocol]:
        return lambda: GuardProtocol(self, inner)

    def add(self, guard: GuardProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.connections.add(guard)
        if self._sweep is None:
            self._sweep = loop.call_later(self.sweep_interval, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = _now()
        for guard in [g for g in self.connections if g.deadline <= now]:
            guard.expired()
        self._sweep = loop.call_later(self.sweep_interval, self._expire, loop) if self.connections else None

    def stop(self) -> None:
        """No more expiries (the listener stops; aiohttp's shutdown closes its connections)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def close_all(self) -> None:
        for guard in list(self.connections):
            guard.close()
        self.stop()


class GuardProtocol(asyncio.Protocol):
    """One client connection (see the module rules)."""

    __slots__ = (
        "_answered",
        "_clock",
        "_closing",
        "_guards",
        "_head",
        "_inner",
        "_inner_factory",
        "_overflow",
        "_proxy",
        "_remaining",
        "_state",
        "_transport",
        "_unanswered",
        "deadline",
    )

    def __init__(self, guards: Guards, inner_factory: Callable[[], asyncio.Protocol]) -> None:
        self._guards = guards
        self._inner_factory = inner_factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._proxy: GuardedTransport | None = None
        self.deadline = _NEVER  # time.monotonic() at which the running clock expires
        self._clock = _NO_CLOCK  # which limit ``deadline`` is
        self._state = IDLE
        self._head = bytearray()
        self._overflow = False  # the current head outgrew HEAD_KEEP_BYTES
        self._remaining = 0  # body bytes still to come (state BODY)
        self._unanswered = 0  # bytes received since the last answer (counted in guards.buffered)
        self._answered = False  # an answer was written since the current request began
        self._closing = False

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        guards = self._guards
        if len(guards.connections) >= guards.limits.max_connections:
            guards.stats.refused_connections += 1
            self._refuse(
                503,
                "Service Unavailable",
                "too-many-connections",
                f"this node serves at most {guards.limits.max_connections} client connections at once",
            )
            return
        guards.add(self, asyncio.get_running_loop())
        self._proxy = GuardedTransport(transport, self)  # type: ignore[arg-type]
        self._inner = self._inner_factory()
        self._inner.connection_made(self._proxy)
        self._arm(_IDLE_CLOCK, guards.limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._inner is None:
            return
        if self._state == UPGRADED:  # another protocol's bytes now (a websocket): not requests
            self._inner.data_received(data)
            return
        guards = self._guards
        self._unanswered += len(data)
        guards.buffered += len(data)
        if guards.buffered > guards.limits.max_buffered_bytes and self._unanswered > SMALL_REQUEST_BYTES:
            guards.stats.refused_buffered += 1
            self._refuse(
                503,
                "Service Unavailable",
                "too-many-buffered-bytes",
                f"request bytes waiting on this node exceed max_buffered_bytes "
                f"({guards.limits.max_buffered_bytes}); retry later",
            )
            return
        self._frame(data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None or self._closing:
            return False  # close (ends a lingering close early)
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel()
        self._release()
        self._guards.connections.discard(self)
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ framing
    def _frame(self, data: bytes) -> None:
        """Follow request boundaries through ``data`` and set the clock each one calls for.
        (Hot: every request of the fast path passes here, so no regex, no timer.)"""
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state == BODY:
                take = min(self._remaining, size - pos)
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    self._state = WAIT
                    self._clock, self.deadline = _NO_CLOCK, _NEVER
            elif state == HEAD:
                head = self._head
                if len(head) > HEAD_KEEP_BYTES:
                    # Too long to keep (the parser refuses it anyway): only a tail, to find the end.
                    self._overflow = True
                    del head[:-3]
                start = max(0, len(head) - 3)
                kept = len(head)
                head += data[pos:]
                end = head.find(b"\r\n\r\n", start)
                if end < 0:
                    return
                pos += end + 4 - kept
                self._end_of_head(bytes(head[:end]), overflow=self._overflow)
                self._overflow = False
                head.clear()
            elif state == OPEN:  # everything is body until the answer starts
                return
            else:  # IDLE or WAIT: a new request starts at pos
                if state == IDLE and data.startswith(b"\r\n", pos):
                    pos += 2  # stray line ends between requests (RFC 9112 §2.2)
                    continue
                self._answered = False
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:  # the head goes on in later chunks: its clock starts now
                    self._state = HEAD
                    self._arm(_HEADER_CLOCK, self._guards.limits.header_timeout)
                    continue
                self._end_of_head(data[pos:end], overflow=False)
                pos = end + 4

    def _end_of_head(self, head: bytes, *, overflow: bool) -> None:
        """Where the body ends: ``Content-Length`` (0 without one), or at the answer
        (chunked, or a head too long to have kept)."""
        lower = head.lower()
        if overflow or b"\r\ntransfer-encoding:" in lower:
            self._state = OPEN
            self._arm(_BODY_CLOCK, self._guards.limits.body_timeout)
            return
        length = 0
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            at += 17
            stop = lower.find(b"\r\n", at)
            value = lower[at:stop] if stop >= 0 else lower[at:]
            value = value.strip(b" \t")
            if value.isdigit() and len(value) <= 19:
                length = int(value)
            # Otherwise the parser answers 400 at once: nothing to wait for.
        if length > 0:
            self._state = BODY
            self._remaining = length
            self._arm(_BODY_CLOCK, self._guards.limits.body_timeout)
        else:
            self._state = WAIT
            self._clock, self.deadline = _NO_CLOCK, _NEVER

    def on_write(self, data: Any = b"") -> None:
        """An answer (or part of one) is being written: ``data``, or its first piece."""
        state = self._state
        if state == UPGRADED:
            return
        if not self._answered and data[:12] == b"HTTP/1.1 101":
            self._upgraded()
            return
        self._answered = True
        if self._unanswered:
            self._guards.buffered -= self._unanswered
            self._unanswered = 0
        if state != HEAD and state != BODY:  # WAIT, OPEN, IDLE: the idle clock (re)starts
            self._state = IDLE
            self._clock = _IDLE_CLOCK
            self.deadline = _now() + self._guards.limits.idle_timeout

    def _upgraded(self) -> None:
        """101 Switching Protocols: the connection speaks another protocol from now on
        (a websocket), which keeps its own liveness (pings); no clock, no framing."""
        self._answered = True
        self._release()
        self._state = UPGRADED
        self._clock, self.deadline = _NO_CLOCK, _NEVER

    def _detach(self) -> None:
        """The parser is done with this connection: it is told the connection is lost, so
        it drops what it holds (and a pending request is withdrawn) without waiting for
        the lingering close; its later writes are dropped."""
        self._release()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(None)

    def _release(self) -> None:
        self._guards.buffered -= self._unanswered
        self._unanswered = 0

    # ------------------------------------------------------------------ clocks
    def _arm(self, clock: int, delay: float) -> None:
        self._clock = clock
        self.deadline = _now() + delay

    def _cancel(self) -> None:
        self._clock = _NO_CLOCK
        self.deadline = _NEVER

    def expired(self) -> None:
        """The sweep found this connection past its deadline."""
        clock, limits, stats = self._clock, self._guards.limits, self._guards.stats
        self._cancel()
        if self._closing:
            return
        if clock == _HEADER_CLOCK:
            stats.header_timeouts += 1
            self._timed_out(f"the request head did not arrive within {limits.header_timeout:g}s")
        elif clock == _BODY_CLOCK:
            stats.body_timeouts += 1
            self._timed_out(f"the request body did not arrive within {limits.body_timeout:g}s")
        elif clock == _IDLE_CLOCK:
            if self._transport is not None and self._transport.get_write_buffer_size() > 0:
                self._arm(_IDLE_CLOCK, limits.idle_timeout)  # still sending an answer
                return
            stats.idle_closed += 1
            self._closing = True
            self.close()

    def _timed_out(self, message: str) -> None:
        if self._answered:  # the parser answered already (e.g. 413): just close
            self._closing = True
            self._detach()
            self.close()
            return
        self._refuse(408, "Request Timeout", "request-timeout", message)

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        """Answer and close.  A lingering close where TCP allows it: closing a socket with
        unread bytes sends a reset, which can destroy the answer before the client reads
        it; so stop sending (FIN), discard what still arrives, close after LINGER_SECONDS
        or at the client's end of stream."""
        self._closing = True
        self._cancel()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(error_response(status, reason, code, message))
        self._detach()
        if transport.can_write_eof():
            transport.write_eof()
            # A timer, unlike the clocks: refusals are rare, and a refused connection is
            # not in the sweep's set.
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()  # TLS: after the answer is flushed


class GuardedTransport(asyncio.Transport):
    """What the inner protocol sees as its transport: the real one, plus the guard
    hearing about every write, and ``set_protocol`` replacing only the inner protocol."""

    __slots__ = ("_guard", "_real")

    def __init__(self, real: asyncio.Transport, guard: GuardProtocol) -> None:
        super().__init__()
        self._real = real
        self._guard = guard

    def write(self, data: Any) -> None:
        if self._guard._closing:
            return  # refused or timed out: the guard wrote the last answer
        self._guard.on_write(data)
        self._real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        if self._guard._closing:
            return
        list_of_data = list(list_of_data)
        self._guard.on_write(list_of_data[0] if list_of_data else b"")
        self._real.writelines(list_of_data)

    def write_eof(self) -> None:
        self._real.write_eof()

    def can_write_eof(self) -> bool:
        return self._real.can_write_eof()

    def close(self) -> None:
        self._real.close()

    def abort(self) -> None:
        self._real.abort()

    def is_closing(self) -> bool:
        return self._guard._closing or self._real.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()

    def is_reading(self) -> bool:
        return self._real.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._real.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._real.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._guard._inner = protocol  # type: ignore[assignment]  # the fast path's hand-off

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._guard._inner  # type: ignore[return-value]


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are guarded (plain or TLS); subclasses choose the
    protocol that parses HTTP (``inner_protocol``), by default aiohttp's."""

    __slots__ = ("guards",)

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guards = Guards(limits or ConnectionLimits())

    def inner_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return server()

    async def start(self) -> None:
        self._runner._reg_site(self)  # BaseSite.start
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guards.factory(self.inner_protocol),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port

    async def stop(self) -> None:
        await super().stop()
        # Not close_all: aiohttp's graceful shutdown (after this) still answers its requests.
        self.guards.stop()
