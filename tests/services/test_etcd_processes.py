"""The etcd service on real node processes (``consensuskit up --service etcd`` layout), on
Raft and Multi-Paxos: etcd's JSON gateway with plain HTTP, the gRPC API with stubs
generated from our .proto files, leases that expire through the log and survive a
leader's crash, and errors with etcd's codes.  Every call goes to a follower too: any
node serves every call."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
from consensuskit.services.etcdpb.v3electionpb import v3election_pb2_grpc as epb_grpc
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc
from tests.services.etcd_cluster import EtcdCluster, etcd_cluster

pytestmark = pytest.mark.timeout(180)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


# Multi-Paxos runs these with -m slow (its etcdctl run in test_etcd_clients.py is default).
@pytest.fixture(scope="module", params=["raft", pytest.param("multipaxos", marks=pytest.mark.slow)])
def etcd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(tmp_path_factory, request.param)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def retry(call: Any, seconds: float = 20.0) -> Any:
    """``call()`` again while the cluster answers UNAVAILABLE (an election on a loaded
    machine): etcd's clients retry those too."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url, data=json.dumps(body)) as resp:
        return resp.status, await resp.json(content_type=None)


# ---------------------------------------------------------------------- the JSON gateway
def test_layout_gives_each_node_a_grpc_port_above_the_peer_ports(etcd: EtcdCluster) -> None:
    layout = etcd.layout
    ports = [layout.listen_ports(n)["grpc"] for n in layout.nodes]
    assert ports == [layout.base_port + 6 + i for i in range(3)]
    assert "[listen]" in layout.nodes[0].config_path.read_text()


def test_the_gateway_speaks_etcds_json(etcd: EtcdCluster) -> None:
    url = etcd.cluster.url(etcd.follower())

    async def body() -> None:
        async with aiohttp.ClientSession() as http:
            status, put = await post(http, url + "/v3/kv/put", {"key": b64("gw/a"), "value": b64("1")})
            assert status == 200, put
            rev = int(put["header"]["revision"])
            status, got = await post(http, url + "/v3/kv/range", {"key": b64("gw/a")})
            assert status == 200
            (kv,) = got["kvs"]
            assert unb64(kv["value"]) == b"1" and kv["create_revision"] == str(rev) and got["count"] == "1"
            await post(http, url + "/v3/kv/put", {"key": b64("gw/b"), "value": b64("2")})
            status, got = await post(
                http,
                url + "/v3/kv/range",
                {"key": b64("gw/"), "range_end": b64("gw0"), "sort_order": "DESCEND", "serializable": True},
            )
            assert [unb64(kv["key"]) for kv in got["kvs"]] in ([b"gw/b", b"gw/a"], [b"gw/a"], [])
            # a txn: compare the value, put on success
            txn = {
                "compare": [{"key": b64("gw/a"), "target": "VALUE", "result": "EQUAL", "value": b64("1")}],
                "success": [{"request_put": {"key": b64("gw/a"), "value": b64("3")}}],
                "failure": [{"request_range": {"key": b64("gw/a")}}],
            }
            status, got = await post(http, url + "/v3/kv/txn", txn)
            assert status == 200 and got["succeeded"] is True
            status, got = await post(http, url + "/v3/kv/txn", txn)
            assert got.get("succeeded") is None  # false is left out, as etcd's gateway does
            assert unb64(got["responses"][0]["response_range"]["kvs"][0]["value"]) == b"3"
            status, got = await post(
                http, url + "/v3/kv/deleterange", {"key": b64("gw/"), "range_end": b64("gw0")}
            )
            assert got["deleted"] == "2"
            # errors carry etcd's gRPC codes and texts
            status, got = await post(http, url + "/v3/kv/range", {"key": b64("x"), "revision": 10**9})
            assert status == 400 and got["code"] == 11 and "future revision" in got["error"]
            status, got = await post(http, url + "/v3/lease/revoke", {"ID": 424242})
            assert (
                status == 404 and got["code"] == 5 and got["error"] == "etcdserver: requested lease not found"
            )
            status, got = await post(http, url + "/v3/kv/put", {"key": 5})
            assert status == 400 and got["code"] == 3
            status, got = await post(http, url + "/v3/maintenance/status", {})
            assert status == 200 and got["version"] and got["leader"]

    run(body())


