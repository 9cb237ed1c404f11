"""PeerTransport over real sockets on 127.0.0.1: delivery, order, reconnects, bounded queues,
membership changes, the fault hook and a clean stop.  Bad input lives in
test_transport_bad_input.py, TLS in test_transport_tls.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from consensuskit.core.messages import encode
from consensuskit.protocols.raft.messages import (
    NOOP,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    LogEntry,
)
from consensuskit.server.cluster import free_port
from consensuskit.server.framing import frame
from consensuskit.server.transport import PeerTransport

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None

SECRET = b"test-cluster-secret"
LOCAL = "127.0.0.1"

pytestmark = pytest.mark.timeout(60)

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop not installed")),
]


def run(main: Coroutine[Any, Any, Any], loop: str = "asyncio") -> Any:
    factory = uvloop.new_event_loop if loop == "uvloop" and uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def hb(commit: int, leader: str = "a") -> Heartbeat:
    return Heartbeat(term=1, leader=leader, commit=commit)


class Node:
    """A transport plus the messages it delivered, in order."""

    def __init__(self, node_id: str, *, secret: bytes = SECRET, port: int = 0, **options: Any) -> None:
        self.id = node_id
        self.inbox: list[tuple[str, Any]] = []
        options.setdefault("backoff_cap", 0.2)
        self.transport = PeerTransport(
            node_id,
            (LOCAL, port),
            {},
            secret,
            self.on_message,
            logger=logging.getLogger(f"test.transport.{node_id}"),
            **options,
        )

    def on_message(self, src: str, msg: Any) -> None:
        self.inbox.append((src, msg))

    def received_from(self, src: str) -> list[Any]:
        return [msg for s, msg in self.inbox if s == src]

    def commits_from(self, src: str) -> list[int]:
        return [msg.commit for msg in self.received_from(src)]

    @property
    def address(self) -> tuple[str, int]:
        return (LOCAL, self.transport.bound_port)

    def stats(self, peer: str) -> Any:
        return self.transport.stats.peers[peer]


async def start_cluster(*ids: str, **options: Any) -> dict[str, Node]:
    nodes = {node_id: Node(node_id, **options) for node_id in ids}
    for node in nodes.values():
        await node.transport.start()
    addresses = {node_id: node.address for node_id, node in nodes.items()}
    for node in nodes.values():
        node.transport.update_peers(addresses)  # includes the node itself, which is ignored
    return nodes


async def stop_all(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        await node.transport.stop()


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


async def settle(seconds: float = 0.2) -> None:
    """Give in-flight traffic time to arrive (used only to show that nothing does)."""
    await asyncio.sleep(seconds)


# -- delivery and order ------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_two_nodes_exchange_messages_both_ways(loop):
    entries = (LogEntry(term=2, index=5, kind=NOOP),)
    append = AppendEntries(
        term=2, leader="a", prev_log_index=4, prev_log_term=1, entries=entries, leader_commit=3
    )
    answer = AppendEntriesResponse(term=2, success=True, index=5)

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        a.transport.send("b", append)
        b.transport.send("a", answer)
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert b.inbox == [("a", append)]
        assert a.inbox == [("b", answer)]
        sent, got = a.stats("b"), b.stats("a")
        assert (sent.frames_sent, got.frames_received) == (1, 1)
        assert sent.bytes_sent == got.bytes_received == len(frame(encode(append)))
        assert (sent.connects, got.accepts, sent.connected) == (1, 1, True)
        assert sent.dropped == 0 and sent.queue_length == 0
        await stop_all(nodes)

    run(main(), loop)


def test_three_nodes_deliver_every_message_in_send_order_per_pair():
    count = 600

    async def main() -> None:
        nodes = await start_cluster("a", "b", "c")
        for i in range(count):
            for src in nodes:
                for dst in nodes:
                    if src != dst:
                        nodes[src].transport.send(dst, hb(i, leader=src))
            if i % 100 == 0:
                await asyncio.sleep(0)  # interleave sending with the network
        await eventually(lambda: all(len(n.inbox) == 2 * count for n in nodes.values()), "all messages")
        for dst, node in nodes.items():
            for src in nodes:
                if src != dst:
                    assert node.commits_from(src) == list(range(count)), f"{src}->{dst}"
                    assert all(msg.leader == src for msg in node.received_from(src))
        await stop_all(nodes)

    run(main())


def test_writes_are_coalesced_into_few_drains():
    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        await eventually(lambda: a.stats("b").connected, "a connected to b")
        for i in range(2000):
            a.transport.send("b", hb(i))  # all within one event loop step
        await eventually(lambda: len(b.inbox) == 2000, "2000 messages")
        stats = a.stats("b")
        assert stats.frames_sent == 2000
        assert stats.batches_sent <= 3, stats
        await stop_all(nodes)

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_flush_writes_each_peers_frames_at_once_without_waking_its_pump(loop):
    async def main() -> None:
        nodes = await start_cluster("a", "b", "c")
        a = nodes["a"]
        await eventually(lambda: a.stats("b").connected and a.stats("c").connected, "a connected")
        await settle(0.05)
        woken = {peer: 0 for peer in ("b", "c")}
        for peer, link in a.transport._links.items():
            original = link.wakeup.set

            def counting_set(peer: str = peer, original: Callable[[], None] = original) -> None:
                woken[peer] += 1
                original()

            link.wakeup.set = counting_set  # type: ignore[method-assign]
        before = {peer: a.stats(peer).batches_sent for peer in ("b", "c")}
        for i in range(5):
            a.transport.send("b", hb(i))
            a.transport.send("c", hb(100 + i))
        a.transport.flush()  # as the runtime does after releasing a batch
        after = {peer: a.stats(peer).batches_sent for peer in ("b", "c")}
        assert {p: after[p] - before[p] for p in after} == {"b": 1, "c": 1}  # written already
        assert woken == {"b": 0, "c": 0}
        await eventually(lambda: len(nodes["b"].inbox) == 5 and len(nodes["c"].inbox) == 5, "delivery")
        assert nodes["b"].commits_from("a") == [0, 1, 2, 3, 4]
        assert nodes["c"].commits_from("a") == [100, 101, 102, 103, 104]
        for i in range(3):  # without an explicit flush: written one loop turn later
            a.transport.send("b", hb(10 + i))
        assert a.stats("b").batches_sent == after["b"]
        await eventually(lambda: len(nodes["b"].inbox) == 8, "delivery after the turn")
        assert a.stats("b").batches_sent == after["b"] + 1 and woken["b"] == 0
        await stop_all(nodes)

    run(main(), loop)


def test_a_large_message_crosses_intact():
    big = AppendEntries(
        term=1,
        leader="a",
        prev_log_index=0,
        prev_log_term=0,
        entries=tuple(
            LogEntry(term=1, index=i, kind="command", data=bytes([i % 256]) * 65536) for i in range(1, 129)
        ),
        leader_commit=0,
    )

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        nodes["a"].transport.send("b", big)
        nodes["a"].transport.send("b", hb(1))
        await eventually(lambda: len(nodes["b"].inbox) == 2, "the big message and the next one")
        assert nodes["b"].inbox == [("a", big), ("a", hb(1))]
        await stop_all(nodes)

    run(main())


def test_a_message_over_the_frame_limit_crosses_in_fragments_between_the_others():
    """A message larger than one frame (a snapshot of a large state) travels as fragment
    frames; before, the sender refused it forever and the peer it was for never caught up."""
    entry = LogEntry(term=1, index=1, kind="command", data=bytes(range(256)) * 40)  # 10 kB
    big = AppendEntries(
        term=1, leader="a", prev_log_index=0, prev_log_term=0, entries=(entry,), leader_commit=0
    )

    async def main() -> None:
        nodes = await start_cluster("a", "b", max_frame_bytes=1000)
        a, b = nodes["a"], nodes["b"]
        a.transport.send("b", hb(1))
        a.transport.send("b", big)
        a.transport.send("b", hb(2))
        await eventually(lambda: len(b.inbox) == 3, "all three, in order")
        assert b.inbox == [("a", hb(1)), ("a", big), ("a", hb(2))]
        assert a.stats("b").fragmented == 1 and a.stats("b").dropped_oversize == 0
        assert b.stats("a").frames_received == 3 and b.stats("a").protocol_errors == 0
        await stop_all(nodes)

    run(main())


def test_a_message_over_the_message_limit_is_dropped_by_the_sender_and_logged(caplog):
    caplog.set_level(logging.ERROR)

    async def main() -> None:
        nodes = await start_cluster("a", "b", max_frame_bytes=1000, max_message_bytes=1500)
        a, b = nodes["a"], nodes["b"]
        entry = LogEntry(term=1, index=1, kind="command", data=b"x" * 2000)
        a.transport.send("b", AppendEntries(term=1, leader="a", prev_log_index=0, prev_log_term=0,
                                            entries=(entry,), leader_commit=0))  # fmt: skip
        a.transport.send("b", hb(7))
        await eventually(lambda: b.inbox, "the small message")
        assert b.inbox == [("a", hb(7))]
        assert a.stats("b").dropped_oversize == 1
        await stop_all(nodes)

    run(main())
    assert "not sending AppendEntries to peer b" in caplog.text
    assert "over max_message_bytes=1500" in caplog.text


def test_a_queue_evicts_a_fragmented_message_whole():
    """Eviction takes whole messages: never some fragments of one, which would break the
    run the receiver reassembles."""
    port = free_port()
    entry = LogEntry(term=1, index=1, kind="command", data=b"y" * 5000)
    big = AppendEntries(
        term=1, leader="a", prev_log_index=0, prev_log_term=0, entries=(entry,), leader_commit=0
    )

    async def main() -> None:
        a = Node("a", queue_limit=2, max_frame_bytes=1000)
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, port)})
        for msg in (hb(1), big, hb(2), big, hb(3)):
            a.transport.send("b", msg)
        assert a.stats("b").queue_length == 2 and a.stats("b").dropped_overflow == 3
        b = Node("b", port=port, max_frame_bytes=1000)
        await b.transport.start()
        b.transport.update_peers({"a": a.address})
        await eventually(lambda: len(b.inbox) == 2, "the newest two messages")
        assert b.inbox == [("a", big), ("a", hb(3))]
        assert b.stats("a").protocol_errors == 0
        await a.transport.stop()
        await b.transport.stop()

    run(main())


def test_unknown_destination_is_counted_and_dropped():
    async def main() -> None:
        nodes = await start_cluster("a", "b")
        nodes["a"].transport.send("nobody", hb(1))
        nodes["a"].transport.send("a", hb(2))  # itself: not a peer either
        assert nodes["a"].transport.stats.unknown_destination == 2
        assert set(nodes["a"].transport.stats.peers) == {"b"}
        await stop_all(nodes)

    run(main())


def test_a_failing_on_message_is_logged_and_delivery_continues(caplog):
    caplog.set_level(logging.ERROR)

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        b = nodes["b"]

        def picky(src: str, msg: Any) -> None:
            if msg.commit == 1:
                raise RuntimeError("handler bug")
            b.inbox.append((src, msg))

        b.transport._on_message = picky
        for i in range(3):
            nodes["a"].transport.send("b", hb(i))
        await eventually(lambda: len(b.inbox) == 2, "the two good messages")
        assert b.commits_from("a") == [0, 2]
        assert b.stats("a").accepts == 1  # same connection throughout
        await stop_all(nodes)

    run(main())
    assert "on_message raised for Heartbeat from peer a" in caplog.text


# -- reconnects and bounded queues -------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_reconnects_after_the_peer_restarts(loop):
    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        a.transport.send("b", hb(0))
        await eventually(lambda: b.inbox, "first message")
        port = b.transport.bound_port
        await b.transport.stop()
        for i in range(1, 6):
            a.transport.send("b", hb(i))  # queued or lost while b is down
        b2 = Node("b", port=port)
        await b2.transport.start()
        b2.transport.update_peers({"a": a.address})
        a.transport.send("b", hb(100))
        await eventually(lambda: 100 in b2.commits_from("a"), "a message after the restart")
        commits = b2.commits_from("a")
        assert commits == sorted(set(commits)) and commits[-1] == 100  # in order, no duplicates
        assert a.stats("b").connects == 2
        b2.transport.send("a", hb(5, leader="b"))
        await eventually(lambda: a.received_from("b"), "the restarted node can send too")
        await a.transport.stop()
        await b2.transport.stop()

    run(main(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_peer_that_starts_late_is_dialed_as_soon_as_it_dials_us(loop):
    """a's first dial to b is refused (b not listening yet) and a backs off for 4-8 s.
    When b starts and its own connection to a passes the handshake, a dials b at once."""

    async def main() -> None:
        b_port = free_port()
        a = Node("a", backoff_base=8.0, backoff_cap=8.0)
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, b_port)})
        await eventually(lambda: a.stats("b").connect_failures >= 1, "a's first dial refused")
        a.transport.send("b", hb(1))
        b = Node("b", port=b_port)
        await b.transport.start()
        b.transport.update_peers({"a": a.address})
        b.transport.send("a", hb(2, leader="b"))
        await eventually(lambda: a.received_from("b"), "b's message to a")
        await eventually(lambda: b.commits_from("a") == [1], "a's queued message to b", timeout=2.0)
        assert a.stats("b").connect_failures == 1
        await a.transport.stop()
        await b.transport.stop()

    run(main(), loop)


def test_queue_to_a_down_peer_is_bounded_and_keeps_the_newest():
    port = free_port()

    async def main() -> None:
        a = Node("a", queue_limit=16)
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, port)})
        for i in range(1000):
            a.transport.send("b", hb(i))
        stats = a.stats("b")
        assert stats.queue_length == 16
        assert stats.dropped_overflow == 984
        assert stats.queued_bytes == sum(len(frame(encode(hb(i)))) for i in range(984, 1000))
        await eventually(lambda: a.stats("b").connect_failures >= 1, "a failed dial")
        b = Node("b", port=port)
        await b.transport.start()
        b.transport.update_peers({"a": a.address})
        await eventually(lambda: len(b.inbox) == 16, "the queued messages")
        assert b.commits_from("a") == list(range(984, 1000))  # oldest were evicted
        await settle(0.1)
        assert len(b.inbox) == 16
        await a.transport.stop()
        await b.transport.stop()

    run(main())


def test_queue_byte_limit_evicts_oldest_but_keeps_at_least_one_frame():
    async def main() -> None:
        one = len(frame(encode(hb(0))))
        a = Node("a", queue_limit_bytes=3 * one)
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, free_port())})
        for i in range(10):
            a.transport.send("b", hb(i))
        assert (a.stats("b").queue_length, a.stats("b").dropped_overflow) == (3, 7)
        entry = LogEntry(term=1, index=1, kind=NOOP, data=b"z" * 500)
        big = AppendEntries(
            term=1, leader="a", prev_log_index=0, prev_log_term=0, entries=(entry,), leader_commit=0
        )
        a.transport.send("b", big)
        stats = a.stats("b")
        assert stats.queue_length == 1 and stats.dropped_overflow == 10
        assert stats.queued_bytes == len(frame(encode(big)))
        await a.transport.stop()

    run(main())


# -- membership --------------------------------------------------------------------------


def test_unknown_dialer_is_refused_until_added_and_cut_off_when_removed(caplog):
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        a, b, c = Node("a"), Node("b"), Node("c")
        for node in (a, b, c):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        c.transport.update_peers({"a": a.address})
        c.transport.send("a", hb(1, leader="c"))
        await eventually(lambda: c.stats("a").auth_failures >= 1, "c refused by a")
        assert a.transport.stats.auth_failures >= 1
        assert a.inbox == []

        a.transport.update_peers({"b": b.address, "c": c.address})
        await eventually(lambda: a.received_from("c"), "c accepted after being added")
        assert a.commits_from("c") == [1]  # kept in c's queue while refused

        a.transport.update_peers({"b": b.address})
        assert set(a.transport.stats.peers) == {"b"}
        a.transport.send("c", hb(3))
        assert a.transport.stats.unknown_destination == 1
        c.transport.send("a", hb(2, leader="c"))
        await settle(0.3)
        assert a.commits_from("c") == [1]
        for node in (a, b, c):
            await node.transport.stop()

    run(main())
    assert "claims node id 'c', which is not a peer" in caplog.text


def test_a_peer_removed_while_its_frames_are_being_read_delivers_nothing_more():
    """Removal can happen inside on_message (a membership change applied on receipt): the
    rest of that peer's frames, already read in the same chunk, must not be delivered."""

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]

        def remove_b_on_first(src: str, msg: Any) -> None:
            a.inbox.append((src, msg))
            a.transport.update_peers({})

        await eventually(lambda: b.stats("a").connected, "b connected to a")
        a.transport._on_message = remove_b_on_first
        for i in range(50):
            b.transport.send("a", hb(i, leader="b"))  # one batch, one write
        await eventually(lambda: a.inbox, "the first message")
        await settle(0.2)
        assert a.commits_from("b") == [0]
        await stop_all(nodes)

    run(main())


