"""etcd's protobuf messages to the store's dicts and back (statemachines/mvcc.py owns the
dicts; services/etcdpb holds the messages).  Both fronts use these: the gRPC server
directly, the JSON gateway after protobuf's JSON mapping.

Rules this module owns:
  * a request dict carries only the fields the message sets (proto3 defaults are
    absent), so the logged op stays small;
  * enum numbers are etcd's, and the store uses the same numbers (compare targets and
    results, sort orders and targets, event types, watch filters);
  * a key-value tuple ``(key, create, mod, version, value, lease)`` becomes an
    ``mvccpb.KeyValue``; a header dict becomes a ``ResponseHeader``.
"""

from __future__ import annotations

from typing import Any

from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.mvccpb import kv_pb2 as mvccpb

_RANGE_FIELDS = (
    "key",
    "range_end",
    "limit",
    "revision",
    "sort_order",
    "sort_target",
    "keys_only",
    "count_only",
    "min_mod_revision",
    "max_mod_revision",
    "min_create_revision",
    "max_create_revision",
)


def _set_fields(msg: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(msg, name)
        if value:
            out[name] = value
    return out


# ---------------------------------------------------------------------- requests
def range_request(m: pb.RangeRequest) -> dict[str, Any]:
    return _set_fields(m, _RANGE_FIELDS)


def put_request(m: pb.PutRequest) -> dict[str, Any]:
    return _set_fields(m, ("key", "value", "lease", "prev_kv", "ignore_value", "ignore_lease"))


def delete_request(m: pb.DeleteRangeRequest) -> dict[str, Any]:
    return _set_fields(m, ("key", "range_end", "prev_kv"))


def compare(m: pb.Compare) -> dict[str, Any]:
    out: dict[str, Any] = {"key": m.key, "target": m.target, "result": m.result}
    if m.range_end:
        out["range_end"] = m.range_end
    which = m.WhichOneof("target_union")
    if which is not None:
        out[which] = getattr(m, which)
    return out


def request_op(m: pb.RequestOp) -> dict[str, Any]:
    which = m.WhichOneof("request")
    if which == "request_range":
        return {"range": range_request(m.request_range)}
    if which == "request_put":
        return {"put": put_request(m.request_put)}
    if which == "request_delete_range":
        return {"delete_range": delete_request(m.request_delete_range)}
    if which == "request_txn":
        return {"txn": txn_request(m.request_txn)}
    return {}  # an empty RequestOp: refused in etcd's order by the edge (services/etcd.py)


def hash_kv_request(m: pb.HashKVRequest) -> dict[str, Any]:
    return _set_fields(m, ("revision",))


def txn_request(m: pb.TxnRequest) -> dict[str, Any]:
    return {
        "compare": [compare(c) for c in m.compare],
        "success": [request_op(r) for r in m.success],
        "failure": [request_op(r) for r in m.failure],
    }


# ---------------------------------------------------------------------- responses
def header(h: dict[str, int]) -> pb.ResponseHeader:
    return pb.ResponseHeader(
        cluster_id=h["cluster_id"], member_id=h["member_id"], revision=h["revision"], raft_term=h["raft_term"]
    )


def key_value(kv: Any) -> mvccpb.KeyValue:
    key, create, mod, version, value, lease = kv
    return mvccpb.KeyValue(
        key=key, create_revision=create, mod_revision=mod, version=version, value=value, lease=lease
    )


def range_response(r: dict[str, Any], h: pb.ResponseHeader) -> pb.RangeResponse:
    return pb.RangeResponse(
        header=h, kvs=[key_value(kv) for kv in r["kvs"]], more=bool(r.get("more")), count=r.get("count", 0)
    )


def put_response(r: dict[str, Any], h: pb.ResponseHeader) -> pb.PutResponse:
    prev = r.get("prev_kv")
    return pb.PutResponse(header=h, prev_kv=key_value(prev) if prev else None)


def delete_response(r: dict[str, Any], h: pb.ResponseHeader) -> pb.DeleteRangeResponse:
    return pb.DeleteRangeResponse(
        header=h, deleted=r.get("deleted", 0), prev_kvs=[key_value(kv) for kv in r.get("prev_kvs", ())]
    )


def txn_response(r: dict[str, Any], h: pb.ResponseHeader) -> pb.TxnResponse:
    responses = []
    for item in r.get("responses", ()):
        ((kind, sub),) = item.items()
        inner = pb.ResponseHeader(revision=sub.get("revision", h.revision))
        if kind == "range":
            responses.append(pb.ResponseOp(response_range=range_response(sub, inner)))
        elif kind == "put":
            responses.append(pb.ResponseOp(response_put=put_response(sub, inner)))
        elif kind == "delete_range":
            responses.append(pb.ResponseOp(response_delete_range=delete_response(sub, inner)))
        else:  # etcd leaves a nested txn's header empty (its ops' headers say the revision)
            responses.append(pb.ResponseOp(response_txn=txn_response(sub, pb.ResponseHeader())))
    return pb.TxnResponse(header=h, succeeded=bool(r.get("succeeded")), responses=responses)


def event(e: Any) -> mvccpb.Event:
    kind, kv, prev = e
    return mvccpb.Event(type=kind, kv=key_value(kv), prev_kv=key_value(prev) if prev else None)
