"""etcd's gRPC API on a node (grpcio's asyncio server, beside the HTTP API): KV, Watch,
Lease, Cluster.MemberList, Maintenance (Status, Alarm, Defragment, HashKV, Snapshot), Auth,
Lock and Election.

Rules this module owns:
  * every call runs as the user its metadata's token names (``_AsCaller``, an
    interceptor: services/etcd_auth.py), before its method sees it; a bad token ends it
    UNAUTHENTICATED.  A request whose bytes are not the method's protobuf message ends
    the call INTERNAL with Go grpc's text, as etcd's does (``grpc: error unmarshalling
    request: ...``; in a stream, ``grpc: failed to unmarshal the received message ...``);
    grpcio would answer UNKNOWN naming the Python exception.  Maintenance's Snapshot,
    HashKV and Defragment need the root role while auth is enabled, as in etcd; Status,
    Alarm and MemberList do not.  The Cluster service's answers carry no revision in
    their header, as etcd's;
  * each call is translated (services/etcd_convert.py) and run by the node's
    ``EtcdNode`` (services/etcd_api.py), which forwards to the leader where needed; an
    ``EtcdError`` ends the call with its gRPC code and etcd's text;
  * Watch: one stream carries many watchers; each create is answered ``created`` (with
    the id asked for, or the next free one), then its events in revision order; cancel
    answers ``canceled`` (a cancel of an id no watch of the stream has is not answered,
    as in etcd); a watcher whose start revision was compacted is answered ``canceled``
    with ``compact_revision``, header revision 0 and no reason (etcd's sendLoop); a
    progress request is answered with watch id -1 (etcd's stream-wide progress) once
    every watch of the stream has caught up, with a revision each has sent every event
    up to (etcd 3.5.8+; earlier etcd, and this server before, answered the current
    revision at once, which could pass events still on their way:
    services/etcd_watch_hub.StreamProgress); a watcher created with
    ``progress_notify`` hears the current revision, with no events, after every quiet
    ``progress_interval`` (etcd's 10 minutes); one created with ``fragment`` gets a
    response over the node's request limit in parts (``fragments``), as etcd sends them.
    The stream lasts until the client cancels the call: one that closes its sending side
    (a single create, then EOF) keeps its watchers, as with etcd. At most
    ``WATCH_RESPONSES_QUEUED`` answers wait for a stream's client (etcd's
    ``chanBufLen``): a client that does not read holds its watchers where they are, and
    they go on from the store's history (or end ``compacted``) when it reads again.
    Before, a watch whose client never read queued every event: 10 KB puts grew the node
    by about 20 MB a thousand;
  * LeaseKeepAlive: each request is one keep-alive through the log; an unknown lease
    answers TTL 0 (etcd's way), the stream goes on;
  * Lock answers the held key; its create revision (a Range of the key) is the fencing
    token.  A Lock or Campaign the client abandons removes its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import grpc

from consensuskit.services import etcd_convert as cv
from consensuskit.services.etcd_api import GRPC_OVERHEAD_BYTES, EtcdNode
from consensuskit.services.etcd_auth import CALLER, EtcdAuth
from consensuskit.services.etcd_errors import INTERNAL, UNIMPLEMENTED, UNKNOWN, EtcdError
from consensuskit.services.etcd_recipes import ELECTION_NO_LEADER
from consensuskit.services.etcd_watch_hub import StreamProgress
from consensuskit.services.etcdpb.authpb import auth_pb2 as authpb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from consensuskit.services.etcdpb.mvccpb import kv_pb2 as mvccpb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2_grpc as epb_grpc
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc
from consensuskit.statemachines.mvcc_auth import ROOT_ONLY

log = logging.getLogger("consensuskit.etcd")

_CODES = {code.value[0]: code for code in grpc.StatusCode}
INVALID_WATCH_ID = -1  # clientv3.InvalidWatchID: the id of a watch refused at its creation
AUTO_WATCH_ID = 0  # mvcc.AutoWatchID: a create request that lets the stream pick the id
DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"  # etcd 3.4's text
EMPTY_WATCH_RANGE = "mvcc: watcher range is empty"  # etcd 3.4's text: a range_end not after the key
SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshot stream sends 32 KiB blobs
WATCH_RESPONSES_QUEUED = 128  # answers waiting for one Watch stream's client (etcd's chanBufLen)


async def _abort(context: grpc.aio.ServicerContext, exc: EtcdError) -> None:
    await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), exc.message)


def go_code_name(code: int) -> str:
    """A gRPC status code as Go's grpc prints it (``codes.Code.String``): InvalidArgument."""
    name = _CODES[code].name if code in _CODES else "UNKNOWN"
    return "".join(part.capitalize() for part in name.split("_"))