def test_a_changed_address_is_redialed():
    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        a.transport.send("b", hb(1))
        await eventually(lambda: b.inbox, "first message")
        await b.transport.stop()
        moved = Node("b")
        await moved.transport.start()
        moved.transport.update_peers({"a": a.address})
        a.transport.update_peers({"b": moved.address})
        a.transport.send("b", hb(2))
        await eventually(lambda: moved.inbox, "message at the new address")
        assert moved.commits_from("a")[-1] == 2
        await a.transport.stop()
        await moved.transport.stop()

    run(main())


# -- the fault hook ----------------------------------------------------------------------


def test_set_blocked_drops_traffic_both_ways_and_unblocking_restores_it():
    async def main() -> None:
        nodes = await start_cluster("a", "b", "c")
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        a.transport.send("b", hb(0))
        b.transport.send("a", hb(0, leader="b"))
        await eventually(lambda: a.inbox and b.inbox, "traffic before the block")

        a.transport.set_blocked({"b"})
        a.transport.send("b", hb(1))  # dropped at a
        b.transport.send("a", hb(1, leader="b"))  # arrives at a, discarded there
        c.transport.send("a", hb(1, leader="c"))  # unaffected
        await eventually(lambda: a.stats("b").dropped_blocked == 2, "both directions dropped")
        await eventually(lambda: a.received_from("c"), "c still heard")
        assert b.commits_from("a") == [0]
        assert a.commits_from("b") == [0]
        assert a.stats("b").frames_sent == 1

        a.transport.set_blocked(set())
        a.transport.send("b", hb(2))
        b.transport.send("a", hb(2, leader="b"))
        await eventually(lambda: len(a.inbox) == 3 and len(b.inbox) == 2, "traffic after healing")
        assert b.commits_from("a") == [0, 2]
        assert a.commits_from("b") == [0, 2]
        assert a.stats("b").connects == 1  # the connection stayed up throughout
        await stop_all(nodes)

    run(main())


