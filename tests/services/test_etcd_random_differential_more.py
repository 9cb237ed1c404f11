"""The randomized comparison with a real etcd 3.4 (test_etcd_random_differential.py, whose
servers, request strategies, sending and normalising this module shares), extended to
what it does not reach: Watch streams, the Auth service with KV calls as its users, and
the JSON gateway (grpc-gateway's /v3/... paths).

Watch: one stream per example, creates (key, prefix, from-key, inverted ranges; start
revision now, past, compacted, ahead; prev_kv, filters, fragment, a client's own ids),
cancels (of watches made or never made), progress requests, interleaved with KV writes
and compactions; after each step both servers are read until quiet, and each watch's
answers are compared in order.  Auth: users, roles, grants and revokes, enable and
disable, Authenticate with right and wrong passwords, then KV calls as nobody, root, a
user, or a bad token.  Gateway: the KV and Lease requests of the KV module as JSON.
Not covered: progress_notify's timer, fragments of large responses, keep-alive streams,
Maintenance, Lock and Election, and auth over the gateway or on watches.

This module owns the strategies of those three, their sending (a watch stream read on a
thread of its own, gateway bodies as JSON), their normalisation (what legitimately
differs, each rule saying why) and the per-example reset of auth.  Skipped, saying why,
when ``etcd`` is not installed (.ci/run installs it)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.services.etcdpb.authpb import auth_pb2 as authpb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from tests.services.test_etcd_random_differential import (
    HEADER_IDS,
    Pair,
    Rev,
    Server,
    as_data,
    build,
    compacts,
    deletes,
    grants,
    key_ranges,
    listings,
    normalise,
    puts,
    ranges,
    revokes,
    send,
    ttls,
    txn_request,
    txns,
)
from tests.services.test_etcd_random_differential import pytestmark as shared_marks

pytestmark = shared_marks

Op = tuple[str, dict[str, Any]]

# How long a stream must stay silent before its answers are taken as complete: events
# reach a watcher a few milliseconds after the write that made them, on both servers.
QUIET = 0.15

CHEAP = settings(
    derandomize=True,
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CHEAP_AUTH = settings(CHEAP, max_examples=12)  # each example sets auth up: about 1 s
CHEAP_GATEWAY = settings(CHEAP, max_examples=100)  # plain HTTP: tens of ms an example
SLOW = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A real etcd and one node of ours for this module (the shared ``Pair``)."""
    servers = Pair(tmp_path_factory)
    try:
        yield servers
    finally:
        servers.close()


