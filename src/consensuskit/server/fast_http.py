"""A lean HTTP/1.1 front for the hot key-value requests, in front of the aiohttp API.

Profiles of a loaded leader showed aiohttp's per-request machinery (a task per request,
the router, middleware, stream writers) costing more CPU than Raft, the WAL and the
peer transport together.  This protocol serves the common requests itself, straight
from the bytes, and hands every other connection to aiohttp unchanged.

Rules this module owns:
  * the fast path serves only requests it understands completely: HTTP/1.1,
    ``PUT|GET|DELETE /v1/kv/KEY`` with a plain key (letters, digits, ``_ . - ~ :``: no
    escape, so its decoding under the rules of ``edge.py`` is the key itself), no
    query except a valid ``consistency`` on GET, a body only on PUT (Content-Length,
    within ``max_value_bytes``), an ``X-Request-Id`` that passes ``edge.py`` if any, and no header
    that asks for anything special (Transfer-Encoding, Expect, Upgrade, Connection other
    than keep-alive, Accept of raw bytes).  Its answers are byte-for-byte the JSON
    bodies and status codes of ``http_api.NodeApi`` (it uses the same helpers);
  * the first request it does not serve makes it hand the connection, with every byte
    not yet answered, to aiohttp's own protocol, which then owns the connection for
    good: whatever aiohttp would answer (400, 404, 405, 413, chunked bodies, admin
    routes) it still answers;
  * requests on one connection are served one at a time, in order (HTTP/1.1 keeps
    answers in request order); bytes that arrive meanwhile wait in a bounded buffer
    (reading pauses beyond it);
  * a request becomes a ``runtime.wait_for_answer`` callback: no task, coroutine,
    future or timer per request;
  * with client auth enabled it serves nothing: aiohttp checks every request
    (``auth_api.py``), so the fast path cannot bypass a permission; nor does it serve a
    request with credentials (``Authorization``), whose principal the write must carry;
  * an anonymous write refused ``stale-session`` goes again under a new number, as in
    ``http_api.py``;
  * timeouts, connection and buffer caps are not this module's: every connection sits
    under a ``conn_guard.GuardProtocol``, which this protocol sees only as its transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from consensuskit.core.client import CACHE, CONSISTENCY_LEVELS, ClientRequest, ClientResponse, Op
from consensuskit.core.keys import REPLY_SIGNATURE_HEADER
from consensuskit.server import edge
from consensuskit.server.conn_guard import GuardedSite
from consensuskit.server.http_api import STALE_RETRIES, ApiError, encode_value
from consensuskit.server.runtime import Waiter

if TYPE_CHECKING:
    from consensuskit.server.http_api import NodeApi

KV_PREFIX = b"/v1/kv/"
MAX_HEAD_BYTES = 8190  # aiohttp's own line limit; a longer head goes to aiohttp
_PLAIN_KEY = re.compile(rb"[A-Za-z0-9_.~:-]+")
_METHODS = {b"PUT": "put", b"GET": "get", b"DELETE": "delete"}
# A cache read's answer carries its lease: the aiohttp route (kv_routes.py) writes it.
_CONSISTENCY = {f"consistency={c}".encode(): c for c in CONSISTENCY_LEVELS if c != CACHE}
# Headers that ask for something the fast path does not do: aiohttp serves those.
# Headers the fast path leaves to aiohttp.  Authorization too: with auth off on this node
# the log may have it on already, and the credentials must travel with the write
# (auth_api.py); a client that sends none stays on the fast path.
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


def _signed(data: bytes, signer: Any, request_id: str) -> bytes:
    """``data`` (a whole answer) with the node's signature header (reply_signing.py)."""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    header = f"{REPLY_SIGNATURE_HEADER}: {signer.header(request_id, status, body)}\r\n".encode("latin-1")
    return head + b"\r\n" + header + b"\r\n" + body


def error_bytes(exc: ApiError) -> bytes:
    body = _dumps({"error": exc.code, "message": exc.message, **exc.extra})
    return _response(exc.status, body, exc.headers)


