"""Remote misbehaviour on the peer port: wrong secrets, impostors, garbage, silence and bad
frames.  Each costs at most the offending connection (counted and logged with the peer's
address); the transport keeps serving its good peers."""

from __future__ import annotations

import asyncio
import logging
import os

import msgpack
import pytest

from consensuskit.core.messages import CODEC_VERSION, encode
from consensuskit.server import handshake
from consensuskit.server.framing import FRAGMENT_MARK, HEADER, MORE, fragment_frames, frame
from consensuskit.server.transport import RefusalLog
from tests.server.test_transport import (
    LOCAL,
    SECRET,
    Node,
    eventually,
    free_port,
    hb,
    run,
    settle,
    start_cluster,
    stop_all,
)

pytestmark = pytest.mark.timeout(60)

LIMIT = 2**20
HELLO_BYTES = len(handshake.MAGIC) + 2 + handshake.NONCE_BYTES


async def good_peers_still_talk(a: Node, b: Node) -> None:
    before_a, before_b = len(a.inbox), len(b.inbox)
    a.transport.send("b", hb(1000))
    b.transport.send("a", hb(1000, leader="b"))
    await eventually(lambda: len(a.inbox) > before_a and len(b.inbox) > before_b, "a and b still talk")
    assert a.received_from("b")[-1] == hb(1000, leader="b")
    assert b.received_from("a")[-1] == hb(1000)


async def cluster_with_rogue_slot(**options: object) -> dict[str, Node]:
    """a and b, where a also lists a peer "c" that the test impersonates with the secret."""
    nodes = await start_cluster("a", "b", **options)
    nodes["a"].transport.update_peers({"b": nodes["b"].address, "c": (LOCAL, free_port())})
    await eventually(lambda: nodes["a"].stats("b").connected and nodes["b"].stats("a").connected, "a<->b")
    return nodes


def test_wrong_secret_is_refused_both_ways_and_counted(caplog):
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        a, b = Node("a"), Node("b", secret=b"not-the-cluster-secret")
        await a.transport.start()
        await b.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(1, leader="b"))
        # Each side refuses the other's dial (as acceptor) and is refused (as dialer).
        await eventually(
            lambda: a.stats("b").auth_failures >= 2 and b.stats("a").auth_failures >= 2, "refusals"
        )
        await settle(0.1)
        assert a.inbox == [] and b.inbox == []
        for node, peer in ((a, "b"), (b, "a")):
            stats = node.stats(peer)
            assert (stats.connects, stats.accepts, stats.frames_sent, stats.connected) == (0, 0, 0, False)
            assert stats.queue_length == 1  # kept for when the configuration is fixed
            assert node.transport.stats.auth_failures == stats.auth_failures
        await a.transport.stop()
        await b.transport.stop()

    run(main())
    assert "dialer claiming to be 'b' failed the secret check (wrong cluster secret?)" in caplog.text
    assert "handshake failed: refused by the acceptor: bad proof" in caplog.text


def test_an_acceptor_that_does_not_know_the_secret_gets_nothing():
    """Mutual authentication: the dialer checks the acceptor's proof before sending."""
    after_handshake: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(handshake.MAGIC + b"\x01\x01" + os.urandom(32))
        version_and_length = await reader.readexactly(2)
        await reader.readexactly(version_and_length[1] + 64)
        writer.write(b"\x00\x01x" + os.urandom(32))  # "accepted, I am x", with a made-up proof
        after_handshake.append(await reader.read())
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(impostor, LOCAL, 0)
        a = Node("a")
        await a.transport.start()
        a.transport.update_peers({"x": (LOCAL, server.sockets[0].getsockname()[1])})
        a.transport.send("x", hb(1))
        await eventually(lambda: a.stats("x").auth_failures >= 1 and after_handshake, "the impostor caught")
        assert after_handshake[0] == b""
        assert (a.stats("x").frames_sent, a.stats("x").connects, a.stats("x").queue_length) == (0, 0, 1)
        await a.transport.stop()
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + b" " * 80,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS ClientHello
        b"\x01\x05hello" + b"\x00" * 20,  # a proof cut short, then the connection closes
        b"",  # connect and close at once
    ],
    ids=["http", "tls-hello", "short-proof", "nothing"],
)
def test_garbage_instead_of_a_handshake_is_refused_and_logged(garbage, caplog):
    caplog.set_level(logging.WARNING)

    async def main() -> tuple[int, bytes]:
        nodes = await cluster_with_rogue_slot()
        a = nodes["a"]
        reader, writer = await asyncio.open_connection(*a.address)
        port = writer.get_extra_info("sockname")[1]
        writer.write(garbage)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await eventually(lambda: a.transport.stats.auth_failures == 1, "the refusal counted")
        assert all(a.stats(p).auth_failures == 0 for p in ("b", "c"))  # nobody proven to blame
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)
        return port, answer

    port, answer = run(main())
    assert answer[: len(handshake.MAGIC)] == handshake.MAGIC
    assert len(answer) in (HELLO_BYTES, HELLO_BYTES + 1)  # the hello, then maybe a refusal byte
    assert f"refused peer connection from 127.0.0.1:{port}: " in caplog.text


