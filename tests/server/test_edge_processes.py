"""Issue 10 item 1 against real node processes: each of the three requests that halted a
node (exit 70), sent to every node of a 3-node cluster (a Multi-Paxos follower forwards
a write to the leader) on the fast front and on aiohttp, gets its 400, and every
process is still running and serving afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.http_raw import check_error_body, exchange, request_bytes
from tests.server.test_processes import PROTOCOLS_SLOW_LEADERLESS, make_cluster

pytestmark = pytest.mark.timeout(180)

ITEM_1 = {
    "cas_version over 2^64": (b"PUT", b"/v1/kv/k1?cas_version=99999999999999999999999", {}, "bad-request"),
    "request id SEQ over 2^64": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"evil:99999999999999999999999"},
        "bad-request-id",
    ),
    "request id with a non-UTF-8 byte": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"c\xff:1"},
        "bad-request-id",
    ),
}


@pytest.mark.parametrize("protocol", PROTOCOLS_SLOW_LEADERLESS)
def test_the_item_1_requests_get_400_and_no_node_exits(tmp_path: Path, protocol: str) -> None:
    with make_cluster(tmp_path / "data", protocol=protocol) as cluster:
        cluster.start()
        cluster.wait_ready(30, every_node=True)
        pids = {n: p.pid for n, p in cluster.nodes.items()}
        for name, (method, target, headers, code) in ITEM_1.items():
            for node in cluster.nodes:
                port = cluster.layout.node(node).client_port
                for extra in ({}, {b"Connection": b"close"}):  # the fast front, then aiohttp alone
                    answers = exchange(port, request_bytes(method, target, {**headers, **extra}, b"value"))
                    assert len(answers) == 1, (name, node, answers)
                    body = check_error_body(answers[0])
                    assert (answers[0].status, body["error"]) == (400, code), (name, node, body)
        # Every process still runs (no exit 70), none halted, and the cluster takes writes.
        assert cluster.dead_nodes() == []
        assert {n: p.pid for n, p in cluster.nodes.items()} == pids
        with cluster.client(timeout=2, deadline=15) as kv:
            kv.put("k1", "after")
            for node in cluster.nodes:
                status = kv.status(cluster.url(node))
                assert status["halted"] is False and status["pid"] == pids[node]
            assert kv.get("k1").value == "after"
        for node in cluster.nodes.values():
            assert "halted" not in node.log_tail(200), node.log_tail(40)