class _Parsed:
    """One request the fast path will serve."""

    __slots__ = (
        "attempts",
        "client_id",
        "consistency",
        "key",
        "kind",
        "request",
        "request_id",
        "seq",
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
        self.request_id: str | None = None  # the X-Request-Id header as sent


class FastKVProtocol(asyncio.Protocol):
    """One client connection (see the module rules)."""

    __slots__ = (
        "_api",
        "_buffer",
        "_closed",
        "_connections",
        "_eof",
        "_fallback",
        "_paused",
        "_pending",
        "_started",
        "_transport",
    )

    def __init__(
        self, api: NodeApi, fallback: Callable[[], asyncio.Protocol], connections: set[FastKVProtocol]
    ) -> None:
        self._api = api
        self._fallback = fallback
        self._connections = connections
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._pending: Waiter | None = None
        self._started = 0.0
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
        if self._pending is not None:
            self._api.runtime.withdraw(self._pending)  # the node may still apply the write
            self._pending = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._pending is None:
            self._serve_buffered()
        elif len(self._buffer) > self._api.config.max_value_bytes + 2 * MAX_HEAD_BYTES and not self._paused:
            self._paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._pending is not None:
            return True  # keep the transport open until the pending answer is written
        if self._buffer:  # a request cut short: aiohttp says what is wrong with it
            return self._hand_off()
        return False  # close

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()

    # ------------------------------------------------------------------ serving
    def _serve_buffered(self) -> None:
        while self._pending is None and not self._closed:
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
            parsed, body_length = self._parse(bytes(buffer[:end]))
            if parsed is None:
                self._hand_off()
                return
            total = end + 4 + body_length
            if len(buffer) < total:
                if self._eof:
                    self._hand_off()
                return  # the body is still arriving
            if body_length:
                raw = bytes(buffer[end + 4 : total])
                try:
                    parsed.value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    parsed.value = raw
            elif parsed.kind == "put":
                parsed.value = ""
            del buffer[:total]
            self._start(parsed)

    def _parse(self, head: bytes) -> tuple[_Parsed | None, int]:
        """The request if the fast path serves it (else None), and its body length."""
        if self._api.auth.enabled:
            return None, 0
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None, 0
        kind = _METHODS.get(parts[0])
        target = parts[1]
        if kind is None or not target.startswith(KV_PREFIX):
            return None, 0
        path, _, query = target.partition(b"?")
        raw_key = path[len(KV_PREFIX) :]
        if _PLAIN_KEY.fullmatch(raw_key) is None or raw_key in (b".", b".."):
            return None, 0
        api = self._api
        if len(raw_key) > api.config.max_key_bytes:
            return None, 0
        parsed = _Parsed(kind, raw_key.decode("ascii"))
        if query:
            if kind != "get" or query not in _CONSISTENCY:
                return None, 0
            parsed.consistency = _CONSISTENCY[query]
        length = -1
        request_id: str | None = None
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                return None, 0
            name = name.lower()
            value = value.strip()
            if name == b"content-length":
                if length >= 0 or not value.isdigit() or len(value) > edge.MAX_INT_DIGITS:
                    return None, 0  # aiohttp's parser answers a malformed or huge length
                length = int(value)
            elif name == b"x-request-id":
                if request_id is not None:
                    return None, 0
                request_id = value.decode("latin-1")
            elif name == b"connection":
                if value.lower() != b"keep-alive":
                    return None, 0
            elif name == b"accept":
                if b"application/octet-stream" in value:
                    return None, 0
            elif name in _SPECIAL:
                return None, 0
        parsed.request_id = request_id
        if kind == "put":
            if length < 0 or length > api.config.max_value_bytes:
                return None, 0
        elif length > 0:
            return None, 0  # aiohttp decides what a body on GET or DELETE means
        if kind != "get" and request_id is not None:
            # An explicit id is checked here (a bad one: aiohttp answers the 400); an
            # anonymous write gets its number only when it is handed to the node.
            try:
                parsed.client_id, parsed.seq = api.request_id(request_id)
            except edge.EdgeError:  # the same rules (edge.py): aiohttp gives the same answer
                return None, 0
        return parsed, max(length, 0)

    def _start(self, parsed: _Parsed) -> None:
        api = self._api
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
            self._write(error_bytes(ApiError(exc.status, exc.code, exc.message)))
            return
        self._started = time.monotonic()
        parsed.request = request
        self._submit(request, api.config.request_timeout, parsed)

    def _submit(self, request: ClientRequest, timeout: float, parsed: _Parsed) -> None:
        api = self._api
        try:
            self._pending = api.runtime.wait_for_answer(request, timeout, self._answered, parsed)
        except Exception as exc:  # NodeHalted
            self._write(error_bytes(api.failure(exc, write=parsed.kind != "get")))

    def _answered(self, waiter: Waiter, response: ClientResponse | None, error: BaseException | None) -> None:
        if self._pending is not waiter:
            return
        self._pending = None
        if self._closed:
            return
        parsed: _Parsed = waiter.context
        api = self._api
        if response is not None and parsed.attempts < STALE_RETRIES and api.renumber(response):
            # An anonymous write another one overtook: again, under a new number (http_api.py).
            remaining = self._started + api.config.request_timeout - time.monotonic()
            if remaining > 0:
                assert parsed.request is not None
                parsed.attempts += 1
                parsed.request = dataclasses.replace(parsed.request, seq=api.request_id(None)[1])
                self._submit(parsed.request, remaining, parsed)
                return
        api.observe(parsed.kind, time.monotonic() - self._started)
        try:
            if error is not None:
                raise api.failure(error, write=parsed.kind != "get") from None
            data = self._body(response, parsed)  # type: ignore[arg-type]
        except ApiError as exc:
            data = error_bytes(exc)
        signer = api.reply_signer
        if signer is not None:
            data = _signed(data, signer, parsed.request_id or "")
        self._write(data)

    def _body(self, response: ClientResponse, parsed: _Parsed) -> bytes:
        """The answer's bytes.  Plain keys need no JSON escaping, so the common bodies are
        formatted directly (the same bytes ``json.dumps`` gives, fields in the same order)."""
        if not response.ok:
            raise self._api.rejection(response)
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
        return b"%s%d\r\n\r\n%s" % (_OK_HEAD, len(body), body)

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
        assert transport is not None and self._pending is None
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


class FastSite(GuardedSite):
    """A guarded site (``conn_guard.py``) whose connections start with ``FastKVProtocol``
    (plain TCP only); the guard stays when a connection is handed to aiohttp."""

    __slots__ = ("_api", "_fast_connections")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, api: NodeApi, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._api = api
        self._fast_connections: set[FastKVProtocol] = set()

    def inner_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return FastKVProtocol(self._api, server, self._fast_connections)

    async def stop(self) -> None:
        for connection in list(self._fast_connections):
            connection.close()
        await super().stop()
