"""etcd's JSON gateway on the node's HTTP port: ``POST /v3/kv/put`` and the rest, with
etcd's JSON bodies, so curl users and etcd's wrk script (../shared/bench/etcd_kv.lua) work
unchanged.

Rules this module owns:
  * a route runs the same gRPC method the gRPC server runs (services/etcd_grpc.py), with
    protobuf's JSON mapping on both sides as etcd's grpc-gateway does: keys and values
    base64, 64-bit integers as strings, enums by name or number, field names as in the
    .proto (``create_revision``, ``TTL``) or in lowerCamelCase; answers leave out fields
    at their default, as etcd's do;
  * streamed methods (``/v3/watch``, ``/v3/lease/keepalive``, ``/v3/election/observe``)
    take one request as the body and answer newline-separated ``{"result": ...}``
    objects, ending with an ``{"error": ...}`` object if the call fails midway;
  * a failed call answers ``{"error": TEXT, "code": GRPC_CODE, "message": TEXT}`` with
    grpc-gateway's HTTP status for the code (400, 404, 503, ...); a body that is not the
    method's JSON is 400 with code 3 (fields the method lacks are dropped, at any depth,
    as etcd's grpc-gateway drops them), and one over the gateway's limit (a request at
    etcd's limit, base64'd) is 400 code 3 ``etcdserver: request is too large``, as a
    request over the limit inside it is;
  * the hot bodies (a put, a range or a delete naming only plain fields, as etcd's wrk
    script sends them) skip protobuf: they are read and answered as JSON directly, with
    the same result as the protobuf path (a test holds the two paths to the same answers);
  * those hot bodies skip aiohttp too on a plain-text listener: ``fast_site`` puts
    ``FastGateway`` on the server's lean front (server/fast_http.py), which answers them
    from the node's callbacks, byte for byte as the aiohttp route answers (a test holds
    the two fronts to the same bytes); whatever else comes, or a body it does not read
    (malformed JSON or base64, other fields), goes to the aiohttp routes below;
  * a call runs as the user its ``Authorization`` header's token names (etcd's gateway
    takes the token alone; ``Bearer TOKEN`` works too), ``/v3/auth/authenticate`` and
    the rest of ``/v3/auth/`` are etcd's Auth service (services/etcd_auth.py);
  * ``FORWARD_PATH`` is the node-to-node route a follower forwards calls through
    (services/etcd_api.py), msgpack in and out;
  * ``GET /version`` answers as etcd's client port does, ``{"etcdserver": VERSION,
    "etcdcluster": "MAJOR.MINOR.0"}`` (tools such as Patroni read it to pick the API);
    ``/health`` is every node's (server/http_api.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from google.protobuf import json_format

from consensuskit.core.client import STALE_SESSION
from consensuskit.server.fast_http import FastSite, json_answer
from consensuskit.services import etcd_grpc as eg
from consensuskit.services.etcd_api import (
    FORWARD_PATH,
    REQUEST_TOO_LARGE,
    STALE_RETRIES,
    VERSION,
    EtcdNode,
    etcd_node,
    max_gateway_body_bytes,
)
from consensuskit.services.etcd_auth import CALLER, MAC_HEADER
from consensuskit.services.etcd_errors import CANCELLED, UNAVAILABLE, EtcdError
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb

if TYPE_CHECKING:
    from consensuskit.core.client import ClientResponse
    from consensuskit.server.fast_http import FastConnection, Head
    from consensuskit.server.http_api import NodeApi

# grpc-gateway's HTTP status for each gRPC code (runtime.HTTPStatusFromCode).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Context:
    """The part of a gRPC servicer context the servicers use."""

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise _Aborted(code, message)


def _error_body(code: grpc.StatusCode, message: str) -> dict[str, Any]:
    return {"error": message, "code": code.value[0], "message": message}


def _error(code: grpc.StatusCode, message: str) -> web.Response:
    return web.json_response(_error_body(code, message), status=HTTP_STATUS.get(code, 500))


def _too_large() -> web.Response:
    """A body over the gateway's limit (``max_gateway_body_bytes``): etcd's answer to a
    request over its limit, as one just under the body limit gets it from the node.  The
    rest of the body was never read, so the connection cannot carry another request."""
    response = _error(grpc.StatusCode.INVALID_ARGUMENT, REQUEST_TOO_LARGE)
    response.headers["Connection"] = "close"
    return response


def _to_json(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


async def _parse(request: web.Request, message_type: type) -> Any:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError(f"a JSON object is expected, not {type(body).__name__}")
        message = message_type()
        return json_format.ParseDict(known_fields(body, message.DESCRIPTOR), message)
    except (ValueError, json_format.ParseError) as exc:
        raise _Aborted(grpc.StatusCode.INVALID_ARGUMENT, f"bad request body: {str(exc)[:300]}") from None
    except RecursionError:  # "[[[[..." or Txns in Txns deeper than the parsers go: a 400, not a 500
        raise _Aborted(grpc.StatusCode.INVALID_ARGUMENT, "bad request body: nested too deep") from None


def known_fields(body: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    """``body`` without the fields ``descriptor``'s message lacks, at every depth: etcd's
    grpc-gateway ignores them (a newer client's, say).  Not protobuf's own
    ``ignore_unknown_fields``, which would also let an unknown enum name through."""
    kept: dict[str, Any] = {}
    for name, value in body.items():
        field = descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(name)
        if field is None:
            continue
        sub = field.message_type
        if sub is not None and not sub.GetOptions().map_entry:
            if isinstance(value, dict):
                value = known_fields(value, sub)
            elif isinstance(value, list):
                value = [known_fields(v, sub) if isinstance(v, dict) else v for v in value]
        kept[name] = value
    return kept


# The fast path (see the module rules): bodies of these plain fields only.
_B64, _INT, _BOOL = "b64", "int", "bool"
_PUT_FIELDS = {"key": _B64, "value": _B64, "lease": _INT, "prev_kv": _BOOL}
_RANGE_FIELDS = {"key": _B64, "range_end": _B64, "limit": _INT, "revision": _INT, "serializable": _BOOL}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


_DELETE_FIELDS = {"key": _B64, "range_end": _B64, "prev_kv": _BOOL}


def plain_body(raw: bytes, fields: dict[str, str]) -> dict[str, Any] | None:
    """The store's request for a JSON body of ``fields`` only, or None."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # nested too deep: the protobuf path says so (a 400)
        return None
    if not isinstance(body, dict) or not body.keys() <= fields.keys():
        return None
    out: dict[str, Any] = {}
    for name, value in body.items():
        kind = fields[name]
        if kind == _B64:
            if type(value) is not str:
                return None
            try:
                decoded = base64.b64decode(value, validate=True)
            except (ValueError, binascii.Error):
                return None
            if decoded:
                out[name] = decoded
        elif kind == _INT:
            if type(value) is str and value.isascii() and value.lstrip("-").isdigit():
                value = int(value)
            if type(value) is not int or not -(2**63) <= value < 2**63:
                return None
            if value:
                out[name] = value
        else:
            if type(value) is not bool:
                return None
            if value:
                out[name] = True
    return out


def _json_header(h: dict[str, int]) -> dict[str, str]:
    return {k: str(v) for k, v in h.items() if v}


def _json_kv(kv: Any) -> dict[str, Any]:
    key, create, mod, version, value, lease = kv
    out: dict[str, Any] = {"key": base64.b64encode(key).decode()}
    for name, number in (("create_revision", create), ("mod_revision", mod), ("version", version)):
        if number:
            out[name] = str(number)
    if value:
        out["value"] = base64.b64encode(value).decode()
    if lease:
        out["lease"] = str(lease)
    return out


def _put_answer(node: Any, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"header": _json_header(node.header(r["revision"]))}
    if r.get("prev_kv"):
        out["prev_kv"] = _json_kv(r["prev_kv"])
    return out


def _range_answer(node: Any, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"header": _json_header(node.header(r["revision"]))}
    if r["kvs"]:
        out["kvs"] = [_json_kv(kv) for kv in r["kvs"]]
    if r.get("more"):
        out["more"] = True
    if r.get("count"):
        out["count"] = str(r["count"])
    return out


def _delete_answer(node: Any, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"header": _json_header(node.header(r["revision"]))}
    if r.get("deleted"):
        out["deleted"] = str(r["deleted"])
    if r.get("prev_kvs"):
        out["prev_kvs"] = [_json_kv(kv) for kv in r["prev_kvs"]]
    return out


# The JSON answer (as protobuf's JSON mapping gives it) to each fast kind's result.
_ANSWERS = {"put": _put_answer, "range": _range_answer, "delete_range": _delete_answer}


class _Gateway:
    def __init__(self, api: NodeApi) -> None:
        node = etcd_node(api)
        self.node = node
        self.kv = eg.KVServicer(node)
        self.watch_servicer = eg.WatchServicer(node)
        self.lease = eg.LeaseServicer(node)
        self.cluster = eg.ClusterServicer(node)
        self.maintenance = eg.MaintenanceServicer(node)
        self.locks = eg.LockServicer(node)
        self.election = eg.ElectionServicer(node)
        self.auth = eg.AuthServicer(node)

    async def _as_caller(self, request: web.Request, method: str | None = None) -> None:
        """Run the rest of this request, a call of ``method`` (its gRPC name), as the
        user its ``Authorization`` header names (etcd's gateway: the token alone;
        ``Bearer TOKEN`` too)."""
        given = request.headers.get("Authorization")
        if given is not None and given[:7].lower() == "bearer ":
            given = given[7:].strip()
        CALLER.set(await self.node.auth.caller_of(given, method))

    def unary(self, method: Any, message_type: type, fast: Any = None) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                await self._as_caller(request, getattr(method, "__name__", None))
                if fast is not None:
                    answer = await fast(self, request)
                    if answer is not None:
                        return answer
                msg = await _parse(request, message_type)
                reply = await method(msg, _Context())
            except web.HTTPRequestEntityTooLarge:
                return _too_large()
            except _Aborted as exc:
                return _error(exc.code, exc.message)
            except EtcdError as exc:  # the caller's token
                return _error(_CODES[exc.code], exc.message)
            return web.json_response(_to_json(reply))

        return handler

    def streamed(self, method: Any, message_type: type, *, client_stream: bool, hold: bool = False) -> Any:
        """``hold``: the one request's stream stays open (a watch ends when its client goes)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                await self._as_caller(request, getattr(method, "__name__", None))
                msg = await _parse(request, message_type)
            except web.HTTPRequestEntityTooLarge:
                return _too_large()
            except _Aborted as exc:
                return _error(exc.code, exc.message)
            except EtcdError as exc:
                return _error(_CODES[exc.code], exc.message)

            async def one() -> AsyncIterator[Any]:
                yield msg
                if hold:
                    await asyncio.Event().wait()

            replies = method(one() if client_stream else msg, _Context())
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            try:
                async for reply in replies:
                    line = json.dumps({"result": _to_json(reply)}) + "\n"
                    await response.write(line.encode())
            except _Aborted as exc:
                await response.write(
                    (json.dumps({"error": _error_body(exc.code, exc.message)}) + "\n").encode()
                )
            except (ConnectionResetError, RuntimeError):  # the client went away
                pass
            finally:
                await replies.aclose()
            return response

        return handler

    async def fast_put(self, request: web.Request) -> web.Response | None:
        return await self._fast(request, "put", _PUT_FIELDS)

    async def fast_range(self, request: web.Request) -> web.Response | None:
        return await self._fast(request, "range", _RANGE_FIELDS)

    async def fast_delete(self, request: web.Request) -> web.Response | None:
        return await self._fast(request, "delete_range", _DELETE_FIELDS)

    async def _fast(self, request: web.Request, kind: str, fields: dict[str, str]) -> web.Response | None:
        body = plain_body(await request.read(), fields)
        if body is None:  # the protobuf path decides
            return None
        serializable = bool(body.pop("serializable", False))
        try:
            r = await self.node.call(kind, body, serializable=serializable)
        except EtcdError as exc:
            return _error(_CODES[exc.code], exc.message)
        return web.json_response(_ANSWERS[kind](self.node, r))

    async def forward(self, request: web.Request) -> web.Response:
        mac = request.headers.get(MAC_HEADER)
        answer = await self.node.serve_forwarded(await request.read(), mac)
        return web.Response(body=answer, content_type="application/msgpack")


# ---------------------------------------------------------------------- the lean front
class _FastRoute:
    __slots__ = ("fields", "kind")

    def __init__(self, kind: str, fields: dict[str, str]) -> None:
        self.kind = kind
        self.fields = fields


_FAST_ROUTES = {
    b"/v3/kv/put": _FastRoute("put", _PUT_FIELDS),
    b"/v3/kv/range": _FastRoute("range", _RANGE_FIELDS),
    b"/v3/kv/deleterange": _FastRoute("delete_range", _DELETE_FIELDS),
}


class _FastCall:
    """One call on the lean front, from its body to its answer."""

    __slots__ = ("attempts", "body", "connection", "op", "route", "serializable")

    def __init__(
        self, connection: FastConnection, route: _FastRoute, body: dict[str, Any], serializable: bool
    ) -> None:
        self.connection = connection
        self.route = route
        self.body = body
        self.serializable = serializable
        self.op: Any = None
        self.attempts = 1


class FastGateway:
    """The hot gateway calls on the server's lean front (``fast_http.FastRoutes``): the
    steps of ``EtcdNode.call`` run from the node's callbacks, the answers those of
    ``_Gateway.fast_put`` and the rest (see the module rules)."""

    __slots__ = ("max_body", "node")

    def __init__(self, api: NodeApi) -> None:
        self.node: EtcdNode = etcd_node(api)
        # The same limit as the aiohttp routes' (``_Routes.max_body_bytes``).
        self.max_body = max_gateway_body_bytes(api.config)

    def route(self, head: Head) -> tuple[_FastRoute, int] | None:
        route = _FAST_ROUTES.get(head.target) if head.method == b"POST" else None
        if route is None or head.content_length < 0:
            return None
        return route, self.max_body

    def serve(self, connection: FastConnection, route: _FastRoute, raw: bytes) -> bool:
        body = plain_body(raw, route.fields)
        if body is None:
            return False  # aiohttp's route reads it through protobuf (or says what is wrong)
        call = _FastCall(connection, route, body, bool(body.pop("serializable", False)))
        try:
            call.op = self.node.prepare(route.kind, body)
            self._submit(call)
        except EtcdError as exc:
            connection.answer(_error_bytes(exc))
        return True

    def _submit(self, call: _FastCall) -> None:
        node = self.node
        request = node.request(call.op, call.serializable)
        try:
            call.connection.submit(
                request, node.api.config.request_timeout, lambda r, e: self._answered(call, r, e)
            )
        except Exception as exc:  # NodeHalted
            raise node.failure(exc) from None

    def _answered(
        self, call: _FastCall, response: ClientResponse | None, error: BaseException | None
    ) -> None:
        node = self.node
        try:
            if error is not None:
                raise node.failure(error)
            assert response is not None
            if not response.ok and response.error == STALE_SESSION and call.attempts < STALE_RETRIES:
                call.attempts += 1  # as EtcdNode.call: not applied, so again under a new seq
                self._submit(call)
                return
            leader = node.leader_to_ask(response, forwarded=False)
            if leader is not None:
                forward = node.forward(leader, call.route.kind, call.body, call.serializable)
                call.connection.wait(forward, lambda task: self._forwarded(call, task))
                return
            result = node.result(response)
            if call.route.kind == "range":
                # Admitted while this node had auth off; it may have applied an enable
                # since, up to the read's index: judged now, as the aiohttp route would.
                node.auth.check_read("range", call.body)
            data = self._ok(call, result)
        except EtcdError as exc:
            data = _error_bytes(exc)
        call.connection.answer(data)

    def _forwarded(self, call: _FastCall, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            data = _error_bytes(EtcdError(CANCELLED, "context canceled"))
        elif (exc := task.exception()) is None:
            data = self._ok(call, task.result())
        elif isinstance(exc, EtcdError):
            data = _error_bytes(exc)
        else:
            data = _error_bytes(EtcdError(UNAVAILABLE, f"etcdserver: {exc}"))
        call.connection.answer(data)

    def _ok(self, call: _FastCall, result: dict[str, Any]) -> bytes:
        # json.dumps as web.json_response writes it: the same bytes as the aiohttp route.
        return json_answer(json.dumps(_ANSWERS[call.route.kind](self.node, result)).encode())


def _error_bytes(exc: EtcdError) -> bytes:
    code = _CODES[exc.code]
    return json_answer(json.dumps(_error_body(code, exc.message)).encode(), HTTP_STATUS.get(code, 500))


async def _version(request: web.Request) -> web.Response:
    """etcd's ``/version`` (module rules): the server's version and the cluster's."""
    major, minor, _ = VERSION.split(".", 2)
    return web.json_response({"etcdserver": VERSION, "etcdcluster": f"{major}.{minor}.0"})


class _Routes:
    """What ``services/etcd.py`` names: ``mount`` adds the gateway to a node's HTTP app."""

    @staticmethod
    def mount(api: NodeApi, router: web.UrlDispatcher) -> None:
        g = _Gateway(api)
        unary = {
            "/v3/kv/range": (g.kv.Range, pb.RangeRequest),
            "/v3/kv/put": (g.kv.Put, pb.PutRequest),
            "/v3/kv/deleterange": (g.kv.DeleteRange, pb.DeleteRangeRequest),
            "/v3/kv/txn": (g.kv.Txn, pb.TxnRequest),
            "/v3/kv/compaction": (g.kv.Compact, pb.CompactionRequest),
            "/v3/lease/grant": (g.lease.LeaseGrant, pb.LeaseGrantRequest),
            "/v3/lease/revoke": (g.lease.LeaseRevoke, pb.LeaseRevokeRequest),
            "/v3/kv/lease/revoke": (g.lease.LeaseRevoke, pb.LeaseRevokeRequest),
            "/v3/lease/timetolive": (g.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest),
            "/v3/kv/lease/timetolive": (g.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest),
            "/v3/lease/leases": (g.lease.LeaseLeases, pb.LeaseLeasesRequest),
            "/v3/kv/lease/leases": (g.lease.LeaseLeases, pb.LeaseLeasesRequest),
            "/v3/cluster/member/list": (g.cluster.MemberList, pb.MemberListRequest),
            "/v3/cluster/member/add": (g.cluster.MemberAdd, pb.MemberAddRequest),
            "/v3/cluster/member/remove": (g.cluster.MemberRemove, pb.MemberRemoveRequest),
            "/v3/cluster/member/update": (g.cluster.MemberUpdate, pb.MemberUpdateRequest),
            "/v3/cluster/member/promote": (g.cluster.MemberPromote, pb.MemberPromoteRequest),
            "/v3/maintenance/transfer-leadership": (g.maintenance.MoveLeader, pb.MoveLeaderRequest),
            "/v3/maintenance/status": (g.maintenance.Status, pb.StatusRequest),
            "/v3/maintenance/alarm": (g.maintenance.Alarm, pb.AlarmRequest),
            "/v3/maintenance/defragment": (g.maintenance.Defragment, pb.DefragmentRequest),
            "/v3/maintenance/hashkv": (g.maintenance.HashKV, pb.HashKVRequest),
            "/v3/lock/lock": (g.locks.Lock, lpb.LockRequest),
            "/v3/lock/unlock": (g.locks.Unlock, lpb.UnlockRequest),
            "/v3/election/campaign": (g.election.Campaign, epb.CampaignRequest),
            "/v3/election/proclaim": (g.election.Proclaim, epb.ProclaimRequest),
            "/v3/election/leader": (g.election.Leader, epb.LeaderRequest),
            "/v3/election/resign": (g.election.Resign, epb.ResignRequest),
            "/v3/auth/enable": (g.auth.AuthEnable, pb.AuthEnableRequest),
            "/v3/auth/disable": (g.auth.AuthDisable, pb.AuthDisableRequest),
            "/v3/auth/status": (g.auth.AuthStatus, pb.AuthStatusRequest),
            "/v3/auth/authenticate": (g.auth.Authenticate, pb.AuthenticateRequest),
            "/v3/auth/user/add": (g.auth.UserAdd, pb.AuthUserAddRequest),
            "/v3/auth/user/get": (g.auth.UserGet, pb.AuthUserGetRequest),
            "/v3/auth/user/list": (g.auth.UserList, pb.AuthUserListRequest),
            "/v3/auth/user/delete": (g.auth.UserDelete, pb.AuthUserDeleteRequest),
            "/v3/auth/user/changepw": (g.auth.UserChangePassword, pb.AuthUserChangePasswordRequest),
            "/v3/auth/user/grant": (g.auth.UserGrantRole, pb.AuthUserGrantRoleRequest),
            "/v3/auth/user/revoke": (g.auth.UserRevokeRole, pb.AuthUserRevokeRoleRequest),
            "/v3/auth/role/add": (g.auth.RoleAdd, pb.AuthRoleAddRequest),
            "/v3/auth/role/get": (g.auth.RoleGet, pb.AuthRoleGetRequest),
            "/v3/auth/role/list": (g.auth.RoleList, pb.AuthRoleListRequest),
            "/v3/auth/role/delete": (g.auth.RoleDelete, pb.AuthRoleDeleteRequest),
            "/v3/auth/role/grant": (g.auth.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest),
            "/v3/auth/role/revoke": (g.auth.RoleRevokePermission, pb.AuthRoleRevokePermissionRequest),
        }
        fast = {
            "/v3/kv/put": _Gateway.fast_put,
            "/v3/kv/range": _Gateway.fast_range,
            "/v3/kv/deleterange": _Gateway.fast_delete,
        }
        for path, (method, message_type) in unary.items():
            router.add_route("POST", path, g.unary(method, message_type, fast.get(path)))
        router.add_route(
            "POST",
            "/v3/watch",
            g.streamed(g.watch_servicer.Watch, pb.WatchRequest, client_stream=True, hold=True),
        )
        router.add_route(
            "POST",
            "/v3/lease/keepalive",
            g.streamed(g.lease.LeaseKeepAlive, pb.LeaseKeepAliveRequest, client_stream=True),
        )
        router.add_route(
            "POST",
            "/v3/election/observe",
            g.streamed(g.election.Observe, epb.LeaderRequest, client_stream=False),
        )
        router.add_route("POST", FORWARD_PATH, g.forward)
        router.add_route("GET", "/version", _version)

    @staticmethod
    def max_body_bytes(config: Any) -> int:
        """The gateway's bodies carry base64: a request at the etcd limit fits."""
        return max_gateway_body_bytes(config)

    @staticmethod
    def fast_site(runner: Any, host: str, port: int, api: NodeApi, **kwargs: Any) -> FastSite:
        """The plain-text listener's lean front (server/fast_http.py) with the hot calls."""
        return FastSite(runner, host, port, api, routes=FastGateway(api), **kwargs)


ROUTES = _Routes()

__all__ = ["ROUTES", "EtcdError"]