def test_the_gateways_fast_path_answers_as_the_protobuf_path(etcd: EtcdCluster) -> None:
    url = etcd.cluster.url(etcd.cluster.wait_for_leader(30))

    async def body() -> None:
        async with aiohttp.ClientSession() as http:
            # "ignore_lease": false is not a fast-path field: that body takes the protobuf path
            fast = {"key": b64("fp/k"), "value": b64("v"), "prev_kv": True}
            _, first = await post(http, url + "/v3/kv/put", fast)
            _, slow = await post(http, url + "/v3/kv/put", {**fast, "ignore_lease": False})
            _, again = await post(http, url + "/v3/kv/put", fast)
            assert set(slow) == set(again) == {"header", "prev_kv"} and "prev_kv" not in first
            assert slow["prev_kv"]["version"] == "1" and again["prev_kv"]["version"] == "2"
            assert {k: v for k, v in slow["prev_kv"].items() if k not in ("mod_revision", "version")} == {
                k: v for k, v in again["prev_kv"].items() if k not in ("mod_revision", "version")
            }
            for query in ({"key": b64("fp/k")}, {"key": b64("fp/"), "range_end": b64("fp0"), "limit": "1"}):
                _, fast_answer = await post(http, url + "/v3/kv/range", query)
                _, slow_answer = await post(http, url + "/v3/kv/range", {**query, "keys_only": False})
                assert fast_answer == slow_answer
            _, missing = await post(http, url + "/v3/kv/range", {"key": b64("fp/none")})
            assert set(missing) == {"header"}

    run(body())


def test_a_gateway_watch_streams_events_from_a_revision(etcd: EtcdCluster) -> None:
    url = etcd.cluster.url(etcd.follower())

    async def body() -> None:
        async with aiohttp.ClientSession() as http:
            _, put = await post(http, url + "/v3/kv/put", {"key": b64("wg/1"), "value": b64("a")})
            start = int(put["header"]["revision"])
            await post(http, url + "/v3/kv/put", {"key": b64("wg/2"), "value": b64("b")})
            await post(http, url + "/v3/kv/deleterange", {"key": b64("wg/1")})
            create = {"create_request": {"key": b64("wg/"), "range_end": b64("wg0"), "start_revision": start}}
            events: list[tuple[str, bytes]] = []
            async with http.post(url + "/v3/watch", data=json.dumps(create)) as resp:
                assert resp.status == 200
                async with asyncio.timeout(10):
                    async for line in resp.content:
                        result = json.loads(line)["result"]
                        for e in result.get("events", ()):
                            events.append((e.get("type", "PUT"), unb64(e["kv"]["key"])))
                        if len(events) >= 3:
                            break
            assert events == [("PUT", b"wg/1"), ("PUT", b"wg/2"), ("DELETE", b"wg/1")]

    run(body())


# ---------------------------------------------------------------------- gRPC
def test_grpc_kv_txn_and_errors_on_a_follower(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(etcd.follower())) as channel:
            kv = pb_grpc.KVStub(channel)
            put = await kv.Put(pb.PutRequest(key=b"g/k", value=b"v1"))
            await kv.Put(pb.PutRequest(key=b"g/k", value=b"v2"))
            got = await kv.Range(pb.RangeRequest(key=b"g/k"))
            assert got.kvs[0].value == b"v2" and got.kvs[0].version == 2
            old = await kv.Range(pb.RangeRequest(key=b"g/k", revision=put.header.revision))
            assert old.kvs[0].value == b"v1"
            cmp = pb.Compare(key=b"g/k", target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=2)
            txn = await kv.Txn(
                pb.TxnRequest(
                    compare=[cmp],
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=b"g/k", value=b"v3", prev_kv=True))],
                )
            )
            assert txn.succeeded and txn.responses[0].response_put.prev_kv.value == b"v2"
            await kv.Compact(pb.CompactionRequest(revision=txn.header.revision))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await kv.Range(pb.RangeRequest(key=b"g/k", revision=put.header.revision))
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert err.value.details() == "etcdserver: mvcc: required revision has been compacted"
            status = await pb_grpc.MaintenanceStub(channel).Status(pb.StatusRequest())
            members = await pb_grpc.ClusterStub(channel).MemberList(pb.MemberListRequest())
            assert status.leader in {m.ID for m in members.members} and len(members.members) == 3
            assert all(m.clientURLs[0].startswith("http://127.0.0.1:") for m in members.members)

    run(body())


def test_grpc_watch_sees_puts_and_deletes_and_a_compacted_start(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(etcd.follower())) as channel:
            kv, watch = pb_grpc.KVStub(channel), pb_grpc.WatchStub(channel)
            requests: asyncio.Queue[pb.WatchRequest] = asyncio.Queue()

            async def stream() -> Any:
                while True:
                    yield await requests.get()

            call = watch.Watch(stream())
            create = pb.WatchCreateRequest(key=b"gw/", range_end=b"gw0", prev_kv=True)
            await requests.put(pb.WatchRequest(create_request=create))
            created = await call.read()
            assert created.created
            await kv.Put(pb.PutRequest(key=b"gw/x", value=b"1"))
            await kv.Put(pb.PutRequest(key=b"gw/x", value=b"2"))
            await kv.DeleteRange(pb.DeleteRangeRequest(key=b"gw/x"))
            seen = []
            async with asyncio.timeout(10):
                while len(seen) < 3:
                    resp = await call.read()
                    seen += [(e.type, e.kv.value, e.prev_kv.value) for e in resp.events]
            assert seen == [(0, b"1", b""), (0, b"2", b"1"), (1, b"", b"2")]
            await requests.put(
                pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"g/k", start_revision=1))
            )
            compacted = await call.read()
            if compacted.created:
                compacted = await call.read()
            assert compacted.canceled and compacted.compact_revision > 1
            call.cancel()

    run(body())


