"""Authenticated TCP transport between the nodes of a cluster (asyncio; runs under uvloop).

Rules this module owns:

- Over TLS (``ssl_server``/``ssl_client`` with ``tls_identity``) the handshake is the
  channel-bound version 2 (``peer_tls.py``); on plain TCP it is version 1, unchanged.
- One outbound connection per peer, used only for sending; messages from a peer arrive on
  the connection *it* dialed.  So there is one connection per ordered pair of nodes, and
  each is one-way after the handshake (``handshake.py``, mutual HMAC over the secret).
- ``send`` never blocks and never raises for network trouble: it encodes the message once
  and appends the frame to the peer's bounded queue.  A full queue evicts its OLDEST frame
  (counted): consensus protocols retransmit, and the newest message carries the freshest
  term, commit index and log position, so a peer that comes back should see it first
  rather than a backlog of superseded traffic.
- Per ordered pair, messages are delivered in send order with no duplicates; frames can be
  lost (queue overflow, a connection that breaks), never reordered.  A newer inbound
  connection from a peer supersedes the older one, which delivers nothing more.
- A message whose encoding exceeds ``max_frame_bytes`` travels as consecutive fragment
  frames (framing.py), up to ``max_message_bytes``: a snapshot of a large state or a long
  catch-up reaches a lagging peer instead of being refused forever.  Larger ones are
  dropped by the sender, counted and logged.  The fragments of a message are one item of
  the peer's queue, so eviction drops whole messages, never part of one.
- A message of a class registered ``streamed`` (one that may carry a whole state: a
  snapshot, a ZAB DIFF) is queued unencoded and encoded by the peer's pump as it writes
  it, piece by piece, yielding to the event loop between pieces: a 100 MB snapshot never
  holds the sender's loop (its heartbeats, its clients) for the whole encoding.  The bytes
  are the ones ``encode`` gives.  One that turns out to exceed ``max_message_bytes`` after
  some of its fragments left closes that connection (the receiver drops the partial run).
- A bad frame (length above ``max_frame_bytes``, truncated, undecodable, or a broken run
  of fragments) drops that one connection with a warning naming the peer and the reason;
  nothing else is affected.
- A well-framed message of a type this release does not know (``UnknownMessage``: a
  newer release's, during a rolling upgrade) is skipped and counted, with one warning per
  connection and tag; the connection and the messages after it are kept.  Dropping the
  connection would cost the newer peer everything queued behind its new message.
- Frames queued in one loop turn are written together, with one write per peer, by
  ``flush`` (straight from the caller: no task switch per message); a connection with a
  backlog is left to its pump task, which writes in batches with one ``drain`` each.
- A dialer waiting out its backoff dials at once when that peer's own connection to us
  passes the handshake: the peer is up now.  A node that starts after its peers (their
  first dials refused) is then reachable both ways within a round trip, not after up to
  ``backoff_cap`` of backoff, whatever the protocol on top.
- A node given a ``hello`` (peer_hello.py) writes it as the first frame of every
  connection it dials, and checks each hello it receives against its own: a peer that
  runs another protocol, service or cluster gets its connection marked *foreign* (every
  message on it dropped and counted, the reason logged once per connection and kept in
  ``PeerStats.refused``).  A connection with no hello (an earlier release) is accepted.
  A node given an ``incarnations`` book (incarnations.py) writes its ``PeerIncarnation``
  right after the hello, and a peer the book refuses (it judges the first one on each
  connection; later ones are ignored) gets its connection marked foreign the same way;
  a PeerIncarnation saying this node is known by another directory is logged once per
  connection (the book says when).  A node given ``levels`` (cluster_level.py) writes its
  ``PeerLevel`` before those, keeps each inbound connection's (``peer_levels``: the
  offers; ``EARLIER`` when its first frame is another: an earlier release, judged at
  once) and refuses a peer whose release applies less than the cluster's level both
  ways, for good on that connection: it is foreign, nothing is sent to the peer
  (``dropped_level``); ``judge_levels`` judges every connection again when that level
  rises.
- ``set_blocked`` is a fault hook for tests (partitions between real processes): traffic to
  and from blocked peers is discarded and counted, connections stay up.
- Every method runs on the event loop thread; ``on_message(src, msg)`` is called there with
  the authenticated sender id.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensuskit.core.messages import (
    CodecError,
    UnknownMessage,
    decode,
    encode,
    is_streamed,
    iter_encode,
    message_field_names,
)
from consensuskit.server import handshake, peer_tls
from consensuskit.server.framing import (
    HEADER,
    PEER_MAX_FRAME_BYTES,
    PEER_MAX_MESSAGE_BYTES,
    FrameDecoder,
    FrameError,
    Reassembler,
    fragment_frame,
    fragment_frames,
    frame,
)
from consensuskit.server.incarnations import IncarnationBook
from consensuskit.server.peer_hello import EARLIER, PeerHello, PeerIncarnation, PeerLevel

if TYPE_CHECKING:
    from consensuskit.server.cluster_level import ClusterLevels

Address = tuple[str, int]

# What a streamed message counts toward queue_limit_bytes while queued (its size is known
# only once written).
STREAMED_QUEUE_BYTES = 1 << 20


class _Streamed:
    """A queued message of a ``streamed`` class, to be encoded as it is written."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg

    def __len__(self) -> int:
        return STREAMED_QUEUE_BYTES


