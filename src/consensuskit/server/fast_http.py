"""A lean HTTP/1.1 front for a service's hot requests, in front of the aiohttp API.

Profiles of a loaded leader showed aiohttp's per-request machinery (a task per request,
the router, middleware, stream writers) costing more CPU than Raft, the WAL and the
peer transport together.  This protocol serves a service's common requests itself,
straight from the bytes, and hands every other connection to aiohttp unchanged.  What
it serves is the service's ``FastRoutes`` (its HTTP routes' ``fast_site`` builds a
``FastSite`` with them); ``KVFastRoutes`` below are the kv service's.

Rules this module owns:
  * the front serves only requests it understands completely: HTTP/1.1, a method and
    target its routes accept (``FastRoutes.route``), a body only with Content-Length
    (within the limit the route gives), an ``X-Request-Id`` that passes ``edge.py``
    when the route reads one, and no header that asks for anything special
    (Transfer-Encoding, Expect, Upgrade, Content-Encoding, Authorization, X-Leader-Only,
    Connection other than keep-alive).  A route may still decline once it sees the body
    (``FastRoutes.serve`` returns False): nothing of it is consumed yet;
  * the first request it does not serve makes it hand the connection, with every byte
    not yet answered, to aiohttp's own protocol, which then owns the connection for
    good: whatever aiohttp would answer (400, 404, 405, 413, chunked bodies, admin
    routes) it still answers.  So a route's answers must be those of the service's
    aiohttp handlers (status and JSON body); a test of each service holds them equal;
  * requests on one connection are served one at a time, in order (HTTP/1.1 keeps
    answers in request order); bytes that arrive meanwhile wait in a bounded buffer
    (reading pauses beyond it);
  * a request becomes a ``runtime.wait_for_answer`` callback (``FastConnection.submit``):
    no task, coroutine, future or timer per request.  A route that must await (a
    follower forwarding to its leader) may hand the connection a task (``wait``); a
    connection that closes withdraws (or cancels) what it waits for;
  * every answer is signed as the aiohttp middleware signs it when the node signs its
    replies (reply_signing.py), against the request's ``X-Request-Id``;
  * a route that raises (a bug) gets the request the aiohttp API's answer to a handler
    that raises, 500 ``internal`` (logged with its traceback), and the connection is
    closed after it: how far the route got with the request is unknown.  Before, the
    exception reached asyncio and the connection broke unanswered;
  * with client auth enabled it serves nothing: aiohttp checks every request
    (``auth_api.py``), so the fast path cannot bypass a permission; nor does it serve a
    request with credentials (``Authorization``), whose principal the write must carry.
    A read admitted while auth was off is judged again when answered (the node may have
    applied an ``enable`` up to its read index meanwhile); a write is judged where it is
    applied;
  * kv (``KVFastRoutes``): ``PUT|GET|DELETE /v1/kv/KEY`` with a plain key (letters,
    digits, ``_ . - ~ :``: no escape, so its decoding under the rules of ``edge.py`` is
    the key itself), no query except a valid ``consistency`` on GET, a body only on PUT
    (within ``max_value_bytes``) and no Accept of raw bytes.  Its
    answers are byte-for-byte the JSON bodies and status codes of ``http_api.NodeApi``
    (it uses the same helpers); an anonymous write refused ``stale-session`` goes again
    under a new number, as in ``http_api.py``;
  * timeouts, connection and buffer caps are not this module's: every connection sits
    under a ``conn_guard.GuardProtocol``, which this protocol sees only as its transport.

Why the head is split by hand rather than parsed by httptools (llhttp): measured on a wrk
put (2026-12-03), ``_parse`` takes 3.6 us; httptools takes 2.5 us with one parser per
connection fed whole requests (which the one-request-at-a-time hand-off would have to keep
in step with this buffer) and 3.0 us with a fresh parser per head.  About 1 us of a
leader's 65-90 us of CPU per put: not worth a second parser to keep in agreement with
aiohttp's.  Anything this split does not understand goes to aiohttp's parser anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from consensuskit.core.client import CACHE, CONSISTENCY_LEVELS, ClientRequest, ClientResponse, Op
from consensuskit.core.keys import REPLY_SIGNATURE_HEADER
from consensuskit.server import edge
from consensuskit.server.conn_guard import GuardedSite
from consensuskit.server.http_api import STALE_RETRIES, ApiError, encode_value
from consensuskit.server.runtime import Waiter

if TYPE_CHECKING:
    from consensuskit.server.http_api import NodeApi

log = logging.getLogger("consensuskit.server.http")

KV_PREFIX = b"/v1/kv/"
MAX_HEAD_BYTES = 8190  # aiohttp's own line limit; a longer head goes to aiohttp
_PLAIN_KEY = re.compile(rb"[A-Za-z0-9_.~:-]+")
_METHODS = {b"PUT": "put", b"GET": "get", b"DELETE": "delete"}
# A cache read's answer carries its lease: the aiohttp route (kv_routes.py) writes it.
_CONSISTENCY = {f"consistency={c}".encode(): c for c in CONSISTENCY_LEVELS if c != CACHE}
# Headers the front leaves to aiohttp.  Authorization too: with auth off on this node
# the log may have it on already, and the credentials must travel with the write
# (auth_api.py); a client that sends none stays on the fast path.
# X-Leader-Only asks NodeApi.submit for a check the front does not make.
_SPECIAL = frozenset(
    {b"transfer-encoding", b"expect", b"upgrade", b"content-encoding", b"x-leader-only", b"authorization"}
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    421: "Misdirected Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: "


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _response(status: int, body: bytes, extra_headers: dict[str, str] | None = None) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
    )
    if extra_headers:
        head += "".join(f"{k}: {v}\r\n" for k, v in extra_headers.items())
    return (head + "\r\n").encode("latin-1") + body


def json_answer(body: bytes, status: int = 200) -> bytes:
    """A whole answer: ``body`` (JSON bytes) with ``status``."""
    if status == 200:
        return b"%s%d\r\n\r\n%s" % (_OK_HEAD, len(body), body)
    return _response(status, body)


def _signed(data: bytes, signer: Any, request_id: str) -> bytes:
    """``data`` (a whole answer) with the node's signature header (reply_signing.py)."""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    header = f"{REPLY_SIGNATURE_HEADER}: {signer.header(request_id, status, body)}\r\n".encode("latin-1")
    return head + b"\r\n" + header + b"\r\n" + body


