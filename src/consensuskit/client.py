"""Client of the replicated key-value server's HTTP API (docs/openapi.yaml).

``AsyncClient`` runs on aiohttp; ``Client`` is the same client behind a private event-loop
thread, so it is safe to share between threads.

Rules this module owns:
  * every write carries ``X-Request-Id: <session>:<seq>`` and every retry of it reuses the
    id, so the server applies it once and answers a retry with the first result;
  * a session serves one operation at a time: the state machine remembers only the last
    seq of a session and refuses an older one as stale, so concurrent callers draw
    sessions from a pool (as many sessions as operations in flight, never more).
    Clients without an explicit ``client_id`` share one pool per process and cluster
    (endpoints), so a ``Client`` per request reuses sessions instead of leaving one
    behind per request;
  * the server forgets idle sessions (``session_ttl``, ``max_sessions``).  A write whose
    first attempt meets 409 ``session-expired`` was certainly not applied: the client
    drops that session and sends the write again in a new one, once.  After an attempt
    that may have been applied, ``session-expired`` raises ``SessionExpired`` with
    ``maybe_applied = True``: the outcome is unknown, as after a timeout.  A session that
    met any session error (``stale-session``, ``request-id-reused`` too) is dropped;
  * the client remembers the last node that answered as leader; a "not the leader"
    answer naming the leader's URL is followed at once, one without a name moves on to
    the next endpoint after a short backoff (an election is under way);
  * a refused connection means the request never arrived; a timeout, a dropped
    connection or 503 (no quorum) leaves a write's fate open, so the write is retried
    with the same id, at another node, until the deadline;
  * credentials: ``user=``/``password=`` fetch a token (``POST /v1/auth/token``) at the
    first request and again when it expires or is revoked (one retry per request after
    a 401 ``invalid-token``/``token-expired``, or ``unauthenticated`` once auth got
    enabled); ``token=`` sends a given token as is.  Every request carries the token,
    else the admin token when one is given; admin requests prefer the admin token.  A
    cluster with auth disabled answers the token request 409 ``auth-not-enabled``: the
    client then sends no token until a 401 says otherwise;
  * ``replies=N`` (N > 1: a Byzantine fault-tolerant cluster, PBFT's f+1): an operation
    goes to every endpoint at once under one request id, each retried on its own until
    the deadline, and its answer is the one N distinct nodes gave alike (an error answer
    too); no node's answer alone is trusted, so up to N-1 lying nodes cannot choose it.
    ``read_replies`` sets another count for reads (PBFT's read-only optimisation: 2f+1).
    With ``reply_keys`` (the cluster's public keys file, or node id -> Ed25519 public
    key) a successful answer counts only with a valid ``X-Node-Signature`` of its node
    (server/reply_signing.py), and answers are counted by signer, not by endpoint;
  * ``cache=True``: a get asks for a cache lease (``consistency=cache``) and the answer
    is kept while the lease runs by this process's clock (``client_cache.LeaseCache``:
    from when the read was sent, shortened by ``drift_bound``); gets of the key answer
    from it until then, and this client's own writes to the key drop it.  The leader
    holds other clients' writes to the key back until the lease has run out;
  * an op that runs out of time raises ``Unavailable``; its ``maybe_applied`` says
    whether some attempt could have taken effect (a history records it as unknown,
    never as fail).  Every other error answer becomes a typed ``ClientError``
    carrying the server's ``{"error": CODE, "message": TEXT, ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from consensuskit.client_cache import MISS, LeaseCache
from consensuskit.core.client import CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-Id"
LEADER_ONLY_HEADER = "X-Leader-Only"
ADMIN_TOKEN_HEADER = "Authorization"
CONSISTENCY_LEVELS = ("linearizable", "lease", "stale", "cache")

# Backoff between attempts when no node named a leader (an election takes a few hundred
# milliseconds); doubled per blind attempt up to the cap.
FIRST_BACKOFF = 0.02
MAX_BACKOFF = 0.5
REDIRECT_CODES = frozenset({"not-leader", "not_leader", "redirect"})


# ---------------------------------------------------------------------- errors
class ClientError(Exception):
    """An answer that is not a success, or no answer at all.

    ``code`` is the server's error code (or the client's own, e.g. "unavailable"),
    ``status`` the HTTP status (None when no node answered), ``details`` the whole
    error body.
    """

    def __init__(
        self, code: str, message: str, *, status: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}


class NotFound(ClientError):
    """The key (or member, or route) does not exist."""


class CasFailed(ClientError):
    """A compare-and-swap found another value or version; nothing was written."""

    @property
    def current_value(self) -> Any:
        return decode_value(self.details)

    @property
    def current_version(self) -> int:
        return int(self.details.get("version") or 0)


class BadRequest(ClientError):
    """The server refused the request as malformed (400); retrying cannot help."""


class PayloadTooLarge(BadRequest):
    """The value or body exceeds the server's configured limit (413)."""


class Unauthorized(ClientError):
    """No or bad credentials (401), or not allowed (403): an admin operation without a
    valid admin token, a key the user has no permission on, a wrong password."""