def test_a_grpc_watch_outlives_the_clients_half_close_and_can_start_ahead(etcd: EtcdCluster) -> None:
    """A client that sends its creates and closes its side (grpcurl, one-shot scripts)
    keeps its watchers, as with etcd; a watch may start at a revision not yet written."""

    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(etcd.follower())) as channel:
            kv, watch = pb_grpc.KVStub(channel), pb_grpc.WatchStub(channel)
            now = (await retry(lambda: kv.Range(pb.RangeRequest(key=b"hc/")))).header.revision

            async def creates() -> Any:
                yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"hc/a"))
                ahead = pb.WatchCreateRequest(key=b"hc/b", start_revision=now + 3)
                yield pb.WatchRequest(create_request=ahead)

            call = watch.Watch(creates())
            async with asyncio.timeout(10):
                assert (await call.read()).created and (await call.read()).created
                for key, value in ((b"hc/a", b"1"), (b"hc/b", b"early"), (b"hc/b", b"late")):
                    await kv.Put(pb.PutRequest(key=key, value=value))
                seen: list[tuple[int, bytes]] = []
                while len(seen) < 2:
                    resp = await call.read()
                    seen += [(resp.watch_id, e.kv.value) for e in resp.events]
            assert seen == [(0, b"1"), (1, b"late")]
            call.cancel()

    run(body())


def test_grpc_leases_keep_alive_expire_and_delete_their_keys(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(etcd.follower())) as channel:
            kv, lease = pb_grpc.KVStub(channel), pb_grpc.LeaseStub(channel)
            kept = await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2))
            dropped = await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=1))
            assert dropped.TTL == 2  # the minimum TTL
            await kv.Put(pb.PutRequest(key=b"l/kept", value=b"x", lease=kept.ID))
            await kv.Put(pb.PutRequest(key=b"l/dropped", value=b"x", lease=dropped.ID))
            ttl = await lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=dropped.ID, keys=True))
            assert ttl.grantedTTL == 2 and list(ttl.keys) == [b"l/dropped"] and 0 <= ttl.TTL <= 2

            async def keepalives() -> Any:
                for _ in range(8):
                    yield pb.LeaseKeepAliveRequest(ID=kept.ID)
                    await asyncio.sleep(0.5)

            async for answer in lease.LeaseKeepAlive(keepalives()):
                assert answer.TTL == 2
            got = await kv.Range(pb.RangeRequest(key=b"l/", range_end=b"l0"))
            assert [k.key for k in got.kvs] == [b"l/kept"]  # 4 s: the dropped lease expired
            gone = await lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=dropped.ID))
            assert gone.TTL == -1
            await lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=kept.ID))
            assert not (await kv.Range(pb.RangeRequest(key=b"l/kept"))).kvs
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await kv.Put(pb.PutRequest(key=b"l/x", value=b"x", lease=kept.ID))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(body())