def on_both(pair: Pair, work: Any) -> tuple[Any, Any]:
    """``work(server)`` on both servers at once (the waits for quiet overlap)."""
    results: dict[str, Any] = {}

    def run(server: Server) -> None:
        results[server.name] = work(server)

    workers = [threading.Thread(target=run, args=(s,)) for s in (pair.real, pair.ours)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results[pair.real.name], results[pair.ours.name]


# ====================================================================== Watch


@dataclass(frozen=True)
class WatchRef:
    """The id the ``index``-th create of this example was answered with (each server
    picks its own); a create never made stands for an id no watch has."""

    index: int


@st.composite
def watch_creates(draw: st.DrawFn) -> Op:
    fields = draw(key_ranges())
    fields["start_revision"] = draw(
        st.one_of(st.just(0), st.just(0), st.builds(Rev, st.integers(-4, 3)), st.just(Rev(6)))
    )
    if draw(st.booleans()):
        fields["prev_kv"] = True
    if draw(st.integers(0, 2)) == 0:
        fields["filters"] = draw(st.lists(st.sampled_from((0, 1)), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 3)) == 0:
        fields["fragment"] = True
    if draw(st.integers(0, 5)) == 0:
        fields["watch_id"] = draw(st.integers(1, 3))  # a client's own id, which may collide
    return "watch", fields


watch_cancels = st.builds(lambda i: ("cancel", {"watch_id": WatchRef(i)}), st.integers(0, 4))
progress_requests = st.just(("progress", {}))
watch_operations = st.one_of(
    watch_creates(),
    watch_creates(),
    watch_cancels,
    progress_requests,
    puts(),
    puts(),
    deletes(),
    txns(),
    compacts,
)


class WatchStream:
    """One Watch call: requests go in through a queue, answers are read on a thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.requests: list[pb.WatchRequest | None] = []
        self.wanted = threading.Condition()
        self.answers: list[Any] = []
        self.last = time.monotonic()
        self.created: list[int] = []  # the ids creates were answered with, in order
        self.call = server.watch.Watch(self.outgoing(), timeout=120)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def outgoing(self) -> Iterator[pb.WatchRequest]:
        sent = 0
        while True:
            with self.wanted:
                self.wanted.wait_for(lambda sent=sent: len(self.requests) > sent)
                request = self.requests[sent]
            sent += 1
            if request is None:
                return
            yield request

    def read(self) -> None:
        try:
            for answer in self.call:
                with self.wanted:
                    self.answers.append(answer)
                    if answer.created:
                        self.created.append(answer.watch_id)
                    self.last = time.monotonic()
                    self.wanted.notify_all()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                with self.wanted:
                    self.answers.append(("error", error.code().name, error.details()))
                    self.wanted.notify_all()

    def send(self, request: pb.WatchRequest) -> None:
        with self.wanted:
            self.requests.append(request)
            self.last = time.monotonic()  # the quiet to wait for starts now
            self.wanted.notify_all()

    def wait_created(self, count: int) -> None:
        """Until ``count`` creates were answered (each create is answered once)."""
        with self.wanted:
            self.wanted.wait_for(lambda: len(self.created) >= count, timeout=10)

    def quiet(self, since_now: bool = False) -> None:
        """Until nothing arrived for ``QUIET`` seconds (counted from now at least, with
        ``since_now``: a write was just made, its events may be on their way)."""
        if since_now:
            with self.wanted:
                self.last = max(self.last, time.monotonic())
        while True:
            with self.wanted:
                left = self.last + QUIET - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    def close(self) -> None:
        self.send(None)  # type: ignore[arg-type]
        self.call.cancel()
        self.reader.join(timeout=10)


def watch_request(server: Server, stream: WatchStream, op: Op) -> pb.WatchRequest:
    kind, fields = op
    if kind == "watch":
        create = build(server, pb.WatchCreateRequest, fields)
        return pb.WatchRequest(create_request=create)
    if kind == "cancel":
        ref = fields["watch_id"]
        watch_id = stream.created[ref.index] if ref.index < len(stream.created) else 77
        return pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id))
    return pb.WatchRequest(progress_request=pb.WatchProgressRequest())


def watch_step(server: Server, stream: WatchStream, op: Op, creates: int) -> Any:
    """Run one step; a KV call's answer, or None for what goes on the stream."""
    kind = op[0]
    if kind in ("watch", "cancel", "progress"):
        if kind != "watch":
            stream.quiet()  # every event of the writes before reached its watcher first
        stream.send(watch_request(server, stream, op))
        if kind == "watch":
            stream.wait_created(creates)
        stream.quiet()
        return None
    answer = send(server, op)
    stream.quiet(since_now=True)
    return answer


def watch_answer(server: Server, stream: WatchStream, answer: Any) -> Any:
    if isinstance(answer, tuple):
        return answer
    data = as_data(server, answer)
    if "watch_id" in data and data["watch_id"] in stream.created:
        # etcd and ours both count ids from 0 on a stream; named by the create that got them
        data["watch_id"] = f"W{stream.created.index(data['watch_id'])}"
    return data


def watch_differences(pair: Pair, ops: list[Op]) -> list[str]:
    pair.reset()
    streams = {s.name: WatchStream(s) for s in (pair.real, pair.ours)}
    try:
        creates = 0
        for i, op in enumerate(ops):
            creates += op[0] == "watch"
            real, ours = on_both(pair, lambda s, op=op, c=creates: watch_step(s, streams[s.name], op, c))
            if real is not None or ours is not None:
                real, ours = normalise(pair.real, real), normalise(pair.ours, ours)
            if real != ours:
                return [f"step {i}: {op!r}\n  etcd: {real!r}\n  ours: {ours!r}"]
        found = []
        seen = {
            name: [watch_answer(s, streams[name], a) for a in streams[name].answers]
            for name, s in (("etcd", pair.real), ("ours", pair.ours))
        }
        if by_watch(seen["etcd"]) != by_watch(seen["ours"]):
            found.append("the streams' answers:\n" + "\n".join(stream_lines(seen["etcd"], seen["ours"])))
        return found
    finally:
        for stream in streams.values():
            stream.close()


def by_watch(answers: list[Any]) -> dict[str, list[Any]]:
    """A stream's answers, each watch's in the order sent.  Across watches the order is
    not compared: etcd hands one revision's events to its watchers in a Go map's order."""
    grouped: dict[str, list[Any]] = {}
    for answer in answers:
        watch = repr(answer.get("watch_id", 0)) if isinstance(answer, dict) else "error"
        grouped.setdefault(watch, []).append(answer)
    return grouped


def stream_lines(real: list[Any], ours: list[Any]) -> list[str]:
    lines = []
    for i in range(max(len(real), len(ours))):
        a = real[i] if i < len(real) else "-"
        b = ours[i] if i < len(ours) else "-"
        mark = "  " if a == b else "!!"
        lines.append(f"{mark} etcd: {a!r}\n{mark} ours: {b!r}")
    return lines


def watch_check(pair: Pair, ops: list[Op]) -> None:
    found = watch_differences(pair, ops)
    assert not found, "\n".join([f"{len(ops)} steps: {ops!r}", *found])


@CHEAP
@given(ops=st.lists(watch_operations, min_size=1, max_size=8))
def test_random_watches_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Op]) -> None:
    watch_check(pair, ops)