class ServerError(ClientError):
    """An unexpected answer (5xx other than 503, or a body that is not our JSON)."""


class SessionExpired(ClientError):
    """409 ``session-expired``: the server forgot this write's session (idle longer than
    its ``session_ttl``, or evicted).  Raised only when an earlier attempt may have been
    applied (``maybe_applied``): the write's outcome is unknown.  A first attempt that
    meets it is sent again in a new session, transparently."""

    maybe_applied: bool = True


class RequestIdReused(ClientError):
    """409 ``request-id-reused``: the request id names another command; nothing was
    applied (a client bug, or two processes sharing a session id)."""


class Unavailable(ClientError):
    """No node completed the operation before the deadline.

    ``maybe_applied`` is True when a write may nevertheless have taken effect (some
    attempt timed out, lost its connection or met a 503); False means it certainly did
    not.
    """

    def __init__(self, message: str, *, maybe_applied: bool, attempts: int, last_error: str | None) -> None:
        super().__init__("unavailable", message, details={"last_error": last_error})
        self.maybe_applied = maybe_applied
        self.attempts = attempts
        self.last_error = last_error


_ERRORS_BY_CODE: dict[str, type[ClientError]] = {
    "not-found": NotFound,
    "not_found": NotFound,
    "cas-failed": CasFailed,
    "cas_failed": CasFailed,
    "conflict": CasFailed,
    "too-large": PayloadTooLarge,
    "payload-too-large": PayloadTooLarge,
    "unauthorized": Unauthorized,
    "forbidden": Unauthorized,
    "unauthenticated": Unauthorized,
    "invalid-token": Unauthorized,
    "token-expired": Unauthorized,
    "permission-denied": Unauthorized,
    "session-expired": SessionExpired,
    "request-id-reused": RequestIdReused,
}
# 401 codes after which a client with a password fetches a new token and resends once.
_REAUTHENTICATE = frozenset({"invalid-token", "token-expired", "unauthenticated"})
# Answers after which a session cannot go on: the client drops it.
_SESSION_ERRORS = frozenset({"session-expired", "request-id-reused", "stale-session"})
_ERRORS_BY_STATUS: dict[int, type[ClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    412: CasFailed,
    413: PayloadTooLarge,
}


def error_from_answer(status: int, body: Any, text: str) -> ClientError:
    """Map an error answer to the most specific ``ClientError``."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = str(body.get("message", ""))
        details = body
    else:
        code = f"http-{status}"
        message = text.strip()[:200] or f"HTTP {status} without a body"
        details = {}
    cls = _ERRORS_BY_CODE.get(code) or _ERRORS_BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ClientError
    return cls(code, message, status=status, details=details)


# ---------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Entry:
    """A key's value as read: ``version`` counts the writes since it was created."""

    key: str
    value: str | bytes  # bytes when the value written was not UTF-8 text
    version: int
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of a put or successful cas: the key's new version and log index."""

    key: str
    version: int
    index: int | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Deleted:
    key: str
    deleted: bool
    index: int | None = None
    request_id: str | None = None


@dataclass(slots=True)
class Answer:
    """One successful HTTP exchange: which node answered, status and decoded body."""

    endpoint: str
    status: int
    body: Any
    attempts: int
    request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""  # the body as received (what a node's signature covers)


# ---------------------------------------------------------------------- sessions
@dataclass(slots=True)
class _Session:
    client_id: str
    last_seq: int = 0

    def next_request_id(self) -> str:
        self.last_seq += 1
        return f"{self.client_id}:{self.last_seq}"


class _SessionPool:
    """Sessions lent to one operation at a time; a new one only when all are in use.
    Thread-safe: a shared pool serves clients on different event loops."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._free: list[_Session] = []
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def acquire(self) -> _Session:
        with self._lock:
            if self._free:
                return self._free.pop()
            return _Session(f"{self.prefix}.{next(self._count)}")

    def fresh(self) -> _Session:
        """A session never used (its first seq is 1, as a new session's must be)."""
        with self._lock:
            return _Session(f"{self.prefix}.{next(self._count)}")

    def release(self, session: _Session) -> None:
        with self._lock:
            self._free.append(session)


# Pools of the clients without an explicit client_id, per (process, endpoints): a forked
# child gets pools of its own, never its parent's sessions.
_SHARED_POOLS: dict[tuple[int, tuple[str, ...]], _SessionPool] = {}
_SHARED_POOLS_LOCK = threading.Lock()


def _shared_pool(endpoints: Sequence[str]) -> _SessionPool:
    key = (os.getpid(), tuple(sorted(endpoints)))
    with _SHARED_POOLS_LOCK:
        pool = _SHARED_POOLS.get(key)
        if pool is None:
            pool = _SHARED_POOLS[key] = _SessionPool(os.urandom(6).hex())
        return pool


def normalize_endpoint(endpoint: str) -> str:
    """'127.0.0.1:7100' / 'http://host:port/' -> 'http://host:port'."""
    endpoint = endpoint.strip()
    if not endpoint:
        raise ValueError("empty endpoint")
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint.rstrip("/")


def parse_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    """A comma-separated string or a list of endpoints, normalized, duplicates dropped."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for item in items:
        if item.strip():
            url = normalize_endpoint(item)
            if url not in out:
                out.append(url)
    if not out:
        raise ValueError("no endpoints given")
    return out


def _reply_keys(given: str | os.PathLike[str] | dict[str, bytes] | None) -> dict[str, bytes] | None:
    """node id -> Ed25519 public key, from a public keys file (server/node_keys.py's
    format) or as given; ValueError (one line) for a file that is not one."""
    if given is None or isinstance(given, dict):
        return given
    try:
        with open(given, encoding="utf-8") as f:
            nodes = json.load(f)["nodes"]
        return {str(node): bytes.fromhex(entry["ed25519"]) for node, entry in nodes.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"reply_keys {given}: not a public keys file ({exc})") from None


def _leader_url(body: Any, headers: Any) -> str | None:
    if isinstance(body, dict):
        for name in ("leader_url", "leader_client_url", "leader_address", "location"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return normalize_endpoint(value)
    location = headers.get("Location") if headers is not None else None
    if location:
        # Location names the same path at the leader; keep scheme://host:port only.
        scheme, _, rest = location.partition("://")
        if rest:
            return f"{scheme}://{rest.split('/', 1)[0]}"
    return None


def _is_redirect(status: int, body: Any) -> bool:
    if isinstance(body, dict) and body.get("error") in REDIRECT_CODES:
        return True
    return status in (307, 308, 421)


# ---------------------------------------------------------------------- async client
class AsyncClient:
    """Asynchronous client; use as ``async with AsyncClient([...]) as kv:``.

    ``timeout`` bounds one attempt, ``deadline`` the whole operation including retries.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = CLIENT_ATTEMPT_TIMEOUT,
        deadline: float = CLIENT_DEADLINE,
        admin_token: str | None = None,
        client_id: str | None = None,
        max_connections: int = 0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        replies: int = 1,
        read_replies: int | None = None,
        reply_keys: str | os.PathLike[str] | dict[str, bytes] | None = None,
        cache: bool | LeaseCache = False,
        drift_bound: float = 0.05,
    ) -> None:
        if timeout <= 0 or deadline <= 0:
            raise ValueError("timeout and deadline must be positive")
        if replies < 1 or (read_replies is not None and read_replies < 1):
            raise ValueError("replies and read_replies must be at least 1")
        if (user is None) != (password is None):
            raise ValueError("give user and password together")
        if token is not None and user is not None:
            raise ValueError("give a token or a user and password, not both")
        self.endpoints = parse_endpoints(endpoints)
        self.replies = replies
        self.read_replies = replies if read_replies is None else read_replies
        self.reply_keys = _reply_keys(reply_keys)
        if max(self.replies, self.read_replies) > len(self.endpoints):
            raise ValueError(
                f"{max(self.replies, self.read_replies)} matching replies need as many endpoints, "
                f"not {len(self.endpoints)}"
            )
        self.timeout = timeout
        self.deadline = deadline
        self.admin_token = admin_token
        self.user = user
        self._password = password
        self._token = token
        self._token_renew_at = float("inf")  # loop time after which a fetched token is renewed
        self._auth_off = False  # the cluster said auth is disabled: send no token
        self._token_lock: asyncio.Lock | None = None
        self._sessions = _SessionPool(client_id) if client_id else _shared_pool(self.endpoints)
        self.client_id = self._sessions.prefix
        self.leader: str | None = None
        self._next_endpoint = 0
        self._max_connections = max_connections
        self._http: aiohttp.ClientSession | None = None
        self._refusal_is_definite = True
        # Reads kept under cache leases (None: no caching).
        self.cache: LeaseCache | None = (
            cache if isinstance(cache, LeaseCache) else LeaseCache(drift_bound) if cache else None
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
            self._http = aiohttp.ClientSession(connector=connector, raise_for_status=False)
            # aiohttp quietly resends a PUT or DELETE once when a reused connection breaks;
            # the resend's error (say, connection refused) would then hide that the first
            # send may have been applied.  This client retries by itself, with the same id.
            if hasattr(self._http, "_retry_connection"):
                self._http._retry_connection = False
                self._refusal_is_definite = True
            else:  # an aiohttp without the switch: a refusal proves nothing about earlier sends
                self._refusal_is_definite = False
        return self._http

    # ------------------------------------------------------------------ key-value
    async def get(self, key: str, *, consistency: str = "linearizable") -> Entry:
        """The key's value; raises ``NotFound`` when it is absent."""
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"unknown consistency {consistency!r}; valid: {', '.join(CONSISTENCY_LEVELS)}")
        cache = self.cache
        asked = time.monotonic()
        if cache is not None and consistency in ("linearizable", "cache"):
            cached = cache.lookup(key, asked)
            if cached is not MISS:
                return cached  # type: ignore[no-any-return]
            consistency = "cache"
        answer = await self.request(
            "GET", _key_path(key), params={"consistency": consistency}, leader_only=consistency != "stale"
        )
        entry = _entry(key, answer)
        lease = answer.body.get("lease") if isinstance(answer.body, dict) else None
        if cache is not None and isinstance(lease, (int, float)):
            cache.store(key, entry, float(lease), asked)
        return entry

    async def put(self, key: str, value: str | bytes) -> Written:
        self._forget(key)
        answer = await self.request("PUT", _key_path(key), body=_as_bytes(value), write=True)
        return _written(key, answer)

    async def cas(
        self,
        key: str,
        value: str | bytes,
        *,
        expected: str | bytes | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """Write ``value`` only if the key holds ``expected`` (or has ``expected_version``;
        version 0 means absent).  Raises ``CasFailed`` otherwise."""
        if (expected is None) == (expected_version is None):
            raise ValueError("cas needs exactly one of expected or expected_version")
        params = (
            {"cas_version": str(expected_version)}
            if expected_version is not None
            else {"prev_value": _as_bytes(expected).decode("utf-8")}  # type: ignore[arg-type]
        )
        self._forget(key)
        answer = await self.request("PUT", _key_path(key), params=params, body=_as_bytes(value), write=True)
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("swapped") is False:  # a server that answers 200 with the failed comparison
            raise CasFailed("cas-failed", "compare-and-swap failed", status=answer.status, details=body)
        return _written(key, answer)

    async def delete(self, key: str) -> Deleted:
        """Remove the key; ``deleted`` says whether it existed."""
        try:
            self._forget(key)
            answer = await self.request("DELETE", _key_path(key), write=True)
        except NotFound as exc:
            return Deleted(key, False, exc.details.get("index"))
        body = answer.body if isinstance(answer.body, dict) else {}
        return Deleted(key, bool(body.get("deleted", True)), body.get("index"), answer.request_id)

    def _forget(self, key: str) -> None:
        if self.cache is not None:
            self.cache.forget(key)

    async def list(self, prefix: str = "", *, consistency: str = "linearizable") -> list[Entry]:
        """Every key starting with ``prefix``, in key order."""
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"unknown consistency {consistency!r}; valid: {', '.join(CONSISTENCY_LEVELS)}")
        answer = await self.request(
            "GET",
            "/v1/kv",
            params={"prefix": prefix, "consistency": consistency},
            leader_only=consistency != "stale",
        )
        body = answer.body
        items = body.get("items", body.get("keys", [])) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ServerError("bad-answer", f"listing is not a list: {str(body)[:200]}", status=answer.status)
        entries = [
            Entry(str(i["key"]), decode_value(i), int(i.get("version") or 0), i.get("index"))
            for i in items
            if isinstance(i, dict) and "key" in i
        ]
        return sorted(entries, key=lambda e: e.key)

    # ------------------------------------------------------------------ cluster
    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """``GET /v1/status`` of one node (default: the first that answers)."""
        answer = await self.request("GET", "/v1/status", endpoint=endpoint, leader_only=False)
        return answer.body if isinstance(answer.body, dict) else {"raw": answer.body}

    async def cluster_status(self) -> dict[str, dict[str, Any] | ClientError]:
        """Every endpoint's status (or the error that stood in its way), concurrently."""

        async def one(endpoint: str) -> dict[str, Any] | ClientError:
            try:
                return await self.status(endpoint)
            except ClientError as exc:
                return exc

        results = await asyncio.gather(*(one(e) for e in self.endpoints))
        return dict(zip(self.endpoints, results, strict=True))

    async def find_leader(self) -> str | None:
        """The client URL of the node that says it is leader, if one does."""
        statuses = await self.cluster_status()
        leaders = [
            (s.get("generation", s.get("term", 0)), e)  # term, ballot round, ...
            for e, s in statuses.items()
            if isinstance(s, dict) and s.get("role") == "leader"
        ]
        if not leaders:
            return None
        self.leader = max(leaders)[1]
        return self.leader

    async def members(self) -> Any:
        answer = await self.request("GET", "/v1/members", leader_only=False)
        return answer.body

    async def add_member(self, node_id: str, **fields: Any) -> Any:
        body = json.dumps({"id": node_id, **fields}).encode()
        answer = await self.request("POST", "/v1/members", body=body, admin=True, json_body=True)
        return answer.body

    async def remove_member(self, node_id: str, *, force: bool = False) -> Any:
        """``force``: even if the voters left up would be fewer than a quorum."""
        path = f"/v1/members/{quote(node_id, safe='')}" + ("?force=true" if force else "")
        answer = await self.request("DELETE", path, admin=True)
        return answer.body

    async def transfer_leadership(self, target: str | None = None) -> Any:
        body = json.dumps({"to": target} if target else {}).encode()
        answer = await self.request("POST", "/v1/leader/transfer", body=body, admin=True, json_body=True)
        return answer.body

    async def backup(self) -> bytes:
        """The backup file of the cluster's whole state (admin token; docs/server.md,
        "Backup and restore"): every write acknowledged before the call is in it."""
        answer = await self.request("GET", "/v1/backup", admin=True, leader_only=False)
        return answer.raw

    async def restore(self, backup: bytes) -> Any:
        """Restore a backup file's state into this cluster, which must hold no data."""
        answer = await self.request("POST", "/v1/restore", body=bytes(backup), admin=True, write=True)
        return answer.body

    # ------------------------------------------------------------------ auth (docs/server.md)
    async def fetch_token(self) -> str | None:
        """A fresh token for ``user``/``password`` (None when the cluster has auth disabled)."""
        if self.user is None or self._password is None:
            raise ValueError("fetch_token needs the client's user and password")
        body = json.dumps({"user": self.user, "password": self._password}).encode()
        try:
            answer = await self._send_until_answered(
                "POST",
                "/v1/auth/token",
                None,
                body,
                None,
                False,
                True,
                None,
                False,
                True,
                asyncio.get_running_loop().time() + self.deadline,
                authenticate=False,
            )
        except ClientError as exc:
            if exc.code == "auth-not-enabled":
                self._token, self._auth_off = None, True
                return None
            raise
        doc = answer.body if isinstance(answer.body, dict) else {}
        token, ttl = doc.get("token"), doc.get("ttl")
        if not isinstance(token, str):
            raise ServerError("bad-answer", f"no token in {str(doc)[:200]}", status=answer.status)
        loop = asyncio.get_running_loop()
        ttl = float(ttl) if isinstance(ttl, (int, float)) else 60.0
        self._token, self._auth_off = token, False
        self._token_renew_at = loop.time() + 0.9 * ttl  # renew a little before it expires
        return token

    async def _bearer(self, admin: bool, *, renew: bool = False) -> str | None:
        """The credential a request carries (see the module rules)."""
        if admin and self.admin_token:
            return self.admin_token
        if self._password is not None:
            if self._token_lock is None:
                self._token_lock = asyncio.Lock()
            async with self._token_lock:
                loop = asyncio.get_running_loop()
                stale = self._token is None or loop.time() >= self._token_renew_at
                if renew or (stale and not self._auth_off):
                    await self.fetch_token()
        if self._token is not None:
            return self._token
        return self.admin_token

    async def _auth_call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        answer = await self.request(method, path, body=data, admin=True, json_body=body is not None, **kw)
        return answer.body

    async def auth_status(self) -> Any:
        return await self._auth_call("GET", "/v1/auth/status")

    async def auth_enable(self) -> Any:
        return await self._auth_call("POST", "/v1/auth/enable", write=True)

    async def auth_disable(self) -> Any:
        return await self._auth_call("POST", "/v1/auth/disable", write=True)

    async def users(self) -> Any:
        return await self._auth_call("GET", "/v1/auth/users")

    async def add_user(self, name: str, password: str | None) -> Any:
        return await self._auth_call(
            "POST", "/v1/auth/users", {"name": name, "password": password}, write=True
        )

    async def delete_user(self, name: str) -> Any:
        return await self._auth_call("DELETE", f"/v1/auth/users/{_seg(name)}", write=True)

    async def set_password(self, name: str, password: str | None) -> Any:
        path = f"/v1/auth/users/{_seg(name)}/password"
        return await self._auth_call("PUT", path, {"password": password}, write=True)

    async def grant_role(self, user: str, role: str) -> Any:
        return await self._auth_call("PUT", f"/v1/auth/users/{_seg(user)}/roles/{_seg(role)}", write=True)

    async def revoke_role(self, user: str, role: str) -> Any:
        return await self._auth_call("DELETE", f"/v1/auth/users/{_seg(user)}/roles/{_seg(role)}", write=True)

    async def roles(self) -> Any:
        return await self._auth_call("GET", "/v1/auth/roles")

    async def add_role(self, name: str) -> Any:
        return await self._auth_call("POST", "/v1/auth/roles", {"name": name}, write=True)

    async def delete_role(self, name: str) -> Any:
        return await self._auth_call("DELETE", f"/v1/auth/roles/{_seg(name)}", write=True)

    async def grant_permission(self, role: str, prefix: str, permission: str) -> Any:
        body = {"prefix": prefix, "permission": permission}
        return await self._auth_call("POST", f"/v1/auth/roles/{_seg(role)}/permissions", body, write=True)

    async def revoke_permission(self, role: str, prefix: str) -> Any:
        path = f"/v1/auth/roles/{_seg(role)}/permissions"
        return await self._auth_call("DELETE", path, params={"prefix": prefix}, write=True)

    # ------------------------------------------------------------------ the retry loop
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        write: bool = False,
        leader_only: bool = True,
        endpoint: str | None = None,
        admin: bool = False,
        json_body: bool = False,
    ) -> Answer:
        """Send until a node answers for good or the deadline passes.

        ``write`` gives the request a session id (kept across retries); ``endpoint``
        pins one node (no redirects, no failover); ``leader_only`` follows redirects
        and starts at the remembered leader.
        """
        deadline = asyncio.get_running_loop().time() + self.deadline
        quorum = self.replies if write else self.read_replies
        if quorum > 1 and endpoint is None and not admin:
            send: Any = functools.partial(self._send_to_quorum, quorum)
        else:
            send = self._send_until_answered
        if not write:
            return await send(
                method, path, params, body, None, write, leader_only, endpoint, admin, json_body, deadline
            )
        pool = self._sessions
        session: _Session | None = pool.acquire()
        try:
            for renewed in (False, True):
                assert session is not None
                request_id = session.next_request_id()
                try:
                    return await send(
                        method,
                        path,
                        params,
                        body,
                        request_id,
                        write,
                        leader_only,
                        endpoint,
                        admin,
                        json_body,
                        deadline,
                    )
                except ClientError as exc:
                    if exc.code not in _SESSION_ERRORS:
                        raise
                    session = None  # it cannot go on: never back to the pool
                    if not isinstance(exc, SessionExpired) or exc.maybe_applied or renewed:
                        raise
                    # Certainly not applied (the first attempt met it): once more, anew.
                    session = pool.fresh()
            raise AssertionError("unreachable")
        finally:
            if session is not None:
                pool.release(session)

    def _rotate(self, avoid: str | None) -> str:
        for _ in range(len(self.endpoints)):
            candidate = self.endpoints[self._next_endpoint % len(self.endpoints)]
            self._next_endpoint += 1
            if candidate != avoid:
                return candidate
        return self.endpoints[0]

    async def _send_until_answered(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: bytes | None,
        request_id: str | None,
        write: bool,
        leader_only: bool,
        endpoint: str | None,
        admin: bool,
        json_body: bool,
        deadline: float,
        *,
        authenticate: bool = True,
    ) -> Answer:
        loop = asyncio.get_running_loop()
        headers: dict[str, str] = {}
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        bearer = await self._bearer(admin) if authenticate else None
        if bearer:
            headers[ADMIN_TOKEN_HEADER] = f"Bearer {bearer}"
        reauthenticated = not (authenticate and self._password is not None)
        if json_body:
            headers["Content-Type"] = "application/json"
        if params and params.get("consistency") == "cache":
            headers[LEADER_ONLY_HEADER] = "true"  # only the leader grants a cache lease: 421 elsewhere
        pinned = normalize_endpoint(endpoint) if endpoint else None
        target = pinned or (self.leader if leader_only and self.leader else self._rotate(None))
        maybe_applied = False
        attempts = 0
        misses = 0  # attempts that did not succeed, redirects included
        last_error: str | None = None
        http = self._session()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or (pinned and attempts > 0):
                raise Unavailable(
                    f"{method} {path}: no answer from {pinned or 'any of ' + ', '.join(self.endpoints)} "
                    f"within {self.deadline:g} s ({attempts} attempts; last: {last_error})",
                    maybe_applied=maybe_applied,
                    attempts=attempts,
                    last_error=last_error,
                )
            attempts += 1
            timeout = aiohttp.ClientTimeout(total=min(self.timeout, remaining))
            try:
                async with http.request(
                    method, target + path, params=params, data=body, headers=headers, timeout=timeout
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    resp_headers = dict(resp.headers)
                    content_type = resp.content_type
            except aiohttp.ClientConnectorError as exc:
                # Nothing was sent: this attempt certainly had no effect.
                maybe_applied = maybe_applied or (write and not self._refusal_is_definite)
                last_error = f"{target}: cannot connect ({exc.os_error or exc})"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # Sent, maybe received and applied, but no answer came back.
                maybe_applied = maybe_applied or write
                last_error = f"{target}: {type(exc).__name__} {exc}".rstrip()
            else:
                decoded = _decode(raw, content_type)
                if 200 <= status < 300:
                    if leader_only and not pinned:
                        self.leader = target
                    return Answer(target, status, decoded, attempts, request_id, resp_headers, raw)
                if _is_redirect(status, decoded) and not pinned:
                    hint = _leader_url(decoded, resp_headers)
                    last_error = f"{target}: not the leader" + (f" (leader {hint})" if hint else "")
                    if hint and hint != target:
                        self.leader = target = hint
                        misses += 1
                        await self._back_off(misses, deadline)
                        continue
                elif status == 503:
                    # No quorum in time: a write may have been proposed and commit later,
                    # unless the node says it certainly was not (busy, not-leader, ...).
                    outcome = decoded.get("outcome") if isinstance(decoded, dict) else None
                    maybe_applied = maybe_applied or (write and outcome != "not-applied")
                    last_error = f"{target}: 503 {_message(decoded, raw)}"
                elif (
                    status == 401
                    and not reauthenticated
                    and isinstance(decoded, dict)
                    and decoded.get("error") in _REAUTHENTICATE
                ):
                    # The token expired or was revoked, or auth was enabled since: once more
                    # with a fresh token (a 401 means the request was not applied).
                    reauthenticated = True
                    bearer = await self._bearer(admin, renew=True)
                    if bearer:
                        headers[ADMIN_TOKEN_HEADER] = f"Bearer {bearer}"
                    attempts -= 1  # not a failed attempt: a pinned endpoint gets its try
                    continue
                else:
                    error = error_from_answer(status, decoded, raw.decode("utf-8", "replace"))
                    if isinstance(error, SessionExpired):
                        error.maybe_applied = maybe_applied  # did an earlier attempt get through?
                    raise error
            if pinned:
                continue
            if self.leader == target:
                self.leader = None
            target = self._rotate(avoid=target)
            misses += 1
            await self._back_off(misses, deadline)

    async def _send_to_quorum(
        self,
        quorum: int,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: bytes | None,
        request_id: str | None,
        write: bool,
        leader_only: bool,
        endpoint: str | None,
        admin: bool,
        json_body: bool,
        deadline: float,
    ) -> Answer:
        """Every endpoint at once, one request id; the answer ``quorum`` nodes gave alike
        (see the module rules).  A read's ``index`` is left out of the comparison: each
        node orders the read under its own id, so each answers at its own index."""
        loop = asyncio.get_running_loop()

        async def one(target: str) -> tuple[str, Answer | ClientError]:
            misses = 0
            while True:
                try:
                    return target, await self._send_until_answered(
                        method,
                        path,
                        params,
                        body,
                        request_id,
                        write,
                        False,
                        target,
                        False,
                        json_body,
                        deadline,
                    )
                except Unavailable:
                    if loop.time() >= deadline:
                        raise
                    misses += 1
                    await asyncio.sleep(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(misses, 10)))
                except ClientError as exc:
                    return target, exc

        def key(outcome: Answer | ClientError) -> str:
            if isinstance(outcome, Answer):
                doc: Any = ("ok", outcome.status, outcome.body)
            else:
                doc = ("error", outcome.status, outcome.code, {**outcome.details, "message": None})
            if not write and isinstance(doc[-1], dict):
                doc = (*doc[:-1], {k: v for k, v in doc[-1].items() if k != "index"})
            return json.dumps(doc, sort_keys=True, default=repr)

        def signer(target: str, outcome: Answer | ClientError) -> str | None:
            """Who the answer counts for: its endpoint, or with ``reply_keys`` the node
            whose signature it carries (None: none valid).  Error answers carry none."""
            if not isinstance(outcome, Answer) or self.reply_keys is None:
                return target
            from consensuskit.core.keys import REPLY_SIGNATURE_HEADER, verify_reply

            header = next(
                (v for k, v in outcome.headers.items() if k.lower() == REPLY_SIGNATURE_HEADER.lower()), None
            )
            return verify_reply(header, request_id or "", outcome.status, outcome.raw, self.reply_keys)

        tasks = {asyncio.ensure_future(one(target)): target for target in self.endpoints}
        tally: dict[str, dict[str, Answer | ClientError]] = {}
        failures: list[str] = []
        try:
            for done in asyncio.as_completed(tasks):
                try:
                    target, outcome = await done
                except Unavailable as exc:
                    failures.append(exc.message)
                    continue
                who = signer(target, outcome)
                if who is None:
                    failures.append(f"{target}: an answer without a valid node signature")
                    continue
                alike = tally.setdefault(key(outcome), {})
                alike[who] = outcome
                if len(alike) >= quorum:
                    if isinstance(outcome, ClientError):
                        raise outcome
                    return outcome
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        answers = sorted((len(v), k) for k, v in tally.items())
        raise Unavailable(
            f"{method} {path}: no {quorum} matching answers from {', '.join(self.endpoints)} within "
            f"{self.deadline:g} s (answers alike: {[n for n, _ in answers] or 0}; "
            f"{len(failures)} nodes unanswered)",
            maybe_applied=write,
            attempts=len(self.endpoints),
            last_error=failures[-1] if failures else None,
        )

    async def _back_off(self, misses: int, deadline: float) -> None:
        # The first round over the endpoints goes at once; after that, attempts that keep
        # missing (an election, a cluster without quorum, redirect ping-pong) slow down.
        excess = misses - len(self.endpoints)
        if excess > 0:
            pause = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(excess - 1, 10))
            loop = asyncio.get_running_loop()
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))


