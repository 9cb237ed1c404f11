"""The etcd service on an in-process node (NodeServer): what a real-process test cannot
reach, such as a short progress-notify interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from consensuskit.server.cluster import free_port
from consensuskit.server.main import NodeServer
from consensuskit.services.etcd_api import etcd_node
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.server.runtime_harness import async_test, node_config

pytestmark = pytest.mark.timeout(60)


async def _kv_when_led(channel: grpc.aio.Channel) -> pb_grpc.KVStub:
    kv = pb_grpc.KVStub(channel)
    async with asyncio.timeout(20):
        while True:
            try:
                await kv.Put(pb.PutRequest(key=b"ready", value=b"1"))
                return kv
            except grpc.aio.AioRpcError:  # no leader yet
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _solo(tmp_path, **settings) -> AsyncIterator[tuple[NodeServer, int]]:
    """A one-node etcd cluster; (its server, its gRPC port)."""
    port = free_port()
    config = node_config(
        tmp_path, "solo", ["solo"], service="etcd", listen={"grpc": f"127.0.0.1:{port}"}, **settings
    )
    server = NodeServer(config)
    await server.start()
    try:
        assert server.api is not None
        yield server, port
    finally:
        await server.stop()


def _count_calls(monkeypatch, kind: str) -> list[int]:
    """[n]: the store ops of ``kind`` the node's etcd API runs from now on."""
    from consensuskit.services import etcd_api

    count = [0]
    original = etcd_api.EtcdNode.call

    async def counting(self, op_kind, body, **kwargs):
        count[0] += op_kind == kind
        return await original(self, op_kind, body, **kwargs)

    monkeypatch.setattr(etcd_api.EtcdNode, "call", counting)
    return count


@async_test
async def test_a_quiet_watch_with_progress_notify_hears_the_revision(tmp_path):
    async with _solo(tmp_path) as (server, port):
        etcd_node(server.api).progress_interval = 0.3
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            kv = await _kv_when_led(channel)
            put = await kv.Put(pb.PutRequest(key=b"p", value=b"1"))
            watch = pb_grpc.WatchStub(channel)

            async def requests(progress: bool):
                yield pb.WatchRequest(
                    create_request=pb.WatchCreateRequest(key=b"q", progress_notify=progress)
                )
                await asyncio.Event().wait()

            notified = watch.Watch(requests(True))
            silent = watch.Watch(requests(False))
            assert (await notified.read()).created and (await silent.read()).created
            async with asyncio.timeout(5):
                progress = await notified.read()
            assert not progress.events and not progress.canceled
            assert progress.header.revision == put.header.revision
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await silent.read()
            notified.cancel()
            silent.cancel()