@pytest.mark.slow
@SLOW
@given(ops=st.lists(watch_operations, min_size=1, max_size=20))
def test_many_random_watches_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Op]) -> None:
    watch_check(pair, ops)


# ====================================================================== Auth

USERS = ("root", "u1", "u2")
ROLES = ("root", "r1", "r2")
PASSWORDS = ("pw", "pw2")
BOGUS = "bogus"  # a caller whose token no server issued

users = st.sampled_from(USERS)
roles = st.sampled_from(ROLES)
# Kept on purpose (docs/server.md, "etcd's Auth service"): our role root is built in, so
# adding it answers OK, deleting it or changing its permissions is refused, where etcd's
# root is a role as any other (that etcd lets every key to anyone holding it).
made_roles = st.sampled_from(ROLES[1:])
passwords = st.sampled_from(PASSWORDS)
callers = st.sampled_from((None, None, "root", "u1", "u2", "u1", BOGUS))


@st.composite
def permissions(draw: st.DrawFn) -> dict[str, Any]:
    return {"permType": draw(st.integers(0, 2)), **draw(key_ranges())}


@st.composite
def user_adds(draw: st.DrawFn) -> Op:
    fields: dict[str, Any] = {"name": draw(users), "password": draw(passwords)}
    if draw(st.integers(0, 5)) == 0:
        fields = {"name": fields["name"], "options": {"no_password": True}}
    return "user_add", fields


def admin(kind: str, **strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Op]:
    return st.builds(lambda **fields: (kind, fields), **strategies)


auth_admin = st.one_of(
    user_adds(),
    admin("user_delete", name=users),
    admin("user_change_password", name=users, password=passwords),
    admin("user_grant", user=users, role=roles),
    admin("user_grant", user=users, role=roles),
    admin("user_revoke", name=users, role=roles),
    admin("role_add", name=made_roles),
    admin("role_add", name=made_roles),
    admin("role_delete", role=made_roles),
    admin("role_grant", name=made_roles, perm=permissions()),
    admin("role_grant", name=made_roles, perm=permissions()),
    admin("role_revoke", role=made_roles, range=key_ranges()),
    admin("user_get", name=users),
    admin("role_get", role=roles),
    st.just(("user_list", {})),
    st.just(("role_list", {})),
    st.just(("auth_enable", {})),
    st.just(("auth_disable", {})),
)
authenticates = admin("authenticate", name=st.one_of(users, st.just("nobody")), password=passwords)
auth_kv = st.one_of(puts(), ranges(), deletes(), txns())
auth_operations = st.one_of(
    st.tuples(callers, auth_admin),
    st.tuples(callers, auth_admin),
    st.tuples(st.just(None), authenticates),
    st.tuples(callers, auth_kv),
    st.tuples(callers, auth_kv),
)
# Most examples start with auth on (etcd 3.4's enable needs a user root holding the role
# root), a user u1 with role r1 and root's token, so that permissions matter.
AUTH_SETUP: list[tuple[str | None, Op]] = [
    (None, ("user_add", {"name": "root", "password": "pw"})),
    (None, ("user_grant", {"user": "root", "role": "root"})),
    (None, ("user_add", {"name": "u1", "password": "pw"})),
    (None, ("role_add", {"name": "r1"})),
    (None, ("user_grant", {"user": "u1", "role": "r1"})),
    (None, ("auth_enable", {})),
    (None, ("authenticate", {"name": "root", "password": "pw"})),
    (None, ("authenticate", {"name": "u1", "password": "pw"})),
]
auth_sequences = st.builds(
    lambda setup, ops: (AUTH_SETUP if setup else []) + ops,
    st.sampled_from((True, True, True, False)),
    st.lists(auth_operations, min_size=1, max_size=10),
)

