"""etcd's auth on an in-process node (services/etcd_auth.py): tokens in gRPC metadata and
the gateway's Authorization header, etcd's error codes and texts, the forward route's
signature, and the HTTP /v1/auth routes managing the same users.  etcdctl's walk through
it on real processes: tests/services/test_etcd_clients.py."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import msgpack
import pytest

from consensuskit.server.cluster import free_port
from consensuskit.server.main import NodeServer
from consensuskit.services.etcd_api import FORWARD_PATH, etcd_node
from consensuskit.services.etcd_auth import AUTH_FAILED, MAC_HEADER, ROOT_ROLE_MISSING
from consensuskit.services.etcdpb.authpb import auth_pb2 as authpb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.server.runtime_harness import ADMIN_TOKEN, async_test, node_config

pytestmark = pytest.mark.timeout(90)

FAST_HASH = {"password_iterations": 1000}  # the minimum: these tests sign in often


class Node:
    def __init__(self, server: NodeServer, channel: grpc.aio.Channel, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.channel = channel
        self.kv = pb_grpc.KVStub(channel)
        self.auth = pb_grpc.AuthStub(channel)
        self.lease = pb_grpc.LeaseStub(channel)
        self.maintenance = pb_grpc.MaintenanceStub(channel)
        self.http = http
        assert server.api is not None
        self.url = server.api.config.client_url

    async def token(self, name: str, password: str) -> list[tuple[str, str]]:
        reply = await self.auth.Authenticate(pb.AuthenticateRequest(name=name, password=password))
        return [("token", reply.token)]

    async def gateway(self, path: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": token} if token else {}
        async with self.http.post(self.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def setup_users(self) -> None:
        """root (rootpw), alice (alicepw) with role app: readwrite on prefix a/, read on the key cfg."""
        await self.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
        await self.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        await self.auth.RoleAdd(pb.AuthRoleAddRequest(name="app"))
        prefix = authpb.Permission(permType=authpb.Permission.READWRITE, key=b"a/", range_end=b"a0")
        await self.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="app", perm=prefix))
        one = authpb.Permission(permType=authpb.Permission.READ, key=b"cfg")
        await self.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="app", perm=one))
        await self.auth.UserAdd(pb.AuthUserAddRequest(name="alice", password="alicepw"))
        await self.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="alice", role="app"))


@asynccontextmanager
async def etcd_node_running(tmp_path: Any) -> AsyncIterator[Node]:
    port = free_port()
    config = node_config(
        tmp_path, "solo", ["solo"], service="etcd", listen={"grpc": f"127.0.0.1:{port}"}, auth=FAST_HASH
    )
    server = NodeServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel, aiohttp.ClientSession() as http:
            node = Node(server, channel, http)
            async with asyncio.timeout(20):
                while True:
                    try:
                        await node.kv.Put(pb.PutRequest(key=b"boot", value=b"1"))
                        break
                    except grpc.aio.AioRpcError:  # no leader yet
                        await asyncio.sleep(0.1)
            yield node
    finally:
        await server.stop()


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details()


USER_EMPTY = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
DENIED = (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
BAD_TOKEN = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


@async_test
async def test_tokens_permissions_and_etcds_errors(tmp_path):
    async with etcd_node_running(tmp_path) as node:
        disabled = await refused(node.auth.Authenticate(pb.AuthenticateRequest(name="root", password="x")))
        assert disabled == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
        # While auth is disabled no token is good (test_a_token_while_auth_is_disabled_...).
        await node.kv.Put(pb.PutRequest(key=b"a/1", value=b"v"))
        assert not (await node.auth.AuthStatus(pb.AuthStatusRequest())).enabled  # disabled: anyone's
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        root = await node.token("root", "rootpw")
        status = await node.auth.AuthStatus(pb.AuthStatusRequest(), metadata=root)
        assert status.enabled and status.authRevision > 0
        # While auth is enabled the status is the root role's (etcd's needAdminPermission).
        assert await refused(node.auth.AuthStatus(pb.AuthStatusRequest())) == USER_EMPTY
        alice_token = await node.token("alice", "alicepw")
        assert await refused(node.auth.AuthStatus(pb.AuthStatusRequest(), metadata=alice_token)) == DENIED

        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a/1"))) == USER_EMPTY
        assert await refused(node.kv.Put(pb.PutRequest(key=b"a/2", value=b"v"))) == USER_EMPTY
        forged = [("token", "bad")]
        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a/1"), metadata=forged)) == BAD_TOKEN
        wrong = await refused(node.auth.Authenticate(pb.AuthenticateRequest(name="alice", password="nope")))
        assert wrong == (grpc.StatusCode.INVALID_ARGUMENT, AUTH_FAILED)
        ghost = await refused(node.auth.Authenticate(pb.AuthenticateRequest(name="ghost", password="nope")))
        assert ghost == wrong

        alice = await node.token("alice", "alicepw")
        await node.kv.Put(pb.PutRequest(key=b"a/2", value=b"v2"), metadata=alice)
        got = await node.kv.Range(pb.RangeRequest(key=b"a/", range_end=b"a0"), metadata=alice)
        assert [kv.key for kv in got.kvs] == [b"a/1", b"a/2"]
        assert (await node.kv.Range(pb.RangeRequest(key=b"cfg"), metadata=alice)).count == 0
        assert await refused(node.kv.Put(pb.PutRequest(key=b"cfg", value=b"x"), metadata=alice)) == DENIED
        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a"), metadata=alice)) == DENIED
        # [a/, b) reaches keys beyond a/'s prefix: refused, though none exist.
        wide = pb.RangeRequest(key=b"a/", range_end=b"b")
        assert await refused(node.kv.Range(wide, metadata=alice)) == DENIED
        assert await refused(node.kv.Compact(pb.CompactionRequest(revision=2), metadata=alice)) == DENIED
        hashkv = node.maintenance.HashKV(pb.HashKVRequest(), metadata=alice)
        assert await refused(hashkv) == DENIED
        # Defragment is the root role's, as in etcd, and answered without a header.
        assert await refused(node.maintenance.Defragment(pb.DefragmentRequest(), metadata=alice)) == DENIED
        assert await refused(node.maintenance.Defragment(pb.DefragmentRequest())) == USER_EMPTY
        root_defrag = await node.maintenance.Defragment(pb.DefragmentRequest(), metadata=root)
        assert root_defrag == pb.DefragmentResponse()
        assert await refused(node.auth.UserList(pb.AuthUserListRequest(), metadata=alice)) == DENIED
        # As in etcd, a user may read its own record and the roles it holds, nothing else.
        own = await node.auth.UserGet(pb.AuthUserGetRequest(name="alice"), metadata=alice)
        assert list(own.roles) == ["app"]
        held = await node.auth.RoleGet(pb.AuthRoleGetRequest(role="app"), metadata=alice)
        assert len(held.perm) == 2
        assert await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="root"), metadata=alice)) == DENIED
        assert await refused(node.auth.RoleGet(pb.AuthRoleGetRequest(role="root"), metadata=alice)) == DENIED
        assert await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="alice"))) == USER_EMPTY
        assert await refused(node.auth.RoleAdd(pb.AuthRoleAddRequest(name="root"), metadata=alice)) == DENIED
        # Membership changes need the root role (services/etcd_cluster.py); the list does not.
        cluster = pb_grpc.ClusterStub(node.channel)
        listed = await cluster.MemberList(pb.MemberListRequest(), metadata=alice)
        solo = listed.members[0].ID
        # etcd's Cluster service says no revision in its header
        assert listed.header.revision == 0 and listed.header.cluster_id and listed.header.member_id
        add = pb.MemberAddRequest(peerURLs=["http://127.0.0.1:9"], isLearner=True)
        assert await refused(cluster.MemberAdd(add, metadata=alice)) == DENIED
        assert await refused(cluster.MemberRemove(pb.MemberRemoveRequest(ID=solo), metadata=alice)) == DENIED
        assert await refused(cluster.MemberPromote(pb.MemberPromoteRequest(ID=solo))) == USER_EMPTY
        move = node.maintenance.MoveLeader(pb.MoveLeaderRequest(targetID=solo), metadata=alice)
        assert await refused(move) == DENIED
        await node.maintenance.MoveLeader(pb.MoveLeaderRequest(targetID=solo), metadata=root)  # already leads
        unknown = await refused(cluster.MemberAdd(add, metadata=root))
        assert unknown[0] == grpc.StatusCode.FAILED_PRECONDITION and "consensuskit member add" in unknown[1]
        # A txn needs what both branches need, whichever runs.
        txn = pb.TxnRequest(
            compare=[pb.Compare(key=b"a/1", target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a/3", value=b"x"))],
            failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"zz", value=b"x"))],
        )
        assert await refused(node.kv.Txn(txn, metadata=alice)) == DENIED
        del txn.failure[:]
        assert (await node.kv.Txn(txn, metadata=alice)).succeeded
        # Revoking a lease deletes its keys: it needs write on each.
        lease = await node.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60), metadata=alice)
        await node.kv.Put(pb.PutRequest(key=b"other", value=b"x", lease=lease.ID), metadata=root)
        revoke = node.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease.ID), metadata=alice)
        assert await refused(revoke) == DENIED
        await node.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease.ID), metadata=root)

        # A watch the user may not read is canceled at once as etcd cancels it: created
        # and canceled, of watch id -1, the reason the gRPC error's text (clientv3 reads it
        # as the watch's error; etcdctl prints it and exits).
        watch = pb_grpc.WatchStub(node.channel)
        create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"zz"))
        for metadata, reason in (
            (alice, "rpc error: code = PermissionDenied desc = etcdserver: permission denied"),
            (None, "rpc error: code = InvalidArgument desc = etcdserver: user name is empty"),
        ):
            stream = watch.Watch(iter([create]), metadata=metadata)
            first = await stream.read()
            assert (first.watch_id, first.created, first.canceled) == (-1, True, True), first
            assert first.cancel_reason == reason and first.header.revision > 0
            stream.cancel()
        allowed = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a/", range_end=b"a0"))
        stream = watch.Watch(iter([allowed]), metadata=alice)
        assert (await stream.read()).created
        stream.cancel()

        # The admin token counts as root.
        admin = [("token", ADMIN_TOKEN)]
        assert sorted((await node.auth.UserList(pb.AuthUserListRequest(), metadata=admin)).users) == [
            "alice",
            "root",
        ]
        role = await node.auth.RoleGet(pb.AuthRoleGetRequest(role="app"), metadata=root)
        assert [(p.permType, p.key, p.range_end) for p in role.perm] == [
            (authpb.Permission.READWRITE, b"a/", b"a0"),
            (authpb.Permission.READ, b"cfg", b""),
        ]
        # A new password retires the tokens issued before it.
        change = pb.AuthUserChangePasswordRequest(name="alice", password="newpw")
        await node.auth.UserChangePassword(change, metadata=root)
        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a/1"), metadata=alice)) == BAD_TOKEN
        await node.kv.Range(pb.RangeRequest(key=b"a/1"), metadata=await node.token("alice", "newpw"))
        # etcd's texts for auth management.
        mgmt = await refused(node.auth.UserDelete(pb.AuthUserDeleteRequest(name="root"), metadata=root))
        assert mgmt == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: invalid auth management")
        exists = await refused(node.auth.RoleAdd(pb.AuthRoleAddRequest(name="app"), metadata=root))
        assert exists == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: role name already exists")
        await node.auth.RoleAdd(pb.AuthRoleAddRequest(name="root"), metadata=root)  # built in: OK
        nobody = await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="bob"), metadata=root))
        assert nobody == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found")
        await node.auth.AuthDisable(pb.AuthDisableRequest(), metadata=root)
        await node.kv.Put(pb.PutRequest(key=b"open", value=b"again"))


@async_test
async def test_auth_enable_needs_a_root_user(tmp_path):
    async with etcd_node_running(tmp_path) as node:
        missing = await refused(node.auth.AuthEnable(pb.AuthEnableRequest()))
        assert missing == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: root user does not exist")
        await node.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="pw"))
        no_role = await refused(node.auth.AuthEnable(pb.AuthEnableRequest()))
        assert no_role == (grpc.StatusCode.FAILED_PRECONDITION, ROOT_ROLE_MISSING)
        empty = await refused(node.auth.UserAdd(pb.AuthUserAddRequest(name="", password="pw")))
        assert empty == USER_EMPTY


@async_test
async def test_the_gateway_takes_the_token_in_the_authorization_header(tmp_path):
    async with etcd_node_running(tmp_path) as node:
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        status, body = await node.gateway("/v3/auth/authenticate", {"name": "alice", "password": "alicepw"})
        assert status == 200, body
        token = body["token"]
        key = base64.b64encode(b"a/g").decode()
        status, body = await node.gateway("/v3/kv/put", {"key": key, "value": key})
        assert (status, body["message"]) == (400, "etcdserver: user name is empty")
        status, body = await node.gateway("/v3/kv/put", {"key": key, "value": key}, token)
        assert status == 200, body
        status, body = await node.gateway("/v3/kv/range", {"key": key}, f"Bearer {token}")
        assert status == 200 and body["kvs"][0]["value"] == key
        other = base64.b64encode(b"zz").decode()
        status, body = await node.gateway("/v3/kv/range", {"key": other}, token)
        assert (status, body["message"]) == (403, "etcdserver: permission denied")
        status, body = await node.gateway("/v3/kv/range", {"key": key}, "forged")
        assert (status, body["message"]) == (401, "etcdserver: invalid auth token")


@async_test
async def test_a_forwarded_call_runs_as_its_principal_only_when_signed(tmp_path):
    """The forward route is reachable by any client: a call naming the admin without the
    cluster's signature runs as nobody, and a wrong signature is refused."""
    async with etcd_node_running(tmp_path) as node:
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        body = {"key": b"f", "value": b"1"}
        call = {"kind": "put", "body": body, "serializable": False, "principal": ("", "admin", 0)}
        payload = msgpack.packb(call, use_bin_type=True)

        async def forward(headers: dict[str, str]) -> dict[str, Any]:
            async with node.http.post(node.url + FORWARD_PATH, data=payload, headers=headers) as resp:
                return msgpack.unpackb(await resp.read(), raw=False)

        assert (await forward({}))["message"] == "etcdserver: user name is empty"
        bad = await forward({MAC_HEADER: "00" * 32})
        assert bad["message"] == "etcdserver: forwarded call with a bad signature"
        assert node.server.api is not None
        signed = await forward({MAC_HEADER: etcd_node(node.server.api).auth.sign(payload)})
        assert signed["ok"], signed


