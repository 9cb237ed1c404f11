"""The cluster level on the server (server/cluster_level.py): each node offers its level
to its peers, the cluster's level is raised once every member offers it, and a peer below
the cluster's level is refused both ways.  A rolling upgrade keeps the earlier release's
rules until its last node runs the new one; a node of the earlier release started after
the raise takes no part (it would apply the log by other rules)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensuskit.server.cluster import free_port
from consensuskit.server.cluster_level import ClusterLevels
from consensuskit.server.main import NodeServer
from consensuskit.server.peer_hello import PeerHello, PeerLevel
from consensuskit.server.transport import PeerTransport
from consensuskit.statemachines.levels import RELEASE_LEVEL
from tests.server.runtime_harness import Cluster, node_config
from tests.server.test_transport import LOCAL, Node, eventually, hb, run, settle

pytestmark = pytest.mark.timeout(120)


class Applied:
    """A stand-in for a node's applied level."""

    def __init__(self, level: int | None) -> None:
        self.level = level

    def __call__(self) -> int | None:
        return self.level


async def _pair(a_offer: int | None, b_applies: int | None, applied: Applied) -> tuple[Node, Node]:
    """a judges with ``applied``; b's release applies levels up to ``b_applies`` (None: an
    earlier release, which says nothing)."""
    a = Node("a", levels=ClusterLevels(a_offer or RELEASE_LEVEL, applied))
    b_levels = ClusterLevels(1, Applied(None), applies=b_applies) if b_applies is not None else None
    b = Node("b", **({"levels": b_levels} if b_levels is not None else {}))
    await a.transport.start()
    await b.transport.start()
    for node in (a, b):
        node.transport.update_peers({"a": a.address, "b": b.address})
    return a, b


def test_the_offer_round_trips_and_names_the_levels():
    from consensuskit.core.messages import decode, encode

    assert decode(encode(PeerLevel(1, 2))) == PeerLevel(1, 2)
    levels = ClusterLevels(2, Applied(2))
    assert levels.introduce() == PeerLevel(2, RELEASE_LEVEL)
    assert ClusterLevels(1, Applied(2)).introduce() == PeerLevel(1, RELEASE_LEVEL)
    assert levels.refusal(2) is None and levels.refusal(3) is None
    assert levels.refusal(1) == (
        "it applies cluster level 1 at most, this cluster's level is 2: it would apply this "
        "cluster's commands by other rules; run this release on it"
    )
    assert ClusterLevels(2, Applied(None)).refusal(1) is None  # a node that keeps no level