AUTH_CALLS = {
    "user_add": ("UserAdd", pb.AuthUserAddRequest),
    "user_delete": ("UserDelete", pb.AuthUserDeleteRequest),
    "user_change_password": ("UserChangePassword", pb.AuthUserChangePasswordRequest),
    "user_grant": ("UserGrantRole", pb.AuthUserGrantRoleRequest),
    "user_revoke": ("UserRevokeRole", pb.AuthUserRevokeRoleRequest),
    "role_add": ("RoleAdd", pb.AuthRoleAddRequest),
    "role_delete": ("RoleDelete", pb.AuthRoleDeleteRequest),
    "role_grant": ("RoleGrantPermission", pb.AuthRoleGrantPermissionRequest),
    "role_revoke": ("RoleRevokePermission", pb.AuthRoleRevokePermissionRequest),
    "user_get": ("UserGet", pb.AuthUserGetRequest),
    "role_get": ("RoleGet", pb.AuthRoleGetRequest),
    "user_list": ("UserList", pb.AuthUserListRequest),
    "role_list": ("RoleList", pb.AuthRoleListRequest),
    "auth_enable": ("AuthEnable", pb.AuthEnableRequest),
    "auth_disable": ("AuthDisable", pb.AuthDisableRequest),
    "authenticate": ("Authenticate", pb.AuthenticateRequest),
}


@dataclass
class Tokens:
    """Each server's tokens by user, from its last successful Authenticate of them."""

    by_server: dict[str, dict[str, str]] = field(default_factory=dict)

    def metadata(self, server: Server, caller: str | None) -> tuple[tuple[str, str], ...] | None:
        if caller is None:
            return None
        token = BOGUS if caller == BOGUS else self.by_server.setdefault(server.name, {}).get(caller)
        return None if token is None else (("token", token),)


def auth_message(fields: dict[str, Any], message: type[Any]) -> Any:
    fields = dict(fields)
    if "options" in fields:
        fields["options"] = authpb.UserAddOptions(**fields["options"])
    if "perm" in fields:
        fields["perm"] = authpb.Permission(**fields["perm"])
    if "range" in fields:
        fields.update(fields.pop("range"))
    return message(**fields)


