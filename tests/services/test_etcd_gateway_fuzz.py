"""Fuzzing the etcd v3 API's JSON gateway (services/etcd_gateway.py: ``POST /v3/...`` on
the node's HTTP port, the lean front's hot calls and the aiohttp routes) on a live
3-node Raft cluster serving the etcd service.

Bodies: each route's request message with hostile values (tests/services/etcd_messages.py)
in protobuf's JSON mapping, then spoiled at random (wrong types, bad base64, unknown enum
names, 64-bit integers out of range or not integers, unknown fields), and JSON that is no
message at all (nested too deep, NaN, not UTF-8); sent as the kv fuzz sends its raw
requests (tests/services/http_fuzz.py ``wild``).  The streamed routes (watch, keepalive,
observe) answer in chunks and are left out here (their gRPC methods are fuzzed in
tests/services/test_etcd_grpc_fuzz.py).

Asserted: no node exits, restarts or halts; every answer is well-formed HTTP and an error
the gateway's JSON body (``{"error", "code", "message"}``, or the platform's
``{"error", "message"}`` for a path or method it has no route for); no 500 but the
UNKNOWN (code 2) Lock and Election answer every error with, as etcd's; and afterwards
every node still puts and reads through the gateway.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import strategies as st

from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
from tests.server.http_raw import Answer, check_error_body
from tests.server.test_fuzz_http import Fuzzed, check_answers
from tests.services.etcd_cluster import EtcdCluster, etcd_cluster
from tests.services.etcd_messages import messages
from tests.services.http_fuzz import JSON_GARBAGE, Live, assert_all_alive, deep_json, run_fuzz, wild

pytestmark = pytest.mark.timeout(300)

DEFAULT_EXAMPLES = 300
SLOW_EXAMPLES = 1500
ROUTES: dict[bytes, Any] = {
    b"/v3/kv/range": pb.RangeRequest,
    b"/v3/kv/put": pb.PutRequest,
    b"/v3/kv/deleterange": pb.DeleteRangeRequest,
    b"/v3/kv/txn": pb.TxnRequest,
    b"/v3/kv/compaction": pb.CompactionRequest,
    b"/v3/lease/grant": pb.LeaseGrantRequest,
    b"/v3/lease/revoke": pb.LeaseRevokeRequest,
    b"/v3/lease/timetolive": pb.LeaseTimeToLiveRequest,
    b"/v3/lease/leases": pb.LeaseLeasesRequest,
    b"/v3/cluster/member/list": pb.MemberListRequest,
    b"/v3/cluster/member/remove": pb.MemberRemoveRequest,
    b"/v3/cluster/member/update": pb.MemberUpdateRequest,
    b"/v3/cluster/member/promote": pb.MemberPromoteRequest,
    b"/v3/maintenance/transfer-leadership": pb.MoveLeaderRequest,
    b"/v3/maintenance/status": pb.StatusRequest,
    b"/v3/maintenance/alarm": pb.AlarmRequest,
    b"/v3/maintenance/defragment": pb.DefragmentRequest,
    b"/v3/maintenance/hashkv": pb.HashKVRequest,
    b"/v3/lock/lock": lpb.LockRequest,
    b"/v3/lock/unlock": lpb.UnlockRequest,
    b"/v3/election/campaign": epb.CampaignRequest,
    b"/v3/election/proclaim": epb.ProclaimRequest,
    b"/v3/election/leader": epb.LeaderRequest,
    b"/v3/election/resign": epb.ResignRequest,
    b"/v3/auth/disable": pb.AuthDisableRequest,
    b"/v3/auth/status": pb.AuthStatusRequest,
    b"/v3/auth/authenticate": pb.AuthenticateRequest,
    b"/v3/auth/user/add": pb.AuthUserAddRequest,
    b"/v3/auth/user/get": pb.AuthUserGetRequest,
    b"/v3/auth/user/list": pb.AuthUserListRequest,
    b"/v3/auth/user/delete": pb.AuthUserDeleteRequest,
    b"/v3/auth/user/changepw": pb.AuthUserChangePasswordRequest,
    b"/v3/auth/user/grant": pb.AuthUserGrantRoleRequest,
    b"/v3/auth/user/revoke": pb.AuthUserRevokeRoleRequest,
    b"/v3/auth/role/add": pb.AuthRoleAddRequest,
    b"/v3/auth/role/get": pb.AuthRoleGetRequest,
    b"/v3/auth/role/list": pb.AuthRoleListRequest,
    b"/v3/auth/role/delete": pb.AuthRoleDeleteRequest,
    b"/v3/auth/role/grant": pb.AuthRoleGrantPermissionRequest,
    b"/v3/auth/role/revoke": pb.AuthRoleRevokePermissionRequest,
}
HOT = [b"/v3/kv/put", b"/v3/kv/range", b"/v3/kv/deleterange"]  # the lean front's, most often
RECIPES = (b"/v3/lock/", b"/v3/election/")
SPOILERS = [
    *(5, -1, 1.5, True, None, [], {}, "!!!", "YQ", "YQ===", "SIDEWAYS", "99999999999999999999"),
    *("-9223372036854775809", "1e3", "0x10", " 1", "\u0000", "\ud800", {"key": 5}, [{"key": "!"}]),
]


def _spoil(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` (a message in protobuf's JSON mapping) with a field or two spoiled."""
    if isinstance(value, dict) and value and depth < 4:
        name = draw(st.sampled_from(sorted(value)))
        value = dict(value)
        value[name] = _spoil(draw, value[name], depth + 1)
        return value
    if isinstance(value, list) and value and depth < 4:
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _spoil(draw, value[i], depth + 1), *value[i + 1 :]]
    return draw(st.sampled_from(SPOILERS))