def test_blocking_a_peer_discards_what_is_queued_for_it():
    async def main() -> None:
        a = Node("a")
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, free_port())})
        for i in range(5):
            a.transport.send("b", hb(i))
        a.transport.set_blocked({"b"})
        stats = a.stats("b")
        assert (stats.queue_length, stats.queued_bytes, stats.dropped_blocked) == (0, 0, 5)
        await a.transport.stop()

    run(main())


# -- lifecycle ---------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_stop_is_clean_and_idempotent(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        a.transport.update_peers({"b": b.address, "down": (LOCAL, free_port())})
        a.transport.send("down", hb(1))  # a dialer in backoff with a queue
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(1, leader="b"))
        await eventually(lambda: a.inbox and b.inbox, "traffic")
        _reader, silent = await asyncio.open_connection(*a.address)  # held mid-handshake
        await asyncio.sleep(0.05)
        await a.transport.stop()
        await a.transport.stop()
        await b.transport.stop()
        a.transport.send("b", hb(2))  # after stop: silently dropped, no error
        assert asyncio.all_tasks() == {asyncio.current_task()}
        silent.close()

    gc.collect()  # earlier tests' garbage must not be blamed on this one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main(), loop)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING] == []


def test_misuse_is_reported():
    def make(**overrides: Any) -> PeerTransport:
        args: dict[str, Any] = {"node_id": "a", "listen": (LOCAL, 0), "peers": {}, "secret": SECRET,
                                "on_message": lambda src, msg: None}  # fmt: skip
        args.update(overrides)
        return PeerTransport(**args)

    with pytest.raises(ValueError, match="secret"):
        make(secret=b"")
    with pytest.raises(ValueError, match="node id"):
        make(node_id="")
    with pytest.raises(ValueError, match="node id"):
        make(peers={"x" * 300: (LOCAL, 1)})
    with pytest.raises(ValueError):
        make(queue_limit=0)
    transport = make(peers={"b": (LOCAL, 1)})
    with pytest.raises(RuntimeError, match="start"):
        _ = transport.bound_port
    with pytest.raises(TypeError):
        transport.send("b", object())  # not encodable: local misuse, not network trouble
    with pytest.raises(TypeError, match="only protocol messages"):
        transport.send("b", 42)  # encodable, but not a message
    with pytest.raises(TypeError, match="only protocol messages"):
        transport.send("b", Heartbeat)  # a message class, not a message

    async def twice() -> None:
        await transport.start()
        with pytest.raises(RuntimeError, match="twice"):
            await transport.start()
        await transport.stop()

    run(twice())