class _Base:
    def __init__(self, node: EtcdNode) -> None:
        self.node = node

    def header(self, revision: int) -> pb.ResponseHeader:
        return cv.header(self.node.header(revision))


class KVServicer(_Base, pb_grpc.KVServicer):
    async def Range(self, request: pb.RangeRequest, context: Any) -> pb.RangeResponse:
        try:
            r = await self.node.call(
                "range", cv.range_request(request), serializable=request.serializable, coalesce=True
            )
        except EtcdError as exc:
            await _abort(context, exc)
        return cv.range_response(r, self.header(r["revision"]))

    async def Put(self, request: pb.PutRequest, context: Any) -> pb.PutResponse:
        try:
            r = await self.node.call("put", cv.put_request(request), coalesce=True)
        except EtcdError as exc:
            await _abort(context, exc)
        return cv.put_response(r, self.header(r["revision"]))

    async def DeleteRange(self, request: pb.DeleteRangeRequest, context: Any) -> pb.DeleteRangeResponse:
        try:
            r = await self.node.call("delete_range", cv.delete_request(request), coalesce=True)
        except EtcdError as exc:
            await _abort(context, exc)
        return cv.delete_response(r, self.header(r["revision"]))

    async def Txn(self, request: pb.TxnRequest, context: Any) -> pb.TxnResponse:
        try:
            r = await self.node.call("txn", cv.txn_request(request), coalesce=True)
        except ValueError as exc:
            await _abort(context, EtcdError(3, f"etcdserver: {exc}"))
        except EtcdError as exc:
            await _abort(context, exc)
        return cv.txn_response(r, self.header(r["revision"]))

    async def Compact(self, request: pb.CompactionRequest, context: Any) -> pb.CompactionResponse:
        try:
            r = await self.node.call("compact", {"revision": request.revision})
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.CompactionResponse(header=self.header(r["revision"]))


def _as_cancel_reason(exc: EtcdError) -> str:
    """A refusal at a watch's creation as etcd's watch response says it: the text of the
    gRPC error it would have been."""
    return f"rpc error: code = {go_code_name(exc.code)} desc = {exc.message}"