def error_bytes(exc: ApiError) -> bytes:
    body = _dumps({"error": exc.code, "message": exc.message, **exc.extra})
    return _response(exc.status, body, exc.headers)


class Head:
    """A request's line and the headers the front reads (the rest are ignored)."""

    __slots__ = ("accept", "content_length", "method", "request_id", "target")

    def __init__(self, method: bytes, target: bytes) -> None:
        self.method = method
        self.target = target
        self.content_length = -1  # -1: none given
        self.request_id: str | None = None  # the X-Request-Id header as sent
        self.accept = b""


class FastRoutes(Protocol):
    """What a service serves on the lean front (see the module rules)."""

    def route(self, head: Head) -> tuple[Any, int] | None:
        """``(request, max_body_bytes)`` if this head is served (``request`` is the
        route's own, handed back to ``serve``), else None: aiohttp serves it."""
        ...

    def serve(self, connection: FastConnection, request: Any, body: bytes) -> bool:
        """Take the request (True: it will call ``connection.answer`` once) or decline
        it (False: aiohttp serves it, and the connection from then on)."""
        ...


class FastConnection(asyncio.Protocol):
    """One client connection (see the module rules)."""

    __slots__ = (
        "_buffer",
        "_busy",
        "_closed",
        "_connections",
        "_eof",
        "_fallback",
        "_paused",
        "_pending",
        "_request_id",
        "_routes",
        "_transport",
        "api",
    )

    def __init__(
        self,
        api: NodeApi,
        routes: FastRoutes,
        fallback: Callable[[], asyncio.Protocol],
        connections: set[FastConnection],
    ) -> None:
        self.api = api
        self._routes = routes
        self._fallback = fallback
        self._connections = connections
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a request is being served
        self._pending: Waiter | asyncio.Future[Any] | None = None  # what it waits for
        self._request_id: str | None = None  # of the request being served
        self._paused = False
        self._eof = False
        self._closed = False

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.discard(self)
        pending, self._pending = self._pending, None
        if isinstance(pending, Waiter):
            self.api.runtime.withdraw(pending)  # the node may still apply the write
        elif pending is not None:
            pending.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve_buffered()
        elif len(self._buffer) > self.api.config.max_value_bytes + 2 * MAX_HEAD_BYTES and not self._paused:
            self._paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._busy:
            return True  # keep the transport open until the pending answer is written
        if self._buffer:  # a request cut short: aiohttp says what is wrong with it
            return self._hand_off()
        return False  # close

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()

    # ------------------------------------------------------------------ for routes
    @property
    def closed(self) -> bool:
        return self._closed

    def submit(
        self,
        request: ClientRequest,
        timeout: float,
        callback: Callable[[ClientResponse | None, BaseException | None], None],
    ) -> None:
        """Hand ``request`` to the node; ``callback(response, error)`` runs once with
        the answer, unless the connection closed first.  Raises what
        ``runtime.wait_for_answer`` raises (NodeHalted)."""
        self._pending = self.api.runtime.wait_for_answer(request, timeout, self._answered, callback)

    def _answered(self, waiter: Waiter, response: ClientResponse | None, error: BaseException | None) -> None:
        if self._pending is not waiter:
            return
        self._pending = None
        if not self._closed:
            try:
                waiter.context(response, error)
            except Exception:
                self._internal_error()

    def wait(self, awaitable: Awaitable[Any], callback: Callable[[asyncio.Future[Any]], None]) -> None:
        """Run ``awaitable`` as a task; ``callback(task)`` when it ends, unless the
        connection closed first (then the task is cancelled)."""
        task = asyncio.ensure_future(awaitable)
        self._pending = task

        def done(finished: asyncio.Future[Any]) -> None:
            if self._pending is finished:
                self._pending = None
                if not self._closed:
                    try:
                        callback(finished)
                    except Exception:
                        self._internal_error()

        task.add_done_callback(done)

    def answer(self, data: bytes) -> None:
        """The whole answer to the request being served (then the next one is)."""
        self._busy = False
        self._pending = None
        signer = self.api.reply_signer
        if signer is not None:
            data = _signed(data, signer, self._request_id or "")
        self._write(data)

    # ------------------------------------------------------------------ serving
    def _serve_buffered(self) -> None:
        while not self._busy and not self._closed:
            buffer = self._buffer
            if not buffer:
                if self._eof:
                    self._transport.close()  # type: ignore[union-attr]
                return
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES or self._eof:
                    self._hand_off()
                return
            head = self._parse(bytes(buffer[:end]))
            try:
                routed = self._routes.route(head) if head is not None else None
            except Exception:
                self._internal_error()
                return
            if routed is None:
                self._hand_off()
                return
            request, max_body = routed
            body_length = max(head.content_length, 0)  # type: ignore[union-attr]
            if body_length > max_body:
                self._hand_off()
                return
            total = end + 4 + body_length
            if len(buffer) < total:
                if self._eof:
                    self._hand_off()
                return  # the body is still arriving
            body = bytes(buffer[end + 4 : total]) if body_length else b""
            self._busy = True
            self._request_id = head.request_id  # type: ignore[union-attr]
            try:
                taken = self._routes.serve(self, request, body)
            except Exception:
                self._internal_error()
                return
            if not taken:
                self._busy = False
                self._hand_off()
                return
            del buffer[:total]

    def _internal_error(self) -> None:
        """A route raised (module rules): answer 500 ``internal`` and close."""
        log.exception("internal error serving a request on the lean HTTP front")
        if self._closed or self._transport is None:
            return
        pending, self._pending = self._pending, None
        if isinstance(pending, Waiter):
            self.api.runtime.withdraw(pending)
        elif pending is not None:
            pending.cancel()
        self._buffer.clear()
        body = _dumps({"error": "internal", "message": "internal server error (see the node's log)"})
        self.answer(_response(500, body, {"Connection": "close"}))
        self._transport.close()  # after the answer is written; nothing more is read

    def _parse(self, head: bytes) -> Head | None:
        """The request's line and headers if the front may serve it (else None)."""
        if self.api.auth.enabled:
            return None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None
        parsed = Head(parts[0], parts[1])
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                return None
            name = name.lower()
            value = value.strip()
            if name == b"content-length":
                if parsed.content_length >= 0 or not value.isdigit() or len(value) > edge.MAX_INT_DIGITS:
                    return None  # aiohttp's parser answers a malformed or huge length
                parsed.content_length = int(value)
            elif name == b"x-request-id":
                if parsed.request_id is not None:
                    return None
                parsed.request_id = value.decode("latin-1")
            elif name == b"connection":
                if value.lower() != b"keep-alive":
                    return None
            elif name == b"accept":
                parsed.accept = value
            elif name in _SPECIAL:
                return None
        return parsed

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        transport.write(data)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buffer or self._eof:
            # Not from inside a done callback chain that may be deep: next loop turn.
            asyncio.get_running_loop().call_soon(self._serve_buffered)

    def _hand_off(self) -> bool | None:
        """aiohttp takes this connection (and the bytes not answered yet) for good."""
        transport = self._transport
        assert transport is not None and not self._busy
        self._connections.discard(self)
        self._closed = True  # nothing more from this object
        protocol = self._fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            protocol.data_received(data)
        return protocol.eof_received() if self._eof else None