# ---------------------------------------------------------------------- streamed messages
def install_snapshot(size: int, slot: int = 7) -> Any:
    """A Multi-Paxos InstallSnapshot (registered ``streamed``) whose state holds ``size``
    small values: its encoding comes in many pieces."""
    from consensuskit.protocols.paxos.ballot import Ballot
    from consensuskit.protocols.paxos.multi_messages import InstallSnapshot, Snapshot

    data = tuple(f"value-{i:08d}" for i in range(size))
    snapshot = Snapshot(last_slot=slot, configs=((1, ("a", "b")),), data=data)
    return InstallSnapshot(ballot=Ballot(1, 1), leader="a", snapshot=snapshot)


def test_a_streamed_message_within_a_frame_goes_whole_in_order():
    small = install_snapshot(10)

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        for msg in (hb(1), small, hb(2)):
            a.transport.send("b", msg)
        await eventually(lambda: len(b.inbox) == 3, "all three, in order")
        assert b.inbox == [("a", hb(1)), ("a", small), ("a", hb(2))]
        assert a.stats("b").fragmented == 0 and a.stats("b").frames_sent == 3
        assert a.stats("b").bytes_sent == sum(len(frame(encode(m))) for m in (hb(1), small, hb(2)))
        await stop_all(nodes)

    run(main())


