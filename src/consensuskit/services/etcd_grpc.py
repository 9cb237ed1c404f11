"""etcd's gRPC API on a node (grpcio's asyncio server, beside the HTTP API): KV, Watch,
Lease, Cluster.MemberList, Maintenance (Status, Alarm, Defragment, HashKV, Snapshot), Lock
and Election.

Rules this module owns:
  * each call is translated (services/etcd_convert.py) and run by the node's
    ``EtcdNode`` (services/etcd_api.py), which forwards to the leader where needed; an
    ``EtcdError`` ends the call with its gRPC code and etcd's text;
  * Watch: one stream carries many watchers; each create is answered ``created`` (with
    the id asked for, or the next free one), then its events in revision order; cancel
    answers ``canceled``; a watcher whose start revision was compacted is answered
    ``canceled`` with ``compact_revision``; a progress request is answered with the
    current revision and watch id -1 (etcd's stream-wide progress); a watcher created with
    ``progress_notify`` hears the current revision, with no events, after every quiet
    ``progress_interval`` (etcd's 10 minutes).  The stream lasts until the client
    cancels the call: one that closes its sending side (a single create, then EOF)
    keeps its watchers, as with etcd;
  * LeaseKeepAlive: each request is one keep-alive through the log; an unknown lease
    answers TTL 0 (etcd's way), the stream goes on;
  * Lock answers the held key; its create revision (a Range of the key) is the fencing
    token.  A Lock or Campaign the client abandons removes its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from consensuskit.services import etcd_convert as cv
from consensuskit.services.etcd_api import UNIMPLEMENTED, EtcdError, EtcdNode
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from consensuskit.services.etcdpb.mvccpb import kv_pb2 as mvccpb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2_grpc as epb_grpc
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc

_CODES = {code.value[0]: code for code in grpc.StatusCode}
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshot stream sends 32 KiB blobs


async def _abort(context: grpc.aio.ServicerContext, exc: EtcdError) -> None:
    await context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), exc.message)


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


class WatchServicer(_Base, pb_grpc.WatchServicer):
    async def Watch(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.WatchResponse]:
        out: asyncio.Queue[pb.WatchResponse | None] = asyncio.Queue()
        watchers: dict[int, asyncio.Task[None]] = {}
        next_id = 0

        async def run(watch_id: int, create: dict[str, Any]) -> None:
            try:
                async for kind, data in self.node.watch(create):
                    if kind == "created":
                        out.put_nowait(
                            pb.WatchResponse(header=self.header(data), watch_id=watch_id, created=True)
                        )
                    elif kind == "events":
                        revision, events = data
                        out.put_nowait(
                            pb.WatchResponse(
                                header=self.header(revision),
                                watch_id=watch_id,
                                events=[cv.event(e) for e in events],
                            )
                        )
                    elif kind == "progress":
                        out.put_nowait(pb.WatchResponse(header=self.header(data), watch_id=watch_id))
                    else:
                        out.put_nowait(
                            pb.WatchResponse(
                                header=self.header(await self.node.local_revision()),
                                watch_id=watch_id,
                                canceled=True,
                                compact_revision=data,
                                cancel_reason=COMPACTED,
                            )
                        )
                        return
            except EtcdError as exc:
                out.put_nowait(
                    pb.WatchResponse(
                        header=self.header(0), watch_id=watch_id, canceled=True, cancel_reason=exc.message
                    )
                )

        async def read() -> None:
            nonlocal next_id
            try:
                async for req in request_iterator:
                    which = req.WhichOneof("request_union")
                    if which == "create_request":
                        cr = req.create_request
                        watch_id = cr.watch_id or next_id
                        if watch_id in watchers:
                            out.put_nowait(
                                pb.WatchResponse(
                                    header=self.header(0),
                                    watch_id=watch_id,
                                    canceled=True,
                                    cancel_reason="etcdserver: duplicate watch ID",
                                )
                            )
                            continue
                        next_id = max(next_id, watch_id) + 1
                        create = {
                            "key": cr.key,
                            "range_end": cr.range_end,
                            "start_revision": cr.start_revision,
                            "prev_kv": cr.prev_kv,
                            "filters": tuple(cr.filters),
                            "progress_notify": cr.progress_notify,
                        }
                        watchers[watch_id] = asyncio.ensure_future(run(watch_id, create))
                    elif which == "cancel_request":
                        watch_id = req.cancel_request.watch_id
                        task = watchers.pop(watch_id, None)
                        if task is not None:
                            task.cancel()
                        revision = await self.node.local_revision()
                        out.put_nowait(
                            pb.WatchResponse(header=self.header(revision), watch_id=watch_id, canceled=True)
                        )
                    elif which == "progress_request":
                        revision = await self.node.local_revision()
                        out.put_nowait(pb.WatchResponse(header=self.header(revision), watch_id=-1))
            except Exception as exc:
                out.put_nowait(None)  # this node cannot serve the stream, or reading it broke
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
    async def MemberList(self, request: pb.MemberListRequest, context: Any) -> pb.MemberListResponse:
        members = await self.node.members()
        revision = await self.node.local_revision()
        return pb.MemberListResponse(header=self.header(revision), members=[pb.Member(**m) for m in members])


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
        # trimmed as the log is (etcd's defrag rewrites its bolt file).
        revision = await self.node.local_revision()
        return pb.DefragmentResponse(header=self.header(revision))

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


class LockServicer(_Base, lpb_grpc.LockServicer):
    async def Lock(self, request: lpb.LockRequest, context: Any) -> lpb.LockResponse:
        try:
            key, _, revision = await self.node.lock(request.name, request.lease)
        except EtcdError as exc:
            await _abort(context, exc)
        return lpb.LockResponse(header=self.header(revision), key=key)

    async def Unlock(self, request: lpb.UnlockRequest, context: Any) -> lpb.UnlockResponse:
        try:
            r = await self.node.call("delete_range", {"key": request.key})
        except EtcdError as exc:
            await _abort(context, exc)
        return lpb.UnlockResponse(header=self.header(r["revision"]))


def _leader_key(m: epb.LeaderKey) -> dict[str, Any]:
    return {"name": m.name, "key": m.key, "rev": m.rev, "lease": m.lease}


class ElectionServicer(_Base, epb_grpc.ElectionServicer):
    async def Campaign(self, request: epb.CampaignRequest, context: Any) -> epb.CampaignResponse:
        try:
            leader, revision = await self.node.campaign(request.name, request.lease, request.value)
        except EtcdError as exc:
            await _abort(context, exc)
        return epb.CampaignResponse(header=self.header(revision), leader=epb.LeaderKey(**leader))

    async def Proclaim(self, request: epb.ProclaimRequest, context: Any) -> epb.ProclaimResponse:
        try:
            r = await self.node.proclaim(_leader_key(request.leader), request.value)
        except EtcdError as exc:
            await _abort(context, exc)
        return epb.ProclaimResponse(header=self.header(r["revision"]))

    async def Leader(self, request: epb.LeaderRequest, context: Any) -> epb.LeaderResponse:
        try:
            kv, revision = await self.node.leader(request.name)
        except EtcdError as exc:
            await _abort(context, exc)
        if kv is None:
            await _abort(context, EtcdError(5, "election: no leader"))
        return epb.LeaderResponse(header=self.header(revision), kv=cv.key_value(kv))

    async def Observe(self, request: epb.LeaderRequest, context: Any) -> AsyncIterator[Any]:
        try:
            async for kv, revision in self.node.observe(request.name):
                yield epb.LeaderResponse(header=self.header(revision), kv=cv.key_value(kv))
        except EtcdError as exc:
            await _abort(context, exc)

    async def Resign(self, request: epb.ResignRequest, context: Any) -> epb.ResignResponse:
        try:
            r = await self.node.resign(_leader_key(request.leader))
        except EtcdError as exc:
            await _abort(context, exc)
        return epb.ResignResponse(header=self.header(r["revision"]))


async def serve_grpc(node: EtcdNode, address: tuple[str, int]) -> tuple[Callable[[], Awaitable[None]], str]:
    """Start the gRPC server on ``address``; (its close, its URL)."""
    server = grpc.aio.server()
    pb_grpc.add_KVServicer_to_server(KVServicer(node), server)
    pb_grpc.add_WatchServicer_to_server(WatchServicer(node), server)
    pb_grpc.add_LeaseServicer_to_server(LeaseServicer(node), server)
    pb_grpc.add_ClusterServicer_to_server(ClusterServicer(node), server)
    pb_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(node), server)
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
