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
    method's JSON is 400 with code 3;
  * the hot bodies (a put or a range naming only plain fields, as etcd's wrk script
    sends them) skip protobuf: they are read and answered as JSON directly, with the same
    result as the protobuf path (a test holds the two paths to the same answers);
  * ``FORWARD_PATH`` is the node-to-node route a follower forwards calls through
    (services/etcd_api.py), msgpack in and out.
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

from consensuskit.services import etcd_grpc as eg
from consensuskit.services.etcd_api import FORWARD_PATH, EtcdError, etcd_node
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb

if TYPE_CHECKING:
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


def _to_json(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


async def _parse(request: web.Request, message_type: type) -> Any:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
        return json_format.ParseDict(body, message_type(), ignore_unknown_fields=False)
    except (ValueError, json_format.ParseError) as exc:
        raise _Aborted(grpc.StatusCode.INVALID_ARGUMENT, f"bad request body: {str(exc)[:300]}") from None


# The fast path (see the module rules): bodies of these plain fields only.
_B64, _INT, _BOOL = "b64", "int", "bool"
_PUT_FIELDS = {"key": _B64, "value": _B64, "lease": _INT, "prev_kv": _BOOL}
_RANGE_FIELDS = {"key": _B64, "range_end": _B64, "limit": _INT, "revision": _INT, "serializable": _BOOL}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


async def _fast_body(request: web.Request, fields: dict[str, str]) -> dict[str, Any] | None:
    """The store's request for a plain body, or None (then the protobuf path decides)."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
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

    def unary(self, method: Any, message_type: type, fast: Any = None) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                if fast is not None:
                    answer = await fast(self, request)
                    if answer is not None:
                        return answer
                msg = await _parse(request, message_type)
                reply = await method(msg, _Context())
            except _Aborted as exc:
                return _error(exc.code, exc.message)
            return web.json_response(_to_json(reply))

        return handler

    def streamed(self, method: Any, message_type: type, *, client_stream: bool, hold: bool = False) -> Any:
        """``hold``: the one request's stream stays open (a watch ends when its client goes)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                msg = await _parse(request, message_type)
            except _Aborted as exc:
                return _error(exc.code, exc.message)

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
        body = await _fast_body(request, _PUT_FIELDS)
        if body is None:
            return None
        try:
            r = await self.node.call("put", body)
        except EtcdError as exc:
            return _error(_CODES[exc.code], exc.message)
        out: dict[str, Any] = {"header": _json_header(self.node.header(r["revision"]))}
        if r.get("prev_kv"):
            out["prev_kv"] = _json_kv(r["prev_kv"])
        return web.json_response(out)

    async def fast_range(self, request: web.Request) -> web.Response | None:
        body = await _fast_body(request, _RANGE_FIELDS)
        if body is None:
            return None
        serializable = bool(body.pop("serializable", False))
        try:
            r = await self.node.call("range", body, serializable=serializable)
        except EtcdError as exc:
            return _error(_CODES[exc.code], exc.message)
        out: dict[str, Any] = {"header": _json_header(self.node.header(r["revision"]))}
        if r["kvs"]:
            out["kvs"] = [_json_kv(kv) for kv in r["kvs"]]
        if r.get("more"):
            out["more"] = True
        if r.get("count"):
            out["count"] = str(r["count"])
        return web.json_response(out)

    async def forward(self, request: web.Request) -> web.Response:
        answer = await self.node.serve_forwarded(await request.read())
        return web.Response(body=answer, content_type="application/msgpack")


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
            "/v3/maintenance/status": (g.maintenance.Status, pb.StatusRequest),
            "/v3/lock/lock": (g.locks.Lock, lpb.LockRequest),
            "/v3/lock/unlock": (g.locks.Unlock, lpb.UnlockRequest),
            "/v3/election/campaign": (g.election.Campaign, epb.CampaignRequest),
            "/v3/election/proclaim": (g.election.Proclaim, epb.ProclaimRequest),
            "/v3/election/leader": (g.election.Leader, epb.LeaderRequest),
            "/v3/election/resign": (g.election.Resign, epb.ResignRequest),
        }
        fast = {"/v3/kv/put": _Gateway.fast_put, "/v3/kv/range": _Gateway.fast_range}
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


ROUTES = _Routes()

__all__ = ["ROUTES", "EtcdError"]