class WatchServicer(_Base, pb_grpc.WatchServicer):
    async def Watch(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.WatchResponse]:
        # Bounded: a watcher whose client does not read stops pulling events (the node's
        # watch is pulled from the store's history), instead of queueing them all here.
        out: asyncio.Queue[pb.WatchResponse | None] = asyncio.Queue(WATCH_RESPONSES_QUEUED)
        watchers: dict[int, asyncio.Task[None]] = {}
        progress = StreamProgress()
        next_id = 0

        async def answer_progress() -> None:
            done, revision = progress.answer()
            if done:
                if revision is None:  # no watch: every event up to the store's revision
                    revision = await self.node.local_revision()
                await out.put(pb.WatchResponse(header=self.header(revision), watch_id=-1))

        async def run(watch_id: int, create: dict[str, Any]) -> None:
            try:
                await watch(watch_id, create)
            finally:
                progress.gone(watch_id)
            await answer_progress()  # a request may have waited for this watch alone

        async def watch(watch_id: int, create: dict[str, Any]) -> None:
            created = False
            fragment = bool(create.get("fragment"))
            try:
                registered = partial(progress.watchers.__setitem__, watch_id)
                async for kind, data in self.node.watch(create, registered):
                    if kind == "caught-up":
                        progress.caught_up(watch_id, data)
                        await answer_progress()
                    elif kind == "created":
                        created = True
                        await out.put(
                            pb.WatchResponse(header=self.header(data), watch_id=watch_id, created=True)
                        )
                    elif kind == "events":
                        revision, events = data
                        converted = [cv.event(e) for e in events]
                        parts = fragments(converted, self.node.max_request_bytes) if fragment else [converted]
                        for i, part in enumerate(parts):
                            await out.put(
                                pb.WatchResponse(
                                    header=self.header(revision),
                                    watch_id=watch_id,
                                    events=part,
                                    fragment=i < len(parts) - 1,
                                )
                            )
                    elif kind == "progress":
                        await out.put(pb.WatchResponse(header=self.header(data), watch_id=watch_id))
                    else:
                        # As etcd's sendLoop sends it: its header's revision is the
                        # compacted WatchResponse's own, 0, and there is no cancel reason
                        # (clients read compact_revision).  Checked against etcd 3.4.
                        await out.put(
                            pb.WatchResponse(
                                header=self.header(0), watch_id=watch_id, canceled=True, compact_revision=data
                            )
                        )
                        return
            except Exception as failure:
                exc = failure if isinstance(failure, EtcdError) else None
                if exc is None:  # a bug: the client hears of it instead of waiting on a dead watch
                    log.exception("watch %d failed", watch_id)
                    exc = EtcdError(INTERNAL, "etcdserver: the watch failed (the node's log says why)")
                if created:
                    await out.put(
                        pb.WatchResponse(
                            header=self.header(0), watch_id=watch_id, canceled=True, cancel_reason=exc.message
                        )
                    )
                    return
                # Refused at creation (no user, no permission): etcd answers a created and
                # canceled watch of id -1 (clientv3.InvalidWatchID), which its client reads
                # as the watch's error (one of the asked id it would never match), the
                # reason being the gRPC error's text.
                await out.put(
                    pb.WatchResponse(
                        header=self.header(await self.node.local_revision()),
                        watch_id=INVALID_WATCH_ID,
                        created=True,
                        canceled=True,
                        cancel_reason=_as_cancel_reason(exc),
                    )
                )

        async def refuse_create(reason: str) -> None:
            """etcd's answer to a create its watchStream refuses: created and canceled,
            of id -1, with the reason."""
            header = self.header(await self.node.local_revision())
            refused = pb.WatchResponse(header=header, watch_id=INVALID_WATCH_ID, created=True, canceled=True)
            refused.cancel_reason = reason
            await out.put(refused)

        async def read() -> None:
            nonlocal next_id
            try:
                async for req in request_iterator:
                    which = req.WhichOneof("request_union")
                    if which == "create_request":
                        cr = req.create_request
                        watch_id = cr.watch_id
                        if cr.range_end not in (b"", b"\x00") and (cr.key or b"\x00") >= cr.range_end:
                            # etcd's watchStream refuses a range with no key in it before
                            # it takes an id.
                            await refuse_create(EMPTY_WATCH_RANGE)
                            continue
                        try:  # etcd's recvLoop judges it before its watchStream takes an id
                            self.node.auth.check_read("watch", {"key": cr.key, "range_end": cr.range_end})
                        except EtcdError as exc:
                            await refuse_create(_as_cancel_reason(exc))
                            continue
                        if watch_id == AUTO_WATCH_ID:
                            # etcd's watchStream: the next free id; a client's own ids
                            # (2^63-1 too) never move it, so it stays within int64.
                            while next_id in watchers:
                                next_id += 1
                            watch_id = next_id
                            next_id += 1
                        elif watch_id in watchers:  # the watch that has the id goes on
                            await refuse_create(DUPLICATE_WATCH_ID)
                            continue
                        create = {
                            "key": cr.key,
                            "range_end": cr.range_end,
                            "start_revision": cr.start_revision,
                            "prev_kv": cr.prev_kv,
                            "filters": tuple(cr.filters),
                            "progress_notify": cr.progress_notify,
                            "fragment": cr.fragment,
                        }
                        watchers[watch_id] = asyncio.ensure_future(run(watch_id, create))
                    elif which == "cancel_request":
                        watch_id = req.cancel_request.watch_id
                        task = watchers.pop(watch_id, None)
                        if task is None:
                            continue  # no such watch: etcd's watchStream.Cancel fails, unanswered
                        task.cancel()
                        progress.gone(watch_id)
                        revision = await self.node.local_revision()
                        await out.put(
                            pb.WatchResponse(header=self.header(revision), watch_id=watch_id, canceled=True)
                        )
                        await answer_progress()
                    elif which == "progress_request":
                        # Answered once every watch of the stream has caught up (etcd 3.5.8+):
                        # the client has every event up to its revision (StreamProgress).
                        progress.ask()
                        await answer_progress()
            except Exception as exc:
                await out.put(None)  # this node cannot serve the stream, or reading it broke
                if not isinstance(exc, EtcdError):
                    raise
            # A client that closed its side keeps its watchers until it cancels the call
            # (etcd's recvLoop ends at EOF and leaves the stream to the watchers).

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await out.get()
                if item is None:
                    break
                yield item
        finally:
            reader.cancel()
            for task in watchers.values():
                task.cancel()