@async_test
async def test_a_progress_answer_comes_after_every_event_up_to_its_revision(tmp_path):
    """RequestProgress promises the stream's watches have sent every event up to the
    answer's revision (etcd 3.5.8+, which Kubernetes' consistent reads from its watch
    cache rely on).  It was answered at once with the applied revision, ahead of the
    events of the last writes, which the watches hand out at their next look."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        asks: asyncio.Queue[pb.WatchRequest] = asyncio.Queue()

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"p/", range_end=b"p0"))
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"p/3"))
            while True:
                yield await asks.get()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        assert (await stream.read()).created and (await stream.read()).created
        seen: dict[int, set[int]] = {0: set(), 1: set()}  # watch id -> revisions received
        written: dict[int, bytes] = {}
        answers = []
        for i in range(30):
            put = await kv.Put(pb.PutRequest(key=b"p/%d" % (i % 5), value=b"v"))
            written[put.header.revision] = b"p/%d" % (i % 5)
            await asks.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
            async with asyncio.timeout(5):
                while True:
                    response = await stream.read()
                    if response.watch_id == -1:
                        break
                    seen[response.watch_id] |= {e.kv.mod_revision for e in response.events}
            answer = response.header.revision
            answers.append(answer)
            # every event up to the answer's revision came before it, on both watches
            assert seen[0] >= {r for r in written if r <= answer}, (i, answer)
            assert seen[1] >= {r for r, k in written.items() if r <= answer and k == b"p/3"}, (i, answer)
        assert answers == sorted(answers)
        # The answer may lag the store by the node's next look (WATCH_POLL), no more.
        await asyncio.sleep(0.2)
        await asks.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        async with asyncio.timeout(5):
            while (response := await stream.read()).watch_id != -1:
                pass
        assert response.header.revision == max(written)
        stream.cancel()


@async_test
async def test_a_watch_that_fails_is_canceled_with_a_reason_and_the_stream_goes_on(tmp_path, monkeypatch):
    """A watch whose node side raised something other than an etcd error (a bug) died
    silently: its client waited for events forever.  It is canceled, the reason saying
    the node's log has the rest, and the stream's other watches go on."""
    from consensuskit.services import etcd_api

    original = etcd_api.EtcdNode.watch

    async def failing(self, create, *args):
        async for kind, data in original(self, create, *args):
            if create["key"] == b"bad" and kind == "events":
                raise RuntimeError("a bug")
            yield kind, data

    monkeypatch.setattr(etcd_api.EtcdNode, "watch", failing)
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"bad", watch_id=1))
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"good", watch_id=2))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        assert (await stream.read()).created and (await stream.read()).created
        await kv.Put(pb.PutRequest(key=b"bad", value=b"1"))
        async with asyncio.timeout(5):
            canceled = await stream.read()
        assert (canceled.watch_id, canceled.canceled) == (1, True)
        assert canceled.cancel_reason == "etcdserver: the watch failed (the node's log says why)"
        put = await kv.Put(pb.PutRequest(key=b"good", value=b"2"))
        async with asyncio.timeout(5):
            event = await stream.read()
        assert event.watch_id == 2 and [e.kv.mod_revision for e in event.events] == [put.header.revision]
        stream.cancel()


@async_test
async def test_watch_ids_chosen_by_the_client_leave_the_automatic_ones_alone(tmp_path):
    """The next automatic watch id was the largest id given + 1: a client's 2^63-1 made
    it 2^63, which no WatchResponse can carry (the watch died unanswered).  As etcd's
    watchStream: an automatic id is the next free one from 0; a duplicate is refused as
    etcd 3.4 refuses it (checked against it: the same five answers)."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        largest = 2**63 - 1
        creates = [(b"a", largest), (b"b", 0), (b"c", 1), (b"d", 0), (b"e", largest)]

        async def requests():
            for key, watch_id in creates:
                yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, watch_id=watch_id))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        async with asyncio.timeout(5):
            answers = [await stream.read() for _ in creates]
        assert [(a.watch_id, a.created, a.canceled) for a in answers] == [
            (largest, True, False),
            (0, True, False),
            (1, True, False),
            (2, True, False),  # 1 was taken by the client
            (-1, True, True),
        ]
        assert answers[-1].cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
        put = await kv.Put(pb.PutRequest(key=b"d", value=b"1"))
        async with asyncio.timeout(5):
            event = await stream.read()
        assert event.watch_id == 2 and [e.kv.mod_revision for e in event.events] == [put.header.revision]
        stream.cancel()


@async_test
async def test_a_request_over_the_limit_is_refused_as_etcd_refuses_it(tmp_path):
    """etcd's --max-request-bytes (1.5 MiB): 'request is too large', and grpcio's own
    RESOURCE_EXHAUSTED past the gRPC margin; nothing of either is written."""
    async with _solo(tmp_path) as (server, port):
        limit = etcd_node(server.api).max_request_bytes
        assert limit == (1 << 20) + 4096 + 512 * 1024  # the defaults: about etcd's 1.5 MiB
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            kv = await _kv_when_led(channel)
            fits = await kv.Put(pb.PutRequest(key=b"big", value=b"v" * (limit - 1000)))
            too_large = [
                pb.PutRequest(key=b"big", value=b"w" * (limit + 1)),
                pb.PutRequest(key=b"k" * 4096, value=b"w" * (limit - 3000)),
            ]
            for request in too_large:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await kv.Put(request)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert refused.value.details() == "etcdserver: request is too large"
            half = b"t" * (limit // 2 + 1000)
            txn = pb.TxnRequest(
                success=[
                    pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=half)),
                    pb.RequestOp(request_put=pb.PutRequest(key=b"b", value=half)),
                ]
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kv.Txn(txn)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details() == "etcdserver: request is too large"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kv.Put(pb.PutRequest(key=b"big", value=b"x" * (limit + 512 * 1024 + 1)))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            got = await kv.Range(pb.RangeRequest(key=b"big"))
            assert got.kvs[0].value == b"v" * (limit - 1000)
            assert got.header.revision == fits.header.revision  # the refusals wrote nothing
            assert not (await kv.Range(pb.RangeRequest(key=b"a"))).kvs