@st.composite
def bodies_for(draw: st.DrawFn, path: bytes) -> bytes:
    kind = draw(st.sampled_from(["message"] * 4 + ["spoiled"] * 4 + ["extra", "garbage", "deep"]))
    if kind == "garbage":
        return draw(st.sampled_from(JSON_GARBAGE))
    if kind == "deep":  # deeper than the JSON parser goes, at the top or in a field
        depth = draw(st.sampled_from([1200, 5000, 50_000]))
        inner = deep_json(depth)
        return draw(st.sampled_from([inner, b'{"key": ' + inner + b"}", b'{"compare": [' + inner + b"]}"]))
    msg = draw(messages(ROUTES[path].DESCRIPTOR))
    body: Any = json_format.MessageToDict(msg, preserving_proto_field_name=draw(st.booleans()))
    if kind == "spoiled":
        body = _spoil(draw, body if body else {"key": "YQ=="})
    elif kind == "extra":
        body = {
            **body,
            draw(st.sampled_from(["newer_field", "", "KEY", "rangeEnd"])): draw(st.sampled_from(SPOILERS)),
        }
    return json.dumps(body).encode("utf-8", "surrogatepass")


@st.composite
def gateway_requests(draw: st.DrawFn) -> Fuzzed:
    path = draw(st.one_of(st.sampled_from(HOT), st.sampled_from(sorted(ROUTES))))
    paths = (
        st.just(path) if draw(st.integers(0, 9)) else st.sampled_from([b"/v3/kv", b"/v3/nope", path + b"/x"])
    )
    return draw(wild(paths, bodies_for(path), (b"POST",)))


def check_gateway_answers(fuzzed: Fuzzed, answers: list[Answer]) -> None:
    """check_answers, but the UNKNOWN of Lock and Election is a 500, as etcd's gateway says."""
    recipes = [a for a in answers if a.status == 500 and fuzzed.target.startswith(RECIPES)]
    for answer in recipes:
        body = check_error_body(answer)
        assert body["code"] == 2 and not body["message"].startswith("Unexpected"), body
        assert "internal server error" not in body["message"], body
    check_answers(fuzzed, [a for a in answers if a not in recipes])
    for answer in answers:
        if answer.status >= 400 and answer.body and "json" in answer.headers.get("content-type", ""):
            code = answer.json().get("code")
            assert code is None or (isinstance(code, int) and code not in (0, 13)), answer  # no INTERNAL


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    for etcd in etcd_cluster(tmp_path_factory, "raft"):
        found = _live(etcd)
        yield found
        assert_all_alive(found)


def _live(etcd: EtcdCluster) -> Live:
    cluster = etcd.cluster
    ports = {n: etcd.layout.node(n).client_port for n in cluster.nodes}
    return Live(cluster, {n: p.pid for n, p in cluster.nodes.items()}, ports, etcd.layout.admin_token)


def still_serves(live: Live) -> None:
    for node in range(3):
        key = base64.b64encode(b"after-fuzz/%d" % node).decode()
        for _ in range(100):  # an election the fuzz caused (transfer-leadership) may still be on
            status, body = live.call(node, "POST", "/v3/kv/put", {"key": key, "value": "dg=="})
            if status != 503:
                break
        assert status == 200, (status, body)
        status, body = live.call(node, "POST", "/v3/kv/range", {"key": key})
        assert status == 200 and body["kvs"][0]["value"] == "dg==", (status, body)


def test_fuzzed_gateway_requests_never_halt_a_node_nor_get_a_500(live: Live) -> None:
    run_fuzz(live, gateway_requests(), DEFAULT_EXAMPLES, check_all=check_gateway_answers)
    assert live.statuses.get(400, 0) > 0 and live.statuses.get(200, 0) > 0, live.statuses
    still_serves(live)


@pytest.mark.slow
def test_fuzzed_gateway_requests_long(live: Live) -> None:
    run_fuzz(live, gateway_requests(), SLOW_EXAMPLES, check_all=check_gateway_answers)
    still_serves(live)