def _seg(name: str) -> str:
    """A user or role name as one URL path segment."""
    if not name:
        raise ValueError("empty name")
    return quote(name, safe="")


def _key_path(key: str) -> str:
    if not key:
        raise ValueError("empty key")
    return "/v1/kv/" + quote(key, safe="")


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        raise ValueError("value must not be None")
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/octet-stream":  # a backup file: kept as bytes
        return raw
    if content_type == "application/json" or raw[:1] in (b"{", b"["):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def _message(decoded: Any, raw: bytes) -> str:
    if isinstance(decoded, dict):
        return str(decoded.get("message") or decoded.get("error") or "")
    return raw[:200].decode("utf-8", "replace")


def decode_value(body: dict[str, Any]) -> Any:
    """A value as the API sends it: text as is, bytes as base64 (``"encoding": "base64"``)."""
    value = body.get("value")
    if body.get("encoding") == "base64" and isinstance(value, str):
        return base64.b64decode(value)
    return value


def _entry(key: str, answer: Answer) -> Entry:
    body = answer.body
    if isinstance(body, dict):
        return Entry(
            str(body.get("key", key)), decode_value(body), int(body.get("version") or 0), body.get("index")
        )
    version = answer.headers.get("X-Version") or answer.headers.get("ETag") or 0
    return Entry(key, body, int(str(version).strip('"') or 0))