@async_test
async def test_the_request_limit_follows_the_nodes_value_limit(tmp_path):
    async with _solo(tmp_path, max_value_bytes=4 << 20) as (_, port):
        # etcd's clients take answers of any size (clientv3's MaxCallRecvMsgSize).
        options = [("grpc.max_receive_message_length", -1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            kv = await _kv_when_led(channel)
            value = b"v" * (4 << 20)  # over grpcio's 4 MiB default too
            put = await kv.Put(pb.PutRequest(key=b"big", value=value))
            got = await kv.Range(pb.RangeRequest(key=b"big"))
            assert got.kvs[0].value == value and got.header.revision == put.header.revision


@async_test
async def test_txn_and_status_answer_etcds_fields(tmp_path):
    """A nested txn's response has an empty header and its ops say the outer txn's
    revision once it wrote (etcd's applyTxn); Status tells the size in use (etcdctl's
    endpoint status shows it): all of it, nothing being left to defragment."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        nested = pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"t"))])
        txn = pb.TxnRequest(
            success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"t", value=b"1")),
                pb.RequestOp(request_txn=nested),
            ]
        )
        answer = await kv.Txn(txn)
        inner = answer.responses[1].response_txn
        assert inner.HasField("header") and inner.header == pb.ResponseHeader()
        assert inner.responses[0].response_range.header.revision == answer.header.revision
        assert inner.responses[0].response_range.kvs[0].value == b"1"
        status = await pb_grpc.MaintenanceStub(channel).Status(pb.StatusRequest())
        assert status.dbSizeInUse == status.dbSize > 0


@async_test
async def test_a_txn_with_an_empty_request_op_is_refused_in_etcds_order(tmp_path):
    """etcd's checkTxnRequest refuses a RequestOp that holds no request as "key not
    found", in its place among the txn's ops (an earlier op's empty key first); ours
    said "a RequestOp holds no request" ahead of every other check.  Checked against
    etcd 3.4."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        empty_key = pb.RequestOp(request_range=pb.RangeRequest(key=b""))
        for ops, text in (
            ([pb.RequestOp(request_range=pb.RangeRequest(key=b"a")), pb.RequestOp()], "key not found"),
            ([empty_key, pb.RequestOp()], "key is not provided"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kv.Txn(pb.TxnRequest(failure=ops))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details() == f"etcdserver: {text}"


@async_test
async def test_a_watch_whose_client_does_not_read_stops_pulling_events(tmp_path, monkeypatch):
    """A Watch stream whose client reads nothing: at most WATCH_RESPONSES_QUEUED answers
    wait in the stream (grpc's own buffers aside), and its watcher stops pulling from the
    store (it would go on from the history once the client reads).  Before, every event
    was queued: the node grew by about 20 MB per thousand 10 KB puts."""
    from consensuskit.services import etcd_api, etcd_grpc

    pulled = [0]
    original = etcd_api.EtcdNode.watch

    async def counting(self, create, *args):
        async for kind, data in original(self, create, *args):
            if kind == "events":
                pulled[0] += 1
            yield kind, data

    monkeypatch.setattr(etcd_api.EtcdNode, "watch", counting)
    async with _solo(tmp_path) as (server, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        node = etcd_node(server.api)

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/", range_end=b"w0"))
            await asyncio.Event().wait()

        # The servicer's stream itself, read as grpc would for a client that stops after
        # the first answer.
        stream = etcd_grpc.WatchServicer(node).Watch(requests(), None)
        assert (await anext(stream)).created
        for i in range(etcd_grpc.WATCH_RESPONSES_QUEUED + 60):  # one answer per put
            await kv.Put(pb.PutRequest(key=b"w/%d" % i, value=b"v"))
            await asyncio.sleep(etcd_api.WATCH_POLL * 1.5)
        assert pulled[0] == etcd_grpc.WATCH_RESPONSES_QUEUED + 1  # the queue's, and one waiting
        keys: list[bytes] = []
        async with asyncio.timeout(10):  # read again, it goes on from the history
            while len(keys) < etcd_grpc.WATCH_RESPONSES_QUEUED + 60:
                keys += [e.kv.key for e in (await anext(stream)).events]
        assert keys == [b"w/%d" % i for i in range(etcd_grpc.WATCH_RESPONSES_QUEUED + 60)]  # none skipped
        await stream.aclose()


@async_test
async def test_idle_watches_cost_no_look_and_a_write_one_read(tmp_path, monkeypatch):
    """Each watch looked at the revision every 20 ms itself (1,000 idle watches took 30%
    of a core), then read the store for itself whenever it moved (1,000 idle watches on
    other keys took a one-node cluster's puts from 1,244/s to 104/s).  Now the runtime
    wakes the node's one loop when the revision moves (it looks once a second anyway),
    which reads each move's events once and hands each watch its own
    (services/etcd_watch_hub.py); the watches still hear every event."""
    from consensuskit.services import etcd_api

    looks = [0]
    original = etcd_api.EtcdNode.local_revision

    async def counting(self):
        looks[0] += 1
        return await original(self)

    monkeypatch.setattr(etcd_api.EtcdNode, "local_revision", counting)
    reads = _count_calls(monkeypatch, "watch")
    async with _solo(tmp_path) as (server, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        watches = 200

        async def requests():
            for i in range(watches):
                yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"idle/%d" % i))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        for _ in range(watches):
            assert (await stream.read()).created
        await asyncio.sleep(0.2)
        looks[0] = 0
        await asyncio.sleep(1.0)
        assert looks[0] <= 2 / etcd_api.WATCH_IDLE_LOOK  # not 50 a second, nor one per watch (200 * 50)
        reads[0] = 0
        for i in range(20):
            await kv.Put(pb.PutRequest(key=b"busy", value=b"%d" % i))
            await asyncio.sleep(etcd_api.WATCH_POLL * 1.5)
        assert 0 < reads[0] <= 20 + 2  # one per move (200 * 20 when each watch read)
        assert etcd_node(server.api).hub.synced == watches
        await kv.Put(pb.PutRequest(key=b"idle/7", value=b"x"))
        async with asyncio.timeout(5):
            event = await stream.read()
        assert [e.kv.key for e in event.events] == [b"idle/7"] and event.watch_id == 7
        stream.cancel()


@async_test
async def test_watches_joining_falling_behind_and_catching_up_miss_nothing(tmp_path, monkeypatch):
    """Watches of keys and prefixes, from now and from past revisions, some of whose
    clients read slowly (a queue of 2 responses: they leave the node's shared read and
    catch up by their own), all created while writes go on: each gets every change of its
    range from its start, once, in order.  The watches are the node's own (a gRPC
    stream's buffers would hide a slow client from it)."""
    import random

    from consensuskit.services import etcd_api, etcd_watch_hub
    from consensuskit.statemachines.mvcc import DELETE_EVENT

    monkeypatch.setattr(etcd_watch_hub, "QUEUED", 2)
    left_full = [0]
    leave = etcd_watch_hub.WatchHub.leave

    def counting_leave(self, watcher):
        left_full[0] += watcher.synced and len(watcher.pending) >= etcd_watch_hub.QUEUED
        leave(self, watcher)

    monkeypatch.setattr(etcd_watch_hub.WatchHub, "leave", counting_leave)
    rng = random.Random(7)
    async with _solo(tmp_path) as (server, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        node = etcd_node(server.api)
        written: list[tuple[int, bytes, bytes | None]] = []  # (revision, key, value or deleted)
        ranges = [(b"e/1", b""), (b"e/", b"e0"), (b"e/1", b"e/3"), (b"\0", b"\0")]
        received: list[tuple[int, bytes, bytes, list[tuple[int, bytes, bytes | None]]]] = []

        async def watcher(key: bytes, end: bytes, start: int, slow: bool) -> None:
            got: list[tuple[int, bytes, bytes | None]] = []
            async for kind, data in node.watch({"key": key, "range_end": end, "start_revision": start}):
                if kind == "created":
                    received.append((start or data + 1, key, end, got))
                    continue
                assert kind == "events", (kind, data)
                for etype, (k, _, mod, _, value, _), _ in data[1]:
                    got.append((mod, k, None if etype == DELETE_EVENT else value))
                if slow:
                    await asyncio.sleep(0.2)

        tasks = []
        for i in range(240):
            key = b"e/%d" % rng.randrange(5)
            if rng.random() < 0.2:
                r = await kv.DeleteRange(pb.DeleteRangeRequest(key=key))
                if r.deleted:
                    written.append((r.header.revision, key, None))
            else:
                r = await kv.Put(pb.PutRequest(key=key, value=b"%d" % i))
                written.append((r.header.revision, key, b"%d" % i))
            if i % 20 == 0:
                key, end = rng.choice(ranges)
                start = rng.choice([0, max(2, r.header.revision - rng.randrange(30))])  # 0: from now
                tasks.append(asyncio.ensure_future(watcher(key, end, start, slow=i % 40 == 0)))
            if i % 7 == 0:
                await asyncio.sleep(etcd_api.WATCH_POLL)

        def want(start: int, key: bytes, end: bytes) -> list[tuple[int, bytes, bytes | None]]:
            def holds(k: bytes) -> bool:
                return k == key if not end else key <= k and (end == b"\0" or k < end)

            return [w for w in written if w[0] >= start and holds(w[1])]

        async with asyncio.timeout(30):
            while len(received) < len(tasks) or any(
                len(got) < len(want(start, key, end)) for start, key, end, got in received
            ):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # nothing more arrives
        for start, key, end, got in received:
            assert got == want(start, key, end), (start, key, end)
        assert left_full[0] > 0  # slow clients did fall behind the shared read
        for task in tasks:
            task.cancel()


@async_test
async def test_a_watch_from_the_compact_revision_after_a_deletion_there(tmp_path):
    """A deletion at the compact revision takes its key's history with it; the store's
    recent changes still named the key, and a watch from that revision looked it up:
    KeyError in the store's read."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        for key in (b"c/a", b"c/b", b"c/ba"):
            await kv.Put(pb.PutRequest(key=key, value=b"1"))
        deleted = await kv.DeleteRange(pb.DeleteRangeRequest(key=b"c/a"))
        await kv.Compact(pb.CompactionRequest(revision=deleted.header.revision))

        async def requests():
            create = pb.WatchCreateRequest(key=b"c/", range_end=b"c0", start_revision=deleted.header.revision)
            yield pb.WatchRequest(create_request=create)
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        assert (await stream.read()).created
        put = await kv.Put(pb.PutRequest(key=b"c/b", value=b"2"))
        async with asyncio.timeout(5):
            response = await stream.read()
        assert not response.canceled, response
        assert [(e.kv.key, e.kv.mod_revision) for e in response.events] == [(b"c/b", put.header.revision)]
        stream.cancel()


@async_test
async def test_a_watch_hears_every_key_of_a_delete_bigger_than_a_batch(tmp_path, monkeypatch):
    """A watch read returned at most WATCH_BATCH events and went on after the revision it
    cut: `etcdctl del --prefix` of more keys than that lost the rest of the deletes on
    every watch of the prefix (a Kubernetes informer would keep the deleted objects)."""
    from consensuskit.statemachines import mvcc

    monkeypatch.setattr(mvcc, "WATCH_BATCH", 10)  # 1,000 in the node: 25 keys make it show
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        for i in range(25):
            await kv.Put(pb.PutRequest(key=b"d/%02d" % i, value=b"v"))

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"d/", range_end=b"d0"))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        assert (await stream.read()).created
        deleted = await kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/", range_end=b"d0"))
        after = await kv.Put(pb.PutRequest(key=b"d/after", value=b"1"))
        assert deleted.deleted == 25
        keys: list[tuple[bytes, int]] = []
        async with asyncio.timeout(5):
            while len(keys) < 26:
                keys += [(e.kv.key, e.kv.mod_revision) for e in (await stream.read()).events]
        assert keys == [(b"d/%02d" % i, deleted.header.revision) for i in range(25)] + [
            (b"d/after", after.header.revision)
        ]
        stream.cancel()


def test_fragments_keep_each_part_under_the_limit_and_one_event_at_least():
    from consensuskit.services.etcd_grpc import fragments
    from consensuskit.services.etcdpb.mvccpb import kv_pb2 as mvccpb

    def event(size: int) -> mvccpb.Event:
        return mvccpb.Event(kv=mvccpb.KeyValue(key=b"k", value=b"v" * size))

    small = [event(10) for _ in range(5)]
    assert fragments(small, 10_000) == [small]  # fits: one part
    big = [event(400) for _ in range(6)]
    parts = fragments(big, 1_000)
    assert [len(p) for p in parts] == [2, 2, 2] and [e for p in parts for e in p] == big
    huge = [event(5_000), event(10), event(5_000)]
    assert [len(p) for p in fragments(huge, 1_000)] == [1, 1, 1]  # an event over the limit goes alone
    assert fragments([event(5_000)], 1_000) == [[event(5_000)]]


@async_test
async def test_a_watch_asking_for_fragments_gets_a_big_response_in_parts(tmp_path):
    """etcd's ``fragment``: a response over the request limit goes in parts, each but the
    last marked; a watch that did not ask gets it whole."""
    async with _solo(tmp_path) as (server, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        limit = etcd_node(server.api).max_request_bytes
        start = (await kv.Put(pb.PutRequest(key=b"f/start", value=b"x"))).header.revision + 1
        big = b"v" * (limit // 4)
        for n in range(2):  # two revisions of three big values: together over the limit
            puts = [
                pb.RequestOp(request_put=pb.PutRequest(key=b"f/%d/%d" % (n, i), value=big)) for i in range(3)
            ]
            await kv.Txn(pb.TxnRequest(success=puts))
        watch = pb_grpc.WatchStub(channel)
        for fragment in (True, False):

            async def requests(fragment=fragment):
                create = pb.WatchCreateRequest(
                    key=b"f/", range_end=b"f0", start_revision=start, fragment=fragment
                )
                yield pb.WatchRequest(create_request=create)
                await asyncio.Event().wait()

            stream = watch.Watch(requests())
            assert (await stream.read()).created
            responses = []
            async with asyncio.timeout(10):
                while sum(len(r.events) for r in responses) < 6:
                    responses.append(await stream.read())
            stream.cancel()
            keys = [e.kv.key for r in responses for e in r.events]
            assert keys == [b"f/%d/%d" % (n, i) for n in range(2) for i in range(3)]
            if fragment:
                assert len(responses) > 1 and all(r.ByteSize() < limit for r in responses)
                assert [r.fragment for r in responses] == [True] * (len(responses) - 1) + [False]
            else:
                assert len(responses) == 1 and not responses[0].fragment


@async_test
async def test_a_read_the_store_fails_is_refused_and_the_node_goes_on(tmp_path, monkeypatch, caplog):
    """A bug in the store's read (the recent-changes KeyError above was one) halted the
    node: every node a client retried the read at would halt.  A read changes nothing,
    so it is refused (INTERNAL ``etcdserver: read-failed``), the node logs the traceback
    and goes on serving (protocols/common/replies.py)."""
    from consensuskit.statemachines import mvcc

    served = mvcc._HANDLERS["range"]

    def range_with_a_bug(store, req):
        if req.get("key") == b"boom":
            raise KeyError(b"boom")
        return served(store, req)

    monkeypatch.setitem(mvcc._HANDLERS, "range", range_with_a_bug)
    async with _solo(tmp_path) as (server, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        for serializable in (False, True):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kv.Range(pb.RangeRequest(key=b"boom", serializable=serializable))
            assert refused.value.code() == grpc.StatusCode.INTERNAL
            assert refused.value.details() == "etcdserver: read-failed"
        put = await kv.Put(pb.PutRequest(key=b"after", value=b"1"))
        got = await kv.Range(pb.RangeRequest(key=b"after"))
        assert [(g.key, g.mod_revision) for g in got.kvs] == [(b"after", put.header.revision)]
        assert server.runtime is not None and not server.runtime.halted.done()
        assert "a range read failed and was refused" in caplog.text and "KeyError" in caplog.text


@async_test
async def test_waiting_lock_claimants_look_again_only_when_the_revision_moves(tmp_path, monkeypatch):
    """A Lock waiting its turn read the claimants every 50 ms, each waiter; then each
    looked again whenever the node's applied revision moved, so writes to other keys
    woke every waiter (a linearizable read each).  Now a waiter looks again only when a
    key under its lock's NAME/ changed, and the next in line still gets the lock as soon
    as the holder lets go."""
    from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
    from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc

    ranges = _count_calls(monkeypatch, "range")
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _kv_when_led(channel)
        leases, locks = pb_grpc.LeaseStub(channel), lpb_grpc.LockStub(channel)
        ids = [(await leases.LeaseGrant(pb.LeaseGrantRequest(TTL=60))).ID for _ in range(11)]
        held = await locks.Lock(lpb.LockRequest(name=b"L", lease=ids[0]))
        waiting = [asyncio.ensure_future(locks.Lock(lpb.LockRequest(name=b"L", lease=i))) for i in ids[1:]]
        await asyncio.sleep(0.5)
        ranges[0] = 0
        await asyncio.sleep(1.0)
        assert ranges[0] <= 10  # ten waiters each reading every 50 ms: 200
        kv = pb_grpc.KVStub(channel)
        for i in range(50):  # writes to another key: 50 moves of the revision
            await kv.Put(pb.PutRequest(key=b"other", value=b"%d" % i))
            await asyncio.sleep(0.01)
        assert ranges[0] <= 10  # ten waiters woken by every move: 500
        await locks.Unlock(lpb.UnlockRequest(key=held.key))
        async with asyncio.timeout(5):
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1  # the next in line, and only it
        for task in waiting:
            task.cancel()


@async_test
async def test_a_lock_or_campaign_of_lease_0_gets_a_lease_of_its_own_as_etcd(tmp_path):
    """Every Lock of lease 0 on a name claimed the key NAME/0, without a lease: a second
    such Lock found the key and held the lock too, and the lock never ended.  As etcd's
    servers (checked against etcd 3.4: the key under a fresh lease, granted TTL 60, a
    second Lock waits): each claimant gets a lease of its own, never kept alive."""
    from consensuskit.services.etcdpb.v3electionpb import v3election_pb2 as epb
    from consensuskit.services.etcdpb.v3electionpb import v3election_pb2_grpc as epb_grpc
    from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
    from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc

    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        leases, locks = pb_grpc.LeaseStub(channel), lpb_grpc.LockStub(channel)

        async def lease_of(key: bytes) -> tuple[int, int]:
            (held,) = (await kv.Range(pb.RangeRequest(key=key))).kvs
            ttl = await leases.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=held.lease))
            return held.lease, ttl.grantedTTL

        first = await locks.Lock(lpb.LockRequest(name=b"L", lease=0))
        lease, granted = await lease_of(first.key)
        assert lease != 0 and granted == 60 and first.key == b"L/%x" % lease
        second = asyncio.ensure_future(locks.Lock(lpb.LockRequest(name=b"L", lease=0)))
        await asyncio.sleep(1.0)
        assert not second.done()  # mutual exclusion: the second waits its turn
        claims = (await kv.Range(pb.RangeRequest(key=b"L/", range_end=b"L0"))).kvs
        assert len(claims) == 2 and len({c.lease for c in claims}) == 2
        await leases.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease))  # the holder's lease ends
        async with asyncio.timeout(5):
            taken = await second
        assert taken.key != first.key and (await lease_of(taken.key))[1] == 60
        # A waiter whose client gives up leaves neither its claim nor its lease behind.
        third = asyncio.ensure_future(locks.Lock(lpb.LockRequest(name=b"L", lease=0)))
        await asyncio.sleep(0.5)
        granted_leases = {lease.ID for lease in (await leases.LeaseLeases(pb.LeaseLeasesRequest())).leases}
        third.cancel()
        await asyncio.sleep(0.5)
        claims = (await kv.Range(pb.RangeRequest(key=b"L/", range_end=b"L0"))).kvs
        assert [c.key for c in claims] == [taken.key]
        left = {lease.ID for lease in (await leases.LeaseLeases(pb.LeaseLeasesRequest())).leases}
        assert len(granted_leases) == 2 and left == {claims[0].lease}

        campaign = await epb_grpc.ElectionStub(channel).Campaign(
            epb.CampaignRequest(name=b"E", lease=0, value=b"v")
        )
        assert campaign.leader.lease != 0 and campaign.leader.key == b"E/%x" % campaign.leader.lease
        assert await lease_of(campaign.leader.key) == (campaign.leader.lease, 60)


@async_test
async def test_the_grpc_listener_holds_at_most_max_connections(tmp_path):
    """grpcio has no connection cap by default: a flood of gRPC connections could take
    the descriptors the storage needs (server/open_files.py).  It takes the client
    listener's max_connections."""
    async with _solo(tmp_path, max_connections=3) as (_, port):
        own = [("grpc.use_local_subchannel_pool", 1)]  # a connection each, not one shared
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=own) for _ in range(5)]
        try:
            await _kv_when_led(channels[0])
            served = 0
            for channel in channels:  # each its own connection
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"ready"), timeout=2)
                    served += 1
            assert served == 3
        finally:
            for channel in channels:
                await channel.close()


@async_test
async def test_request_bytes_that_are_not_the_message_end_the_call_internal_as_etcd(tmp_path):
    """Found by the gRPC fuzz (tests/services/test_etcd_grpc_fuzz.py): grpcio answered
    UNKNOWN "Unexpected <class 'DecodeError'>..." to bytes that are no protobuf message of
    the method, and a Watch stream given them ended OK, silently.  etcd (Go grpc) answers
    INTERNAL "grpc: error unmarshalling request: ..." (in a stream: "grpc: failed to
    unmarshal the received message ..."), checked against etcd 3.4."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        for method in ("/etcdserverpb.KV/Range", "/etcdserverpb.KV/Txn", "/v3lockpb.Lock/Lock"):
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call(b"\xff\xff\xff", timeout=5)
            assert failed.value.code() == grpc.StatusCode.INTERNAL, (method, failed.value)
            assert failed.value.details().startswith("grpc: error unmarshalling request: ")
        observe = channel.unary_stream(
            "/v3electionpb.Election/Observe", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for _ in observe(b"\x0a\x05ab", timeout=5):
                pass
        assert failed.value.code() == grpc.StatusCode.INTERNAL, failed.value
        good_create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w")).SerializeToString()
        for method, first in (
            ("/etcdserverpb.Watch/Watch", [good_create]),
            ("/etcdserverpb.Watch/Watch", []),
            ("/etcdserverpb.Lease/LeaseKeepAlive", []),
        ):
            stream = channel.stream_stream(method, request_serializer=None, response_deserializer=None)

            async def requests(first=first):
                for item in first:
                    yield item
                await asyncio.sleep(0.2)
                yield b"\xff\xff\xff"
                await asyncio.Event().wait()

            answers = []
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async for answer in stream(requests(), timeout=5):
                    answers.append(pb.WatchResponse.FromString(answer))
            assert failed.value.code() == grpc.StatusCode.INTERNAL, (method, failed.value)
            assert failed.value.details().startswith("grpc: failed to unmarshal the received message ")
            assert [a.created for a in answers] == [True] * len(first)
        await kv.Put(pb.PutRequest(key=b"after", value=b"1"))  # the node serves on


@async_test
async def test_a_watch_from_a_compacted_revision_is_canceled_as_etcd_cancels_it(tmp_path):
    """Found by the randomized comparison with etcd 3.4: its answer to a watch whose
    start revision was compacted has header revision 0 (the compacted WatchResponse's
    own) and no cancel reason; ours said the current revision and etcd's KV error."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        put = await kv.Put(pb.PutRequest(key=b"k", value=b"1"))
        await kv.Compact(pb.CompactionRequest(revision=put.header.revision))

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k", start_revision=1))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        async with asyncio.timeout(5):
            created, canceled = await stream.read(), await stream.read()
        assert created.created and created.header.revision == put.header.revision
        assert (canceled.canceled, canceled.compact_revision) == (True, put.header.revision)
        assert (canceled.header.revision, canceled.cancel_reason) == (0, "")
        stream.cancel()


@async_test
async def test_a_watch_of_an_empty_range_is_refused_as_etcd_refuses_it(tmp_path):
    """Found by the randomized comparison with etcd 3.4: a create whose range_end is not
    after its key (and is not "\\0", every key from it on) is refused, created and
    canceled of id -1 with etcd's reason, before it takes an id; ours watched nothing."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _kv_when_led(channel)
        creates = [(b"b", b"a"), (b"a", b"a"), (b"a", b"\x00"), (b"", b"a")]

        async def requests():
            for key, end in creates:
                yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=end))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        async with asyncio.timeout(5):
            answers = [await stream.read() for _ in creates]
        assert [(a.watch_id, a.created, a.canceled, a.cancel_reason) for a in answers] == [
            (-1, True, True, "mvcc: watcher range is empty"),
            (-1, True, True, "mvcc: watcher range is empty"),
            (0, True, False, ""),
            (1, True, False, ""),
        ]
        stream.cancel()


@async_test
async def test_a_cancel_of_no_watch_is_not_answered_as_in_etcd(tmp_path):
    """Found by the randomized comparison with etcd 3.4: etcd answers a cancel only when
    its watchStream had the watch; ours answered ``canceled`` for any id."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _kv_when_led(channel)

        async def requests():
            yield pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=7))
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k"))
            yield pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0))
            yield pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0))
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        async with asyncio.timeout(5):
            answers = [await stream.read() for _ in range(2)]
        assert [(a.watch_id, a.created, a.canceled) for a in answers] == [(0, True, False), (0, False, True)]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await stream.read()
        stream.cancel()


@async_test
async def test_progress_of_a_watch_that_starts_ahead_names_the_stores_revision(tmp_path):
    """Found by the randomized comparison with etcd 3.4: a progress request on a stream
    whose watch starts at a revision not yet written was answered with the revision
    before that start, one the store had not reached; etcd answers its own revision."""
    async with _solo(tmp_path) as (_, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = await _kv_when_led(channel)
        now = (await kv.Put(pb.PutRequest(key=b"k", value=b"1"))).header.revision
        asked = asyncio.Event()

        async def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k", start_revision=now + 5))
            await asyncio.wait_for(asked.wait(), 5)
            yield pb.WatchRequest(progress_request=pb.WatchProgressRequest())
            await asyncio.Event().wait()

        stream = pb_grpc.WatchStub(channel).Watch(requests())
        async with asyncio.timeout(5):
            assert (await stream.read()).created
            asked.set()
            progress = await stream.read()
        assert (progress.watch_id, progress.header.revision) == (-1, now)
        stream.cancel()
