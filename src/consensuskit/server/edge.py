"""Validation at the edge: every field a client sends is checked where it enters the node.

Both HTTP paths (``fast_http.py`` and the aiohttp handlers of ``http_api.py``) use these
functions, so a request gets the same answer (status and error code) on either; a
Multi-Paxos follower forwards only what its own edge admitted.  A refusal is an
``EdgeError`` (status 400 unless said otherwise), answered as JSON ``{"error": CODE,
"message": TEXT}``; nothing refused here reaches the protocol.

Rules this module owns:
  * **integers** a client sends (``cas_version``, ``limit``, the SEQ of ``X-Request-Id``):
    ASCII digits only (not ``str.isdigit()``, which accepts "²"), 1..19 of them, a value
    within 0 ... 2^63-1 (SEQ ≥ 1); else 400 (``bad-request``; ``bad-request-id`` for SEQ);
  * **X-Request-Id** is ``CLIENT:SEQ`` split at the last colon; CLIENT is 1..128
    characters of printable ASCII without spaces (0x21..0x7E), not starting with a
    reserved prefix (``anon.``, ``read.``: the node's own sessions); one such header at
    most.  A raw header byte that is not ASCII fails the same check on both paths
    (aiohttp decodes it to a surrogate or a non-ASCII character); else 400
    ``bad-request-id``;
  * **keys** come from the RAW request path (``/v1/kv/KEY``), percent-decoded strictly:
    every ``%`` starts two hex digits and the bytes are UTF-8 (so ``%FF%FE`` is 400, not
    a literal key, and one key has one spelling up to escaping); the decoded key is
    1..``max_key_bytes`` UTF-8 bytes (an empty key is 400, not 404); else 400 ``bad-key``;
  * **query strings** are parsed from the raw query, names and values percent-decoded
    by the same rule (``+`` is a space there, as in forms); a name given twice is
    ambiguous: 400 ``bad-request``.  A listing's ``prefix`` is at most ``max_key_bytes``
    (400 ``bad-key``);
  * **values**: a body over ``max_value_bytes`` is 413 ``too-large`` (checked by the
    callers, which see the Content-Length first); ``prev_value`` obeys the same limit;
  * **encoded once**: ``admit`` encodes the finished ``ClientRequest`` with the codec
    the log uses, before the request is handed to the node.  Whatever the codec refuses
    (an int ≥ 2^64, a lone surrogate, a type it does not know) is a 400 for that request
    alone, never a storage error on the node (a storage error halts the node; no
    request may be able to cause one);
  * **malformed HTTP** that aiohttp's parser refuses (a bad request line, a raw
    non-ASCII byte in the target, a bad Content-Length) is answered in the same JSON
    form, by ``use_json_errors`` on the server, and the connection is closed.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from consensuskit.core.client import ClientRequest
from consensuskit.core.messages import CodecError, encode

MAX_INT = 2**63 - 1
MAX_INT_DIGITS = 19  # len(str(MAX_INT))
MAX_CLIENT_ID = 128
RESERVED_CLIENT_PREFIXES = ("anon.", "read.")
REQUEST_ID_HEADER = "X-Request-Id"

# A percent-encoded string every '%' of which starts two hex digits (ASCII only).
_ESCAPED = re.compile(r"(?:[\x00-\x24\x26-\x7f]|%[0-9A-Fa-f]{2})*")


class EdgeError(ValueError):
    """A client request refused at the edge: answered with ``status`` and ``code``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ---------------------------------------------------------------------- integers
def parse_int(text: str, name: str, *, minimum: int = 0, code: str = "bad-request") -> int:
    """A client integer: 1..19 ASCII digits, within ``minimum`` ... 2^63-1."""
    if not (0 < len(text) <= MAX_INT_DIGITS and text.isascii() and text.isdigit()):  # ASCII: only 0-9
        raise EdgeError(
            code, f"{name} must be an integer of at most {MAX_INT_DIGITS} digits 0-9, got {_show(text)}"
        )
    value = int(text)
    if value > MAX_INT or value < minimum:
        raise EdgeError(code, f"{name} must be within {minimum} … {MAX_INT}, got {_show(text)}")
    return value


# ---------------------------------------------------------------------- request ids
def parse_request_id(header: str) -> tuple[str, int]:
    """``(client_id, seq)`` from an ``X-Request-Id`` value (see the module rules)."""
    client_id, sep, seq_text = header.rpartition(":")
    if not sep or not client_id or len(client_id) > MAX_CLIENT_ID or not _printable(client_id):
        raise EdgeError(
            "bad-request-id",
            f"{REQUEST_ID_HEADER} must be CLIENT:SEQ (CLIENT 1-{MAX_CLIENT_ID} printable ASCII "
            f"characters without spaces, SEQ a positive integer), got {_show(header)}",
        )
    if client_id.startswith(RESERVED_CLIENT_PREFIXES):
        raise EdgeError(
            "bad-request-id", f"client ids starting with {' or '.join(RESERVED_CLIENT_PREFIXES)} are reserved"
        )
    return client_id, parse_int(seq_text, "the SEQ of " + REQUEST_ID_HEADER, minimum=1, code="bad-request-id")


