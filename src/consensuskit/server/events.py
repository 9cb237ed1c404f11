"""A node's event feed: what a running node streams to the browser view (issue 17).

Rules this module owns:
  * every node keeps a bounded ring of events; each event gets the node's next sequence
    number (1, 2, 3, ... with no gap within one run of the process, an *incarnation*);
  * an event is a rendered record of ``sim/trace.py`` (``{"t", "ev", ...}``) plus
    ``"node"`` and ``"seq"``; ``t`` is seconds since the feed started (monotonic), and
    the snapshot carries the wall-clock ``epoch`` of that start, so a page can align
    the nodes: wall time = ``epoch + t``;
  * what goes in: the protocol's ``env.record`` calls (``rec``), always; ``start`` once;
    the test-only faults the node applies (``fault``); and, only while someone listens,
    status changes sampled every ``STATUS_INTERVAL`` (``status``: role, generation,
    leader, log positions, membership, lease), peer messages (``send`` / ``deliver``),
    sampled client requests and answers (``request`` / ``response``) and the count of
    background heartbeats (``beats``: counted, never sent one by one);
  * a message is sampled on both ends by the same rule: one in ``sample_every`` by a
    CRC-32 of its encoding, which is also its ``mid``; so a page pairs a ``send`` with
    its ``deliver`` by ``(src, dst, mid)``, first in first out (a link is FIFO);
  * a client request is sampled when its ``seq % sample_every == 0``, its answer
    likewise; a request's own ``seq`` (or a record field named so) is sent as ``cseq``;
  * nobody listening costs one ring append per ``env.record`` and nothing per message
    (the runtime's message tap is None);
  * a subscriber reads the ring from its own cursor; one that falls more than the ring
    behind gets a new snapshot and goes on from the newest event: memory stays bounded.

The websocket (``GET /v1/events``; server/http_api.py checks the credentials):
  * the first message is ``{"snapshot": {"node", "incarnation", "epoch", "t", "seq",
    "resumed", "pid", "protocol", "status", "sent", "received", ...}}``: the node now,
    and ``seq``, the event after which the stream goes on;
  * without ``since`` the stream goes on from the newest event (``resumed`` false);
    with ``?since=SEQ[&incarnation=ID]`` it goes on after SEQ when the ring still holds
    every later event (``resumed`` true); for another incarnation (the process was
    restarted) it goes on from its first event when the ring still holds it; otherwise
    from the newest (``resumed`` false: the events in between are lost);
  * then ``{"records": [event, ...]}`` batches, in seq order, at most every
    ``FLUSH_INTERVAL`` and at most ``BATCH`` events each; a subscriber that falls a
    ring behind gets another snapshot (``resumed`` false) and goes on from the newest;
  * the client sends nothing (a text message is ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from consensuskit.core.capabilities import status_dict
from consensuskit.core.messages import encode, summarize
from consensuskit.sim.trace import render

log = logging.getLogger("consensuskit.server.events")

DEFAULT_RING = 10_000  # events kept per node (a few MB at most)
STATUS_INTERVAL = 0.1  # seconds between two status samples while someone listens
BEATS_INTERVAL = 1.0  # seconds between two heartbeat counts
FLUSH_INTERVAL = 0.02  # seconds a subscriber waits to batch events
BATCH = 1000  # events per websocket message at most
# Status fields left out of the status event: they change with every message (a
# follower's match index), or stand for a level the event gives as a flag.
_CHURN = frozenset({"peers", "lease_remaining"})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.hex()
    return summarize(obj)


def dumps(obj: Any) -> str:
    """Compact JSON; anything JSON does not know goes through the trace's summaries (a
    dict key JSON cannot hold, say a tuple, is left out: a record never stops the feed)."""
    return json.dumps(obj, default=_jsonable, separators=(",", ":"), skipkeys=True)


class EventRing:
    """A fixed-size circular buffer of events numbered 1, 2, 3, ...: ``append`` is O(1),
    and ``after(seq)`` is what a subscriber at ``seq`` has not seen, or None when the
    oldest of those was already overwritten."""

    __slots__ = ("_items", "capacity", "last", "waiters")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the event ring holds at least 1 event, not {capacity}")
        self.capacity = capacity
        self._items: list[Any] = [None] * capacity
        self.last = 0  # the newest event's seq (0: none yet)
        self.waiters: list[asyncio.Event] = []  # one per subscriber: set on every append

    @property
    def first(self) -> int:
        """The oldest seq still held (``last + 1`` when empty)."""
        return max(1, self.last - self.capacity + 1)

    def append(self, item: Any) -> int:
        seq = self.last + 1
        self._items[seq % self.capacity] = item
        self.last = seq
        if self.waiters:
            for waiter in self.waiters:
                waiter.set()
        return seq

    def holds_after(self, seq: int) -> bool:
        """Every event after ``seq`` is still here (and ``seq`` is not in the future)."""
        return 0 <= seq <= self.last and seq + 1 >= self.first

    def after(self, seq: int, most: int = BATCH) -> list[tuple[int, Any]] | None:
        """Up to ``most`` events after ``seq`` as ``(seq, item)``; None when some were lost."""
        if not self.holds_after(seq):
            return None
        end = min(self.last, seq + most)
        items, cap = self._items, self.capacity
        return [(s, items[s % cap]) for s in range(seq + 1, end + 1)]


class EventFeed:
    """One node's events (see the module rules).  Everything runs on the loop thread."""

    def __init__(
        self,
        node_id: str,
        runtime: Any,
        *,
        capacity: int = DEFAULT_RING,
        sample_every: int = 1,
        heartbeats: Iterable[str] = (),
        protocol: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be at least 1, not {sample_every}")
        self.node_id = node_id
        self.runtime = runtime
        self.protocol = protocol
        self.ring = EventRing(capacity)
        self.sample_every = sample_every
        self.heartbeats = frozenset(heartbeats)
        self.incarnation = secrets.token_hex(8)
        self._clock = clock
        self._t0 = clock()
        self.epoch = time.time()
        self.listeners = 0
        self.lost = 0  # events a slow subscriber skipped (it got a snapshot instead)
        self._sampler: asyncio.Task[None] | None = None
        self._last_status: dict[str, Any] | None = None
        self._beats = [0, 0]  # heartbeats sent, received since the last ``beats`` event
        self._add(("start", node_id, self.incarnation))

    # ------------------------------------------------------------------ events in
    def now(self) -> float:
        """Seconds since the feed started (rounded when rendered: not on the hot path)."""
        return self._clock() - self._t0

    def _add(self, body: tuple[Any, ...]) -> None:
        self.ring.append((self.now(), *body))

    def rec(self, kind: str, fields: dict[str, Any]) -> None:
        """The protocol's ``env.record(kind, **fields)``: the one cost with nobody listening."""
        self.ring.append((self._clock() - self._t0, "rec", self.node_id, kind, fields))

    def fault(self, kind: str, **args: Any) -> None:
        """A fault this node applied (e.g. ``block`` from ``/v1/debug/faults``)."""
        self.ring.append((self.now(), "fault", kind, {"node": self.node_id, **args}))

    def _mid(self, msg: Any) -> tuple[int, int] | None:
        """(mid, size) when ``msg`` is sampled, else None."""
        try:
            payload = encode(msg)
        except (OverflowError, TypeError, ValueError):
            return None
        mid = zlib.crc32(payload)
        return (mid, len(payload)) if mid % self.sample_every == 0 else None

    def on_send(self, dst: str, msg: Any) -> None:
        name = type(msg).__name__
        if name in self.heartbeats:
            self._beats[0] += 1
            return
        sampled = self._mid(msg)
        if sampled is not None:
            self.ring.append((self.now(), "send", self.node_id, dst, sampled[0], msg, sampled[1]))

    def on_deliver(self, src: str, msg: Any) -> None:
        name = type(msg).__name__
        if name in self.heartbeats:
            self._beats[1] += 1
            return
        sampled = self._mid(msg)
        if sampled is not None:
            self.ring.append((self.now(), "deliver", src, self.node_id, sampled[0], msg, sampled[1]))

    def on_request(self, request: Any) -> None:
        if request.seq % self.sample_every == 0:
            kind = getattr(request.op, "kind", type(request.op).__name__)
            self.ring.append((self.now(), "request", request.client_id, self.node_id, request.seq, kind))

    def on_answer(self, response: Any) -> None:
        if response.seq % self.sample_every == 0:
            r = response
            self.ring.append((self.now(), "response", self.node_id, r.client_id, r.seq, r.ok, r.error))

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The node's status as the view wants it (``status_dict`` without the churn)."""
        try:
            full = status_dict(self.runtime.node)
        except Exception as exc:  # a node without a status: say so, never break the feed
            return {"error": f"{type(exc).__name__}: {exc}"}
        out = {k: v for k, v in full.items() if k not in _CHURN}
        if "lease_remaining" in full:
            out["lease"] = bool(full["lease_remaining"] and full["lease_remaining"] > 0)
        if getattr(self.runtime, "failure", None) is not None:
            out["halted"] = True
        return out

    def snapshot(self) -> dict[str, Any]:
        stats = self.runtime.stats
        return {
            "node": self.node_id,
            "incarnation": self.incarnation,
            "epoch": self.epoch,
            "t": round(self.now(), 6),
            "seq": self.ring.last,
            "pid": os.getpid(),
            "protocol": self.protocol,
            "sample_every": self.sample_every,
            "status": self.status(),
            "sent": dict(stats.sent),
            "received": dict(stats.received),
        }

    def sample_status(self) -> None:
        """Add a ``status`` event when the status differs from the last one added."""
        status = self.status()
        if status != self._last_status:
            self._last_status = status
            self.ring.append((self.now(), "status", self.node_id, status))

    def _count_beats(self) -> None:
        sent, received = self._beats
        if sent or received:
            self._beats = [0, 0]
            self.ring.append((self.now(), "beats", self.node_id, {"sent": sent, "received": received}))

    async def _sample(self) -> None:
        beats_due = 0.0
        while True:
            self.sample_status()
            beats_due += STATUS_INTERVAL
            if beats_due >= BEATS_INTERVAL:
                beats_due = 0.0
                self._count_beats()
            await asyncio.sleep(STATUS_INTERVAL)

    # ------------------------------------------------------------------ listening
    def _listen(self, delta: int) -> None:
        before = self.listeners
        self.listeners += delta
        if before == 0 and self.listeners > 0:
            self._last_status = None
            self.runtime.events_tap = self
            self._sampler = asyncio.get_running_loop().create_task(self._sample())
        elif before > 0 and self.listeners == 0:
            self.runtime.events_tap = None
            if self._sampler is not None:
                self._sampler.cancel()
                self._sampler = None

    def close(self) -> None:
        """Stop sampling (the node is stopping)."""
        self.runtime.events_tap = None
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        for waiter in self.ring.waiters:
            waiter.set()

    def render(self, seq: int, item: tuple[Any, ...]) -> dict[str, Any]:
        """One ring item as the event dict the websocket sends."""
        ev = item[1]
        item = (round(item[0], 6), *item[1:])
        t = item[0]
        if ev in ("status", "beats"):
            out: dict[str, Any] = {"t": t, "ev": ev, "node": item[2], **item[3]}
        elif ev in ("send", "deliver"):
            out = render(item[:6])
            out["size"] = item[6]
        elif ev == "request":
            out = render(item[:5])
            out["op"] = item[5]
        else:
            out = render(item)
        if "seq" in out:  # a client request's own seq (or a record's): "seq" is the event's
            out["cseq"] = out.pop("seq")
        out["node"] = self.node_id
        out["seq"] = seq
        return out

    def start_at(self, since: int | None, incarnation: str | None) -> tuple[int, bool]:
        """Where a new subscriber starts: ``(cursor, resumed)``; see the module rules."""
        ring = self.ring
        if since is None:
            return ring.last, False
        if incarnation is not None and incarnation != self.incarnation:
            since = 0  # another run of the process: none of this run's events were seen
        elif ring.holds_after(since):
            return since, True
        return (0, False) if ring.holds_after(0) else (ring.last, False)

    def _snapshot_message(self, cursor: int, resumed: bool) -> str:
        self.sample_status()  # the snapshot's status is an event too: none is missed
        return dumps({"snapshot": {**self.snapshot(), "seq": cursor, "resumed": resumed}})

    async def serve(self, ws: web.WebSocketResponse, since: int | None, incarnation: str | None) -> None:
        """Stream to one subscriber until it goes away (see the module rules)."""
        ring = self.ring
        wakeup = asyncio.Event()
        ring.waiters.append(wakeup)
        self._listen(+1)
        reader = asyncio.get_running_loop().create_task(_read_until_closed(ws))
        try:
            cursor, resumed = self.start_at(since, incarnation)
            await ws.send_str(self._snapshot_message(cursor, resumed))
            while not ws.closed and not reader.done():
                batch = ring.after(cursor)
                if batch is None:  # fell a ring behind: a snapshot instead of the lost events
                    self.lost += ring.first - cursor - 1
                    cursor = ring.last
                    await ws.send_str(self._snapshot_message(cursor, False))
                    continue
                if batch:
                    cursor = batch[-1][0]
                    await ws.send_str(dumps({"records": [self.render(s, item) for s, item in batch]}))
                    if len(batch) == BATCH:
                        continue
                if self.runtime.closed:
                    break
                wakeup.clear()
                if ring.last == cursor:  # nothing new since the read above: wait for it
                    waiter = asyncio.ensure_future(wakeup.wait())
                    await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                await asyncio.sleep(FLUSH_INTERVAL)  # let a burst gather into one message
        except (ConnectionError, RuntimeError) as exc:  # the subscriber went away mid-send
            log.debug("node %s: event subscriber gone: %s", self.node_id, exc)
        finally:
            reader.cancel()
            ring.waiters.remove(wakeup)
            self._listen(-1)
            with contextlib.suppress(Exception):
                await ws.close()


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the subscriber sends, so close frames and pings are handled."""
    async for msg in ws:
        if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            break


def parse_since(query: dict[str, str]) -> tuple[int | None, str | None]:
    """``since`` and ``incarnation`` from the query; ValueError (one line) when malformed."""
    raw = query.get("since")
    since: int | None = None
    if raw is not None:
        if not raw.isdigit() or len(raw) > 18:
            raise ValueError(f"since must be a sequence number (0 or more), not {raw[:40]!r}")
        since = int(raw)
    incarnation = query.get("incarnation")
    return since, incarnation


def heartbeat_types(spec: Any) -> frozenset[str]:
    """The message types the protocol's catalog entry calls background heartbeats (its
    view metadata, core/registry.py); none when it names none."""
    view = getattr(spec, "view", None)
    return frozenset(getattr(view, "heartbeats", ()) or ())


__all__ = ["BATCH", "DEFAULT_RING", "EventFeed", "EventRing", "dumps", "heartbeat_types", "parse_since"]
