"""Each dialed connection opens with a PeerHello; a peer of another protocol, service or
cluster is refused by the node it reaches (server/peer_hello.py, transport.py)."""

from __future__ import annotations

import logging

import pytest

from consensuskit.core.messages import decode, encode
from consensuskit.server.peer_hello import PeerHello
from tests.server.test_transport import Node, eventually, hb, run, settle

pytestmark = pytest.mark.timeout(60)

RAFT_KV = PeerHello("raft", "kv", "c-1", "0.1.0")


def test_a_hello_round_trips_and_names_what_differs():
    assert decode(encode(RAFT_KV)) == RAFT_KV
    assert RAFT_KV.refusal(PeerHello("raft", "kv", "c-1", "0.2.0")) is None  # releases may differ
    assert RAFT_KV.refusal(PeerHello("raft", "kv", "", "0.1.0")) is None  # a node without a cluster id
    assert PeerHello("raft", "kv", "", "0.1.0").refusal(RAFT_KV) is None
    assert RAFT_KV.refusal(PeerHello("multipaxos", "kv", "c-1", "0.1.0")) == (
        "it runs protocol 'multipaxos' with service 'kv' (release 0.1.0), this node protocol 'raft' "
        "with service 'kv': every node of a cluster needs the same protocol and service"
    )
    assert "service 'etcd'" in RAFT_KV.refusal(PeerHello("raft", "etcd", "c-1", "0.1.0"))
    assert RAFT_KV.refusal(PeerHello("raft", "kv", "c-2", "0.1.0")) == (
        "it belongs to cluster c-2, this node to c-1 (a config of another cluster holding this "
        "cluster's secret?)"
    )


async def _pair(a_hello: PeerHello | None, b_hello: PeerHello | None) -> tuple[Node, Node]:
    a, b = Node("a", hello=a_hello), Node("b", hello=b_hello)
    await a.transport.start()
    await b.transport.start()
    for node in (a, b):
        node.transport.update_peers({"a": a.address, "b": b.address})
    return a, b


def test_nodes_that_agree_deliver_as_before():
    async def main() -> None:
        a, b = await _pair(RAFT_KV, PeerHello("raft", "kv", "c-1", "0.2.0"))
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(2))
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert b.commits_from("a") == [1] and a.commits_from("b") == [2]  # the hello is not delivered
        for node, peer in ((a, "b"), (b, "a")):
            stats = node.stats(peer)
            assert (stats.refused, stats.dropped_foreign, stats.frames_received) == (None, 0, 1)
        assert a.transport.connected_from() == {"b"}
        sent, got = a.stats("b"), b.stats("a")
        assert sent.bytes_sent == got.bytes_received  # the hello counted on both sides
        for node in (a, b):
            await node.transport.stop()

    run(main())


@pytest.mark.parametrize(
    "other",
    [
        PeerHello("multipaxos", "kv", "c-1", "0.1.0"),
        PeerHello("raft", "etcd", "c-1", "0.1.0"),
        PeerHello("raft", "kv", "c-2", "0.1.0"),
    ],
    ids=["protocol", "service", "cluster"],
)
def test_a_peer_that_runs_something_else_is_refused_by_both_sides(other, caplog):
    async def main() -> None:
        a, b = await _pair(RAFT_KV, other)
        await eventually(
            lambda: a.stats("b").refused is not None and b.stats("a").refused is not None, "both refusals"
        )
        for _ in range(5):
            a.transport.send("b", hb(1))
            b.transport.send("a", hb(2))
        await eventually(
            lambda: a.stats("b").dropped_foreign == 5 and b.stats("a").dropped_foreign == 5, "the drops"
        )
        await settle()
        assert a.inbox == [] and b.inbox == []
        assert a.stats("b").refused == RAFT_KV.refusal(other)
        assert b.stats("a").refused == other.refusal(RAFT_KV)
        assert a.stats("b").connected and b.stats("a").connected  # kept open: no redial loop
        assert a.transport.connected_from() == set() == b.transport.connected_from()
        for node in (a, b):
            await node.transport.stop()

    with caplog.at_level(logging.ERROR):
        run(main())
    refusals = [r.getMessage() for r in caplog.records if "dropping its messages" in r.getMessage()]
    assert len(refusals) == 2  # once per connection, not per message
    assert any(RAFT_KV.refusal(other) in line and line.startswith("peer b at ") for line in refusals)