def _printable(text: str) -> bool:
    # isprintable() on ASCII text admits 0x20..0x7E; the space is refused apart.
    return text.isascii() and text.isprintable() and " " not in text


# ---------------------------------------------------------------------- percent-decoding
def percent_decode(raw: str, *, plus_is_space: bool = False) -> str:
    """Strict percent-decoding: ASCII in, every escape well formed, UTF-8 out.

    Raises ``ValueError`` (with the reason) otherwise; callers turn it into their code.
    """
    if "%" not in raw and raw.isascii():
        return raw.replace("+", " ") if plus_is_space else raw  # the common case: nothing to do
    if _ESCAPED.fullmatch(raw) is None:
        raise ValueError("a '%' not followed by two hex digits, or a raw non-ASCII character")
    if plus_is_space:
        raw = raw.replace("+", " ")  # before decoding: "%2B" stays a plus
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the escaped bytes are not UTF-8") from None


def key_from_path(raw_path: str, prefix: str, max_key_bytes: int) -> str:
    """The key named by a raw request path that starts (once decoded) with ``prefix``."""
    try:
        path = percent_decode(raw_path)
    except ValueError as exc:
        raise EdgeError("bad-key", f"the key in the path is not valid percent-encoded UTF-8: {exc}") from None
    if not path.startswith(prefix):  # the router matched the decoded path; be sure anyway
        raise EdgeError("bad-key", f"a key path starts with {prefix}")
    return check_key(path[len(prefix) :], max_key_bytes)


def check_key(key: str, max_key_bytes: int) -> str:
    if not key:
        raise EdgeError("bad-key", "empty key: the path is /v1/kv/KEY with KEY at least one byte")
    if len(key) > max_key_bytes // 4 and len(key.encode("utf-8")) > max_key_bytes:
        raise EdgeError("bad-key", f"key longer than {max_key_bytes} bytes")
    return key


def parse_query(raw_query: str) -> dict[str, str]:
    """Names and values of a raw query string, strictly decoded; a repeated name is 400."""
    params: dict[str, str] = {}
    if not raw_query:
        return params
    for piece in raw_query.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        try:
            name = percent_decode(raw_name, plus_is_space=True)
            value = percent_decode(raw_value, plus_is_space=True)
        except ValueError as exc:
            raise EdgeError(
                "bad-request", f"query parameter {_show(raw_name)} is not valid percent-encoded UTF-8: {exc}"
            ) from None
        if name in params:
            raise EdgeError("bad-request", f"query parameter {_show(name)} given more than once")
        params[name] = value
    return params


def check_prefix(prefix: str, max_key_bytes: int) -> str:
    if len(prefix.encode("utf-8")) > max_key_bytes:
        raise EdgeError("bad-key", f"prefix longer than {max_key_bytes} bytes")
    return prefix


def check_prev_value(value: str, max_value_bytes: int) -> str:
    size = len(value.encode("utf-8"))
    if size > max_value_bytes:
        raise EdgeError("too-large", f"prev_value of {size} bytes is over {max_value_bytes}", status=413)
    return value


# ---------------------------------------------------------------------- encoded once
def admit(request: ClientRequest) -> int:
    """Encode ``request`` as the log would (defence in depth: whatever slipped past the
    checks above and cannot be stored fails this request, not the node); its size in
    bytes, for a service that bounds whole requests (the etcd API)."""
    try:
        return len(encode(request))
    except (OverflowError, TypeError, ValueError, CodecError) as exc:  # UnicodeEncodeError is a ValueError
        raise EdgeError("bad-request", f"the request cannot be stored: {_unstorable(exc)}") from None


def _unstorable(exc: Exception) -> str:
    """Why ``admit`` refused, in the client's terms where the cause is a known one."""
    if isinstance(exc, OverflowError):
        return "an integer is outside the 64-bit range (-2^63 .. 2^64-1) the log stores"
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start : exc.end]
        return f"a string holds {bad!r}, a lone surrogate (JSON's \\udXXX escape alone): not Unicode text"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _show(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


# ---------------------------------------------------------------------- malformed HTTP
_PARSE_ERROR_CODES = {400: "bad-request", 408: "timeout", 413: "too-large", 431: "too-large"}


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors (requests its parser
    refused) as JSON, like every other error of the API."""

    __slots__ = ()  # the same layout: an existing handler may become one

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses if output began
        if status >= 500:
            code, text = "internal", "internal server error (see the node's log)"
        else:
            code = _PARSE_ERROR_CODES.get(status, f"http-{status}")
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
            text = f"malformed HTTP request: {(message or phrase).strip()[:500]}"
        body = json.dumps({"error": code, "message": text}, separators=(",", ":"))
        response = web.Response(status=status, text=body, content_type="application/json")
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    __slots__ = ()

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JsonErrorRequestHandler
        return handler


def use_json_errors(server: web.Server | None) -> None:
    """Make ``server`` (an AppRunner's, after ``setup``) answer malformed HTTP as JSON."""
    if server is not None and type(server) is web.Server:
        server.__class__ = _JsonErrorServer
