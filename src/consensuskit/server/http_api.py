"""The client HTTP API of one node (aiohttp); the contract is docs/openapi.yaml.

Rules this module owns:
  * every field a client sends passes the rules of ``edge.py`` (shared with the fast
    path): the key from the raw path, the query from the raw query string, integers,
    request ids, and the finished command encoded once before the node sees it;
  * every error answer is JSON ``{"error": CODE, "message": TEXT, ...}``, including 404
    for unknown routes, 405 and 413; ``outcome`` says whether a failed write was
    certainly not applied ("not-applied") or may have been ("unknown");
  * a write is one ``ClientRequest``: ``X-Request-Id: CLIENT:SEQ`` names it, so a retry
    with the same id is applied once and answered with the first result (the state
    machine's sessions).  Without the header the node numbers the write in its own
    anonymous session, whose sequence only grows, so it cannot be retried safely.  Two
    such writes may reach the log out of order (forwarded by a follower, around a leader
    change): the earlier-numbered one, refused ``stale-session`` and not applied, is
    submitted again under a new number (``STALE_RETRIES`` times, within the one
    ``request_timeout``), here and on the fast path;
  * answers come from the runtime, i.e. after the durability barrier; a request waits at
    most ``request_timeout`` (503 "timeout");
  * a node that is not the leader answers 421 "not-leader" naming the leader's client
    URL (503 with no URL when it knows no leader) when its protocol does not pass the
    request on, or when the client asks for it with ``X-Leader-Only: true`` (a protocol
    whose followers forward, as Raft's and Multi-Paxos's do, serves every request);
  * membership, leadership transfer, backup and restore (backup_api.py) and fault
    injection need ``Authorization: Bearer <admin token>`` (401 without, 403 with a
    wrong one or when no token is configured);
  * a membership change is strict (etcd's ``--strict-reconfig-check``): adding or
    promoting a voter, or removing one, is refused 409 ``unhealthy`` when the voters up
    would not make a quorum of the new configuration (the cluster would stop at once):
    those the leader heard from within ``ACTIVE_WITHIN`` whose connection to it is still
    open (``NodeRuntime.heard_within``); ``force`` skips the check;
  * the node is read through its capabilities (core/capabilities.py): ``/v1/status`` is
    its common status plus each capability's fields; a route whose capability the node
    lacks (membership change, leader transfer) answers 501 ``not-implemented`` naming
    it in ``capability``, after the admin check and before any other; a request the
    protocol never serves (its node refuses it as ``unsupported: <why>``, core/client.py:
    compare-and-swap or a linearizable read on an eventually consistent store) answers
    501 ``not-implemented`` with the reason;
  * client auth (users, roles, tokens; off until enabled): every key-value request, and
    ``/v1/status``, ``/v1/members``, ``/metrics`` as configured, passes ``self.auth``
    first (``auth_api.py`` owns those rules and the ``/v1/auth/...`` routes);
  * ``/health`` answers as etcd's does, to probes that carry no token (load balancers,
    Kubernetes): 200 ``{"health": "true", "reason": ""}``, else 503 with ``"false"`` and
    the first failed check: the node halted; its protocol has leaders and it knows none;
    a linearizable read of the key ``health`` through the service's first read kind
    (the log's round trip etcd's check makes; a service with no linearizable read skips
    it), within ``request_timeout``.  ``?serializable=true`` skips the read (etcd's
    liveness probe); ``exclude`` (etcd's alarm names) is taken and ignored: no alarm is
    ever raised here.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestPayloadError

from consensuskit.core.capabilities import (
    LEADER_TRANSFER,
    MEMBERSHIP_CHANGE,
    HasLeader,
    LeaderTransfer,
    MembershipChange,
    is_leading,
    peer_progress,
    status_dict,
)
from consensuskit.core.client import (
    BUSY,
    CONSISTENCY_LEVELS,
    INVALID_TOKEN,
    NOT_LEADER,
    PERMISSION_DENIED,
    READ_FAILED,
    REMOVED,
    REQUEST_ID_REUSED,
    SESSION_EXPIRED,
    STALE_SESSION,
    UNAUTHENTICATED,
    UNSUPPORTED,
    ClientRequest,
    ClientResponse,
)
from consensuskit.core.keys import REPLY_SIGNATURE_HEADER
from consensuskit.core.quorum import quorum_size
from consensuskit.core.service import ServiceSpec, resolve
from consensuskit.server import edge
from consensuskit.server.config import ConfigError, PeerInfo, ServerConfig, format_address, parse_address
from consensuskit.server.events import EventFeed, parse_since
from consensuskit.server.metrics import NodeMetrics
from consensuskit.server.node_interface import change_visible, missing, supported_changes
from consensuskit.server.runtime import LeadershipLost, NodeHalted, NodeRuntime, RequestTimeout
from consensuskit.statemachines.peers import directory_of, forget_peer_op, peer_op
from consensuskit.statemachines.sessions import BAD_BACKUP, NOT_EMPTY, refusal

log = logging.getLogger("consensuskit.server.http")

REQUEST_ID_HEADER = edge.REQUEST_ID_HEADER
STALE_RETRIES = 5  # submissions of an anonymous write refused stale-session (module rules)
JSON_BODY_LIMIT = 64 * 1024
# A member the leader heard from this recently counts as up for a strict membership change
# (module rules): twice the servers' default election timeout, twenty heartbeats.
ACTIVE_WITHIN = 2.0
NOT_APPLIED = "not-applied"
HEALTH_KEY = "health"  # the key /health reads, as etcd's check does
UNKNOWN = "unknown"

_STATUS_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}


# A client that wants a follower's 421 (and the leader's URL) rather than a forwarded
# answer says so; the fast path leaves such requests to this module.
LEADER_ONLY_HEADER = "X-Leader-Only"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


class ApiHost(Protocol):
    """What the API needs from the node process (``main.NodeServer``)."""

    config: ServerConfig
    runtime: NodeRuntime
    metrics: NodeMetrics
    started_at: float
    events: EventFeed | None  # GET /v1/events (server/events.py)

    def directory(self) -> dict[str, PeerInfo]: ...

    def add_peer(self, node_id: str, info: PeerInfo) -> None: ...

    def follow_peers(self) -> None: ...

    def set_blocked(self, peers: set[str]) -> None: ...

    def transport_status(self) -> dict[str, Any]: ...

    def cluster_level(self) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, headers=self.headers, **self.extra)


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"error": code, "message": message, **extra}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _ok(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def encode_value(value: Any) -> dict[str, Any]:
    """JSON form of a stored value: text as is, bytes as base64."""
    if isinstance(value, bytes):
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}
    if isinstance(value, str):
        return {"value": value, "encoding": "utf-8"}
    return {"value": value, "encoding": "json"}  # written by something other than this API


class NodeApi:
    """One node's client API: the service's routes (its ``http`` reference) plus the
    platform's own (status, members, leader transfer, faults, metrics, auth)."""

    def __init__(self, host: ApiHost, service: ServiceSpec | None = None) -> None:
        self.host = host
        self.runtime = host.runtime
        service = service if service is not None else getattr(host, "service", None)
        self.service = service
        # The routes object the service names (None: no HTTP front of its own).
        self.routes: Any = resolve(service.http) if service is not None and service.http else None
        # The largest body a route reads (named in a 413's message): a value and its JSON,
        # or more where the service's routes say so (the etcd gateway's base64).
        service_max = getattr(self.routes, "max_body_bytes", None)
        self.max_body_bytes = max(
            self.config.max_value_bytes + JSON_BODY_LIMIT,
            service_max(self.config) if service_max is not None else 0,
        )
        boot = os.urandom(6).hex()
        # The anonymous sessions of this incarnation: writes without X-Request-Id, and
        # every read (reads never touch sessions; they need a unique key to be answered).
        self._anon_writer = f"anon.{self.config.node_id}.{boot}"
        self._anon_reader = f"read.{self.config.node_id}.{boot}"
        self._anon_seq = itertools.count(1)
        self._read_seq = itertools.count(1)
        self._latency: dict[str, Any] = {}  # op kind -> its request_seconds child
        # What the service's listeners add to /v1/status (e.g. its gRPC URL).
        self.status_extra: dict[str, Any] = {}
        from consensuskit.server.auth_api import AuthGate  # here: auth_api imports this module

        self.auth = AuthGate(self)

    @property
    def config(self) -> ServerConfig:
        return self.host.config  # the host fills in ports bound at start

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._signed, self._errors], client_max_size=self.max_body_bytes)
        r = app.router
        # The service's own routes (its ``http`` reference, core/service.py).
        routes = self.routes
        if routes is not None:
            routes.mount(self, r)
        r.add_route("GET", "/v1/status", self.status)
        r.add_route("GET", "/v1/members", self.members)
        r.add_route("POST", "/v1/members", self.add_member)
        r.add_route("DELETE", "/v1/members/{id}", self.remove_member)
        r.add_route("POST", "/v1/leader/transfer", self.transfer)
        r.add_route("POST", "/v1/debug/faults", self.faults)
        r.add_route("GET", "/v1/events", self.events)
        r.add_route("GET", "/metrics", self.metrics)
        r.add_route("GET", "/health", self.health)
        from consensuskit.server.auth_api import AuthRoutes

        AuthRoutes(self).add_to(r)
        from consensuskit.server.backup_api import BackupRoutes

        BackupRoutes(self).add_to(r)
        return app

    @property
    def reply_signer(self) -> Any:
        """The host's signer of client answers (server/reply_signing.py), or None."""
        return getattr(self.host, "reply_signer", None)

    @web.middleware
    async def _signed(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        signer = self.reply_signer
        if signer is not None and isinstance(response, web.Response) and isinstance(response.body, bytes):
            request_id = request.headers.get(REQUEST_ID_HEADER, "")
            try:
                signature = signer.header(request_id, response.status, response.body)
            except (UnicodeError, ValueError):  # an id no client could verify against: unsigned
                log.warning("answer to %s %s left unsigned", request.method, request.path)
            else:
                response.headers[REPLY_SIGNATURE_HEADER] = signature
        return response

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except edge.EdgeError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except (BadHttpMessage, RequestPayloadError) as exc:  # e.g. a Content-Encoding that does not decode
            return error_response(400, "bad-request", f"malformed request body: {str(exc).strip()[:300]}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _STATUS_CODES.get(exc.status, f"http-{exc.status}")
            message = exc.reason
            if exc.status == 404:
                message = f"no route for {request.method} {request.path}"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            elif exc.status == 413:
                message = f"request body over the limit of {self.max_body_bytes} bytes"
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return error_response(exc.status, code, message, headers=headers)
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(500, "internal", "internal server error (see the node's log)")

    async def submit(
        self,
        request: web.Request,
        op: Any,
        *,
        write: bool = False,
        consistency: str | None = None,
        timeout: float | None = None,
    ) -> ClientResponse:
        """Run ``op`` (a valid op of the service) and return the node's answer; raise
        ApiError for a refusal or a request the runtime could not answer.  ``timeout``:
        the wait for an answer (default ``request_timeout``)."""
        if write:
            client_id, seq = self._request_id(request)
            # Who the edge authenticated (auth_api.py): the node that applies it decides.
            principal = self.auth.carried(request)
        else:
            client_id, seq = self.read_id()
            principal = None  # reads are judged at the edge (auth_api.py)
        client_request = ClientRequest(
            client_id=client_id, seq=seq, op=op, consistency=consistency, principal=principal
        )
        edge.admit(client_request)
        if _truthy(request.headers.get(LEADER_ONLY_HEADER)):
            node = self.runtime.node
            if isinstance(node, HasLeader) and not node.is_leader():
                raise self._not_leader(node.current_leader())
        started = time.monotonic()
        wait = self.config.request_timeout if timeout is None else timeout
        deadline = started + wait
        try:
            for _ in range(STALE_RETRIES):
                response = await self.runtime.request(client_request, max(0.0, deadline - time.monotonic()))
                if not self.renumber(response):
                    break
                client_request = client_request.renumbered(next(self._anon_seq))
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            raise self.failure(exc, write=write, waited=wait) from None
        finally:
            self.observe(op.kind, time.monotonic() - started)
        if not response.ok:
            raise self._rejection(response)
        return response

    def renumber(self, response: ClientResponse) -> bool:
        """Whether to submit the write ``response`` refused again under the next number of
        this node's anonymous session: it was numbered here, and a later number reached
        the log first (the module rules)."""
        return response.error == STALE_SESSION and response.client_id == self._anon_writer

    def read_id(self) -> tuple[str, int]:
        """A fresh (client_id, seq) for a read: reads never touch sessions."""
        return self._anon_reader, next(self._read_seq)

    def observe(self, kind: str, seconds: float) -> None:
        child = self._latency.get(kind)
        if child is None:
            child = self._latency[kind] = self.host.metrics.request_seconds.labels(kind)
        child.observe(seconds)

    def failure(self, exc: BaseException, *, write: bool, waited: float | None = None) -> ApiError:
        """The answer to a request the runtime could not answer (``runtime.request``'s errors)."""
        if isinstance(exc, RequestTimeout):
            waited = self.config.request_timeout if waited is None else waited
            return ApiError(
                503,
                "timeout",
                f"no answer within {waited:g}s (no quorum?); "
                + ("the write may or may not have been applied" if write else "retry"),
                outcome=UNKNOWN if write else NOT_APPLIED,
            )
        if isinstance(exc, LeadershipLost):
            return ApiError(
                503,
                "leadership-lost",
                f"{exc}; the write may or may not have been applied: retry with the same X-Request-Id",
                outcome=UNKNOWN,
            )
        if isinstance(exc, NodeHalted):
            return ApiError(503, "unavailable", str(exc), outcome=UNKNOWN if write else NOT_APPLIED)
        raise exc

    def _request_id(self, request: web.Request) -> tuple[str, int]:
        headers = request.headers.getall(REQUEST_ID_HEADER, ())
        if len(headers) > 1:
            raise edge.EdgeError("bad-request-id", f"more than one {REQUEST_ID_HEADER} header")
        return self.request_id(headers[0] if headers else None)

    def request_id(self, header: str | None) -> tuple[str, int]:
        """(client_id, seq) of a write from its X-Request-Id header (None: anonymous);
        ``edge.EdgeError`` for a malformed one."""
        if header is None:
            return self._anon_writer, next(self._anon_seq)
        return edge.parse_request_id(header)

    def rejection(self, response: ClientResponse) -> ApiError:
        return self._rejection(response)

    def _rejection(self, response: ClientResponse) -> ApiError:
        error = response.error
        if error == NOT_LEADER:
            return self._not_leader(response.leader_hint)
        if error == BUSY:
            exc = ApiError(503, "busy", "leadership transfer in progress; retry shortly", outcome=NOT_APPLIED)
            exc.headers["Retry-After"] = "1"
            return exc
        if error == STALE_SESSION:
            return ApiError(
                409,
                "stale-session",
                "this X-Request-Id sequence is older than the session's last applied one",
                outcome=NOT_APPLIED,
            )
        if error == REMOVED:
            return ApiError(503, "removed", "this node was removed from the cluster", outcome=NOT_APPLIED)
        if error == SESSION_EXPIRED:  # sessions.py: not applied now, an earlier attempt may have been
            return ApiError(
                409,
                "session-expired",
                f"the session of this {REQUEST_ID_HEADER} was forgotten (idle longer than session_ttl, "
                "or evicted by max_sessions), so this request was not applied; an earlier attempt with "
                "this id may have been: the write's outcome is unknown. New writes need a new session "
                "(a new client id, from seq 1)",
                outcome=UNKNOWN,
            )
        if error in (UNAUTHENTICATED, INVALID_TOKEN):  # judged where the write was applied
            exc = ApiError(
                401,
                error,
                "token revoked (its user was deleted or got a new password, or auth was re-enabled); "
                "get a new one from POST /v1/auth/token"
                if error == INVALID_TOKEN
                else "auth is enabled: send Authorization: Bearer <token> (POST /v1/auth/token) "
                "or a client certificate of a user",
                outcome=NOT_APPLIED,
            )
            exc.headers["WWW-Authenticate"] = "Bearer"
            return exc
        if error == PERMISSION_DENIED:
            return ApiError(
                403,
                error,
                "the user may not make this change (judged where it was applied, by the cluster's "
                "current users, roles and permissions)",
                outcome=NOT_APPLIED,
            )
        if error == REQUEST_ID_REUSED:
            return ApiError(
                409,
                "request-id-reused",
                f"this {REQUEST_ID_HEADER} already names another command (the session's last write); "
                "nothing was applied: a new write needs the next seq",
                outcome=NOT_APPLIED,
            )
        if error == NOT_EMPTY["error"]:  # a restore (server/backup_api.py)
            return ApiError(
                409,
                error,
                "the cluster already holds data: a backup is restored only into an empty cluster "
                "(a new one, or one whose every key was deleted)",
                outcome=NOT_APPLIED,
            )
        if error == BAD_BACKUP["error"]:
            return ApiError(
                400, error, "the backup's state does not restore into this service", outcome=NOT_APPLIED
            )
        if error == READ_FAILED:
            return ApiError(
                500,
                error,
                f"node {self.config.node_id} could not serve this read (a bug: its log has the "
                "traceback); nothing changed, the node goes on serving",
                outcome=NOT_APPLIED,
            )
        if error is not None and error.startswith(f"{UNSUPPORTED}: "):
            # The protocol never serves it (core/client.py): the client must ask differently.
            reason = error.removeprefix(f"{UNSUPPORTED}: ")
            return ApiError(
                501, "not-implemented", f"protocol {self.config.protocol}: {reason}", outcome=NOT_APPLIED
            )
        return ApiError(500, "rejected", f"the node refused the request: {error}", outcome=NOT_APPLIED)

    def _not_leader(self, leader: str | None) -> ApiError:
        me = self.config.node_id
        url = self._url_of(leader)
        if leader is None or url is None:
            return ApiError(
                503,
                "not-leader",
                f"node {me} is not the leader and knows no leader (election in progress?)",
                outcome=NOT_APPLIED,
                leader=leader,
                leader_url=None,
            )
        return ApiError(
            421,
            "not-leader",
            f"node {me} is not the leader; retry at {url}",
            outcome=NOT_APPLIED,
            leader=leader,
            leader_url=url,
        )

    # ------------------------------------------------------------------ status
    async def status(self, request: web.Request) -> web.Response:
        await self.auth.endpoint(request, self.config.auth.status)
        return _ok(self.status_body())

    def status_body(self) -> dict[str, Any]:
        host, cfg, runtime = self.host, self.config, self.runtime
        directory = host.directory()
        node_status = _node_status(runtime)
        leader = node_status.get("leader")
        progress = peer_progress(node_status)
        node_status.pop("peers", None)
        transport = host.transport_status()
        peers = {}
        for peer in sorted(set(directory) | set(progress)):
            entry: dict[str, Any] = {
                "client_url": directory[peer].client_url if peer in directory else None,
                "match": None,
                "next": None,
                "state": None,
                "connected": transport.get(peer, {}).get("connected"),
                # Why its messages are dropped (server/peer_hello.py); None: they are not.
                "refused": transport.get(peer, {}).get("refused"),
                # The cluster level its connection offers (server/cluster_level.py).
                "level": transport.get(peer, {}).get("level"),
                # Frames for it wait until its connection says its level (transport.py).
                "awaiting_level": transport.get(peer, {}).get("awaiting_level"),
            }
            entry.update(progress.get(peer, {}))
            peers[peer] = entry
        stats = runtime.stats
        return {
            **node_status,
            "id": cfg.node_id,
            "pid": os.getpid(),
            "protocol": cfg.protocol,
            "client_url": cfg.client_url,
            "leader_url": self._url_of(leader),
            "peers": peers,
            "cluster_level": host.cluster_level(),
            "halted": runtime.failure is not None,
            "uptime_seconds": round(time.monotonic() - host.started_at, 3),
            "syncs": stats.syncs,
            "last_sync_seconds": stats.last_sync_seconds,
            **self.status_extra,
        }

    def _url_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.config.node_id:
            return self.config.client_url
        info = self.host.directory().get(node_id)
        return info.client_url if info is not None else None

    async def metrics(self, request: web.Request) -> web.Response:
        await self.auth.endpoint(request, self.config.auth.metrics)
        body, content_type = self.host.metrics.exposition()
        ctype, _, params = content_type.partition(";")
        charset = params.partition("charset=")[2].strip() or "utf-8"
        return web.Response(body=body, content_type=ctype.strip(), charset=charset)

    async def health(self, request: web.Request) -> web.Response:
        query = _only_params(request, ("serializable", "exclude"))
        reason = await self.health_failure(request, serializable=_truthy(query.get("serializable")))
        return _ok({"health": "false" if reason else "true", "reason": reason or ""}, 503 if reason else 200)

    async def health_failure(self, request: web.Request, *, serializable: bool) -> str | None:
        """The first of ``/health``'s checks that fails (module rules); None: healthy."""
        runtime = self.runtime
        if runtime.failure is not None:
            return f"NODE HALTED: {runtime.failure}"
        node = runtime.node
        if isinstance(node, HasLeader) and node.current_leader() is None:
            return "NO LEADER"
        op = None if serializable else self._health_read()
        if op is None:
            return None
        try:
            await self.submit(request, op, consistency="linearizable")
        except ApiError as exc:
            # 501: the protocol serves no linearizable read; 421: a follower of a protocol whose
            # followers pass nothing on, and it knows a leader: nothing this node can check.
            if exc.status in (421, 501):
                return None
            return f"LINEARIZABLE READ FAILED: {exc.message}"
        return None

    def _health_read(self) -> Any:
        """The read ``/health`` makes (None: the service has none a key can name)."""
        service = self.service
        if service is None or not service.read_kinds:
            return None
        try:
            return service.op(service.read_kinds[0], HEALTH_KEY)
        except ValueError:
            return None

    # ------------------------------------------------------------------ membership
    async def members(self, request: web.Request) -> web.Response:
        await self.auth.endpoint(request, self.config.auth.status)
        self._needs_capability(MEMBERSHIP_CHANGE)
        status = _node_status(self.runtime)
        voters, learners = status.get("voters", []), status.get("learners", [])
        members = [
            {"id": m, "voter": m in voters, "client_url": self._url_of(m)}
            for m in sorted({*voters, *learners})
        ]
        leader = status.get("leader")
        return _ok(
            {
                "leader": leader,
                "leader_url": self._url_of(leader),
                "voters": voters,
                "learners": learners,
                "members": members,
            }
        )

    async def add_member(self, request: web.Request) -> web.Response:
        self._admin(request)
        self._needs_capability(MEMBERSHIP_CHANGE)
        body = await _json_object(request)
        node_id = body.get("id")
        if not isinstance(node_id, str) or not node_id:
            raise ApiError(400, "bad-request", 'body needs "id": the new member\'s node id')
        voter, force = body.get("voter", True), body.get("force", False)
        if not isinstance(voter, bool) or not isinstance(force, bool):
            raise ApiError(400, "bad-request", '"voter" and "force" must be true or false')
        address, url = body.get("peer_address"), body.get("client_url")
        if address is not None or url is not None:
            if not isinstance(address, str) or not isinstance(url, str):
                raise ApiError(400, "bad-request", "give both peer_address (HOST:PORT) and client_url")
            try:
                info = PeerInfo(peer_address=parse_address(address, "peer_address"), client_url=url)
            except ConfigError as exc:
                raise ApiError(400, "bad-request", str(exc)) from None
        else:
            info = None
        return _ok(await self.add_member_as(node_id, voter=voter, info=info, force=force))

    async def remove_member(self, request: web.Request) -> web.Response:
        self._admin(request)
        force = request.query.get("force", "false")
        if force not in ("true", "false"):
            raise ApiError(400, "bad-request", "force must be true or false")
        return _ok(await self.remove_member_as(request.match_info["id"], force=force == "true"))

    # The membership changes themselves, shared by the routes above and the etcd API's
    # Cluster service (services/etcd_cluster.py); each raises ApiError for a refusal.
    async def add_member_as(
        self, node_id: str, *, voter: bool, info: PeerInfo | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Add ``node_id`` (a learner unless ``voter``), recording its addresses ``info``
        in the replicated directory first (statemachines/peers.py).  Adding a voter is
        strict unless ``force`` (module rules)."""
        self._needs_capability(MEMBERSHIP_CHANGE)
        if node_id != self.config.node_id and node_id not in self.host.directory() and info is None:
            raise ApiError(
                400,
                "unknown-peer",
                f"{node_id} is not in this node's [peers]; give peer_address and client_url",
            )
        self._needs_leader()
        change = "add-voter" if voter else "add-learner"
        self._needs_change(change)
        if not force:
            self._keeps_quorum(change, node_id)
        if info is not None:
            membership = _membership(self.runtime)
            if node_id in membership.voters or (not voter and node_id in membership.learners):
                raise ApiError(409, "conflict", f"{node_id} is already a {'voter' if voter else 'member'}")
            await self.record_peer(node_id, info)
        return await self._change_membership(change, node_id)

    async def remove_member_as(self, node_id: str, *, force: bool = False) -> dict[str, Any]:
        """Remove ``node_id``; once that committed, drop its recorded addresses.  Removing
        a voter is strict unless ``force`` (module rules)."""
        self._needs_capability(MEMBERSHIP_CHANGE)
        self._needs_leader()
        if not force:
            self._keeps_quorum("remove", node_id)
        body = await self._change_membership("remove", node_id)
        if node_id in (directory_of(self.runtime.node) or {}):
            with contextlib.suppress(ApiError):  # left recorded: harmless, and the change stands
                await self.record_peer(node_id, None)
        return body

    async def record_peer(self, node_id: str, info: PeerInfo | None) -> None:
        """Record ``node_id``'s addresses (None: drop them) in the replicated directory,
        through the log (statemachines/peers.py); a service whose state machine keeps no
        directory gets them in this node's only."""
        if directory_of(self.runtime.node) is None:
            if info is not None:
                self.host.add_peer(node_id, info)
            return
        if info is None:
            op = forget_peer_op(node_id)
        else:
            op = peer_op(node_id, format_address(info.peer_address), info.client_url)
        client_id, seq = self.request_id(None)
        request = ClientRequest(client_id=client_id, seq=seq, op=op)
        try:
            response = await self.runtime.request(request, self.config.request_timeout)
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            raise self.failure(exc, write=True) from None
        if not response.ok:
            raise self._rejection(response)
        if refusal(response.result) is not None:
            raise ApiError(400, "bad-request", f"cannot record {node_id}'s addresses: {response.result}")
        self.host.follow_peers()

    def _keeps_quorum(self, change: str, node_id: str) -> None:
        """409 ``unhealthy`` when, after ``change`` of ``node_id``, the voters this leader
        heard from lately (itself included) would be fewer than a quorum."""
        voters = set(_membership(self.runtime).voters)
        if change == "add-voter" and node_id not in voters:
            after = voters | {node_id}
        elif change == "remove" and node_id in voters:
            after = voters - {node_id}
        else:
            return  # the voters stay as they are: a learner's change, or a repeated one
        up = self.runtime.heard_within(ACTIVE_WITHIN) | {self.config.node_id}
        active = sorted(after & up)
        quorum = quorum_size(len(after))
        if len(active) >= quorum:
            return
        verb = {"add-voter": "adding", "remove": "removing"}[change]
        raise ApiError(
            409,
            "unhealthy",
            f"{verb} {node_id} would leave {len(active)} of {len(after)} voters up "
            f"({', '.join(active)}), fewer than the {quorum} a quorum needs: the cluster would "
            f"stop; bring {', '.join(sorted(after - up))} back first, or force the change",
            unreachable=sorted(after - up),
        )

    def _needs_change(self, change: str) -> None:
        supported = supported_changes(self.runtime.node)
        if change not in supported:
            raise ApiError(
                501,
                "not-implemented",
                f"protocol {self.config.protocol} has no {change} (it supports {', '.join(supported)})",
                capability=MEMBERSHIP_CHANGE,
            )

    async def _change_membership(self, change: str, node_id: str) -> dict[str, Any]:
        self._needs_change(change)
        error = await self.runtime.call(lambda n: n.propose_config_change(change, node_id))
        if error is not None:
            raise self._admin_refusal(error)
        committed = await self.runtime.wait_until(
            lambda n: isinstance(n, MembershipChange) and not n.membership().config_pending,
            self.config.request_timeout,
        )
        membership = _membership(self.runtime)
        index = membership.config_index
        if not committed:
            raise ApiError(
                503,
                "timeout",
                f"the configuration change did not commit within "
                f"{self.config.request_timeout:g}s; it may still take effect",
                outcome=UNKNOWN,
                index=index,
            )
        if not change_visible(change, node_id, membership):
            raise ApiError(
                503,
                "leadership-lost",
                f"{self.config.node_id} stopped leading before the change committed; "
                "it may or may not take effect (see GET /v1/members)",
                outcome=UNKNOWN,
            )
        return {
            "change": change,
            "id": node_id,
            "index": index,
            "voters": list(membership.voters),
            "learners": list(membership.learners),
        }

    async def transfer(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = await _json_object(request, allow_empty=True)
        target = body.get("to")
        if target is not None and not isinstance(target, str):
            raise ApiError(400, "bad-request", '"to" must be a node id')
        return _ok(await self.transfer_as(target))

    async def transfer_as(self, target: str | None) -> dict[str, Any]:
        """Hand leadership to ``target`` (None: the most up-to-date other voter)."""
        self._needs_capability(LEADER_TRANSFER)
        self._needs_leader()
        if target is None:
            target = _best_successor(_node_status(self.runtime), self.config.node_id)
            if target is None:
                raise ApiError(409, "no-successor", "no other voter to hand leadership to")
        chosen = target
        error = await self.runtime.call(lambda n: _as_transfer(n).transfer_leadership(chosen))
        if error is not None:
            raise self._admin_refusal(error)
        moved = await self.runtime.wait_until(
            lambda n: isinstance(n, HasLeader) and n.current_leader() == chosen, self.config.request_timeout
        )
        if not moved:
            raise ApiError(
                503,
                "timeout",
                f"{target} did not take over within {self.config.request_timeout:g}s",
                outcome=UNKNOWN,
            )
        status = _node_status(self.runtime)
        return {"leader": target, "leader_url": self._url_of(target), "term": status.get("term")}

    def _needs_capability(self, capability: str) -> None:
        """501 naming ``capability`` when this protocol's nodes lack it."""
        refusal = missing(self.runtime.node, capability)
        if refusal is not None:
            raise ApiError(
                501, "not-implemented", f"protocol {self.config.protocol}: {refusal}", capability=capability
            )

    def _needs_leader(self) -> None:
        node = self.runtime.node
        if not is_leading(node):
            raise self._not_leader(node.current_leader() if isinstance(node, HasLeader) else None)

    def _admin_refusal(self, error: str) -> ApiError:
        if error == NOT_LEADER:
            return self._not_leader(_node_status(self.runtime).get("leader"))
        if "already" in error:
            return ApiError(409, "conflict", error)
        if "in progress" in error or "not committed" in error:
            exc = ApiError(503, "busy", error)
            exc.headers["Retry-After"] = "1"
            return exc
        return ApiError(400, "bad-request", error)

    # ------------------------------------------------------------------ faults
    async def faults(self, request: web.Request) -> web.Response:
        if not self.config.enable_fault_injection:
            raise ApiError(404, "not-found", "fault injection is disabled on this node")
        self._admin(request)
        body = await _json_object(request)
        block = body.get("block", [])
        if not isinstance(block, list) or not all(isinstance(p, str) for p in block):
            raise ApiError(400, "bad-request", '"block" must be a list of peer ids')
        self.host.set_blocked(set(block))
        log.warning("fault injection: node %s now blocks %s", self.config.node_id, sorted(block) or "nobody")
        return _ok({"blocked": sorted(set(block))})

    # ------------------------------------------------------------------ events
    async def events(self, request: web.Request) -> web.StreamResponse:
        """The node's event feed over a websocket (server/events.py): the admin token
        when one is configured, else what ``/v1/status`` needs."""
        if self.config.admin_token is not None:
            self._admin(request)
        else:
            await self.auth.endpoint(request, self.config.auth.status)
        feed = self.host.events
        if feed is None:
            raise ApiError(404, "not-found", "this node keeps no event feed")
        try:
            since, incarnation = parse_since(_only_params(request, ("since", "incarnation")))
        except ValueError as exc:
            raise ApiError(400, "bad-request", str(exc)) from None
        ws = web.WebSocketResponse(heartbeat=15.0)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "bad-request", "GET /v1/events is a websocket: send Upgrade: websocket")
        await ws.prepare(request)
        await feed.serve(ws, since, incarnation)
        return ws

    def _admin(self, request: web.Request) -> None:
        token = self.config.admin_token
        if token is None:
            raise ApiError(403, "forbidden", "admin endpoints are disabled: no admin_token_file configured")
        header = request.headers.get("Authorization")
        if header is None:
            exc = ApiError(401, "unauthorized", "admin endpoint: send Authorization: Bearer <admin token>")
            exc.headers["WWW-Authenticate"] = "Bearer"
            raise exc
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(403, "forbidden", "wrong admin token")


def _node_status(runtime: NodeRuntime) -> dict[str, Any]:
    """The node's status with its capabilities' fields (``capabilities.status_dict``)."""
    return status_dict(runtime.node)


def _membership(runtime: NodeRuntime) -> Any:
    node = runtime.node
    assert isinstance(node, MembershipChange)  # checked by the route (_needs_capability)
    return node.membership()


def _as_transfer(node: Any) -> LeaderTransfer:
    assert isinstance(node, LeaderTransfer)  # checked by the route (_needs_capability)
    return node


def _best_successor(status: dict[str, Any], me: str) -> str | None:
    """The most up-to-date other voter (ties: lowest id)."""
    peers = status.get("peers") or {}
    voters = [v for v in status.get("voters", []) if v != me]
    if not voters:
        return None
    return max(sorted(voters), key=lambda v: peers.get(v, {}).get("match", 0))


def _only_params(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query, from the raw query string under the edge rules, with only ``allowed`` names."""
    query = edge.parse_query(request.rel_url.raw_query_string)
    for name in query:
        if name not in allowed:
            valid = ", ".join(allowed) or "none"
            raise ApiError(400, "bad-request", f"unknown query parameter {name[:60]!r}; valid: {valid}")
    return query


def _consistency(query: dict[str, str]) -> str | None:
    value = query.get("consistency")
    if value is not None and value not in CONSISTENCY_LEVELS:
        raise ApiError(
            400, "bad-request", f"unknown consistency {value[:60]!r}; valid: {', '.join(CONSISTENCY_LEVELS)}"
        )
    return value


async def _json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise ApiError(400, "bad-json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad-json", "body must be a JSON object")
    return body