def auth_send(server: Server, tokens: Tokens, caller: str | None, op: Op) -> Any:
    kind, fields = op
    metadata = tokens.metadata(server, caller)
    if kind not in AUTH_CALLS:
        try:
            return kv_call(server, op, metadata)
        except grpc.RpcError as error:
            return ("error", error.code().name, error.details())
    method, message = AUTH_CALLS[kind]
    try:
        answer = getattr(server.auth, method)(auth_message(fields, message), timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return ("error", error.code().name, error.details())
    if kind == "authenticate":
        tokens.by_server.setdefault(server.name, {})[fields["name"]] = answer.token
    return answer


def kv_call(server: Server, op: Op, metadata: Any) -> Any:
    kind, fields = op
    if kind == "txn":
        return server.kv.Txn(txn_request(server, fields), timeout=10, metadata=metadata)
    method, message = {
        "put": ("Put", pb.PutRequest),
        "range": ("Range", pb.RangeRequest),
        "delete": ("DeleteRange", pb.DeleteRangeRequest),
    }[kind]
    return getattr(server.kv, method)(build(server, message, fields), timeout=10, metadata=metadata)


def auth_answer(server: Server, answer: Any) -> Any:
    if isinstance(answer, tuple):
        return answer
    data = as_data(server, answer)
    if "token" in data:
        data["token"] = "TOKEN"  # each server's own random token
    return data


def auth_reset(server: Server) -> None:
    """Auth off, no users, no roles but root (ours has it built in: docs/server.md)."""
    for password in PASSWORDS:
        try:
            server.auth.AuthDisable(pb.AuthDisableRequest(), timeout=10)
            break
        except grpc.RpcError:
            try:
                token = server.auth.Authenticate(
                    pb.AuthenticateRequest(name="root", password=password), timeout=10
                ).token
                server.auth.AuthDisable(pb.AuthDisableRequest(), timeout=10, metadata=(("token", token),))
                break
            except grpc.RpcError:
                continue
    for user in server.auth.UserList(pb.AuthUserListRequest(), timeout=10).users:
        server.auth.UserDelete(pb.AuthUserDeleteRequest(name=user), timeout=10)
    for role in server.auth.RoleList(pb.AuthRoleListRequest(), timeout=10).roles:
        with contextlib.suppress(grpc.RpcError):  # ours refuses to delete root: it is built in
            server.auth.RoleDelete(pb.AuthRoleDeleteRequest(role=role), timeout=10)
    with_root = server.auth.RoleList(pb.AuthRoleListRequest(), timeout=10).roles
    if "root" not in with_root:
        server.auth.RoleAdd(pb.AuthRoleAddRequest(name="root"), timeout=10)


AUTH_REFUSALS = frozenset(
    {
        ("UNAUTHENTICATED", "etcdserver: invalid auth token"),
        ("INVALID_ARGUMENT", "etcdserver: user name is empty"),
        ("PERMISSION_DENIED", "etcdserver: permission denied"),
    }
)


def same_refusal(real: Any, ours: Any) -> bool:
    """Kept on purpose: etcd's gRPC layer refuses a malformed request (no key, an empty
    RequestOp...) before it looks at the token; ours judges the token at the door, before
    the request is decoded further.  Both refuse; only which reason comes first differs."""
    return (
        isinstance(real, tuple)
        and isinstance(ours, tuple)
        and real[1] == "INVALID_ARGUMENT"
        and tuple(real[1:]) not in AUTH_REFUSALS
        and tuple(ours[1:]) in AUTH_REFUSALS
    )


def empty_txn_by_nobody(op: Op, real: Any, ours: Any) -> bool:
    """Left alone: a txn that reads and writes nothing, sent with no user while auth is on:
    etcd checks nothing and answers it, ours asks for a user ("user name is empty").  It
    reads and writes nothing either way."""
    return (
        touches_nothing(op)
        and ours == ("error", "INVALID_ARGUMENT", "etcdserver: user name is empty")
        and not isinstance(real, tuple)
    )


def touches_nothing(op: Op) -> bool:
    """A txn with no compare whose ops are all such txns (none at all, too)."""
    kind, fields = op
    return (
        kind == "txn"
        and not fields.get("compare")
        and all(touches_nothing(sub) for part in ("success", "failure") for sub in fields.get(part) or ())
    )


def nested_txn_hole(op: Op, real: Any, ours: Any) -> bool:
    """Kept on purpose: etcd 3.4.23's checkTxnAuth never looks inside a nested txn, so a
    user without permission reads and writes through one (checked: a put to a key it may
    not write, nested one level, succeeds); later etcd releases judge them, as ours does."""
    nested = op[0] == "txn" and any(
        sub[0] == "txn" for part in ("success", "failure") for sub in op[1].get(part) or ()
    )
    refused_here = isinstance(ours, tuple) and tuple(ours[1:]) in AUTH_REFUSALS
    refused_there = isinstance(real, tuple) and tuple(real[1:]) in AUTH_REFUSALS
    return nested and refused_here and not refused_there  # etcd answered, or met a later check


def auth_differences(pair: Pair, ops: list[tuple[str | None, Op]]) -> list[str]:
    on_both(pair, auth_reset)
    pair.reset()
    tokens = Tokens()
    try:
        for i, (caller, op) in enumerate(ops):
            real = auth_answer(pair.real, auth_send(pair.real, tokens, caller, op))
            ours = auth_answer(pair.ours, auth_send(pair.ours, tokens, caller, op))
            if nested_txn_hole(op, real, ours):
                return []  # etcd wrote what ours refused: the stores differ from here on
            kept = same_refusal(real, ours) or empty_txn_by_nobody(op, real, ours)
            if real != ours and not kept:
                return [f"step {i}: as {caller}: {op!r}\n  etcd: {real!r}\n  ours: {ours!r}"]
        return []
    finally:
        on_both(pair, auth_reset)


def auth_check(pair: Pair, ops: list[tuple[str | None, Op]]) -> None:
    found = auth_differences(pair, ops)
    assert not found, "\n".join([f"{len(ops)} steps: {ops!r}", *found])


@CHEAP_AUTH
@given(ops=auth_sequences)
def test_random_auth_calls_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Any]) -> None:
    auth_check(pair, ops)


@pytest.mark.slow
@settings(SLOW, max_examples=250)  # about 1.5 s an example, within the module's timeout
@given(ops=auth_sequences)
def test_many_random_auth_calls_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Any]) -> None:
    auth_check(pair, ops)