# ---------------------------------------------------------------------- kv
class _KVRequest:
    """One kv request the front will serve."""

    __slots__ = (
        "attempts",
        "client_id",
        "connection",
        "consistency",
        "key",
        "kind",
        "request",
        "seq",
        "started",
        "value",
    )

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        self.value: str | bytes | None = None
        self.consistency: str | None = None
        self.client_id: str | None = None
        self.seq = 0
        self.request: ClientRequest | None = None  # as handed to the node
        self.attempts = 1
        self.started = 0.0
        self.connection: FastConnection | None = None


class KVFastRoutes:
    """The kv service's hot requests (see the module rules)."""

    __slots__ = ("api",)

    def __init__(self, api: NodeApi) -> None:
        self.api = api

    def route(self, head: Head) -> tuple[_KVRequest, int] | None:
        kind = _METHODS.get(head.method)
        target = head.target
        if kind is None or not target.startswith(KV_PREFIX):
            return None
        if b"application/octet-stream" in head.accept:
            return None
        path, _, query = target.partition(b"?")
        raw_key = path[len(KV_PREFIX) :]
        if _PLAIN_KEY.fullmatch(raw_key) is None or raw_key in (b".", b".."):
            return None
        api = self.api
        if len(raw_key) > api.config.max_key_bytes:
            return None
        parsed = _KVRequest(kind, raw_key.decode("ascii"))
        if query:
            if kind != "get" or query not in _CONSISTENCY:
                return None
            parsed.consistency = _CONSISTENCY[query]
        length = head.content_length
        if kind == "put":
            if length < 0 or length > api.config.max_value_bytes:
                return None
        elif length > 0:
            return None  # aiohttp decides what a body on GET or DELETE means
        if kind != "get" and head.request_id is not None:
            # An explicit id is checked here (a bad one: aiohttp answers the 400); an
            # anonymous write gets its number only when it is handed to the node.
            try:
                parsed.client_id, parsed.seq = api.request_id(head.request_id)
            except edge.EdgeError:  # the same rules (edge.py): aiohttp gives the same answer
                return None
        return parsed, max(length, 0)

    def serve(self, connection: FastConnection, parsed: _KVRequest, body: bytes) -> bool:
        if body:
            try:
                parsed.value = body.decode("utf-8")
            except UnicodeDecodeError:
                parsed.value = body
        elif parsed.kind == "put":
            parsed.value = ""
        api = self.api
        if parsed.kind == "get":
            op = Op(kind="get", key=parsed.key)
            client_id, seq = api.read_id()
        else:
            if parsed.kind == "put":
                op = Op(kind="put", key=parsed.key, value=parsed.value)
            else:
                op = Op(kind="delete", key=parsed.key)
            if parsed.client_id is None:
                parsed.client_id, parsed.seq = api.request_id(None)
            client_id, seq = parsed.client_id, parsed.seq
        request = ClientRequest(client_id=client_id, seq=seq, op=op, consistency=parsed.consistency)
        try:
            edge.admit(request)  # encoded once before the node sees it (edge.py)
        except edge.EdgeError as exc:
            connection.answer(error_bytes(ApiError(exc.status, exc.code, exc.message)))
            return True
        parsed.started = time.monotonic()
        parsed.request = request
        parsed.connection = connection
        self._submit(parsed, api.config.request_timeout)
        return True

    def _submit(self, parsed: _KVRequest, timeout: float) -> None:
        connection = parsed.connection
        assert connection is not None and parsed.request is not None
        try:
            connection.submit(
                parsed.request, timeout, lambda response, error: self._answered(parsed, response, error)
            )
        except Exception as exc:  # NodeHalted
            connection.answer(error_bytes(self.api.failure(exc, write=parsed.kind != "get")))

    def _answered(
        self, parsed: _KVRequest, response: ClientResponse | None, error: BaseException | None
    ) -> None:
        api = self.api
        connection = parsed.connection
        assert connection is not None
        if response is not None and parsed.attempts < STALE_RETRIES and api.renumber(response):
            # An anonymous write another one overtook: again, under a new number (http_api.py).
            remaining = parsed.started + api.config.request_timeout - time.monotonic()
            if remaining > 0:
                assert parsed.request is not None
                parsed.attempts += 1
                parsed.request = parsed.request.renumbered(api.request_id(None)[1])
                self._submit(parsed, remaining)
                return
        api.observe(parsed.kind, time.monotonic() - parsed.started)
        try:
            if error is not None:
                raise api.failure(error, write=parsed.kind != "get") from None
            if parsed.kind == "get":
                # Admitted while this node had auth off; it may have applied an enable
                # since, up to the read's index: judged now, as the aiohttp route would.
                api.auth.check_anonymous_read()
            data = self._body(response, parsed)  # type: ignore[arg-type]
        except ApiError as exc:
            data = error_bytes(exc)
        connection.answer(data)

    def _body(self, response: ClientResponse, parsed: _KVRequest) -> bytes:
        """The answer's bytes.  Plain keys need no JSON escaping, so the common bodies are
        formatted directly (the same bytes ``json.dumps`` gives, fields in the same order)."""
        if not response.ok:
            raise self.api.rejection(response)
        result = response.result
        key = parsed.key
        if parsed.kind == "put":
            body = b'{"key":"%s","version":%d,"index":%d}' % (key.encode(), result["version"], response.index)
        elif parsed.kind == "get":
            version = result.get("version")
            if not version:
                raise ApiError(404, "not-found", f"key {key!r} not found", key=key, index=response.index)
            value = result["value"]
            if type(value) is str:
                body = b'{"key":"%s","value":%s,"encoding":"utf-8","version":%d,"index":%d}' % (
                    key.encode(),
                    json.dumps(value).encode(),
                    version,
                    response.index,
                )
            else:
                body = _dumps(
                    {"key": key, **encode_value(value), "version": version, "index": response.index}
                )
        else:
            deleted = b"true" if result.get("deleted") else b"false"
            body = b'{"key":"%s","deleted":%s,"index":%d}' % (key.encode(), deleted, response.index)
        return json_answer(body)


class FastSite(GuardedSite):
    """A guarded site (``conn_guard.py``) whose connections start on the lean front with
    ``routes`` (the kv service's unless given; plain TCP only); the guard stays when a
    connection is handed to aiohttp."""

    __slots__ = ("_api", "_fast_connections", "_routes")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        api: NodeApi,
        *,
        routes: FastRoutes | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._api = api
        self._routes: FastRoutes = routes if routes is not None else KVFastRoutes(api)
        self._fast_connections: set[FastConnection] = set()

    def inner_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return FastConnection(self._api, self._routes, server, self._fast_connections)

    async def stop(self) -> None:
        for connection in list(self._fast_connections):
            connection.close()
        await super().stop()