@pytest.mark.parametrize("b_applies", [1, None], ids=["applies-1", "earlier-release"])
def test_a_peer_below_the_clusters_level_is_refused_both_ways(b_applies, caplog):
    async def main() -> None:
        a, b = await _pair(2, b_applies, Applied(2))
        b.transport.send("a", hb(1))  # an earlier release's first message says its level
        await eventually(lambda: a.stats("b").refused is not None, "the refusal")
        assert "cluster level 1 at most" in a.stats("b").refused
        assert a.transport.peer_levels() == {"b": 1}
        for i in range(3):
            a.transport.send("b", hb(10 + i))
            b.transport.send("a", hb(20 + i))
        await eventually(lambda: a.stats("b").dropped_foreign >= 3, "b's messages dropped")
        await settle()
        assert a.inbox == [] and b.commits_from("a") == []  # nothing either way
        assert a.stats("b").dropped_level == 3 and a.stats("b").frames_sent == 0
        # A hello sent again on the connection does not lift the refusal.
        b.transport.send("a", PeerHello("raft", "kv", "", "0.1.0"))
        b.transport.send("a", hb(30))
        await eventually(lambda: a.stats("b").dropped_foreign >= 4, "b's message dropped")
        assert a.inbox == [] and "cluster level 1 at most" in a.stats("b").refused
        for node in (a, b):
            await node.transport.stop()

    with caplog.at_level(logging.ERROR):
        run(main())
    assert sum("dropping its messages" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("b_applies", [1, None], ids=["applies-1", "earlier-release"])
def test_below_the_level_is_fine_while_the_cluster_is_at_it(b_applies):
    async def main() -> None:
        applied = Applied(1)
        a, b = await _pair(2, b_applies, applied)
        b.transport.send("a", hb(1))
        a.transport.send("b", hb(2))
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert a.transport.peer_levels() == {"b": 1} and a.stats("b").refused is None
        # The level rises (a peer cannot be a member then, but one may be connected):
        # judged again, b is refused from now on.
        applied.level = 2
        a.transport.judge_levels()
        assert "cluster level 1 at most" in a.stats("b").refused
        b.transport.send("a", hb(3))
        a.transport.send("b", hb(4))
        await eventually(lambda: a.stats("b").dropped_foreign == 1, "b's message dropped")
        assert a.commits_from("b") == [1] and a.stats("b").dropped_level == 1
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_an_upgraded_peer_is_taken_again_on_its_new_connection():
    async def main() -> None:
        a, b = await _pair(2, 1, Applied(2))
        b.transport.send("a", hb(1))
        await eventually(lambda: a.stats("b").refused is not None, "the refusal")
        port = b.address[1]
        await b.transport.stop()  # the operator upgrades b and starts it again
        upgraded = Node("b", port=port, levels=ClusterLevels(1, Applied(None)))  # offers 1, applies 2
        await upgraded.transport.start()
        upgraded.transport.update_peers({"a": a.address})
        upgraded.transport.send("a", hb(5))
        await eventually(lambda: a.commits_from("b") == [5], "the upgraded node's message")
        assert a.transport.peer_levels() == {"b": 1} and a.stats("b").refused is None
        a.transport.send("b", hb(6))
        await eventually(lambda: upgraded.commits_from("a") == [6], "a talks to it again")
        for node in (a, upgraded):
            await node.transport.stop()

    run(main())


@pytest.mark.parametrize("release", ["earlier", "this"])
def test_a_restarted_peer_gets_nothing_until_its_first_frame_says_its_level(release):
    """The peer may have been put back on an earlier release: a's own connection to it,
    dialed again, must carry nothing until the peer's connection to a says its level (a
    node of an earlier release would apply the log by other rules)."""

    async def main() -> None:
        a, b = await _pair(2, RELEASE_LEVEL, Applied(2))
        b.transport.send("a", hb(1))
        a.transport.send("b", hb(2))
        await eventually(lambda: a.commits_from("b") == [1] and b.commits_from("a") == [2], "both ways")
        port = b.address[1]
        await b.transport.stop()
        options = {"levels": ClusterLevels(RELEASE_LEVEL, Applied(None))} if release == "this" else {}
        restarted = Node("b", port=port, **options)
        await restarted.transport.start()
        # It takes a's connection but has not dialed a yet (its dial to a fails for now).
        restarted.transport.update_peers({"a": (LOCAL, free_port())})
        await eventually(lambda: a.stats("b").connects == 2, "a dialed the restarted b")
        a.transport.send("b", hb(3))
        await settle()
        assert restarted.inbox == [] and a.stats("b").queue_length == 1  # held, not sent
        assert a.stats("b").awaiting_level
        restarted.transport.update_peers({"a": a.address})  # it dials a: its first frame says
        restarted.transport.send("a", hb(9))  # (a bare transport sends no greeting of its own)
        if release == "this":
            await eventually(lambda: restarted.commits_from("a") == [3], "the held message")
            assert not a.stats("b").awaiting_level and a.stats("b").dropped_level == 0
        else:
            await eventually(lambda: a.stats("b").refused is not None, "the refusal")
            a.transport.send("b", hb(4))
            await settle()
            assert restarted.inbox == [] and a.stats("b").dropped_level == 2
        for node in (a, restarted):
            await node.transport.stop()

    run(main())


def test_nothing_waits_for_a_peers_level_while_the_cluster_is_at_the_base_level():
    async def main() -> None:
        a, b = await _pair(2, None, Applied(1))  # b: an earlier release
        b.transport.update_peers({"a": (LOCAL, free_port())})  # b's dials to a fail
        a.transport.send("b", hb(1))
        await eventually(lambda: b.commits_from("a") == [1], "a's message")
        assert not a.stats("b").awaiting_level
        for node in (a, b):
            await node.transport.stop()

    run(main())


# -- a cluster of servers ------------------------------------------------------------------
async def _status(c: Cluster, node: str) -> dict[str, Any]:
    status, body, _ = await c.call("GET", node, "/v1/status")
    assert status == 200, body
    return body


async def _levels(c: Cluster) -> dict[str, int]:
    return {node: (await _status(c, node))["cluster_level"]["applied"] for node in c.servers}


async def _wait_levels(c: Cluster, level: int, timeout: float = 15.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while set((await _levels(c)).values()) != {level}:
        if loop.time() > end:
            raise AssertionError(f"not every node at level {level}: {await _levels(c)}")
        await asyncio.sleep(0.05)


def _warned(caplog: pytest.LogCaptureFixture) -> bool:
    """n3 said its cluster_level = 1 changes nothing now."""
    return any(
        "cluster_level = 1 is below the level this cluster applied (2)" in r.getMessage()
        for r in caplog.records
    )


@contextlib.asynccontextmanager
async def _three(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Three nodes' cluster, each started by the test; all stopped at the end."""
    c = Cluster(tmp_path, ["n1", "n2", "n3"])
    c.http = aiohttp.ClientSession()
    try:
        yield c
    finally:
        for server in c.servers.values():
            await server.stop()
        await c.http.close()


async def _start_earlier_release(c: Cluster, node_id: str) -> NodeServer:
    """``node_id`` as a node of the release before levels: it sends no PeerLevel."""

    def factory(*args: Any, **kwargs: Any) -> PeerTransport:
        kwargs.pop("levels", None)
        return PeerTransport(*args, **kwargs)

    # It never raises the level either (its own raiser, were it the leader, would).
    config = node_config(c.base, node_id, c.ids, **{**c.settings, "cluster_level": 1})
    server = NodeServer(config, transport_factory=factory)
    await server.start()
    c.servers[node_id] = server
    c.wire()
    return server


def test_a_rolling_upgrade_raises_the_level_with_its_last_node_and_refuses_a_downgrade(tmp_path):
    async def main() -> None:
        async with _three(tmp_path) as c:
            # n3 still runs the earlier release: the cluster stays at its rules.
            await c.start_node("n1", wire=False)
            await c.start_node("n2", wire=False)
            await _start_earlier_release(c, "n3")
            leader = await c.wait_leader()
            status, body, _ = await c.call("PUT", leader, "/v1/kv/a", data=b"1")
            assert status == 200, body
            await settle(1.5)  # several looks of the level raiser
            assert await _levels(c) == {"n1": 1, "n2": 1, "n3": 1}
            body = await _status(c, "n1")
            assert {p: body["peers"][p]["level"] for p in ("n2", "n3")} == {"n2": RELEASE_LEVEL, "n3": 1}
            assert body["cluster_level"] == {"applied": 1, "offered": RELEASE_LEVEL}
            # n3 upgraded: the level rises on every node.
            await c.stop_node("n3")
            await c.start_node("n3")
            await _wait_levels(c, RELEASE_LEVEL)
            assert (await _status(c, "n1"))["peers"]["n3"]["awaiting_level"] is False
            # n3 back on the earlier release: refused by both others, and the cluster goes on.
            await c.stop_node("n3")
            for _ in range(100):  # its connection closed with it: its level is not known now
                if (await _status(c, "n1"))["peers"]["n3"]["awaiting_level"]:
                    break
                await settle(0.05)
            assert (await _status(c, "n1"))["peers"]["n3"]["awaiting_level"] is True
            await _start_earlier_release(c, "n3")
            leader = await c.wait_leader(exclude=("n3",))
            for node in ("n1", "n2"):
                for _ in range(100):
                    refused = (await _status(c, node))["peers"]["n3"]["refused"]
                    if refused:
                        break
                    await settle(0.05)
                assert refused and "cluster level 1 at most, this cluster's level is 2" in refused
            status, body, _ = await c.call("PUT", leader, "/v1/kv/b", data=b"2")
            assert status == 200, body
            await settle(0.5)
            n3 = c.servers["n3"].runtime.node
            assert n3.sm.get("b") is None  # it got nothing to apply by the wrong rules

    run(main())


def test_a_node_configured_below_the_release_keeps_the_cluster_there(tmp_path, caplog):
    async def main() -> None:
        async with _three(tmp_path) as c:
            await c.start_node("n1", wire=False)
            await c.start_node("n2", wire=False)
            await c.start_node("n3", wire=False, cluster_level=1)
            c.wire()
            await c.wait_leader()
            await settle(1.5)
            assert await _levels(c) == {"n1": 1, "n2": 1, "n3": 1}
            await c.stop_node("n3")
            await c.start_node("n3")  # the operator lifts the pin
            await _wait_levels(c, RELEASE_LEVEL)
            # Pinned again after the raise: nothing changes (the level never falls), and
            # n3 is not refused: its release applies level 2.
            await c.stop_node("n3")
            with caplog.at_level(logging.WARNING):
                await c.start_node("n3", cluster_level=1)
                leader = await c.wait_leader()
                status, body, _ = await c.call("PUT", leader, "/v1/kv/pinned", data=b"1")
                assert status == 200, body
                for _ in range(100):
                    if c.servers["n3"].runtime.node.sm.get("pinned") == "1" and _warned(caplog):
                        break
                    await settle(0.05)
            assert c.servers["n3"].runtime.node.sm.get("pinned") == "1"
            assert await _levels(c) == dict.fromkeys(("n1", "n2", "n3"), RELEASE_LEVEL)
            for node in ("n1", "n2"):
                assert (await _status(c, node))["peers"]["n3"]["refused"] is None
            assert _warned(caplog)

    run(main())


@pytest.mark.parametrize(
    ("protocol", "nodes"),
    [("raft", 3), ("multipaxos", 3), ("zab", 3), ("basic-paxos", 3), ("fast-paxos", 4)],
)
def test_every_log_protocols_new_cluster_reaches_this_releases_level(tmp_path, protocol, nodes):
    """The raise is an ordinary write, ordered by each protocol as any other (with or
    without a leader)."""

    async def main() -> None:
        ids = [f"n{i + 1}" for i in range(nodes)]
        async with Cluster(tmp_path, ids, protocol=protocol, options={}) as c:
            await _wait_levels(c, RELEASE_LEVEL, timeout=30)
            status, body, _ = await c.call("PUT", ids[-1], "/v1/kv/after", data=b"1")
            assert status == 200, body

    run(main())