def test_grpc_locks_hand_out_increasing_fencing_tokens_and_elections_elect(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(etcd.follower())) as channel:
            kv, lease, locks = pb_grpc.KVStub(channel), pb_grpc.LeaseStub(channel), lpb_grpc.LockStub(channel)
            one = (await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30))).ID
            two = (await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30))).ID
            first = await locks.Lock(lpb.LockRequest(name=b"mutex", lease=one))
            second = asyncio.ensure_future(locks.Lock(lpb.LockRequest(name=b"mutex", lease=two)))
            await asyncio.sleep(0.5)
            assert not second.done()  # waits for the first holder
            token1 = (await kv.Range(pb.RangeRequest(key=first.key))).kvs[0].create_revision
            await locks.Unlock(lpb.UnlockRequest(key=first.key))
            held = await asyncio.wait_for(second, 10)
            token2 = (await kv.Range(pb.RangeRequest(key=held.key))).kvs[0].create_revision
            assert token2 > token1
            await locks.Unlock(lpb.UnlockRequest(key=held.key))

            election = epb_grpc.ElectionStub(channel)
            won = await election.Campaign(epb.CampaignRequest(name=b"elect", lease=one, value=b"me"))
            leader = await election.Leader(epb.LeaderRequest(name=b"elect"))
            assert leader.kv.value == b"me"
            await election.Proclaim(epb.ProclaimRequest(leader=won.leader, value=b"me-again"))
            assert (await election.Leader(epb.LeaderRequest(name=b"elect"))).kv.value == b"me-again"
            await election.Resign(epb.ResignRequest(leader=won.leader))
            # etcd's recipes answer every error as code Unknown with its text
            # (test_etcd_differential.py compares them with a real etcd's).
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await election.Proclaim(epb.ProclaimRequest(leader=won.leader, value=b"late"))
            unknown = grpc.StatusCode.UNKNOWN
            assert (err.value.code(), err.value.details()) == (unknown, "election: not leader")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await election.Leader(epb.LeaderRequest(name=b"elect"))
            assert (err.value.code(), err.value.details()) == (unknown, "election: no leader")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await election.Resign(epb.ResignRequest())
            assert err.value.details() == '"leader" field must be provided'
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await locks.Lock(lpb.LockRequest(name=b"mutex", lease=987654))
            no_lease = (unknown, "etcdserver: requested lease not found")
            assert (err.value.code(), err.value.details()) == no_lease

    run(body())


def test_a_new_leader_extends_leases_rather_than_expiring_them(etcd: EtcdCluster) -> None:
    """etcd's Promote: the old leader's crash must not expire a lease whose holder kept
    it alive; the key lives while keep-alives reach the new leader."""
    cluster = etcd.cluster
    old = cluster.wait_for_leader(30)
    survivor = sorted(n for n in cluster.nodes if n != old)[0]

    async def body() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(survivor)) as channel:
            kv, lease = pb_grpc.KVStub(channel), pb_grpc.LeaseStub(channel)
            granted = await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3))
            await kv.Put(pb.PutRequest(key=b"crash/k", value=b"x", lease=granted.ID))
            cluster.nodes[old].kill()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:  # keep it alive through the election
                with_retry = 0
                while True:
                    try:
                        await lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=granted.ID)])).read()
                        break
                    except grpc.aio.AioRpcError:
                        with_retry += 1
                        assert with_retry < 40
                        await asyncio.sleep(0.2)
                await asyncio.sleep(0.5)
            got = await kv.Range(pb.RangeRequest(key=b"crash/k"))
            assert got.kvs, "the lease expired although it was kept alive"

    try:
        run(body())
    finally:
        cluster.nodes[old].start()
        cluster.wait_for_leader(30)


def test_a_follower_catches_up_through_a_snapshot_of_the_mvcc_store(etcd: EtcdCluster) -> None:
    """Past the snapshot threshold (200 entries) a restarted follower is sent the store's
    snapshot: history, compaction point, leases and their keys all come across."""
    cluster = etcd.cluster
    leader = cluster.wait_for_leader(30)
    lagging = sorted(n for n in cluster.nodes if n != leader)[-1]
    cluster.nodes[lagging].kill()

    async def write() -> tuple[int, int]:
        async with grpc.aio.insecure_channel(etcd.grpc_address(leader)) as channel:
            kv, lease = pb_grpc.KVStub(channel), pb_grpc.LeaseStub(channel)
            granted = await retry(lambda: lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60)))
            await retry(lambda: kv.Put(pb.PutRequest(key=b"snap/leased", value=b"x", lease=granted.ID)))
            first = None
            for i in range(260):
                request = pb.PutRequest(key=f"snap/{i % 7}".encode(), value=str(i).encode())
                put = await retry(lambda request=request: kv.Put(request))
                first = first or put.header.revision
            await retry(lambda: kv.Compact(pb.CompactionRequest(revision=first + 10)))
            return granted.ID, put.header.revision

    lease_id, last = run(write())
    cluster.nodes[lagging].start()

    async def read_follower() -> None:
        async with grpc.aio.insecure_channel(etcd.grpc_address(lagging)) as channel:
            kv, lease = pb_grpc.KVStub(channel), pb_grpc.LeaseStub(channel)
            async with asyncio.timeout(30):
                while True:
                    try:
                        got = await kv.Range(
                            pb.RangeRequest(key=b"snap/", range_end=b"snap0", serializable=True)
                        )
                        if got.header.revision >= last:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    await asyncio.sleep(0.2)
            assert {kv.key: kv.value for kv in got.kvs}[b"snap/6"] == b"258"
            assert len(got.kvs) == 8
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await kv.Range(pb.RangeRequest(key=b"snap/1", revision=2, serializable=True))
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
            ttl = await lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id, keys=True))
            assert list(ttl.keys) == [b"snap/leased"]
            await lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease_id))

    run(read_follower())
    cluster.wait_for_leader(30)