def test_a_silent_connection_is_dropped_after_the_handshake_timeout(caplog):
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        nodes = await cluster_with_rogue_slot(handshake_timeout=0.3)
        a = nodes["a"]
        reader, writer = await asyncio.open_connection(*a.address)
        started = asyncio.get_running_loop().time()
        answer = await asyncio.wait_for(reader.read(), 5)  # says nothing, waits for EOF
        assert 0.25 <= asyncio.get_running_loop().time() - started < 3
        assert len(answer) == HELLO_BYTES
        writer.close()
        await eventually(lambda: a.transport.stats.auth_failures == 1, "counted")
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)

    run(main())
    assert "no handshake within 0.3s" in caplog.text


def test_a_flood_of_garbage_connections_leaves_the_node_working():
    async def main() -> None:
        nodes = await cluster_with_rogue_slot()
        a = nodes["a"]

        async def junk(i: int) -> None:
            reader, writer = await asyncio.open_connection(*a.address)
            writer.write(os.urandom(64 + i))
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 5)
            writer.close()

        await asyncio.gather(*(junk(i) for i in range(40)))
        await eventually(lambda: a.transport.stats.auth_failures == 40, "all refused")
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)

    run(main())


BAD_STREAMS = {
    "oversized-length": (HEADER.pack(LIMIT + 1), f"frame of {LIMIT + 1} bytes exceeds the limit of {LIMIT}"),
    "garbage": (b"\xde\xad\xbe\xef" * 8, f"frame of {0xDEADBEEF} bytes exceeds the limit"),
    "undecodable-payload": (frame(bytes([CODEC_VERSION]) + b"\x92\x01"), "malformed frame"),
    "unknown-codec-version": (frame(b"\x07" + encode(hb(1))[1:]), "unsupported codec version 7"),
    "not-a-message": (frame(encode(12345)), "frame holds a int, not a protocol message"),
    "empty-frame": (frame(b""), "empty frame"),
    "truncated-frame": (frame(encode(hb(1)))[:-3], "stream ended inside a frame"),
    "whole-message-inside-fragments": (
        frame(bytes([FRAGMENT_MARK, MORE]) + encode(hb(1))[:3]) + frame(encode(hb(2))),
        "a whole message inside a fragmented one",
    ),
    "fragmented-message-over-the-limit": (
        fragment_frames(encode(hb(1)) + b"x" * (2 * LIMIT), LIMIT),
        f"fragmented message over the limit of {2 * LIMIT} bytes",
    ),
    "undecodable-fragmented-message": (
        fragment_frames(bytes([CODEC_VERSION]) + b"\x92\x01" * (LIMIT // 2 + 10), LIMIT),
        "malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_a_bad_frame_from_an_authenticated_peer_drops_only_that_connection(case, caplog):
    bad_bytes, reason = BAD_STREAMS[case]
    caplog.set_level(logging.WARNING)

    async def main() -> int:
        nodes = await cluster_with_rogue_slot(max_frame_bytes=LIMIT, max_message_bytes=2 * LIMIT)
        a = nodes["a"]
        reader, writer = await asyncio.open_connection(*a.address)
        await handshake.dial(reader, writer, node_id="c", secret=SECRET, expected_peer="a")
        # A good frame first, in the same write as the bad bytes: it is still delivered.
        writer.write(frame(encode(hb(5, leader="c"))) + bad_bytes)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # a hung up on us
        writer.close()
        await eventually(lambda: a.stats("c").protocol_errors == 1, "the bad frame counted")
        assert a.received_from("c") == [hb(5, leader="c")]
        assert a.transport.stats.protocol_errors == 1
        assert a.stats("b").accepts == 1  # b's connection was never touched
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)
        return writer.get_extra_info("sockname")[1]

    port = run(main())
    assert f"dropped connection from peer c at 127.0.0.1:{port}: " in caplog.text
    assert reason in caplog.text


def unknown_message(tag: int) -> bytes:
    """A well-framed message of a tag no release registered (a newer release's)."""
    return frame(bytes([CODEC_VERSION]) + msgpack.packb([msgpack.ExtType(1, tag.to_bytes(2, "big"))]))


def test_a_message_of_an_unknown_type_is_skipped_and_the_connection_kept(caplog):
    """A rolling upgrade: a newer peer sends a message this release lacks (as Multi-Paxos's
    PrePrepare reached nodes of the release before it).  It is skipped and counted, once
    logged; the messages after it on the same connection are delivered."""
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        nodes = await cluster_with_rogue_slot()
        a = nodes["a"]
        reader, writer = await asyncio.open_connection(*a.address)
        await handshake.dial(reader, writer, node_id="c", secret=SECRET, expected_peer="a")
        writer.write(
            frame(encode(hb(5, leader="c")))
            + unknown_message(9999)
            + unknown_message(9999)
            + frame(encode(hb(6, leader="c")))
        )
        await writer.drain()
        await eventually(lambda: len(a.received_from("c")) == 2, "the messages around it delivered")
        assert a.received_from("c") == [hb(5, leader="c"), hb(6, leader="c")]
        assert a.stats("c").unknown_messages == 2
        assert a.stats("c").protocol_errors == 0 and a.transport.stats.protocol_errors == 0
        writer.close()
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)

    run(main())
    assert caplog.text.count("unknown message tag 9999") == 1
    assert "the connection stays" in caplog.text


def test_an_authenticated_peer_that_reconnects_supersedes_its_old_connection():
    async def main() -> None:
        nodes = await cluster_with_rogue_slot()
        a = nodes["a"]
        old_reader, old_writer = await asyncio.open_connection(*a.address)
        await handshake.dial(old_reader, old_writer, node_id="c", secret=SECRET, expected_peer="a")
        old_writer.write(frame(encode(hb(1, leader="c"))))
        await eventually(lambda: a.received_from("c"), "first connection works")
        new_reader, new_writer = await asyncio.open_connection(*a.address)
        await handshake.dial(new_reader, new_writer, node_id="c", secret=SECRET, expected_peer="a")
        assert await asyncio.wait_for(old_reader.read(), 5) == b""  # the old one is closed
        new_writer.write(frame(encode(hb(2, leader="c"))))
        await eventually(lambda: len(a.received_from("c")) == 2, "second connection works")
        assert a.commits_from("c") == [1, 2]
        assert a.stats("c").accepts == 2
        for w in (old_writer, new_writer):
            w.close()
        await stop_all(nodes)

    run(main())


def test_unauthenticated_connections_are_capped(monkeypatch, caplog):
    from consensuskit.server import transport as transport_module

    monkeypatch.setattr(transport_module, "MAX_PENDING_HANDSHAKES", 2)
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        nodes = await cluster_with_rogue_slot()
        a = nodes["a"]
        held = [await asyncio.open_connection(*a.address) for _ in range(2)]
        for reader, _ in held:
            assert len(await reader.readexactly(HELLO_BYTES)) == HELLO_BYTES  # both are pending
        reader, writer = await asyncio.open_connection(*a.address)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # turned away without a hello
        writer.close()
        for _, w in held:
            w.close()
        await good_peers_still_talk(a, nodes["b"])
        await stop_all(nodes)

    run(main())
    assert "too many pending handshakes" in caplog.text


def test_refused_connections_are_logged_at_most_so_many_a_minute(caplog):
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("test.refusals"), per_window=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for i in range(10):
            refusals.warn("refused peer connection from %s: %s", f"10.0.0.{i}:1", "bad proof")
        now[0] = 59.0
        refusals.warn("refused peer connection from %s: %s", "10.0.0.99:1", "bad proof")  # same minute
        now[0] = 61.0
        refusals.warn("refused peer connection from %s: %s", "10.0.0.100:1", "bad proof")
    assert caplog.messages == [
        "refused peer connection from 10.0.0.0:1: bad proof",
        "refused peer connection from 10.0.0.1:1: bad proof",
        "refused peer connection from 10.0.0.2:1: bad proof",
        "8 more peer connections were refused, not logged one by one (at most 3 lines in 60 s)",
        "refused peer connection from 10.0.0.100:1: bad proof",
    ]
