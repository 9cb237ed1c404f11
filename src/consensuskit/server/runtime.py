"""The real ``Env``: one protocol node driven by an asyncio event loop, over disk and TCP.

The durability rules (persist -> send -> apply, pipelined syncs, group commit,
``send_early``, ``on_batch_end``, durability reports) are ``core/driver.py``'s, shared
with the simulator; ``NodeRuntime`` is a ``Driver`` host.  Rules this module owns:
  * inputs (peer messages, client requests, timer firings, admin calls, durability
    reports) are queued; one driver step hands every queued input to the node (at most
    ``MAX_BATCH_INPUTS``), then ends the batch (``Driver.end_batch``);
  * a sync: ``storage.begin_sync()`` takes the writes so far and its ``complete()``
    (the fsyncs) runs in a worker thread, one at a time, or right in the loop thread
    when the batch writes at most ``inline_sync_bytes`` and no snapshot and the last
    sync took at most ``INLINE_SYNC_SECONDS`` (a slow or contended disk would stall the
    loop: no request read, no heartbeat sent); the driver advances when it is done;
  * an exception in a handler, or a failed sync, halts the node: the state in memory may
    be half-updated, so nothing more is handled or released (``failure`` says why);
  * timers are keyed; re-arming a key bumps its generation, so a firing that was already
    queued for the old arming is ignored;
  * a timer's firing is queued two loop turns after it fires, behind what the sockets
    held: after a stall (a collection, a descheduled process) the heartbeat waiting
    in a socket must reset the election timer, not lose to it.  On uvloop timers run
    before the I/O poll of an iteration, and a stream's data reaches its reader task
    one turn after the poll, so one turn is not enough.  A timer that fires more than
    ``LATE_TIMER_SECONDS`` late (the loop stalled) first waits ``STALL_READ_SECONDS``:
    a SIGSTOP interrupts the poll, which returns on SIGCONT with no events, so the
    socket's data is seen a turn later than the two turns count on (a follower resumed
    after a pause deposed its leader that way, where pre-vote was off);
  * health is measured with plain counters (``RuntimeStats``): how late the loop runs a
    timer (``loop_lag``, a tick every ``LAG_TICK`` s), the silence between two messages
    from one peer (``peer_gap``: a follower's heartbeat gaps) and the longest sync;
    an election under load is explained by one of them (docs/server.md);
  * a message a node sends to itself never touches the transport: once released (after
    the barrier, like any other message) it is queued as an input from itself, as the
    simulator delivers it; a peer fault (``set_blocked``) never drops it;
  * ``calls_batch_end`` (the node's ``on_batch_end`` runs after each batch) and
    ``reports_durable`` (after each sync the node's ``on_durable(position)`` runs as an
    input, so a leader that sends early counts itself toward a commit quorum only for
    durable entries: Raft §10.2.1, etcd's parallel leader append).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.driver import Driver
from consensuskit.core.env import NodeId, ProtocolNode
from consensuskit.core.registry import ProtocolSpec
from consensuskit.core.service import ServiceSpec
from consensuskit.core.storage import MemoryStorage, Storage

log = logging.getLogger("consensuskit.server.runtime")

# Input kinds in the queue: (kind, a, b).
_MESSAGE = 0  # (src, msg)
_REQUEST = 1  # (request, None)
_TIMER = 2  # (key, generation)
_CALL = 3  # (fn(node) -> value, future)
_DURABLE = 4  # (log position, None)

# Inputs handled per driver step at most, so the loop also gets to read sockets.
MAX_BATCH_INPUTS = 4096
# A sync runs inline only while the last one took at most this long (the module rules):
# a loaded leader spent a fifth of its loop thread in inline fsyncs of a few ms each.
INLINE_SYNC_SECONDS = 0.001
# The loop-lag probe: a timer every LAG_TICK s, its lateness counted in LAG_BUCKETS.
LAG_TICK = 0.05
# A timer this late means the loop stalled; its firing then waits STALL_READ_SECONDS more,
# so that the sockets are polled and read first (the module rules).
LATE_TIMER_SECONDS = 0.05
STALL_READ_SECONDS = 0.005
# Upper bounds (seconds) of the loop-lag and peer-gap histograms (the last is +Inf).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class SyncBatch(Protocol):
    """The writes taken by one ``begin_sync``; ``complete`` makes them durable."""

    @property
    def empty(self) -> bool: ...

    def complete(self) -> None: ...

    # Optional: ``nbytes``, the bytes the sync writes (see ``inline_sync_bytes``).


class DurableStorage(Storage, Protocol):
    def begin_sync(self) -> SyncBatch: ...


class Transport(Protocol):
    def send(self, dst: str, msg: Any) -> None: ...


class NodeHalted(RuntimeError):
    """The node stopped (failure or shutdown) before answering."""


class RequestTimeout(TimeoutError):
    """No answer within the bounded wait; a write may or may not have been applied."""


class LeadershipLost(RuntimeError):
    """The node stopped leading with the request pending; its outcome is unknown."""


class _NoSync:
    __slots__ = ()
    empty = True

    def complete(self) -> None:
        return None


class MemoryDurableStorage(MemoryStorage):
    """MemoryStorage with the sync barrier API: every write is durable at once."""

    __slots__ = ()

    def begin_sync(self) -> SyncBatch:
        return _NoSync()


class _TrackedStorage:
    """What the node sees as ``env.storage``: the real storage, noting that a write
    happened since the last ``begin_sync`` (``dirty``).  Reads are the storage's own
    bound methods, so they cost no extra frame."""

    __slots__ = ("_inner", "dirty", "get", "log_first", "log_last", "log_records", "truncated_below")

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.dirty = False
        # Lowest ``position - 1`` truncated since the running sync began (None: none):
        # log entries above it may differ from what that sync makes durable.
        self.truncated_below: int | None = None
        self.get = inner.get
        self.log_first = inner.log_first
        self.log_last = inner.log_last
        self.log_records = inner.log_records

    def put(self, key: str, value: Any) -> None:
        self.dirty = True
        self._inner.put(key, value)

    def log_append(self, records: list[Any]) -> None:
        self.dirty = True
        self._inner.log_append(records)

    def log_truncate_from(self, position: int) -> None:
        self.dirty = True
        below = self.truncated_below
        if below is None or position - 1 < below:
            self.truncated_below = position - 1
        self._inner.log_truncate_from(position)

    def log_compact_to(self, position: int) -> None:
        self.dirty = True
        self._inner.log_compact_to(position)

    def begin_sync(self) -> SyncBatch:
        self.dirty = False
        return self._inner.begin_sync()  # type: ignore[attr-defined,no-any-return]


@dataclass(slots=True)
class RuntimeStats:
    """Plain counters (the metrics module reads them at scrape time)."""

    inputs: int = 0
    batches: int = 0
    proposals: int = 0  # writes handed to the node while it led
    syncs: int = 0
    sync_seconds_total: float = 0.0
    last_sync_seconds: float = 0.0
    released: int = 0
    sent_early: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # op kind -> count
    answers: dict[str, int] = field(default_factory=dict)  # "ok" or error code -> count
    received: dict[str, int] = field(default_factory=dict)  # message type -> count
    sent: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)  # env.record kind -> count
    roles: dict[str, int] = field(default_factory=dict)  # role entered -> count
    timeouts: int = 0
    leadership_lost: int = 0
    # Health (see the module rules): histograms as counts per LAG_BUCKETS bound (+Inf
    # last), their sums, and the largest values seen.
    loop_lag: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    loop_lag_sum: float = 0.0
    loop_lag_max: float = 0.0
    peer_gap: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    peer_gap_sum: float = 0.0
    peer_gap_max: float = 0.0
    sync_seconds_max: float = 0.0


def _count(buckets: list[int], value: float) -> None:
    buckets[bisect.bisect_left(LAG_BUCKETS, value)] += 1


class NodeRuntime(Driver):
    """Env + driver host for one protocol node.  Everything runs on the loop thread
    except ``SyncBatch.complete``."""

    # The driver calls ``node.on_batch_end()`` (when the node has it) after each batch of
    # inputs, so a node can do once per batch what it would otherwise do per input.
    calls_batch_end = True
    # ``send_early`` + ``node.on_durable`` (see the module rules).
    reports_durable = True

    def __init__(
        self,
        node_id: NodeId,
        spec: ProtocolSpec,
        members: Sequence[NodeId],
        options: dict[str, Any],
        storage: DurableStorage,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_sync: Callable[[float, int], None] | None = None,
        rng_seed: int | None = None,
        inline_sync_bytes: int = 0,
        service: ServiceSpec | None = None,
        cluster_key: bytes | None = None,
        node_key: bytes | None = None,
        public_keys: dict[str, dict[str, bytes]] | None = None,
    ) -> None:
        self.storage = _TrackedStorage(storage)
        # core/env.py: the cluster's shared key for protocol-level authentication.
        self.cluster_key = cluster_key  # what the node sees, and the driver watches
        # core/env.py: this node's own key and its cluster's public keys (keys_file).
        self.node_key = node_key
        self.public_keys = public_keys
        Driver.__init__(self, self.storage)
        self.node_id = node_id
        self.rng = random.Random(rng_seed if rng_seed is not None else int.from_bytes(os.urandom(8)))
        self.raw_storage = storage
        self.stats = RuntimeStats()
        self.failure: BaseException | None = None
        self.transport: Transport | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._on_sync = on_sync
        self._inline_sync_bytes = inline_sync_bytes
        self._last_sync_fast = True  # the last sync took at most INLINE_SYNC_SECONDS
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._inbox: collections.deque[tuple[int, Any, Any]] = collections.deque()
        self._drain_scheduled = False
        self._closed = False
        self._halted = self._loop.create_future()
        self._timer_gen: dict[str, int] = {}
        self._timer_handles: dict[str, asyncio.TimerHandle] = {}
        # Outputs (the driver's outbox): (dst, msg); dst None = client answer, dst a
        # Future = the result of an admin call.
        self._sync_idle = asyncio.Event()
        self._sync_idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fsync-{node_id}")
        self._waiters: dict[tuple[str, int], list[Waiter]] = {}
        self._deadlines: dict[float, collections.deque[Waiter]] = {}
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._handed: set[tuple[str, int]] = set()  # requests the node has seen, unanswered
        self._watchers: list[tuple[Callable[[Any], bool], asyncio.Future[None]]] = []
        self._leading = False
        # The event feed (server/events.py): ``events`` takes every ``env.record``;
        # ``events_tap`` is the same feed only while someone listens, and then sees the
        # messages, requests and answers too (None: nothing extra per message).
        self.events: Any = None
        self.events_tap: Any = None
        self._heard: dict[str, float] = {}  # peer -> when its last message arrived
        self._lag_handle: asyncio.TimerHandle | None = None
        # A log protocol gets the service's state machine (core/registry.py).
        self.node: ProtocolNode = spec.build(node_id, self, list(members), dict(options), service)
        self.batch_end = getattr(self.node, "on_batch_end", None)
        self._on_durable: Callable[[int], None] | None = getattr(self.node, "on_durable", None)

    # ------------------------------------------------------------------ Env
    def now(self) -> float:
        return time.monotonic()

    # send is the driver's.
    def send_early(self, dst: NodeId, msg: Any) -> None:
        """Send at the end of this batch, before the sync: only for a message that
        depends on no unsynced write of this node."""
        self.early.append((dst, msg))

    def deliver_early(self, response: ClientResponse) -> None:
        """Answer at the end of this batch, before the sync: only for an answer that
        depends on no unsynced write of this node (core/driver.py)."""
        self._handed.discard((response.client_id, response.seq))
        self.early.append((None, response))

    def deliver(self, response: ClientResponse) -> None:
        # Answered (once the barrier passes): no longer at risk from a step-down.
        self._handed.discard((response.client_id, response.seq))
        self.outbox.append((None, response))

    def set_timer(self, key: str, delay: float) -> None:
        gen = self._timer_gen.get(key, 0) + 1
        self._timer_gen[key] = gen
        old = self._timer_handles.get(key)
        if old is not None:
            old.cancel()
        delay = max(0.0, delay)
        due = self._loop.time() + delay
        self._timer_handles[key] = self._loop.call_later(delay, self._timer_fired, key, gen, due)

    def cancel_timer(self, key: str) -> None:
        gen = self._timer_gen.get(key)
        if gen is not None:
            self._timer_gen[key] = gen + 1
        handle = self._timer_handles.pop(key, None)
        if handle is not None:
            handle.cancel()

    def record(self, kind: str, **fields: Any) -> None:
        records = self.stats.records
        records[kind] = records.get(kind, 0) + 1
        if kind == "read-failed":  # a bug in a state machine's read: the read was refused
            log.error(
                "node %s: a %s read failed and was refused (the node goes on): %s\n%s",
                self.node_id,
                fields.get("op"),
                fields.get("error"),
                fields.get("trace", ""),
            )
        if kind == "role":
            role = str(fields.get("role"))
            self.stats.roles[role] = self.stats.roles.get(role, 0) + 1
            leading = role == "leader"
            if self._leading and not leading:
                self._leadership_lost()
            self._leading = leading
        if self.events is not None:
            self.events.rec(kind, fields)
        if self._debug:
            log.debug("%s %s %s", self.node_id, kind, fields)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Run the node's ``on_start`` (as an input, so its effects pass the barrier)."""
        self.call_soon(lambda node: node.on_start())
        self._lag_handle = self._loop.call_later(LAG_TICK, self._lag_probe, self._loop.time() + LAG_TICK)

    def _lag_probe(self, due: float) -> None:
        now = self._loop.time()
        lag = max(0.0, now - due)
        stats = self.stats
        _count(stats.loop_lag, lag)
        stats.loop_lag_sum += lag
        if lag > stats.loop_lag_max:
            stats.loop_lag_max = lag
        if not self._closed and self.failure is None:
            self._lag_handle = self._loop.call_later(LAG_TICK, self._lag_probe, now + LAG_TICK)

    @property
    def halted(self) -> asyncio.Future[None]:
        """Resolves when the node halts on a failure (never on a clean ``close``)."""
        return self._halted

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop taking inputs, let the sync in flight (and one for writes made since)
        finish and release, then answer every waiter with ``NodeHalted``."""
        if self._closed:
            return
        self._closed = True
        self._inbox.clear()
        if self._lag_handle is not None:
            self._lag_handle.cancel()
        for handle in self._timer_handles.values():
            handle.cancel()
        self._timer_handles.clear()
        if self.failure is None:
            await self._sync_idle.wait()
            if self.storage.dirty and self.failure is None:
                try:
                    self.flush()
                except Exception as exc:
                    self._halt(exc, "starting a sync")
                await self._sync_idle.wait()
        self._fail_waiters(NodeHalted("the node is shutting down"))
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ inputs
    def on_peer_message(self, src: NodeId, msg: Any) -> None:
        """Transport callback (loop thread)."""
        now = time.monotonic()
        last = self._heard.get(src)
        self._heard[src] = now
        if last is not None:
            gap = now - last
            stats = self.stats
            _count(stats.peer_gap, gap)
            stats.peer_gap_sum += gap
            if gap > stats.peer_gap_max:
                stats.peer_gap_max = gap
        self._enqueue(_MESSAGE, src, msg)

    def heard_within(self, seconds: float) -> set[NodeId]:
        """The peers a message arrived from in the last ``seconds`` whose connection to
        us is still open, where the transport tells (this node's view of who is up: a
        leader hears every member at each heartbeat, and a member that exits drops its
        connection at once, long before ``seconds`` pass)."""
        since = time.monotonic() - seconds
        heard = {peer for peer, when in self._heard.items() if when >= since}
        connected_from = getattr(self.transport, "connected_from", None)
        return heard & connected_from() if connected_from is not None else heard

    async def request(self, request: ClientRequest, timeout: float) -> ClientResponse:
        """Hand ``request`` to the node and wait for its answer, released after the
        barrier.  Raises ``RequestTimeout``, ``LeadershipLost`` or ``NodeHalted``."""
        return await self.submit(request, timeout)

    def submit(self, request: ClientRequest, timeout: float) -> asyncio.Future[ClientResponse]:
        """``request`` without a coroutine: the future of its answer (or of one of the
        errors ``request`` raises).  Cancelling the future withdraws the waiter."""
        fut: asyncio.Future[ClientResponse] = self._loop.create_future()
        waiter = self.wait_for_answer(request, timeout, _settle_future, fut)
        fut.add_done_callback(lambda done: self.withdraw(waiter) if done.cancelled() else None)
        return fut

    def wait_for_answer(
        self,
        request: ClientRequest,
        timeout: float,
        callback: Callable[[Waiter, ClientResponse | None, BaseException | None], None],
        context: Any = None,
    ) -> Waiter:
        """Hand ``request`` to the node; ``callback(waiter, response, error)`` runs exactly
        once, from the loop thread, with the answer (after the barrier) or with one of
        the errors ``request`` raises.  No future, task or timer per request: the hot path
        of a loaded leader (``withdraw`` cancels; ``waiter.context`` is the caller's)."""
        if self._closed or self.failure is not None:
            raise NodeHalted("the node is not running")
        key = (request.client_id, request.seq)
        deadline = self._loop.time() + timeout
        waiter = Waiter(key, deadline, callback, context)
        waiting = self._waiters.get(key)
        if waiting is None:
            self._waiters[key] = [waiter]
        else:
            waiting.append(waiter)
        # Requests with the same timeout expire in the order they came: one FIFO per
        # timeout value, swept by one timer, instead of a loop timer per request.
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = collections.deque()
        queue.append(waiter)
        if self._expiry_timer is None:
            self._expiry_timer = self._loop.call_later(_expiry_tick(timeout), self._expire_waiters)
        self._enqueue(_REQUEST, request, None)
        return waiter

    def withdraw(self, waiter: Waiter) -> None:
        """The caller no longer wants the answer (its connection closed); the node may
        still apply a write it was given."""
        if not waiter.finished:
            waiter.finished = True
            waiter.callback = waiter.context = None
            self._forget(waiter)

    def _forget(self, waiter: Waiter) -> None:
        key = waiter.key
        waiting = self._waiters.get(key)
        if waiting is not None and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self._waiters[key]
                self._handed.discard(key)

    def _finish(self, waiter: Waiter, response: ClientResponse | None, error: BaseException | None) -> None:
        if waiter.finished:
            return
        waiter.finished = True
        callback = waiter.callback
        waiter.callback = None
        try:
            callback(waiter, response, error)  # type: ignore[misc]
        except Exception:  # the caller's bug must not halt the node mid-release
            log.exception("node %s: a request's answer callback failed", self.node_id)
        waiter.context = None

    def _expire_waiters(self) -> None:
        self._expiry_timer = None
        now = self._loop.time()
        tick = 1.0
        for timeout, queue in list(self._deadlines.items()):
            while queue and (queue[0].finished or queue[0].deadline <= now):
                waiter = queue.popleft()
                if not waiter.finished:
                    self._forget(waiter)
                    self.stats.timeouts += 1
                    self._finish(waiter, None, RequestTimeout(f"no answer within {timeout:g}s"))
            if queue:
                tick = min(tick, _expiry_tick(timeout))
            else:
                del self._deadlines[timeout]
        if self._deadlines and not self._closed:
            self._expiry_timer = self._loop.call_later(tick, self._expire_waiters)

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(node)`` as an input; its result is released after the barrier, like an
        answer (an admin action: membership change, leadership transfer)."""
        if self._closed or self.failure is not None:
            raise NodeHalted("the node is not running")
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(_CALL, fn, fut)
        return await fut

    def call_soon(self, fn: Callable[[Any], Any]) -> None:
        """``call`` without waiting for the result."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(_CALL, fn, fut)

    async def wait_until(self, predicate: Callable[[Any], bool], timeout: float) -> bool:
        """Wait until ``predicate(node)`` holds after a driver step; False on timeout."""
        if predicate(self.node):
            return True
        fut: asyncio.Future[None] = self._loop.create_future()
        entry = (predicate, fut)
        self._watchers.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if entry in self._watchers:
                self._watchers.remove(entry)

    def _timer_fired(self, key: str, gen: int, due: float) -> None:
        if self._loop.time() - due > LATE_TIMER_SECONDS:
            # The loop stalled (module rules): let the sockets be read first.
            self._timer_handles[key] = self._loop.call_later(STALL_READ_SECONDS, self._timer_ready, key, gen)
            return
        self._timer_ready(key, gen)

    def _timer_ready(self, key: str, gen: int) -> None:
        # See the module rules: two turns, so pending peer input is queued first.
        self._loop.call_soon(self._loop.call_soon, self._enqueue, _TIMER, key, gen)

    def _enqueue(self, kind: int, a: Any, b: Any) -> None:
        if self._closed or self.failure is not None:
            return
        self._inbox.append((kind, a, b))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    # ------------------------------------------------------------------ the driver
    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed or self.failure is not None:
            return
        node = self.node
        inbox = self._inbox
        stats = self.stats
        received = stats.received
        tap = self.events_tap
        handled = 0
        try:
            while inbox and handled < MAX_BATCH_INPUTS:
                kind, a, b = inbox.popleft()
                handled += 1
                if kind == _MESSAGE:
                    name = type(b).__name__
                    received[name] = received.get(name, 0) + 1
                    if tap is not None:
                        tap.on_deliver(a, b)
                    node.on_message(a, b)
                elif kind == _REQUEST:
                    if tap is not None:
                        tap.on_request(a)
                    op_kind = a.op.kind
                    stats.requests[op_kind] = stats.requests.get(op_kind, 0) + 1
                    self._handed.add((a.client_id, a.seq))
                    if self._leading and not a.op.is_read():
                        stats.proposals += 1
                    node.on_request(a)
                elif kind == _TIMER:
                    if self._timer_gen.get(a) == b:
                        self._timer_handles.pop(a, None)
                        node.on_timer(a)
                elif kind == _CALL:
                    self.outbox.append((b, a(node)))
                elif self._on_durable is not None:
                    self._on_durable(a)
        except Exception as exc:
            self._halt(exc, "handling an input")
            return
        try:
            self.end_batch()  # on_batch_end, early sends, then hold / release / sync
        except Exception as exc:
            self._halt(exc, "ending a batch (on_batch_end or starting a sync)")
            return
        stats.inputs += handled
        stats.batches += 1
        if inbox and not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)
        if self._watchers:
            self._check_watchers()

    # ------------------------------------------------------------------ driver hooks
    def release_early(self, outputs: list[Any]) -> None:
        self.stats.sent_early += len(outputs)
        self._release(outputs)

    def report_durable(self, position: int) -> None:
        if self._on_durable is not None:
            self._enqueue(_DURABLE, position, None)

    def run_sync(self, batch: SyncBatch) -> None:
        if batch.empty:  # nothing to wait for: all of it is durable already
            self.advance()
            return
        self._sync_idle.clear()
        started = time.monotonic()
        if (
            self._inline_sync_bytes
            and self._last_sync_fast
            and getattr(batch, "nbytes", sys.maxsize) <= self._inline_sync_bytes
        ):
            # A small sync right here: handing it to the worker and back costs two thread
            # switches and a loop wake-up, more than the fsync of a few KB on a fast disk.
            try:
                batch.complete()
            except Exception as exc:
                self._sync_finished(exc, started)
            else:
                self._sync_finished(None, started)
            return
        fut = self._loop.run_in_executor(self._executor, batch.complete)
        fut.add_done_callback(
            lambda f: self._sync_finished(
                f.exception() if not f.cancelled() else asyncio.CancelledError(), started
            )
        )

    def _sync_finished(self, exc: BaseException | None, started: float) -> None:
        elapsed = time.monotonic() - started
        self._last_sync_fast = elapsed <= INLINE_SYNC_SECONDS
        if exc is not None:
            self._halt(exc, "syncing storage")
            self._sync_idle.set()
            return
        stats = self.stats
        stats.syncs += 1
        stats.sync_seconds_total += elapsed
        stats.last_sync_seconds = elapsed
        if elapsed > stats.sync_seconds_max:
            stats.sync_seconds_max = elapsed
        if self.failure is None:
            if self._on_sync is not None:
                self._on_sync(elapsed, len(self.sync_outputs))
            try:
                self.advance()
            except Exception as exc:  # starting the next sync failed
                self._halt(exc, "starting a sync")
        if not self.syncing:
            self._sync_idle.set()
        if self._watchers:
            self._check_watchers()

    def _release(self, outputs: list[tuple[Any, Any]]) -> None:
        if not outputs:
            return
        try:
            self._release_all(outputs)
        except Exception as exc:  # e.g. a message the codec cannot encode: a local bug
            self._halt(exc, "releasing outputs")

    release = _release  # the driver's hook: no extra frame per release

    def _release_all(self, outputs: list[tuple[Any, Any]]) -> None:
        transport = self.transport
        sent = self.stats.sent
        tap = self.events_tap
        sending = False
        me = self.node_id
        for dst, msg in outputs:
            if type(dst) is str:
                name = type(msg).__name__
                sent[name] = sent.get(name, 0) + 1
                if tap is not None:
                    tap.on_send(dst, msg)
                if dst == me:
                    self._enqueue(_MESSAGE, me, msg)
                elif transport is not None:
                    transport.send(dst, msg)
                    sending = True
            elif dst is None:
                self._answer(msg)
            elif not dst.done():
                dst.set_result(msg)
        self.stats.released += len(outputs)
        if sending:
            flush = getattr(transport, "flush", None)
            if flush is not None:
                flush()  # this batch's messages leave now, one write per peer

    def _answer(self, response: ClientResponse) -> None:
        key = (response.client_id, response.seq)
        answers = self.stats.answers
        code = "ok" if response.ok else str(response.error)
        answers[code] = answers.get(code, 0) + 1
        if self.events_tap is not None:
            self.events_tap.on_answer(response)
        waiting = self._waiters.pop(key, None)
        if waiting is None:
            return
        for waiter in waiting:
            self._finish(waiter, response, None)

    def _leadership_lost(self) -> None:
        """A leader that steps down never answers the writes it was given (another
        leader may still commit them): tell their waiters now rather than at timeout."""
        if not self._handed:
            return
        self.stats.leadership_lost += 1
        for key in sorted(self._handed):
            for waiter in self._waiters.pop(key, ()):
                self._finish(waiter, None, LeadershipLost(f"{self.node_id} stopped leading"))
        self._handed.clear()

    def _check_watchers(self) -> None:
        node = self.node
        for predicate, fut in list(self._watchers):
            if not fut.done() and predicate(node):
                fut.set_result(None)

    def _halt(self, exc: BaseException, doing: str) -> None:
        """Stop for good: memory may be half-updated, so nothing more leaves the node."""
        if self.failure is not None:
            return
        self.failure = exc
        log.critical(
            "node %s halted: %s failed with %s: %s",
            self.node_id,
            doing,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        self._inbox.clear()
        for handle in self._timer_handles.values():
            handle.cancel()
        self._timer_handles.clear()
        self.halt()  # the driver drops every held output
        self._fail_waiters(NodeHalted(f"node {self.node_id} halted: {type(exc).__name__}: {exc}"))
        if not self._halted.done():
            self._halted.set_result(None)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiting in waiters.values():
            for waiter in waiting:
                self._finish(waiter, None, exc)
        self._handed.clear()
        self._deadlines.clear()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        for _, fut in self._watchers:
            if not fut.done():
                fut.cancel()


class Waiter:
    """A caller waiting for one request's answer (``NodeRuntime.wait_for_answer``)."""

    __slots__ = ("callback", "context", "deadline", "finished", "key")

    def __init__(
        self,
        key: tuple[str, int],
        deadline: float,
        callback: Callable[[Waiter, ClientResponse | None, BaseException | None], None],
        context: Any,
    ) -> None:
        self.key = key
        self.deadline = deadline
        self.callback: Callable[[Waiter, ClientResponse | None, BaseException | None], None] | None = callback
        self.context = context
        self.finished = False


def _expiry_tick(timeout: float) -> float:
    """How often waiters with this timeout are swept: a timeout fires at most this late."""
    return min(0.05, max(timeout / 4, 0.001))


def _settle_future(waiter: Waiter, response: ClientResponse | None, error: BaseException | None) -> None:
    fut: asyncio.Future[ClientResponse] = waiter.context
    if not fut.done():
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(response)  # type: ignore[arg-type]