def fragments(events: list[Any], limit: int) -> list[list[Any]]:
    """A watch response's events in parts of under ``limit`` bytes each (one event at
    least), for a watcher created with ``fragment`` (etcd's sendFragments: the client
    joins the parts, each but the last marked ``fragment``); one part when it fits."""
    sizes = [e.ByteSize() + 6 for e in events]  # the event, its field tag and length
    if sum(sizes) < limit or len(events) < 2:
        return [events]
    parts: list[list[Any]] = [[]]
    used = 0
    for event, size in zip(events, sizes, strict=True):
        if parts[-1] and used + size >= limit:
            parts.append([])
            used = 0
        parts[-1].append(event)
        used += size
    return parts


class LeaseServicer(_Base, pb_grpc.LeaseServicer):
    async def LeaseGrant(self, request: pb.LeaseGrantRequest, context: Any) -> pb.LeaseGrantResponse:
        try:
            r = await self.node.lease_grant(request.TTL, request.ID)
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.LeaseGrantResponse(header=self.header(r["revision"]), ID=r["id"], TTL=r["ttl"])

    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest, context: Any) -> pb.LeaseRevokeResponse:
        try:
            r = await self.node.call("lease_revoke", {"id": request.ID})
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.LeaseRevokeResponse(header=self.header(r["revision"]))

    async def LeaseKeepAlive(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for req in request_iterator:
            try:
                r = await self.node.lease_keepalive(req.ID)
            except EtcdError as exc:
                await _abort(context, exc)
            yield pb.LeaseKeepAliveResponse(header=self.header(r["revision"]), ID=req.ID, TTL=r["ttl"])

    async def LeaseTimeToLive(self, request: pb.LeaseTimeToLiveRequest, context: Any) -> Any:
        try:
            r = await self.node.lease_ttl(request.ID, request.keys)
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.LeaseTimeToLiveResponse(
            header=self.header(r["revision"]),
            ID=request.ID,
            TTL=r["ttl"],
            grantedTTL=r["granted_ttl"],
            keys=list(r["keys"]),
        )

    async def LeaseLeases(self, request: pb.LeaseLeasesRequest, context: Any) -> pb.LeaseLeasesResponse:
        try:
            r = await self.node.call("lease_leases", {})
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.LeaseLeasesResponse(
            header=self.header(r["revision"]), leases=[pb.LeaseStatus(ID=i) for i, _, _ in r["leases"]]
        )


class ClusterServicer(_Base, pb_grpc.ClusterServicer):
    """etcd's Cluster service on the platform's membership changes (services/etcd_cluster.py)."""

    async def MemberList(self, request: pb.MemberListRequest, context: Any) -> pb.MemberListResponse:
        try:
            members = await self.node.cluster.members(linearizable=request.linearizable)
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.MemberListResponse(header=self.header(0), members=[pb.Member(**m) for m in members])

    async def _change(self, context: Any, action: str, args: dict[str, Any], reply: Any) -> Any:
        try:
            result = await self.node.cluster.change(action, args)
        except EtcdError as exc:
            await _abort(context, exc)
        fields = {"members": [pb.Member(**m) for m in result["members"]]}
        if "member" in result:
            fields["member"] = pb.Member(**result["member"])
        return reply(header=self.header(0), **fields)

    async def MemberAdd(self, request: pb.MemberAddRequest, context: Any) -> pb.MemberAddResponse:
        args = {"peerURLs": list(request.peerURLs), "isLearner": request.isLearner}
        return await self._change(context, "add", args, pb.MemberAddResponse)

    async def MemberRemove(self, request: pb.MemberRemoveRequest, context: Any) -> pb.MemberRemoveResponse:
        return await self._change(context, "remove", {"ID": request.ID}, pb.MemberRemoveResponse)

    async def MemberUpdate(self, request: pb.MemberUpdateRequest, context: Any) -> pb.MemberUpdateResponse:
        args = {"ID": request.ID, "peerURLs": list(request.peerURLs)}
        return await self._change(context, "update", args, pb.MemberUpdateResponse)

    async def MemberPromote(self, request: pb.MemberPromoteRequest, context: Any) -> pb.MemberPromoteResponse:
        return await self._change(context, "promote", {"ID": request.ID}, pb.MemberPromoteResponse)


class MaintenanceServicer(_Base, pb_grpc.MaintenanceServicer):
    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        revision = await self.node.local_revision()
        return pb.StatusResponse(header=self.header(revision), **self.node.status())

    async def Alarm(self, request: pb.AlarmRequest, context: Any) -> pb.AlarmResponse:
        """No alarm is ever raised here (no space quota, no corruption check): listing or
        disarming finds none, as on an etcd without alarms (etcdctl's endpoint health
        asks, and calls a member that cannot answer unhealthy); raising one is refused."""
        if request.action == pb.AlarmRequest.ACTIVATE:
            await _abort(context, EtcdError(UNIMPLEMENTED, "etcdserver: this server raises no alarms"))
        revision = await self.node.local_revision()
        return pb.AlarmResponse(header=self.header(revision))

    async def Snapshot(self, request: pb.SnapshotRequest, context: Any) -> AsyncIterator[pb.SnapshotResponse]:
        """The store as a consensuskit backup file (`etcdctl snapshot save` keeps it;
        `consensuskit backup restore` or `up --restore` restores it: it is not a bolt
        database, so `etcdctl snapshot restore` cannot), in SNAPSHOT_CHUNK pieces."""
        try:
            self.node.auth.require(ROOT_ONLY)
            data = await self.node.snapshot()
        except EtcdError as exc:
            await _abort(context, exc)
        revision = await self.node.local_revision()
        header = self.header(revision)
        for start in range(0, len(data), SNAPSHOT_CHUNK):
            blob = data[start : start + SNAPSHOT_CHUNK]
            yield pb.SnapshotResponse(header=header, remaining_bytes=len(data) - start - len(blob), blob=blob)

    async def Defragment(self, request: pb.DefragmentRequest, context: Any) -> pb.DefragmentResponse:
        # Nothing to compact on disk: the store is in memory; the WAL and snapshots are
        # trimmed as the log is (etcd's defrag rewrites its bolt file).  Still the root
        # role's call while auth is enabled, and answered without a header, as etcd's.
        try:
            self.node.auth.require(ROOT_ONLY)
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.DefragmentResponse()

    async def MoveLeader(self, request: pb.MoveLeaderRequest, context: Any) -> pb.MoveLeaderResponse:
        """Hand leadership to a voter (services/etcd_cluster.py): the leader only."""
        try:
            await self.node.cluster.change("move_leader", {"targetID": request.targetID})
        except EtcdError as exc:
            await _abort(context, exc)
        revision = await self.node.local_revision()
        return pb.MoveLeaderResponse(header=self.header(revision))

    async def HashKV(self, request: pb.HashKVRequest, context: Any) -> pb.HashKVResponse:
        """This member's hash of its store up to a revision (etcdctl endpoint hashkv):
        members that applied as far give the same hash."""
        try:
            r = await self.node.call("hash_kv", cv.hash_kv_request(request), serializable=True)
        except EtcdError as exc:
            await _abort(context, exc)
        return pb.HashKVResponse(
            header=self.header(r["revision"]),
            hash=r["hash"],
            compact_revision=r["compact_revision"],
            hash_revision=r["hash_revision"],
        )


class AuthServicer(_Base, pb_grpc.AuthServicer):
    """etcd's Auth service over the cluster's users and roles (services/etcd_auth.py)."""

    @property
    def auth(self) -> EtcdAuth:
        return self.node.auth

    async def _answer(self, context: Any, work: Any, reply: Any, **fields: Any) -> Any:
        try:
            result = await work
        except EtcdError as exc:
            await _abort(context, exc)
        revision = await self.node.local_revision()
        extra = {k: v(result) for k, v in fields.items()}
        return reply(header=self.header(revision), **extra)

    async def AuthEnable(self, request: pb.AuthEnableRequest, context: Any) -> pb.AuthEnableResponse:
        return await self._answer(context, self.auth.enable(), pb.AuthEnableResponse)

    async def AuthDisable(self, request: pb.AuthDisableRequest, context: Any) -> pb.AuthDisableResponse:
        return await self._answer(context, self.auth.change("disable"), pb.AuthDisableResponse)

    async def AuthStatus(self, request: pb.AuthStatusRequest, context: Any) -> pb.AuthStatusResponse:
        return await self._answer(
            context,
            self.auth.status(),
            pb.AuthStatusResponse,
            enabled=lambda r: r["enabled"],
            authRevision=lambda r: r["revision"],
        )

    async def Authenticate(self, request: pb.AuthenticateRequest, context: Any) -> pb.AuthenticateResponse:
        return await self._answer(
            context,
            self.auth.authenticate(request.name, request.password),
            pb.AuthenticateResponse,
            token=lambda token: token,
        )

    async def UserAdd(self, request: pb.AuthUserAddRequest, context: Any) -> pb.AuthUserAddResponse:
        no_password = request.options.no_password
        work = self.auth.user_add(request.name, request.password, no_password)
        return await self._answer(context, work, pb.AuthUserAddResponse)

    async def UserGet(self, request: pb.AuthUserGetRequest, context: Any) -> pb.AuthUserGetResponse:
        return await self._answer(
            context, self.auth.read("user", request.name), pb.AuthUserGetResponse, roles=lambda r: r["roles"]
        )

    async def UserList(self, request: pb.AuthUserListRequest, context: Any) -> pb.AuthUserListResponse:
        return await self._answer(
            context,
            self.auth.read("users"),
            pb.AuthUserListResponse,
            users=lambda r: [u["name"] for u in r["users"]],
        )

    async def UserDelete(self, request: pb.AuthUserDeleteRequest, context: Any) -> pb.AuthUserDeleteResponse:
        work = self.auth.change("user-delete", request.name)
        return await self._answer(context, work, pb.AuthUserDeleteResponse)

    async def UserChangePassword(
        self, request: pb.AuthUserChangePasswordRequest, context: Any
    ) -> pb.AuthUserChangePasswordResponse:
        work = self.auth.user_change_password(request.name, request.password)
        return await self._answer(context, work, pb.AuthUserChangePasswordResponse)

    async def UserGrantRole(
        self, request: pb.AuthUserGrantRoleRequest, context: Any
    ) -> pb.AuthUserGrantRoleResponse:
        work = self.auth.change("user-grant-role", request.user, request.role)
        return await self._answer(context, work, pb.AuthUserGrantRoleResponse)

    async def UserRevokeRole(
        self, request: pb.AuthUserRevokeRoleRequest, context: Any
    ) -> pb.AuthUserRevokeRoleResponse:
        work = self.auth.change("user-revoke-role", request.name, request.role)
        return await self._answer(context, work, pb.AuthUserRevokeRoleResponse)

    async def RoleAdd(self, request: pb.AuthRoleAddRequest, context: Any) -> pb.AuthRoleAddResponse:
        return await self._answer(context, self.auth.role_add(request.name), pb.AuthRoleAddResponse)

    async def RoleGet(self, request: pb.AuthRoleGetRequest, context: Any) -> pb.AuthRoleGetResponse:
        def perms(view: Any) -> list[authpb.Permission]:
            return [
                authpb.Permission(permType=kind, key=key, range_end=end)
                for kind, key, end in EtcdAuth.role_permissions(view)
            ]

        work = self.auth.read("role", request.role)
        return await self._answer(context, work, pb.AuthRoleGetResponse, perm=perms)

    async def RoleList(self, request: pb.AuthRoleListRequest, context: Any) -> pb.AuthRoleListResponse:
        return await self._answer(
            context,
            self.auth.read("roles"),
            pb.AuthRoleListResponse,
            roles=lambda r: [role["name"] for role in r["roles"]],
        )

    async def RoleDelete(self, request: pb.AuthRoleDeleteRequest, context: Any) -> pb.AuthRoleDeleteResponse:
        work = self.auth.change("role-delete", request.role)
        return await self._answer(context, work, pb.AuthRoleDeleteResponse)

    async def RoleGrantPermission(
        self, request: pb.AuthRoleGrantPermissionRequest, context: Any
    ) -> pb.AuthRoleGrantPermissionResponse:
        perm = request.perm
        work = self.auth.grant_permission(request.name, perm.permType, perm.key, perm.range_end)
        return await self._answer(context, work, pb.AuthRoleGrantPermissionResponse)

    async def RoleRevokePermission(
        self, request: pb.AuthRoleRevokePermissionRequest, context: Any
    ) -> pb.AuthRoleRevokePermissionResponse:
        work = self.auth.revoke_permission(request.role, request.key, request.range_end)
        return await self._answer(context, work, pb.AuthRoleRevokePermissionResponse)


UNMARSHAL_REQUEST = "grpc: error unmarshalling request: "  # Go grpc's text, unary calls
UNMARSHAL_STREAMED = "grpc: failed to unmarshal the received message "  # in a client stream


class _Undecodable:
    """What a request's bytes decode to when they are not the method's message: the
    call's wrapper ends it INTERNAL (module rules), its method never sees it."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError; RecursionError for messages nested too deep
            return _Undecodable(str(exc) or type(exc).__name__)

    return decode


async def _checked(requests: AsyncIterator[Any], bad: list[EtcdError]) -> AsyncIterator[Any]:
    """A client stream's requests; an undecodable one ends it with an ``EtcdError`` (kept
    in ``bad``: a method may swallow its stream's errors, as Watch does at the end)."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            bad.append(EtcdError(INTERNAL, UNMARSHAL_STREAMED + request.error))
            raise bad[-1]
        yield request


class _AsCaller(grpc.aio.ServerInterceptor):
    """Runs every call as the user its metadata's token names, and ends one whose request
    is not the method's message (module rules)."""

    def __init__(self, node: EtcdNode) -> None:
        self.node = node

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        token = EtcdAuth.token_in(details.invocation_metadata)
        method = details.method.rsplit("/", 1)[-1]  # "/etcdserverpb.KV/Range": "Range"
        node = self.node
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_stream is not None or handler.stream_stream is not None:
            replies = handler.unary_stream or handler.stream_stream
            client_stream = handler.stream_stream is not None

            async def streamed(request: Any, context: Any) -> AsyncIterator[Any]:
                if isinstance(request, _Undecodable):
                    await _abort(context, EtcdError(INTERNAL, UNMARSHAL_REQUEST + request.error))
                try:
                    CALLER.set(await node.auth.caller_of(token, method))
                except EtcdError as exc:
                    await _abort(context, exc)
                bad: list[EtcdError] = []
                try:
                    async for reply in replies(_checked(request, bad) if client_stream else request, context):
                        yield reply
                except EtcdError as exc:
                    if not bad or exc is not bad[0]:
                        raise
                if bad:
                    await _abort(context, bad[0])

            make = (
                grpc.stream_stream_rpc_method_handler
                if client_stream
                else grpc.unary_stream_rpc_method_handler
            )
            return make(
                streamed,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:  # a client stream with one answer: none of etcd's
            return handler
        unary = handler.unary_unary

        async def called(request: Any, context: Any) -> Any:
            if isinstance(request, _Undecodable):
                await _abort(context, EtcdError(INTERNAL, UNMARSHAL_REQUEST + request.error))
            try:
                CALLER.set(await node.auth.caller_of(token, method))
            except EtcdError as exc:
                await _abort(context, exc)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            called,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )


# etcd's Lock and Election services run an in-process client (clientv3's concurrency
# recipes) whose errors reach the caller as plain Go errors: gRPC code Unknown, whatever
# the error (a lease not found, "election: not leader", a missing key), with its text.
MISSING_LEADER = '"leader" field must be provided'  # v3election's ErrMissingLeaderKey


async def _abort_recipe(context: grpc.aio.ServicerContext, exc: EtcdError) -> None:
    await context.abort(grpc.StatusCode.UNKNOWN, exc.message)


class LockServicer(_Base, lpb_grpc.LockServicer):
    async def Lock(self, request: lpb.LockRequest, context: Any) -> lpb.LockResponse:
        try:
            key, _, revision = await self.node.lock(request.name, request.lease)
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return lpb.LockResponse(header=self.header(revision), key=key)

    async def Unlock(self, request: lpb.UnlockRequest, context: Any) -> lpb.UnlockResponse:
        try:
            r = await self.node.call("delete_range", {"key": request.key})
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return lpb.UnlockResponse(header=self.header(r["revision"]))


def _leader_key(m: epb.LeaderKey) -> dict[str, Any]:
    return {"name": m.name, "key": m.key, "rev": m.rev, "lease": m.lease}


class ElectionServicer(_Base, epb_grpc.ElectionServicer):
    async def Campaign(self, request: epb.CampaignRequest, context: Any) -> epb.CampaignResponse:
        try:
            leader, revision = await self.node.campaign(request.name, request.lease, request.value)
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return epb.CampaignResponse(header=self.header(revision), leader=epb.LeaderKey(**leader))

    async def Proclaim(self, request: epb.ProclaimRequest, context: Any) -> epb.ProclaimResponse:
        try:
            if not request.HasField("leader"):
                raise EtcdError(UNKNOWN, MISSING_LEADER)
            r = await self.node.proclaim(_leader_key(request.leader), request.value)
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return epb.ProclaimResponse(header=self.header(r["revision"]))

    async def Leader(self, request: epb.LeaderRequest, context: Any) -> epb.LeaderResponse:
        try:
            kv, revision = await self.node.leader(request.name)
            if kv is None:
                raise EtcdError(UNKNOWN, ELECTION_NO_LEADER)
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return epb.LeaderResponse(header=self.header(revision), kv=cv.key_value(kv))

    async def Observe(self, request: epb.LeaderRequest, context: Any) -> AsyncIterator[Any]:
        try:
            async for kv, revision in self.node.observe(request.name):
                yield epb.LeaderResponse(header=self.header(revision), kv=cv.key_value(kv))
        except EtcdError as exc:
            await _abort_recipe(context, exc)

    async def Resign(self, request: epb.ResignRequest, context: Any) -> epb.ResignResponse:
        try:
            if not request.HasField("leader"):
                raise EtcdError(UNKNOWN, MISSING_LEADER)
            r = await self.node.resign(_leader_key(request.leader))
        except EtcdError as exc:
            await _abort_recipe(context, exc)
        return epb.ResignResponse(header=self.header(r["revision"]))


async def serve_grpc(node: EtcdNode, address: tuple[str, int]) -> tuple[Callable[[], Awaitable[None]], str]:
    """Start the gRPC server on ``address``; (its close, its URL)."""
    # etcd's margin over its request limit: a bigger message is grpcio's RESOURCE_EXHAUSTED.
    receive = node.max_request_bytes + GRPC_OVERHEAD_BYTES
    options = [
        ("grpc.max_receive_message_length", receive),
        # The client listener's cap holds here too (server/open_files.py): a connection
        # more is closed by grpc at once, before it costs a descriptor for long.
        ("grpc.max_allowed_incoming_connections", node.api.config.limits.max_connections),
    ]
    server = grpc.aio.server(interceptors=[_AsCaller(node)], options=options)
    pb_grpc.add_KVServicer_to_server(KVServicer(node), server)
    pb_grpc.add_WatchServicer_to_server(WatchServicer(node), server)
    pb_grpc.add_LeaseServicer_to_server(LeaseServicer(node), server)
    pb_grpc.add_ClusterServicer_to_server(ClusterServicer(node), server)
    pb_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(node), server)
    pb_grpc.add_AuthServicer_to_server(AuthServicer(node), server)
    lpb_grpc.add_LockServicer_to_server(LockServicer(node), server)
    epb_grpc.add_ElectionServicer_to_server(ElectionServicer(node), server)
    host, port = address
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpcio: "Failed to bind"
        raise OSError(f"cannot listen for gRPC on {host}:{port}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    url = f"http://{host}:{bound}"

    async def close() -> None:
        with contextlib.suppress(Exception):
            await server.stop(grace=0.5)

    return close, url


__all__ = ["mvccpb", "serve_grpc"]