WRITE_BATCH_BYTES = 1 << 20  # frames written per drain, at most (always at least one frame)
READ_CHUNK_BYTES = 1 << 18
MAX_PENDING_HANDSHAKES = 128  # unauthenticated inbound connections held at once


@dataclass(slots=True)
class PeerStats:
    """Counters for one peer (a snapshot; ``PeerTransport.stats`` makes a new one)."""

    frames_sent: int = 0  # messages written to the connection (not proof of arrival)
    bytes_sent: int = 0  # including the 4-byte length prefixes
    batches_sent: int = 0  # writes followed by one drain; frames_sent / batches_sent = coalescing
    frames_received: int = 0  # decoded and handed to on_message
    bytes_received: int = 0
    dropped_overflow: int = 0  # oldest queued frames evicted by a full queue
    dropped_blocked: int = 0  # discarded by the set_blocked fault hook, either direction
    dropped_oversize: int = 0  # messages whose encoding exceeded max_message_bytes
    fragmented: int = 0  # messages sent as several frames (over max_frame_bytes)
    connects: int = 0  # outbound connections that passed the handshake
    accepts: int = 0  # inbound connections from this peer that passed the handshake
    connect_failures: int = 0  # dial attempts that failed (refused, unreachable, timeout, TLS)
    auth_failures: int = 0  # handshakes with this peer that failed, either direction
    protocol_errors: int = 0  # inbound connections dropped for a bad frame
    unknown_messages: int = 0  # well-framed messages of a type this release lacks, skipped
    dropped_foreign: int = 0  # messages on a connection whose hello another setup sent
    dropped_level: int = 0  # messages not sent to a peer below the cluster's level
    refused: str | None = None  # why the peer's current connection is foreign (None: it is not)
    queue_length: int = 0  # frames waiting to be sent now
    queued_bytes: int = 0
    connected: bool = False  # the outbound connection is up
    # Frames for it wait for its level: the cluster's is raised and no connection of the
    # peer said its own yet (it may have restarted on an earlier release).
    awaiting_level: bool = False

    @property
    def dropped(self) -> int:
        return self.dropped_overflow + self.dropped_blocked + self.dropped_oversize


@dataclass(slots=True)
class TransportStats:
    peers: dict[str, PeerStats]
    unknown_destination: int = 0  # send() to an id that is not a peer
    auth_failures: int = 0  # every failed handshake, including unknown or anonymous dialers
    protocol_errors: int = 0  # every inbound connection dropped for a bad frame