def _written(key: str, answer: Answer) -> Written:
    body = answer.body if isinstance(answer.body, dict) else {}
    return Written(
        str(body.get("key", key)), int(body.get("version") or 0), body.get("index"), answer.request_id
    )


# ---------------------------------------------------------------------- sync client
class Client:
    """Blocking client; thread-safe (every call runs on one private event-loop thread).

    ``with Client("127.0.0.1:7100,127.0.0.1:7101") as kv: kv.put("x", "1")``
    """

    def __init__(self, endpoints: str | Sequence[str], **options: Any) -> None:
        self._async = AsyncClient(endpoints, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="consensuskit-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return self._async.endpoints

    @property
    def leader(self) -> str | None:
        return self._async.leader

    @property
    def client_id(self) -> str:
        return self._async.client_id

    def request(self, method: str, path: str, **options: Any) -> Answer:
        """Any route, with the retries, redirects and sessions of every call
        (``AsyncClient.request``): what a service's client methods are made of."""
        return self._run(self._async.request(method, path, **options))

    def service(self, name: str) -> Any:
        """The client methods of the service ``name`` (its ``client`` reference in the
        catalog, a class built with this client).  The kv service's methods are this
        class's own (get, put, delete, cas, list)."""
        from consensuskit.catalog import default_registry, service_names
        from consensuskit.core.service import resolve

        registry = default_registry()
        if name not in registry.services:
            raise KeyError(f"unknown service {name!r}; valid: {', '.join(service_names(registry))}")
        reference = registry.service(name).client
        if reference is None:
            return self
        return resolve(reference)(self)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._run(self._async.close())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def get(self, key: str, *, consistency: str = "linearizable") -> Entry:
        return self._run(self._async.get(key, consistency=consistency))

    def put(self, key: str, value: str | bytes) -> Written:
        return self._run(self._async.put(key, value))

    def cas(
        self,
        key: str,
        value: str | bytes,
        *,
        expected: str | bytes | None = None,
        expected_version: int | None = None,
    ) -> Written:
        return self._run(self._async.cas(key, value, expected=expected, expected_version=expected_version))

    def delete(self, key: str) -> Deleted:
        return self._run(self._async.delete(key))

    def list(self, prefix: str = "", *, consistency: str = "linearizable") -> list[Entry]:
        return self._run(self._async.list(prefix, consistency=consistency))

    def status(self, endpoint: str | None = None) -> dict[str, Any]:
        return self._run(self._async.status(endpoint))

    def cluster_status(self) -> dict[str, dict[str, Any] | ClientError]:
        return self._run(self._async.cluster_status())

    def find_leader(self) -> str | None:
        return self._run(self._async.find_leader())

    def members(self) -> Any:
        return self._run(self._async.members())

    def add_member(self, node_id: str, **fields: Any) -> Any:
        return self._run(self._async.add_member(node_id, **fields))

    def remove_member(self, node_id: str, *, force: bool = False) -> Any:
        return self._run(self._async.remove_member(node_id, force=force))

    def transfer_leadership(self, target: str | None = None) -> Any:
        return self._run(self._async.transfer_leadership(target))

    def backup(self) -> bytes:
        return self._run(self._async.backup())

    def restore(self, backup: bytes) -> Any:
        return self._run(self._async.restore(backup))

    # auth administration (AsyncClient's methods of the same names)
    def fetch_token(self) -> str | None:
        return self._run(self._async.fetch_token())

    def auth_status(self) -> Any:
        return self._run(self._async.auth_status())

    def auth_enable(self) -> Any:
        return self._run(self._async.auth_enable())

    def auth_disable(self) -> Any:
        return self._run(self._async.auth_disable())

    def users(self) -> Any:
        return self._run(self._async.users())

    def add_user(self, name: str, password: str | None) -> Any:
        return self._run(self._async.add_user(name, password))

    def delete_user(self, name: str) -> Any:
        return self._run(self._async.delete_user(name))

    def set_password(self, name: str, password: str | None) -> Any:
        return self._run(self._async.set_password(name, password))

    def grant_role(self, user: str, role: str) -> Any:
        return self._run(self._async.grant_role(user, role))

    def revoke_role(self, user: str, role: str) -> Any:
        return self._run(self._async.revoke_role(user, role))

    def roles(self) -> Any:
        return self._run(self._async.roles())

    def add_role(self, name: str) -> Any:
        return self._run(self._async.add_role(name))

    def delete_role(self, name: str) -> Any:
        return self._run(self._async.delete_role(name))

    def grant_permission(self, role: str, prefix: str, permission: str) -> Any:
        return self._run(self._async.grant_permission(role, prefix, permission))

    def revoke_permission(self, role: str, prefix: str) -> Any:
        return self._run(self._async.revoke_permission(role, prefix))