@async_test
async def test_the_http_auth_routes_manage_the_same_users(tmp_path):
    """`consensuskit auth` (the HTTP /v1/auth routes) on an etcd cluster: a user added there
    signs in over gRPC."""
    async with etcd_node_running(tmp_path) as node:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with node.http.post(
            node.url + "/v1/auth/users", json={"name": "carol", "password": "carolpw"}, headers=headers
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
        await node.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
        await node.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        assert (await node.token("carol", "carolpw"))[0][1]
        async with node.http.get(node.url + "/v1/auth/users", headers=headers) as resp:
            names = [u["name"] for u in json.loads(await resp.text())["users"]]
        assert names == ["carol", "root"]


@async_test
async def test_a_token_while_auth_is_disabled_is_refused_as_etcd_refuses_it(tmp_path):
    """Found by the randomized comparison with etcd 3.4: while auth is disabled etcd
    holds no token (disabling drops them all), so a call that reads its token refuses a
    bad or stale one "invalid auth token"; the few calls that never read it (Status,
    LeaseLeases, ...) are served.  Ours ignored every token while disabled."""
    async with etcd_node_running(tmp_path) as node:
        nonsense = [("token", "nonsense")]
        put = pb.PutRequest(key=b"a/1", value=b"v")
        assert await refused(node.kv.Put(put, metadata=nonsense)) == BAD_TOKEN
        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a/1"), metadata=nonsense)) == BAD_TOKEN
        assert await refused(node.auth.UserList(pb.AuthUserListRequest(), metadata=nonsense)) == BAD_TOKEN
        await node.maintenance.Status(pb.StatusRequest(), metadata=nonsense)
        await node.lease.LeaseLeases(pb.LeaseLeasesRequest(), metadata=nonsense)
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        root = await node.token("root", "rootpw")
        await node.auth.AuthDisable(pb.AuthDisableRequest(), metadata=root)
        assert await refused(node.kv.Put(put, metadata=root)) == BAD_TOKEN  # a token from before
        await node.kv.Put(put)


@async_test
async def test_with_auth_enabled_the_calls_that_need_nobody_ignore_a_bad_token(tmp_path):
    """Checked against etcd 3.4: Status, MemberList and Authenticate never read the
    token, so a bad or expired one is no error there (etcdctl endpoint status, a client
    signing in again).  Ours refused them "invalid auth token".  The lease calls need a
    user here (stricter than etcd on purpose) and still refuse a bad token as such, so a
    client signs in again."""
    async with etcd_node_running(tmp_path) as node:
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        nonsense = [("token", "nonsense")]
        status = await node.maintenance.Status(pb.StatusRequest(), metadata=nonsense)
        assert status.leader != 0
        cluster = pb_grpc.ClusterStub(node.channel)
        members = await cluster.MemberList(pb.MemberListRequest(), metadata=nonsense)
        assert [m.name for m in members.members] == ["solo"]
        signed_in = await node.auth.Authenticate(
            pb.AuthenticateRequest(name="alice", password="alicepw"), metadata=nonsense
        )
        assert signed_in.token
        assert await refused(node.lease.LeaseLeases(pb.LeaseLeasesRequest(), metadata=nonsense)) == BAD_TOKEN
        assert await refused(node.kv.Range(pb.RangeRequest(key=b"a/1"), metadata=nonsense)) == BAD_TOKEN


@async_test
async def test_a_watch_refused_for_permission_takes_no_watch_id(tmp_path):
    """Checked against etcd 3.4: its recvLoop judges a create before its watchStream
    takes an id, so the refused create answers id -1 and the next watch gets id 0.  Ours
    took the id first (the next watch got 1)."""
    async with etcd_node_running(tmp_path) as node:
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        alice = await node.token("alice", "alicepw")
        requests: asyncio.Queue[pb.WatchRequest | None] = asyncio.Queue()

        async def sent() -> AsyncIterator[pb.WatchRequest]:
            while (request := await requests.get()) is not None:
                yield request

        call = pb_grpc.WatchStub(node.channel).Watch(sent(), metadata=alice)
        await requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"secret")))
        first = await call.read()
        assert (first.watch_id, first.created, first.canceled) == (-1, True, True)
        assert first.cancel_reason == f"rpc error: code = PermissionDenied desc = {DENIED[1]}"
        await requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a/1")))
        second = await call.read()
        assert (second.watch_id, second.created, second.canceled) == (0, True, False)
        await requests.put(None)
        call.cancel()


@async_test
async def test_reading_a_user_or_role_that_does_not_exist_is_judged_first(tmp_path):
    """Found by the randomized comparison with etcd 3.4: while auth is enabled, a UserGet
    or RoleGet by a caller who may not make it is refused as etcd refuses it (no user:
    "user name is empty"; a user without the root role: "permission denied") also when
    the user or role does not exist; ours answered "user name not found" first, which
    told anyone whether a user exists."""
    async with etcd_node_running(tmp_path) as node:
        await node.setup_users()
        await node.auth.AuthEnable(pb.AuthEnableRequest())
        alice = await node.token("alice", "alicepw")
        assert await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="ghost"))) == USER_EMPTY
        assert await refused(node.auth.RoleGet(pb.AuthRoleGetRequest(role="ghost"))) == USER_EMPTY
        assert await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="ghost"), metadata=alice)) == DENIED
        assert await refused(node.auth.RoleGet(pb.AuthRoleGetRequest(role="ghost"), metadata=alice)) == DENIED
        root = await node.token("root", "rootpw")
        ghost = await refused(node.auth.UserGet(pb.AuthUserGetRequest(name="ghost"), metadata=root))
        assert ghost == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found")