# ====================================================================== the JSON gateway

GATEWAY_CALLS = {
    "put": ("/v3/kv/put", pb.PutRequest),
    "range": ("/v3/kv/range", pb.RangeRequest),
    "delete": ("/v3/kv/deleterange", pb.DeleteRangeRequest),
    "compact": ("/v3/kv/compaction", pb.CompactionRequest),
    "grant": ("/v3/lease/grant", pb.LeaseGrantRequest),
    "revoke": ("/v3/lease/revoke", pb.LeaseRevokeRequest),
    "ttl": ("/v3/lease/timetolive", pb.LeaseTimeToLiveRequest),
    "leases": ("/v3/lease/leases", pb.LeaseLeasesRequest),
}
gateway_operations = st.one_of(
    puts(), puts(), ranges(), ranges(), deletes(), txns(), txns(), compacts, grants, revokes, ttls, listings
)


def gateway_body(server: Server, op: Op) -> tuple[str, bytes]:
    """The path and JSON body of ``op`` as etcd's gateway takes it (protobuf's JSON
    mapping: bytes in base64, 64-bit integers as strings)."""
    kind, fields = op
    if kind == "txn":
        path, message = "/v3/kv/txn", txn_request(server, fields)
    else:
        path, make = GATEWAY_CALLS[kind]
        message = build(server, make, fields)
    return path, json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)).encode()


def gateway_send(server: Server, op: Op) -> tuple[int, Any]:
    path, body = gateway_body(server, op)
    call = urllib.request.Request(
        server.gateway + path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        data = json.loads(text)
    except ValueError:
        return status, text.decode("utf-8", "backslashreplace")
    if op[0] == "grant" and status == 200 and "ID" in data:
        server.leases.append(int(data["ID"]))
    return status, data


FAILED_PRECONDITION = 9


def gateway_answer(server: Server, op: Op, answer: tuple[int, Any]) -> tuple[int, Any]:
    status, data = answer
    if status == 412 and isinstance(data, dict) and data.get("code") == FAILED_PRECONDITION:
        # Kept on purpose: etcd 3.4's grpc-gateway (v1.9) answers FailedPrecondition 412;
        # from v1.14 (etcd 3.5 on), and ours, 400.
        status = 400
    return status, json_data(server, op[0], data)


def json_data(server: Server, kind: str, data: Any) -> Any:
    """A gateway answer as the gRPC comparison normalises its messages: no header ids,
    lease ids named by creation, a live lease's seconds left as "live", Go maps sorted."""
    if isinstance(data, list):
        return [json_data(server, kind, item) for item in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for name, value in data.items():
        if name in HEADER_IDS:
            continue
        if name in ("ID", "lease") and isinstance(value, str) and value.lstrip("-").isdigit():
            known = server.leases
            value = f"L{known.index(int(value))}" if int(value) in known else value
        elif name == "TTL" and kind == "ttl" and isinstance(value, str) and int(value) > 0:
            value = "live"
        else:
            value = json_data(server, kind, value)
        out[name] = value
    for listed in ("leases", "keys"):
        if kind in ("ttl", "leases") and isinstance(out.get(listed), list):
            out[listed] = sorted(out[listed], key=repr)  # etcd lists a Go map's order
    return out


def gateway_differences(pair: Pair, ops: list[Op]) -> list[str]:
    pair.reset()
    for i, op in enumerate(ops):
        real = gateway_answer(pair.real, op, gateway_send(pair.real, op))
        ours = gateway_answer(pair.ours, op, gateway_send(pair.ours, op))
        if real != ours:
            return [f"step {i}: {op!r}\n  etcd: {real!r}\n  ours: {ours!r}"]
    return []


def gateway_check(pair: Pair, ops: list[Op]) -> None:
    found = gateway_differences(pair, ops)
    assert not found, "\n".join([f"{len(ops)} requests: {ops!r}", *found])


@CHEAP_GATEWAY
@given(ops=st.lists(gateway_operations, min_size=1, max_size=12))
def test_random_gateway_requests_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Op]) -> None:
    gateway_check(pair, ops)


@pytest.mark.slow
@SLOW
@given(ops=st.lists(gateway_operations, min_size=1, max_size=30))
def test_many_random_gateway_requests_are_answered_as_etcd_answers_them(pair: Pair, ops: list[Op]) -> None:
    gateway_check(pair, ops)
