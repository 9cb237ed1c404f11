"""Fuzzing the etcd v3 API's gRPC edge (services/etcd_grpc.py) on a live 3-node Raft
cluster serving the etcd service: every method of KV, Watch, Lease, Cluster,
Maintenance, Auth, Lock and Election (but those that would change the cluster for good:
tests/services/etcd_messages.py ``EXCLUDED``) gets hostile messages of its request type
(tests/services/etcd_messages.py) and bytes that are no such message; the streams get
one to three of them.  Sent as raw bytes, to any node (a follower forwards).

Asserted: no node exits, restarts or halts; every failed call ends with a proper status
and a text (INVALID_ARGUMENT, OUT_OF_RANGE, NOT_FOUND, FAILED_PRECONDITION, ...), never
UNKNOWN from an uncaught Python exception (UNKNOWN is Lock's and Election's code for
every error, as with etcd, whose recipes' errors reach the caller as plain Go errors),
INTERNAL only for bytes that are no message (Go grpc's text, as etcd's); and afterwards
every node still puts, reads, runs a Txn and streams a watch event.  (store-level fuzz of
requests the edge admitted: tests/services/test_etcd_store_fuzz.py.)  Default: a fixed,
derandomized run; ``-m slow``: more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.fuzzing import live_fuzz
from tests.services.etcd_cluster import EtcdCluster, etcd_cluster
from tests.services.etcd_messages import METHODS, messages, raw_bytes
from tests.services.http_fuzz import Live, assert_all_alive

pytestmark = pytest.mark.timeout(300)

DEFAULT_EXAMPLES = 250
SLOW_EXAMPLES = 1500
C = grpc.StatusCode
PROPER = {
    C.INVALID_ARGUMENT,
    C.OUT_OF_RANGE,
    C.NOT_FOUND,
    C.FAILED_PRECONDITION,
    C.PERMISSION_DENIED,
    C.UNAUTHENTICATED,
    C.UNIMPLEMENTED,
    C.RESOURCE_EXHAUSTED,  # over the message limit, as grpc refuses it for etcd
    C.UNAVAILABLE,  # no leader for a moment, a timeout: etcd's own texts
    C.DEADLINE_EXCEEDED,  # ours: a Lock or Campaign waiting, a watch streaming on
    C.CANCELLED,
}
UNMARSHAL = ("grpc: error unmarshalling request: ", "grpc: failed to unmarshal the received message ")
RECIPES = ("/v3lockpb.", "/v3electionpb.")
WAITS = ("/v3lockpb.Lock/Lock", "/v3electionpb.Election/Campaign")  # block while another holds it


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(tmp_path_factory, "raft")


@pytest.fixture(scope="module")
def live(etcd: EtcdCluster) -> Iterator[tuple[EtcdCluster, Live, list[grpc.Channel]]]:
    cluster = etcd.cluster
    ports = {n: etcd.layout.node(n).client_port for n in cluster.nodes}
    found = Live(cluster, {n: p.pid for n, p in cluster.nodes.items()}, ports, etcd.layout.admin_token)
    channels = [grpc.insecure_channel(address) for address in etcd.grpc_addresses()]
    try:
        yield etcd, found, channels
    finally:
        for channel in channels:
            channel.close()
    assert_all_alive(found)


def check_status(path: str, code: grpc.StatusCode, details: str | None) -> None:
    assert details, (path, code, details)
    if code == C.UNKNOWN:
        assert path.startswith(RECIPES) and not details.startswith("Unexpected"), (path, details)
    elif code == C.INTERNAL:
        assert details.startswith(UNMARSHAL), (path, details)
    else:
        assert code in PROPER, (path, code, details)


def call(channel: grpc.Channel, path: str, streams: tuple[bool, bool], requests: list[bytes]) -> Any:
    """One call with raw request bytes; the answers (raw), or RpcError."""
    client_stream, server_stream = streams
    timeout = 1.0 if path in WAITS else 5.0
    raw: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    if client_stream:
        stream = channel.stream_stream(path, **raw)
        return list(stream(iter(requests), timeout=0.7))  # a watch streams on: DEADLINE_EXCEEDED
    if server_stream:
        return list(channel.unary_stream(path, **raw)(requests[0], timeout=0.7))
    return [channel.unary_unary(path, **raw)(requests[0], timeout=timeout)]


@st.composite
def fuzzed_calls(draw: st.DrawFn) -> tuple[str, tuple[bool, bool], list[bytes]]:
    path, request_type, client_stream, server_stream = draw(st.sampled_from(METHODS))
    one = st.one_of(
        messages(request_type).map(lambda m: m.SerializeToString()),
        messages(request_type).map(lambda m: m.SerializeToString()),
        raw_bytes(request_type),
    )
    requests = draw(st.lists(one, min_size=1, max_size=3 if client_stream else 1))
    return path, (client_stream, server_stream), requests


def run_fuzz(live: tuple[EtcdCluster, Live, list[grpc.Channel]], examples: int) -> None:
    _, found, channels = live
    codes: dict[str, int] = {}

    @live_fuzz(examples)
    @given(fuzzed_calls(), st.integers(0, 2))
    def one(fuzzed: tuple[str, tuple[bool, bool], list[bytes]], node: int) -> None:
        path, streams, requests = fuzzed
        try:
            call(channels[node], path, streams, requests)
            code = C.OK
        except grpc.RpcError as exc:
            code = exc.code()
            check_status(path, code, exc.details())
        codes[code.name] = codes.get(code.name, 0) + 1
        dead = found.cluster.dead_nodes()
        assert dead == [], [(n.node_id, n.returncode, n.log_tail(40)) for n in dead]

    one()
    assert_all_alive(found)
    print(f"grpc fuzz: calls by status {dict(sorted(codes.items()))}")
    assert codes.get("OK", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0, codes


def still_serves(channels: list[grpc.Channel]) -> None:
    for i, channel in enumerate(channels):
        kv = pb_grpc.KVStub(channel)
        key = b"after-fuzz/%d" % i
        deadline = time.monotonic() + 20
        while True:  # an election the fuzz caused (MoveLeader) may still be on
            try:
                put = kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=5)
                break
            except grpc.RpcError as exc:
                if exc.code() != C.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        got = kv.Range(pb.RangeRequest(key=key), timeout=5)
        assert [(k.key, k.value) for k in got.kvs] == [(key, b"v")]
        compare = pb.Compare(key=key, target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"v")
        txn = kv.Txn(
            pb.TxnRequest(compare=[compare], success=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]),
            timeout=5,
        )
        assert txn.succeeded and txn.responses[0].response_range.kvs[0].value == b"v"
        create = pb.WatchRequest(
            create_request=pb.WatchCreateRequest(key=key, start_revision=put.header.revision)
        )
        watch = pb_grpc.WatchStub(channel).Watch(iter([create]), timeout=5)
        answers = [next(watch), next(watch)]
        watch.cancel()
        assert answers[0].created and answers[1].events[0].kv.value == b"v", answers


def test_fuzzed_grpc_calls_never_halt_a_node_nor_end_unknown(live: Any) -> None:
    run_fuzz(live, DEFAULT_EXAMPLES)
    still_serves(live[2])


@pytest.mark.slow
def test_fuzzed_grpc_calls_long(live: Any) -> None:
    run_fuzz(live, SLOW_EXAMPLES)
    still_serves(live[2])