def test_a_large_streamed_message_is_encoded_as_it_is_written():
    """About 3 MB, queued unencoded and encoded by the pump in pieces of about 1 MiB, the
    loop turning between them (a 100 MB snapshot encoded at once held the sender's loop,
    and its heartbeats, for seconds); it arrives whole, in order, fragmented."""
    from consensuskit.server.transport import STREAMED_QUEUE_BYTES

    big = install_snapshot(200_000)
    port = free_port()

    async def main() -> None:
        a = Node("a", max_frame_bytes=256 * 1024)
        await a.transport.start()
        a.transport.update_peers({"b": (LOCAL, port)})
        a.transport.send("b", hb(1))
        a.transport.send("b", big)
        a.transport.send("b", hb(2))
        # Not encoded by send: the queue holds it at its placeholder size.
        assert a.stats("b").queued_bytes == STREAMED_QUEUE_BYTES + 2 * len(frame(encode(hb(1))))
        b = Node("b", port=port, max_frame_bytes=256 * 1024)
        await b.transport.start()
        b.transport.update_peers({"a": a.address})
        await eventually(lambda: len(b.inbox) == 3, "all three, in order")
        assert b.inbox == [("a", hb(1)), ("a", big), ("a", hb(2))]
        stats = a.stats("b")
        assert stats.fragmented == 1 and stats.frames_sent == 3 and stats.queued_bytes == 0
        assert stats.bytes_sent > len(encode(big)) > 2_900_000
        await a.transport.stop()
        await b.transport.stop()

    run(main())


def test_a_streamed_message_over_the_message_limit_resets_the_connection_and_later_ones_pass(caplog):
    caplog.set_level(logging.ERROR)
    big = install_snapshot(200_000)

    async def main() -> None:
        nodes = await start_cluster("a", "b", max_frame_bytes=64 * 1024, max_message_bytes=1_500_000)
        a, b = nodes["a"], nodes["b"]
        await eventually(lambda: a.stats("b").connected, "connected")
        a.transport.send("b", big)
        a.transport.send("b", hb(3))
        await eventually(lambda: a.stats("b").dropped_oversize == 1, "the big one dropped")
        a.transport.send("b", hb(4))  # the connection was reset: later messages still arrive
        await eventually(lambda: ("a", hb(4)) in b.inbox, "a later message")
        assert all(m is not big and not isinstance(m, type(big)) for _, m in b.inbox)
        await stop_all(nodes)

    run(main())
    assert (
        "not sending InstallSnapshot to peer b" in caplog.text
        and "over max_message_bytes=1500000" in caplog.text
    )