class _Link:
    """Everything about sending to one peer."""

    __slots__ = (
        "address",
        "connection",
        "dirty",
        "failure",
        "idle",
        "peer_id",
        "queue",
        "queued_bytes",
        "redial",
        "stats",
        "task",
        "wakeup",
    )

    def __init__(self, peer_id: str, address: Address) -> None:
        self.peer_id = peer_id
        self.address = address
        self.queue: collections.deque[bytes | _Streamed] = collections.deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.redial = asyncio.Event()  # set when the peer dialed us: end the backoff now
        self.connection: _Connection | None = None  # the outbound connection while it is up
        self.idle = False  # its pump waits for frames (not for a drain): flush may write
        self.dirty = False  # queued frames since the last flush
        self.task: asyncio.Task[None] | None = None
        self.stats = PeerStats()
        self.failure: str | None = None  # last dial failure, to log each new reason once

    def clear_queue(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return dropped


class RefusalLog:
    """Warnings about connections refused before they authenticated, at most
    ``per_window`` a ``window`` (seconds); the rest are counted and summed up in one line
    when the next window opens.  Anyone who can reach the peer port can have a connection
    refused, as often as they like: one line each would fill the disk the log shares
    with the WAL, and a full disk halts the node."""

    __slots__ = ("_clock", "_log", "_opened", "_said", "_silenced", "per_window", "window")

    def __init__(
        self,
        log: logging.Logger,
        *,
        per_window: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._clock = clock
        self.per_window = per_window
        self.window = window
        self._opened = float("-inf")
        self._said = 0
        self._silenced = 0

    def warn(self, message: str, *args: Any) -> None:
        now = self._clock()
        if now - self._opened >= self.window:
            if self._silenced:
                self._log.warning(
                    "%d more peer connections were refused, not logged one by one (at most %d lines in %g s)",
                    self._silenced,
                    self.per_window,
                    self.window,
                )
            self._opened, self._said, self._silenced = now, 0, 0
        if self._said < self.per_window:
            self._said += 1
            self._log.warning(message, *args)
        else:
            self._silenced += 1


class _Connection:
    """One authenticated connection; ``closed`` once it must not be used (or delivered from)."""

    __slots__ = ("address", "barred", "closed", "foreign", "introduced", "offer", "peer_id", "writer")

    def __init__(self, peer_id: str, writer: asyncio.StreamWriter, address: str = "") -> None:
        self.peer_id = peer_id
        self.writer = writer
        self.address = address  # the peer's, as logged (inbound)
        self.closed = False
        self.foreign = False  # its hello named another setup (inbound only): deliver nothing
        self.introduced = False  # its PeerIncarnation was judged: later ones are ignored
        # The incarnation book or the cluster level refused it (for good: a later hello
        # cannot lift it).
        self.barred: str | None = None
        self.offer: PeerLevel | None = None  # its cluster levels (inbound; None: not known yet)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


class PeerTransport:
    def __init__(
        self,
        node_id: str,
        listen: Address,
        peers: dict[str, Address],
        secret: bytes,
        on_message: Callable[[str, Any], None],
        *,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        tls_identity: peer_tls.PeerIdentity | None = None,
        max_frame_bytes: int = PEER_MAX_FRAME_BYTES,
        max_message_bytes: int = PEER_MAX_MESSAGE_BYTES,
        queue_limit: int = 4096,
        queue_limit_bytes: int = 256 * 2**20,
        handshake_timeout: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        logger: logging.Logger | None = None,
        hello: PeerHello | None = None,
        incarnations: IncarnationBook | None = None,
        levels: ClusterLevels | None = None,
    ) -> None:
        """``peers`` may include ``node_id`` itself (ignored).  The queue to each peer holds
        at most ``queue_limit`` frames and ``queue_limit_bytes`` bytes (beyond one frame).
        TLS contexts come with ``tls_identity`` (this node's certificate fingerprint, and
        the pins if any): the handshake binds itself to each TLS connection.  ``hello``:
        what this node runs, sent first on each connection it dials and checked against
        the hellos it receives (None: neither).  ``incarnations``: this node's book of data
        directories, introduced after the hello and judging the peers' (None: neither).
        ``levels``: this node's cluster level, introduced first and judging the peers'."""
        handshake.node_id_bytes(node_id)
        if (ssl_server is not None or ssl_client is not None) and tls_identity is None:
            raise ValueError("peer TLS needs tls_identity (the channel binding covers the certificates)")
        if not secret:
            raise ValueError("a non-empty cluster secret is required")
        if queue_limit < 1 or queue_limit_bytes < 1 or max_frame_bytes <= 2 or max_message_bytes < 1:
            raise ValueError(
                "queue_limit, queue_limit_bytes and max_message_bytes must be positive, "
                "max_frame_bytes above 2"
            )
        self._node_id = node_id
        self._listen = listen
        self._secret = bytes(secret)
        self._on_message = on_message
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._tls_identity = tls_identity
        self._max_frame_bytes = max_frame_bytes
        self._max_message_bytes = max_message_bytes
        self._queue_limit = queue_limit
        self._queue_limit_bytes = queue_limit_bytes
        self._handshake_timeout = handshake_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._log = logger or logging.getLogger(__name__)
        self._refusals = RefusalLog(self._log)
        self._hello = hello
        self._hello_frame = frame(encode(hello)) if hello is not None else b""
        self._incarnations = incarnations
        self._levels = levels
        self._rng = random.Random()
        self._links: dict[str, _Link] = {}
        for peer_id, address in self._normalize_peers(peers).items():
            self._links[peer_id] = _Link(peer_id, address)
        self._inbound: dict[str, _Connection] = {}  # the current inbound connection per peer
        self._connections: set[_Connection] = set()  # every authenticated one, both directions
        self._accepted: set[asyncio.StreamWriter] = set()  # every accepted stream still open
        self._tasks: set[asyncio.Task[Any]] = set()
        self._blocked: frozenset[str] = frozenset()  # no traffic either way: faults, levels
        self._fault_blocked: frozenset[str] = frozenset()  # set_blocked's
        self._level_barred: set[str] = set()  # peers below the cluster's level (why: stats.refused)
        self._last_sent: tuple[Any, bytes] | None = None  # the last message encoded, and its bytes
        self._dirty: list[_Link] = []  # links with frames queued since the last flush
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._flush_scheduled = False
        self._server: asyncio.Server | None = None
        self._pending_handshakes = 0
        self._unknown_destination = 0
        self._auth_failures = 0
        self._protocol_errors = 0
        self._started = False
        self._stopped = False

    def _normalize_peers(self, peers: dict[str, Address]) -> dict[str, Address]:
        normalized: dict[str, Address] = {}
        for peer_id, (host, port) in sorted(peers.items()):
            handshake.node_id_bytes(peer_id)
            if peer_id != self._node_id:
                normalized[peer_id] = (host, int(port))
        return normalized

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then dial every peer in the background (with backoff until it answers)."""
        if self._started:
            raise RuntimeError("PeerTransport.start() called twice")
        self._started = True
        self._loop = asyncio.get_running_loop()
        host, port = self._listen
        tls: dict[str, Any] = {}
        if self._ssl_server is not None:
            tls = {"ssl": self._ssl_server, "ssl_handshake_timeout": self._handshake_timeout}
        self._server = await asyncio.start_server(self._accept_inbound, host, port, **tls)
        for link in self._links.values():
            self._start_link(link)

    async def stop(self) -> None:
        """Close the listener and every connection, cancel and await every task; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        for writer in list(self._accepted):
            writer.close()  # a task cancelled before it started never runs its own cleanup
        current = asyncio.current_task()
        while tasks := [task for task in self._tasks if task is not current and not task.done()]:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Let the closed transports run their connection_lost callbacks before we return.
        await asyncio.sleep(0)

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful when ``listen`` asked for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the transport is not listening (call start() first)")
        return int(self._server.sockets[0].getsockname()[1])

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the public sending side -------------------------------------------------------

    def send(self, dst: str, msg: Any) -> None:
        """Queue ``msg`` for ``dst``; never blocks, never raises for network trouble.

        Anything but an encodable protocol message is local misuse and raises TypeError.
        """
        link = self._links.get(dst)
        if link is None:
            self._unknown_destination += 1
            return
        if self._stopped:
            return
        if dst in self._blocked:
            if dst in self._fault_blocked:
                link.stats.dropped_blocked += 1
            else:
                link.stats.dropped_level += 1
            return
        if is_streamed(msg):
            self._enqueue(link, _Streamed(msg))
            return
        last = self._last_sent
        if last is not None and _same_message(msg, last[0]):
            # A broadcast (the same AppendEntries to every follower in step): encode once.
            payload = last[1]
        else:
            if not _is_message(msg):
                raise TypeError(f"only protocol messages travel between peers, not {type(msg).__name__}")
            try:
                payload = encode(msg)
            except (OverflowError, TypeError, ValueError) as exc:
                # A value the codec cannot hold (e.g. a forwarded client request): drop
                # this message, never halt the node over it (edge.py refuses such requests).
                self._log.error(
                    "not sending %s to peer %s: cannot encode it: %s", type(msg).__name__, dst, exc
                )
                return
            self._last_sent = (msg, payload)
        if len(payload) <= self._max_frame_bytes:
            data = frame(payload)
        elif len(payload) <= self._max_message_bytes:
            data = fragment_frames(payload, self._max_frame_bytes)
            link.stats.fragmented += 1
        else:
            link.stats.dropped_oversize += 1
            self._log.error(
                "not sending %s to peer %s: %d bytes encoded, over max_message_bytes=%d",
                type(msg).__name__,
                dst,
                len(payload),
                self._max_message_bytes,
            )
            return
        self._enqueue(link, data)

    def _enqueue(self, link: _Link, data: bytes | _Streamed) -> None:
        queue = link.queue
        queue.append(data)
        link.queued_bytes += len(data)
        while len(queue) > self._queue_limit or (
            link.queued_bytes > self._queue_limit_bytes and len(queue) > 1
        ):
            link.queued_bytes -= len(queue.popleft())
            link.stats.dropped_overflow += 1
        if self._loop is None:  # not started: the pump finds the frames when it connects
            return
        if not link.dirty:
            link.dirty = True
            self._dirty.append(link)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what ``send`` queued, now: straight to each idle connection (one write per
        peer), else by waking that peer's pump.  Runs by itself one loop turn after a
        send; a caller that sent a batch may call it at once and save the turn."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            link.dirty = False
            if not link.queue:
                continue
            connection = link.connection
            if (
                link.idle
                and not self._awaits_level(link)
                and connection is not None
                and not connection.closed
                and connection.writer.transport.get_write_buffer_size() < WRITE_BATCH_BYTES
            ):
                try:
                    self._write_queued(link, connection.writer)
                except (OSError, RuntimeError) as exc:  # a transport closing under us
                    self._log.info("connection to peer %s lost: %s", link.peer_id, exc)
                    connection.close()
                if not link.queue and not connection.closed:
                    continue
            link.wakeup.set()  # a backlog, a closed connection, or no connection yet: the pump

    def _write_queued(self, link: _Link, writer: asyncio.StreamWriter) -> None:
        """One write of the oldest queued frames (at least one, about WRITE_BATCH_BYTES),
        up to a streamed message, which only the pump writes (nothing if it is first)."""
        queue, stats = link.queue, link.stats
        if type(queue[0]) is _Streamed:
            return
        batch: list[bytes] = [queue.popleft()]  # type: ignore[list-item]
        size = len(batch[0])
        while queue and size < WRITE_BATCH_BYTES and type(queue[0]) is not _Streamed:
            data = queue.popleft()  # type: ignore[assignment]
            batch.append(data)
            size += len(data)
        link.queued_bytes -= size
        writer.write(batch[0] if len(batch) == 1 else b"".join(batch))
        stats.frames_sent += len(batch)
        stats.bytes_sent += size
        stats.batches_sent += 1

    async def _write_streamed(self, link: _Link, writer: asyncio.StreamWriter, item: _Streamed) -> None:
        """Encode a streamed message as it is written: a whole frame if the encoding fits
        one, else fragments as the pieces come, the loop free between pieces."""
        msg, stats = item.msg, link.stats
        limit, piece = self._max_frame_bytes, self._max_frame_bytes - 2
        pending = bytearray()
        total = fragments = written = 0
        try:
            for chunk in iter_encode(msg):
                total += len(chunk)
                if total > self._max_message_bytes:
                    raise ValueError(
                        f"{total} bytes encoded so far, over max_message_bytes={self._max_message_bytes}"
                    )
                pending += chunk
                if fragments or len(pending) > limit:
                    while len(pending) > piece:
                        data = fragment_frame(memoryview(pending)[:piece], last=False)
                        del pending[:piece]
                        writer.write(data)
                        written += len(data)
                        fragments += 1
                        await writer.drain()
                await asyncio.sleep(0)  # the loop runs between pieces
        except (OverflowError, TypeError, ValueError) as exc:  # too large, or not encodable
            if total > self._max_message_bytes:
                stats.dropped_oversize += 1
            self._log.error("not sending %s to peer %s: %s", type(msg).__name__, link.peer_id, exc)
            if fragments:  # the peer holds part of it: only a new connection clears that
                raise ConnectionResetError("a streamed message was cut short") from exc
            return
        if fragments:
            data = fragment_frame(pending, last=True)
            stats.fragmented += 1
        else:
            data = frame(pending)
        writer.write(data)
        stats.frames_sent += 1
        stats.bytes_sent += written + len(data)
        stats.batches_sent += 1
        await writer.drain()

    def update_peers(self, peers: dict[str, Address]) -> None:
        """Adopt a new membership: dial new peers, forget removed ones (closing their
        connections and dropping their queues), redial peers whose address changed."""
        wanted = self._normalize_peers(peers)
        running = self._started and not self._stopped
        for peer_id in sorted(self._links.keys() - wanted.keys()):
            link = self._links.pop(peer_id)
            if link.task is not None:
                link.task.cancel()
            inbound = self._inbound.pop(peer_id, None)
            if inbound is not None:
                inbound.close()
        for peer_id, address in wanted.items():
            link = self._links.get(peer_id)
            if link is None:
                link = self._links[peer_id] = _Link(peer_id, address)
                if running:
                    self._start_link(link)
            elif link.address != address:
                link.address = address
                if link.task is not None:
                    link.task.cancel()
                if running:
                    self._start_link(link)

    def connected_from(self) -> set[str]:
        """The peers whose connection to us is open now.  A peer process that exits
        closes it at once (its kernel does); one that hangs keeps it."""
        return {peer for peer, connection in self._inbound.items() if not connection.foreign}

    def set_blocked(self, peers: set[str]) -> None:
        """TEST-ONLY fault hook: discard all traffic to and from ``peers`` (counted as
        ``dropped_blocked``), including what is queued for them now; ``set()`` heals."""
        self._fault_blocked = frozenset(peers)
        self._blocked = self._fault_blocked | self._level_barred
        for peer_id in sorted(self._fault_blocked):
            link = self._links.get(peer_id)
            if link is not None:
                link.stats.dropped_blocked += link.clear_queue()

    def peer_levels(self) -> dict[str, int]:
        """The cluster level each peer's current inbound connection offers (those known)."""
        return {
            peer: connection.offer.offered
            for peer, connection in self._inbound.items()
            if connection.offer is not None and not connection.closed
        }

    def judge_levels(self) -> None:
        """Judge every inbound connection's level again (the cluster's level rose)."""
        for peer, connection in list(self._inbound.items()):
            link = self._links.get(peer)
            if connection.offer is not None and link is not None:
                self._judge_level(peer, connection.address, connection, connection.offer, link)

    def _awaits_level(self, link: _Link) -> bool:
        """Whether frames for ``link``'s peer must wait: the cluster's level is above the
        base and no open connection of the peer said its own.  A peer that restarted
        (its connection to us closed with its process) may run an earlier release now,
        which would apply this cluster's log by other rules: it gets nothing until its
        own connection says its level, which it opens as soon as it starts."""
        inbound = self._inbound.get(link.peer_id)
        if self._levels is None or (inbound is not None and inbound.offer is not None):
            return False
        return self._levels.raised()

    @property
    def stats(self) -> TransportStats:
        peers = {}
        for peer_id, link in sorted(self._links.items()):
            peers[peer_id] = dataclasses.replace(
                link.stats,
                queue_length=len(link.queue),
                queued_bytes=link.queued_bytes,
                awaiting_level=self._awaits_level(link),
            )
        return TransportStats(
            peers=peers,
            unknown_destination=self._unknown_destination,
            auth_failures=self._auth_failures,
            protocol_errors=self._protocol_errors,
        )

    # -- outbound: one dialing/sending task per peer -----------------------------------

    def _start_link(self, link: _Link) -> None:
        link.task = self._spawn(self._run_link(link))

    def _backoff(self, failures: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * 2 ** min(failures - 1, 30))
        return delay * (0.5 + 0.5 * self._rng.random())  # jitter keeps peers from dialing in lockstep

    async def _run_link(self, link: _Link) -> None:
        failures = 0
        while True:
            link.redial.clear()  # a peer that dials us while this dial fails cuts its backoff
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races with the dial finishing, and stop() would then wait forever.
                async with asyncio.timeout(self._handshake_timeout):
                    reader, writer = await self._dial(link)
            except handshake.HandshakeError as exc:
                link.stats.auth_failures += 1
                self._auth_failures += 1
                self._note_dial_failure(link, f"handshake failed: {exc.reason}")
            except TimeoutError:
                link.stats.connect_failures += 1
                self._note_dial_failure(link, f"no connection within {self._handshake_timeout}s")
            except OSError as exc:
                link.stats.connect_failures += 1
                self._note_dial_failure(link, f"cannot connect: {exc}")
            else:
                failures = 0
                if link.failure is not None:
                    self._log.info("connected to peer %s at %s", link.peer_id, _format(link.address))
                link.failure = None
                await self._pump(link, reader, writer)
            if self._stopped:
                return
            failures += 1
            await self._wait_backoff(link, self._backoff(failures))

    async def _wait_backoff(self, link: _Link, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await link.redial.wait()
        except TimeoutError:
            return
        self._log.debug("peer %s connected to us: dialing it now", link.peer_id)

    def _note_dial_failure(self, link: _Link, reason: str) -> None:
        """Warn once per distinct reason, so a peer that stays down does not flood the log."""
        level = logging.DEBUG if reason == link.failure else logging.WARNING
        self._log.log(level, "peer %s at %s: %s", link.peer_id, _format(link.address), reason)
        link.failure = reason

    async def _dial(self, link: _Link) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = link.address
        tls: dict[str, Any] = {}
        if self._ssl_client is not None:
            tls = {
                "ssl": self._ssl_client,
                "server_hostname": host,
                "ssl_handshake_timeout": self._handshake_timeout,
            }
        reader, writer = await asyncio.open_connection(host, port, **tls)
        try:
            binding = None
            if self._ssl_client is not None:
                assert self._tls_identity is not None
                try:
                    binding = peer_tls.channel_binding(
                        writer.get_extra_info("ssl_object"), self._tls_identity, dialer=True
                    )
                except handshake.HandshakeError as exc:
                    exc.claimed_id = link.peer_id
                    raise
            await handshake.dial(
                reader,
                writer,
                node_id=self._node_id,
                secret=self._secret,
                expected_peer=link.peer_id,
                binding=binding,
            )
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _pump(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Write queued frames until the connection breaks (returns) or we are cancelled."""
        connection = _Connection(link.peer_id, writer)
        self._connections.add(connection)
        link.stats.connects += 1
        link.stats.connected = True
        self._spawn(self._watch_outbound(link, connection, reader))
        stats, queue = link.stats, link.queue
        link.connection = connection
        try:
            # The offer first: a connection opening with anything else is an earlier
            # release's, judged at its first frame (cluster_level.py).
            greeting = frame(encode(self._levels.introduce())) if self._levels is not None else b""
            greeting += self._hello_frame
            if self._incarnations is not None:
                greeting += frame(encode(self._incarnations.introduce(link.peer_id)))
            if greeting:  # before anything queued: the receiver judges it first
                writer.write(greeting)
                stats.bytes_sent += len(greeting)  # as the receiver counts it
            while True:
                if connection.closed:
                    raise ConnectionResetError("the peer closed the connection")
                if not queue or self._awaits_level(link):
                    link.wakeup.clear()
                    link.idle = True
                    try:
                        await link.wakeup.wait()
                    finally:
                        link.idle = False
                    continue
                if type(queue[0]) is _Streamed:
                    item = queue.popleft()
                    link.queued_bytes -= len(item)
                    await self._write_streamed(link, writer, item)  # type: ignore[arg-type]
                    continue
                self._write_queued(link, writer)
                await writer.drain()
        except OSError as exc:
            self._log.info("connection to peer %s at %s lost: %s", link.peer_id, _format(link.address), exc)
        finally:
            stats.connected = False
            if link.connection is connection:
                link.connection = None
            connection.close()
            self._connections.discard(connection)

    async def _watch_outbound(
        self, link: _Link, connection: _Connection, reader: asyncio.StreamReader
    ) -> None:
        """The acceptor never writes after the handshake: end of stream (or anything else)
        means the connection is gone, which a sender would otherwise notice only on write."""
        try:
            data = await reader.read(1)
        except OSError:
            data = b""
        if data:
            self._log.warning(
                "peer %s at %s sent data on a send-only connection; reconnecting",
                link.peer_id,
                _format(link.address),
            )
        connection.close()
        link.wakeup.set()

    # -- inbound: one task per accepted connection -------------------------------------

    def _accept_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so the connection's task is ours to track and cancel (asyncio's
        # own wrapper task would report a cancellation as an unhandled error on 3.11).
        if self._stopped:  # accepted just before the listener closed
            writer.close()
            return
        self._accepted.add(writer)
        self._spawn(self._serve_inbound(reader, writer))

    async def _serve_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = _format(writer.get_extra_info("peername"))
        try:
            if self._stopped:
                return
            if self._pending_handshakes >= MAX_PENDING_HANDSHAKES:
                self._refusals.warn("refused peer connection from %s: too many pending handshakes", address)
                return
            src = await self._authenticate(reader, writer, address)
            if src is not None and not self._stopped:
                await self._receive(src, address, reader, writer)
        finally:
            writer.close()
            self._accepted.discard(writer)

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> str | None:
        self._pending_handshakes += 1
        try:
            async with asyncio.timeout(self._handshake_timeout):
                binding = None
                if self._ssl_server is not None:
                    assert self._tls_identity is not None
                    binding = peer_tls.channel_binding(
                        writer.get_extra_info("ssl_object"), self._tls_identity, dialer=False
                    )
                return await handshake.accept(
                    reader,
                    writer,
                    node_id=self._node_id,
                    secret=self._secret,
                    is_known_peer=self._links.__contains__,
                    binding=binding,
                )
        except handshake.HandshakeError as exc:
            reason = exc.reason
            link = self._links.get(exc.claimed_id) if exc.claimed_id is not None else None
            if link is not None:
                link.stats.auth_failures += 1
        except TimeoutError:
            reason = f"no handshake within {self._handshake_timeout}s"
        except OSError as exc:
            reason = f"connection failed during the handshake: {exc}"
        finally:
            self._pending_handshakes -= 1
        self._auth_failures += 1
        self._refusals.warn("refused peer connection from %s: %s", address, reason)
        return None

    async def _receive(
        self, src: str, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = self._links.get(src)
        if link is None:  # removed from the membership during the handshake
            return
        connection = _Connection(src, writer, address)
        previous = self._inbound.get(src)
        if previous is not None:
            previous.close()  # it may still hold buffered frames; they are older than ours
        self._inbound[src] = connection
        self._connections.add(connection)
        stats = link.stats
        stats.accepts += 1
        if link.connection is None:
            link.redial.set()  # our dialer may be in backoff from before the peer was up
        warned: set[str] = set()  # unknown message tags already logged on this connection
        decoder = FrameDecoder(self._max_frame_bytes)
        reassembler = Reassembler(self._max_message_bytes)
        try:
            while True:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    decoder.check_clean_end()
                    self._log.debug("peer %s at %s closed its connection", src, address)
                    return
                decoder.feed(data)
                while not connection.closed and (payload := decoder.next_payload()) is not None:
                    stats.bytes_received += HEADER.size + len(payload)
                    whole = reassembler.whole(payload)
                    if whole is None:
                        continue  # a fragment: the rest of its message follows
                    payload = whole
                    if src in self._fault_blocked:
                        stats.dropped_blocked += 1
                        continue
                    try:
                        msg = decode(payload)
                    except UnknownMessage as exc:
                        self._skip_unknown(src, address, exc, stats, warned)
                        continue
                    if not _is_message(msg):
                        raise CodecError(f"frame holds a {type(msg).__name__}, not a protocol message")
                    if connection.offer is None:  # the first frame: its offer, or none (earlier)
                        offer = type(msg) is PeerLevel
                        self._judge_level(src, address, connection, msg if offer else EARLIER, link)
                        if offer:
                            continue
                    elif type(msg) is PeerLevel:
                        continue  # one offer per connection: later ones change nothing
                    if type(msg) is PeerHello:
                        self._judge_hello(src, address, connection, msg, stats)
                        continue
                    if type(msg) is PeerIncarnation:
                        self._judge_incarnation(src, address, connection, msg, stats)
                        continue
                    if connection.foreign:
                        stats.dropped_foreign += 1
                        continue
                    stats.frames_received += 1
                    self._deliver(src, msg)
                if connection.closed:
                    return
        except (FrameError, CodecError) as exc:
            stats.protocol_errors += 1
            self._protocol_errors += 1
            self._log.warning("dropped connection from peer %s at %s: %s", src, address, exc)
        except OSError as exc:
            self._log.info("connection from peer %s at %s lost: %s", src, address, exc)
        finally:
            connection.close()
            self._connections.discard(connection)
            if self._inbound.get(src) is connection:
                del self._inbound[src]
                stats.refused = None

    def _judge_hello(
        self, src: str, address: str, connection: _Connection, hello: PeerHello, stats: PeerStats
    ) -> None:
        refusal = self._hello.refusal(hello) if self._hello is not None else None
        if refusal is None and connection.barred is None:
            if connection.foreign:
                self._log.info("peer %s at %s: its hello matches now; taking its messages", src, address)
            connection.foreign = False
            stats.refused = None
        elif refusal is not None:
            self._refuse(src, address, connection, refusal, stats)

    def _refuse(
        self, src: str, address: str, connection: _Connection, refusal: str, stats: PeerStats
    ) -> None:
        """Drop every later message of ``connection``; the reason logged once, and shown."""
        if not connection.foreign:
            self._log.error("peer %s at %s: dropping its messages: %s", src, address, refusal)
        connection.foreign = True
        stats.refused = refusal

    def _judge_incarnation(
        self, src: str, address: str, connection: _Connection, said: PeerIncarnation, stats: PeerStats
    ) -> None:
        book = self._incarnations
        if book is None or connection.introduced:
            return  # one judgment per connection: a peer cannot make us rewrite the book per frame
        connection.introduced = True
        about_us = book.refused_here(src, said)
        if about_us is not None:
            self._log.error("%s", about_us)
        refusal = book.judge(src, said)
        if refusal is not None:  # else the hello's judgment stands
            connection.barred = refusal  # for good: a later hello cannot lift it
            self._refuse(src, address, connection, refusal, stats)

    def _judge_level(
        self, src: str, address: str, connection: _Connection, offer: PeerLevel, link: _Link
    ) -> None:
        """Record ``offer`` as what ``connection`` says, and refuse or take the peer."""
        connection.offer = offer
        if self._levels is None or self._inbound.get(src) is not connection:
            return
        refusal = self._levels.refusal(offer.applies)
        if refusal is not None:
            if src not in self._level_barred:
                link.stats.dropped_level += link.clear_queue()
                self._level_barred.add(src)
            if connection.barred is None:  # else refused already, and that reason stands
                connection.barred = refusal
                if not connection.foreign:  # nor does a foreign hello's reason give way
                    self._refuse(src, address, connection, refusal, link.stats)
        else:
            link.wakeup.set()  # frames held for its level go now
            if src in self._level_barred:  # a new connection: upgraded
                self._level_barred.discard(src)
                self._log.info(
                    "peer %s at %s applies cluster level %d: talking to it again", src, address, offer.applies
                )
        self._blocked = self._fault_blocked | self._level_barred

    def _skip_unknown(
        self, src: str, address: str, exc: UnknownMessage, stats: PeerStats, warned: set[str]
    ) -> None:
        stats.unknown_messages += 1
        if str(exc) not in warned:  # once per tag and connection: a newer peer repeats it
            warned.add(str(exc))
            self._log.warning(
                "skipped a message from peer %s at %s: %s (a newer release's? the connection stays)",
                src,
                address,
                exc,
            )

    def _deliver(self, src: str, msg: Any) -> None:
        try:
            self._on_message(src, msg)
        except Exception:
            # A failing handler is a bug in this node, not the peer's fault: keep the connection.
            self._log.exception("on_message raised for %s from peer %s", type(msg).__name__, src)


def _same_message(a: Any, b: Any) -> bool:
    """``a`` would encode exactly as ``b``: the same type, every field the same object or
    an equal int/str (never ``==`` across types: ``1 == True`` encodes differently), and
    tuples (e.g. log entries) holding the same objects."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    fields = message_field_names(kind)
    if fields is None:
        return False
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if x is y:
            continue
        tx = type(x)
        if tx is not type(y):
            return False
        if tx is int or tx is str:
            if x != y:
                return False
        elif tx is tuple:
            if len(x) != len(y) or any(p is not q for p, q in zip(x, y, strict=True)):
                return False
        else:
            return False
    return True


def _is_message(obj: Any) -> bool:
    """Registered messages are dataclass or msgspec Struct instances; decode builds no
    other ones.  (Checked on the type: a dataclass *class* is not a message.)"""
    return message_field_names(type(obj)) is not None


def _format(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