def test_a_peer_without_a_hello_an_earlier_release_is_accepted():
    async def main() -> None:
        a, b = await _pair(RAFT_KV, None)  # b: an earlier release, which neither sends nor checks
        b.transport.send("a", hb(7))
        a.transport.send("b", hb(8))
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert a.commits_from("b") == [7] and b.commits_from("a") == [8]
        assert a.stats("b").refused is None and a.transport.connected_from() == {"b"}
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_reconnection_with_a_matching_hello_is_taken_again():
    async def main() -> None:
        a = Node("a", hello=RAFT_KV)
        b = Node("b", hello=PeerHello("raft", "etcd", "c-1", "0.1.0"))
        await a.transport.start()
        await b.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        await eventually(lambda: a.stats("b").refused is not None, "the refusal")
        port = b.address[1]
        await b.transport.stop()  # the operator fixes b's config and restarts it
        await eventually(lambda: a.stats("b").refused is None, "the refused connection gone")
        fixed = Node("b", hello=RAFT_KV, port=port)
        await fixed.transport.start()
        fixed.transport.update_peers({"a": a.address})
        fixed.transport.send("a", hb(3))
        await eventually(lambda: a.inbox, "a message from the fixed node")
        assert a.commits_from("b") == [3] and a.transport.connected_from() == {"b"}
        for node in (a, fixed):
            await node.transport.stop()

    run(main())


def test_a_node_configured_for_another_service_takes_no_part_and_every_status_says_why(tmp_path):
    """Without the hello, n3 (etcd on Raft, among kv nodes) would take the kv log and apply
    it to its etcd state machine: a replica silently diverging from the others."""
    import aiohttp
    from rich.console import Console

    from consensuskit import __version__
    from consensuskit.server.commands import status_rows, status_table
    from tests.server.runtime_harness import Cluster

    async def main() -> None:
        c = Cluster(tmp_path, ["n1", "n2", "n3"])
        c.http = aiohttp.ClientSession()
        try:
            await c.start_node("n1", wire=False)
            await c.start_node("n2", wire=False)
            await c.start_node("n3", wire=False, service="etcd")
            c.wire()
            leader = await c.wait_leader(exclude=("n3",))
            status, body, _ = await c.call("PUT", leader, "/v1/kv/k", data=b"v")
            assert status == 200, body
            await settle(1.0)
            n3 = c.servers["n3"].runtime.node
            assert n3.commit_index == 0 and n3.status()["role"] != "leader"
            status, body, _ = await c.call("GET", "n3", "/v1/status")
            assert status == 200
            for peer in ("n1", "n2"):
                assert body["peers"][peer]["refused"] == (
                    f"it runs protocol 'raft' with service 'kv' (release {__version__}), this node protocol "
                    "'raft' with service 'etcd': every node of a cluster needs the same protocol and service"
                )
            status, body, _ = await c.call("GET", leader, "/v1/status")
            assert "service 'etcd'" in body["peers"]["n3"]["refused"]
            other = "n2" if leader == "n1" else "n1"
            assert body["peers"][other]["refused"] is None
            statuses = {node: (await c.call("GET", node, "/v1/status"))[1] for node in ("n1", "n2", "n3")}
            rows = {row["node"]: row for row in status_rows(statuses)}
            assert list(rows["n3"]["refuses"]) == ["n1", "n2"] and list(rows[leader]["refuses"]) == ["n3"]
            console = Console(record=True, width=400)
            console.print(status_table(list(rows.values())))
            text = console.export_text()
            assert "drops the messages of n1, n2: n1: it runs protocol 'raft' with service 'kv'" in text
            assert "drops the messages of n3: n3: it runs protocol 'raft' with service 'etcd'" in text
        finally:
            for server in c.servers.values():
                await server.stop()
            await c.http.close()

    run(main())
