"""NodeRuntime with a scripted node: the durability barrier, pipelining, timers, halting.

The node here is a tiny protocol whose handlers do exactly what each test says, and the
storage makes every sync wait on a gate the test opens, so "not released before its
sync" is observed directly rather than inferred from timing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.registry import ProtocolSpec
from consensuskit.core.storage import MemoryStorage
from consensuskit.server import runtime as runtime_module
from consensuskit.server.runtime import (
    LeadershipLost,
    NodeHalted,
    NodeRuntime,
    RequestTimeout,
)
from tests.server.runtime_harness import async_test

pytestmark = pytest.mark.timeout(30)


class GatedBatch:
    def __init__(self, storage: GatedStorage, upto: int) -> None:
        self.storage = storage
        self.upto = upto
        self.gate = threading.Event()

    @property
    def empty(self) -> bool:
        return False

    def complete(self) -> None:
        self.storage.events.append(("sync-start", self.upto))
        if not self.gate.wait(10):
            raise TimeoutError("test never opened the gate")
        if self.storage.fail_next:
            raise OSError("disk on fire")
        self.storage.durable = self.upto
        self.storage.events.append(("synced", self.upto))


class _EmptyBatch:
    empty = True

    def complete(self) -> None:
        raise AssertionError("an empty batch must not be completed")


class GatedStorage(MemoryStorage):
    """Counts writes; a sync covers the writes made before ``begin_sync`` and finishes
    when the test opens its gate (or at once with ``auto=True``)."""

    def __init__(self, auto: bool = False) -> None:
        super().__init__()
        self.writes = 0
        self.durable = 0
        self.auto = auto
        self.fail_next = False
        self.batches: list[GatedBatch] = []
        self.events: list[tuple[str, Any]] = []

    def put(self, key: str, value: Any) -> None:
        self.writes += 1
        super().put(key, value)

    def log_append(self, records: list[Any]) -> None:
        self.writes += 1
        super().log_append(records)

    def begin_sync(self) -> Any:
        if self.batches and self.batches[-1].upto == self.writes:
            return _EmptyBatch()
        batch = GatedBatch(self, self.writes)
        if self.auto:
            batch.gate.set()
        self.batches.append(batch)
        return batch


class ScriptedNode:
    """Each request's op says what to do: kind "put" writes then answers, "get" answers
    without writing, key "boom" raises, "silent" never answers.  Messages are echoed back
    to their sender, except "lead" and "step-down", which change the recorded role."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.seen: list[Any] = []
        self.timers: list[str] = []
        self.batch_ends: list[int] = []  # len(seen) at each on_batch_end

    def on_start(self) -> None:
        self.env.record("role", role="follower")

    def on_message(self, src: str, msg: Any) -> None:
        self.seen.append(msg)
        if msg in ("lead", "step-down"):
            self.env.record("role", role="leader" if msg == "lead" else "follower")
            return
        if msg == "write-and-echo":
            self.env.storage.put("m", msg)
        if isinstance(msg, tuple) and msg[0] == "echo":
            return  # an echo of an echo would never end
        self.env.send(src, ("echo", msg))

    def on_timer(self, key: str) -> None:
        self.timers.append(key)

    def on_batch_end(self) -> None:
        self.batch_ends.append(len(self.seen))

    def on_request(self, request: ClientRequest) -> None:
        self.seen.append(request.seq)
        op = request.op
        if op.key == "boom":
            raise RuntimeError("handler bug")
        if op.key == "silent":
            return
        if op.kind == "put":
            self.env.storage.put(op.key, op.value)
        answer = ClientResponse(client_id=request.client_id, seq=request.seq, ok=True, result=op.key)
        if op.key == "early":  # an answer that depends on no unsynced write
            self.env.deliver_early(answer)
        else:
            self.env.deliver(answer)


def scripted_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="scripted",
        description="test node",
        make_node=lambda node_id, env, members, options: ScriptedNode(env),
    )


class RecordingTransport:
    def __init__(self, storage: GatedStorage) -> None:
        self.storage = storage
        self.sent: list[tuple[str, Any, int]] = []  # (dst, msg, durable writes at release)

    def send(self, dst: str, msg: Any) -> None:
        self.sent.append((dst, msg, self.storage.durable))


def make_runtime(
    storage: GatedStorage, **kwargs: Any
) -> tuple[NodeRuntime, ScriptedNode, RecordingTransport]:
    runtime = NodeRuntime("a", scripted_spec(), ["a"], {}, storage, rng_seed=1, **kwargs)
    transport = RecordingTransport(storage)
    runtime.transport = transport
    runtime.start()
    return runtime, runtime.node, transport  # type: ignore[return-value]


def req(seq: int, kind: str = "put", key: str = "k", client: str = "c") -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind=kind, key=key, value=seq))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


def open_gate(storage: GatedStorage, index: int) -> None:
    storage.batches[index].gate.set()


@async_test
async def test_answer_waits_for_the_sync_that_covers_its_write():
    storage = GatedStorage()
    runtime, _node, _ = make_runtime(storage)
    task = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    await until(lambda: storage.batches)
    await asyncio.sleep(0.05)
    assert not task.done() and storage.durable == 0  # handled, written, held
    open_gate(storage, 0)
    response = await task
    assert response.ok and storage.durable == 1
    await runtime.close()


@async_test
async def test_an_early_answer_leaves_before_the_sync_of_its_batch():
    storage = GatedStorage()
    runtime, _node, _ = make_runtime(storage)
    early = asyncio.ensure_future(runtime.request(req(1, key="early"), timeout=5))
    held = asyncio.ensure_future(runtime.request(req(2), timeout=5))
    assert (await early).ok and storage.durable == 0  # its batch's write is not durable yet
    await asyncio.sleep(0.05)
    assert not held.done()  # deliver still waits for the barrier
    async with asyncio.timeout(5):
        while not held.done():  # open every sync's gate as it comes
            for batch in storage.batches:
                batch.gate.set()
            await asyncio.sleep(0.001)
    assert (await held).ok
    await runtime.close()


@async_test
async def test_output_without_writes_is_released_at_once():
    storage = GatedStorage()
    runtime, _node, transport = make_runtime(storage)
    response = await runtime.request(req(1, kind="get"), timeout=5)
    assert response.ok and storage.batches == []
    runtime.on_peer_message("b", "hello")
    await until(lambda: transport.sent)
    assert transport.sent == [("b", ("echo", "hello"), 0)]
    await runtime.close()


@async_test
async def test_pipelining_inputs_are_handled_during_a_sync_and_released_in_order():
    """Batch 1 writes and its sync blocks; batch 2 (a write) and batch 3 (a read) are
    handled meanwhile.  Nothing of 2 leaves before sync 2; the read rides with 2 (it
    may reflect write 2), and releases follow production order."""
    storage = GatedStorage()
    runtime, node, _transport = make_runtime(storage)
    released: list[int] = []

    async def go(request: ClientRequest) -> None:
        await runtime.request(request, timeout=5)
        released.append(request.seq)

    first = asyncio.ensure_future(go(req(1)))
    await until(lambda: len(storage.batches) == 1)
    second = asyncio.ensure_future(go(req(2)))
    await until(lambda: 2 in node.seen)
    third = asyncio.ensure_future(go(req(3, kind="get")))
    await until(lambda: 3 in node.seen)
    await asyncio.sleep(0.02)
    assert released == [] and len(storage.batches) == 1  # one sync at a time
    open_gate(storage, 0)
    await first
    await until(lambda: len(storage.batches) == 2)  # the next sync covers write 2
    await asyncio.sleep(0.02)
    assert released == [1]
    open_gate(storage, 1)
    await asyncio.gather(second, third)
    assert released == [1, 2, 3]
    await runtime.close()


@async_test
async def test_a_read_during_a_sync_with_no_new_writes_rides_on_that_sync():
    storage = GatedStorage()
    runtime, node, _transport = make_runtime(storage)
    write = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    await until(lambda: storage.batches)
    read = asyncio.ensure_future(runtime.request(req(2, kind="get"), timeout=5))
    await until(lambda: 2 in node.seen)
    await asyncio.sleep(0.02)
    assert not read.done()  # it may reflect write 1, which is not durable yet
    open_gate(storage, 0)
    await asyncio.gather(write, read)
    assert len(storage.batches) == 1
    await runtime.close()


@async_test
async def test_group_commit_one_sync_covers_every_write_made_while_one_ran():
    storage = GatedStorage()
    runtime, node, _transport = make_runtime(storage)
    first = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    await until(lambda: storage.batches)
    rest = [
        asyncio.ensure_future(runtime.request(req(seq, client=f"c{seq}"), timeout=5)) for seq in range(2, 22)
    ]
    await until(lambda: len(node.seen) == 21)
    open_gate(storage, 0)
    await first
    await until(lambda: len(storage.batches) == 2)
    assert storage.batches[1].upto == 21  # writes 2..21 in one sync
    open_gate(storage, 1)
    await asyncio.gather(*rest)
    assert len(storage.batches) == 2
    await runtime.close()


@async_test
async def test_peer_messages_that_depend_on_a_write_wait_for_it():
    storage = GatedStorage()
    runtime, _node, transport = make_runtime(storage)
    runtime.on_peer_message("b", "write-and-echo")
    await until(lambda: storage.batches)
    await asyncio.sleep(0.02)
    assert transport.sent == []
    open_gate(storage, 0)
    await until(lambda: transport.sent)
    assert transport.sent == [("b", ("echo", "write-and-echo"), 1)]
    await runtime.close()


@async_test
async def test_a_message_to_itself_is_delivered_after_the_barrier_without_the_transport():
    # The simulator delivers a node's messages to itself; so must the server (Paxos
    # Commit's coordinator is also an acceptor and got stuck when they were dropped).
    storage = GatedStorage()
    runtime, node, transport = make_runtime(storage)
    runtime.on_peer_message("a", "write-and-echo")
    await until(lambda: storage.batches)
    await asyncio.sleep(0.02)
    assert ("echo", "write-and-echo") not in node.seen  # held until the write is durable
    open_gate(storage, 0)
    await until(lambda: ("echo", "write-and-echo") in node.seen)
    assert transport.sent == []
    assert runtime.stats.sent == {"tuple": 1}
    await runtime.close()


@async_test
async def test_timers_fire_rearm_and_cancel():
    storage = GatedStorage(auto=True)
    runtime, node, _ = make_runtime(storage)
    runtime.set_timer("t", 0.02)
    runtime.set_timer("t", 0.05)  # re-arming replaces the first arming
    runtime.set_timer("gone", 0.01)
    runtime.cancel_timer("gone")
    runtime.cancel_timer("never-set")
    await asyncio.sleep(0.2)
    assert node.timers == ["t"]
    await runtime.close()


@async_test
async def test_a_handler_exception_halts_the_node():
    storage = GatedStorage(auto=True)
    runtime, node, transport = make_runtime(storage)
    waiting = asyncio.ensure_future(runtime.request(req(1, key="silent"), timeout=5))
    await until(lambda: 1 in node.seen)
    with pytest.raises(NodeHalted, match="handler bug"):
        await runtime.request(req(2, key="boom"), timeout=5)
    with pytest.raises(NodeHalted):
        await waiting
    assert runtime.halted.done() and isinstance(runtime.failure, RuntimeError)
    runtime.on_peer_message("b", "hello")  # ignored from now on
    await asyncio.sleep(0.02)
    assert node.seen == [1, 2] and transport.sent == []
    with pytest.raises(NodeHalted):
        await runtime.request(req(3), timeout=5)
    await runtime.close()


@async_test
async def test_a_failed_sync_halts_the_node_and_releases_nothing():
    storage = GatedStorage()
    runtime, _node, _transport = make_runtime(storage)
    storage.fail_next = True
    task = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    await until(lambda: storage.batches)
    open_gate(storage, 0)
    with pytest.raises(NodeHalted, match="disk on fire"):
        await task
    assert isinstance(runtime.failure, OSError)
    await runtime.close()


@async_test
async def test_request_timeout():
    storage = GatedStorage(auto=True)
    runtime, _node, _ = make_runtime(storage)
    with pytest.raises(RequestTimeout, match=r"no answer within 0\.05s"):
        await runtime.request(req(1, key="silent"), timeout=0.05)
    assert runtime.stats.timeouts == 1
    await runtime.close()


class SizedBatch:
    """Completes at once, noting the thread it ran on."""

    def __init__(self, storage: SizedStorage, nbytes: int) -> None:
        self.storage = storage
        self.nbytes = nbytes
        self.empty = False

    def complete(self) -> None:
        self.storage.sync_threads.append((self.nbytes, threading.get_ident()))
        if self.nbytes in self.storage.slow:
            time.sleep(0.1)  # a contended disk
        self.storage.durable = self.storage.writes


class SizedStorage(GatedStorage):
    """A sync's size is the size of the last value written; syncs of a size in ``slow``
    take 100 ms."""

    slow: frozenset[int] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.sync_threads: list[tuple[int, int]] = []
        self.size = 0

    def put(self, key: str, value: Any) -> None:
        self.size = value
        super().put(key, value)

    def begin_sync(self) -> Any:
        return SizedBatch(self, self.size)


@async_test
async def test_small_syncs_run_on_the_loop_thread_and_large_ones_in_the_worker(monkeypatch):
    # Whatever a loaded machine makes of the worker's handoff, no sync counts as slow.
    monkeypatch.setattr(runtime_module, "INLINE_SYNC_SECONDS", 10.0)
    storage = SizedStorage()
    runtime, _node, _ = make_runtime(storage, inline_sync_bytes=100)
    for seq, size in enumerate([10, 100, 101, 5], start=1):
        op = Op(kind="put", key="k", value=size)
        answer = await runtime.request(ClientRequest(client_id="c", seq=seq, op=op), 5)
        assert answer.ok
    loop_thread = threading.get_ident()
    assert [(n, t == loop_thread) for n, t in storage.sync_threads] == [
        (10, True),
        (100, True),
        (101, False),
        (5, True),
    ]
    assert runtime.stats.syncs == 4
    await runtime.close()


class OrderNode(ScriptedNode):
    """Notes, at each timer, how many messages it had seen."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.seen_at_timer: list[int] = []

    def on_timer(self, key: str) -> None:
        super().on_timer(key)
        self.seen_at_timer.append(len(self.seen))


async def _sleep_stall(theirs: socket.socket, arm: Callable[[], None]) -> None:
    """The loop stalls (a collection, a descheduled process) with the heartbeat waiting."""
    arm()
    theirs.send(b"heartbeat")
    time.sleep(0.1)


# The stall a SIGSTOP makes: a helper process stops this one while its loop waits in the
# I/O poll, writes the heartbeat meanwhile, and lets it go once the timer is long due.
# It says when it runs (a byte on ``ready``): the timer is set from then, so a helper
# slow to start on a loaded machine cannot let the timer fire before the stop.  The
# stop lasts from 0.1 s to 0.85 s after that; the timer is due at 0.5 s.
_STOP_AND_WRITE = """
import os, signal, sys, time
pid, fd, ready = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
os.write(ready, b"!")
time.sleep(0.1)
os.kill(pid, signal.SIGSTOP)
time.sleep(0.05)
os.write(fd, b"heartbeat")
time.sleep(0.7)
os.kill(pid, signal.SIGCONT)
"""


async def _sigstop_stall(theirs: socket.socket, arm: Callable[[], None]) -> subprocess.Popen[bytes]:
    here, there = socket.socketpair()
    helper = subprocess.Popen(
        [sys.executable, "-c", _STOP_AND_WRITE, str(os.getpid()), str(theirs.fileno()), str(there.fileno())],
        pass_fds=[theirs.fileno(), there.fileno()],
    )
    there.close()
    here.setblocking(False)
    await asyncio.get_running_loop().sock_recv(here, 1)  # it runs: its stop comes in 0.1 s
    here.close()
    arm()
    return helper


# How the loop stalls (arming the timer when the stall is ready to come), and the
# election timer's delay (due during the stall).
STALLS: dict[str, tuple[Callable[[socket.socket, Callable[[], None]], Any], float]] = {
    "sleep": (_sleep_stall, 0.02),
    "sigstop": (_sigstop_stall, 0.5),
}


async def _timers_seen_after_a_stall(stall: str) -> list[int]:
    make_stall, delay = STALLS[stall]
    spec = ProtocolSpec(name="order", description="", make_node=lambda n, env, m, o: OrderNode(env))
    runtime = NodeRuntime("a", spec, ["a"], {}, GatedStorage(auto=True), rng_seed=1)
    runtime.start()
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)

    async def receive() -> None:  # as the transport reads a peer: a stream and its task
        while data := await reader.read(1024):
            runtime.on_peer_message("b", data.decode())

    task = asyncio.create_task(receive())
    await asyncio.sleep(0.05)
    helper = await make_stall(theirs, lambda: runtime.set_timer("election", delay))
    await until(lambda: runtime.node.timers == ["election"], timeout=10)
    if helper is not None:
        helper.wait(5)
    task.cancel()
    writer.close()
    theirs.close()
    await runtime.close()
    return runtime.node.seen_at_timer  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("stall", sorted(STALLS))
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_after_a_stall_the_waiting_message_is_handled_before_the_due_timer(loop, stall):
    """A heartbeat that waited in the socket through the stall resets the election timer
    before that timer's firing is handled.  A SIGSTOP interrupts the loop's poll: on
    SIGCONT it returns with no events (EINTR), so a turn passes before the socket's
    data is seen and the two turns of the stall rule are not enough; the timer fired
    late, so it waits for the sockets first (server/runtime.py)."""
    factory = None
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_timers_seen_after_a_stall(stall)) == [1]


@async_test
async def test_after_a_slow_sync_small_ones_go_to_the_worker_until_one_is_fast_again(monkeypatch):
    # 50 ms: a worker's handoff stays far below it even on a loaded machine.
    monkeypatch.setattr(runtime_module, "INLINE_SYNC_SECONDS", 0.05)
    storage = SizedStorage()
    storage.slow = frozenset({20})
    runtime, _node, _ = make_runtime(storage, inline_sync_bytes=100)
    for seq, size in enumerate([10, 20, 30, 40], start=1):
        op = Op(kind="put", key="k", value=size)
        answer = await runtime.request(ClientRequest(client_id="c", seq=seq, op=op), 5)
        assert answer.ok
    loop_thread = threading.get_ident()
    # 20 runs inline and takes 100 ms (over INLINE_SYNC_SECONDS): 30 goes to the worker,
    # is fast, and 40 is inline again.
    assert [(n, t == loop_thread) for n, t in storage.sync_threads] == [
        (10, True),
        (20, True),
        (30, False),
        (40, True),
    ]
    await runtime.close()


@async_test
async def test_a_failed_inline_sync_halts_the_node_like_a_threaded_one():
    storage = SizedStorage()
    runtime, _node, _ = make_runtime(storage, inline_sync_bytes=100)

    def broken() -> None:
        raise OSError("disk on fire")

    batch = type("Batch", (), {"nbytes": 1, "empty": False, "complete": staticmethod(broken)})
    storage.begin_sync = batch  # type: ignore[method-assign]
    with pytest.raises(NodeHalted, match="disk on fire"):
        await runtime.request(req(1), timeout=5)
    assert isinstance(runtime.failure, OSError)
    await runtime.close()


@async_test
async def test_requests_with_different_timeouts_each_expire_on_time_and_in_order():
    storage = GatedStorage(auto=True)
    runtime, _node, _ = make_runtime(storage)
    loop = asyncio.get_running_loop()
    expired: list[tuple[int, float]] = []
    started = loop.time()

    def note(waiter, response, error):
        assert response is None and isinstance(error, RequestTimeout)
        expired.append((waiter.context, loop.time() - started))

    runtime.wait_for_answer(req(1, key="silent"), 0.4, note, 1)
    runtime.wait_for_answer(req(2, key="silent"), 0.1, note, 2)  # later, shorter: not stuck behind 1
    runtime.wait_for_answer(req(3, key="silent"), 0.4, note, 3)
    await until(lambda: len(expired) == 3, timeout=3)
    assert [n for n, _ in expired] == [2, 1, 3]
    short, long = expired[0][1], expired[1][1]
    assert 0.1 <= short < 0.3 and 0.4 <= long < 0.6
    assert runtime.stats.timeouts == 3 and not runtime._waiters and not runtime._deadlines
    await runtime.close()


@async_test
async def test_an_answer_callback_runs_once_and_a_withdrawn_waiter_never_runs():
    storage = GatedStorage(auto=True)
    runtime, _node, _ = make_runtime(storage)
    calls: list[tuple[str, Any, Any]] = []

    def note(waiter, response, error):
        calls.append((waiter.context, response, error))

    runtime.wait_for_answer(req(1), 0.2, note, "answered")
    gone = runtime.wait_for_answer(req(2, key="silent"), 0.1, note, "withdrawn")
    runtime.withdraw(gone)
    await until(lambda: calls)
    await asyncio.sleep(0.3)  # past both deadlines: neither fires again
    assert [(c, type(r).__name__, e) for c, r, e in calls] == [("answered", "ClientResponse", None)]
    assert runtime.stats.timeouts == 0 and not runtime._waiters
    await runtime.close()


@async_test
async def test_a_failing_answer_callback_is_logged_and_does_not_halt_the_node(caplog):
    storage = GatedStorage(auto=True)
    runtime, _node, _ = make_runtime(storage)

    def broken(waiter, response, error):
        raise ValueError("caller bug")

    runtime.wait_for_answer(req(1), 5, broken)
    await until(lambda: "answer callback failed" in caplog.text)
    assert runtime.failure is None
    assert (await runtime.request(req(2), timeout=5)).ok
    await runtime.close()


@async_test
async def test_stepping_down_fails_pending_requests_as_unknown():
    storage = GatedStorage(auto=True)
    runtime, node, _ = make_runtime(storage)
    runtime.on_peer_message("b", "lead")
    pending = asyncio.ensure_future(runtime.request(req(1, key="silent"), timeout=5))
    await until(lambda: 1 in node.seen)
    answered = await runtime.request(req(2, kind="get"), timeout=5)  # answered: not at risk
    runtime.on_peer_message("b", "step-down")
    with pytest.raises(LeadershipLost):
        await pending
    assert runtime.stats.leadership_lost == 1 and answered.ok
    await runtime.close()


@async_test
async def test_retries_of_one_request_all_get_the_answer():
    storage = GatedStorage()
    runtime, node, _ = make_runtime(storage)
    a = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    b = asyncio.ensure_future(runtime.request(req(1), timeout=5))
    await until(lambda: node.seen.count(1) == 2)
    for batch in storage.batches:
        batch.gate.set()
    await until(lambda: all(x.gate.is_set() for x in storage.batches) and a.done() and b.done())
    assert (await a).seq == (await b).seq == 1
    await runtime.close()


@async_test
async def test_admin_call_result_passes_the_barrier():
    storage = GatedStorage()
    runtime, _node, _ = make_runtime(storage)
    call = asyncio.ensure_future(runtime.call(lambda n: n.env.storage.put("x", 1) or "done"))
    await until(lambda: storage.batches)
    await asyncio.sleep(0.02)
    assert not call.done()
    open_gate(storage, 0)
    assert await call == "done"
    await runtime.close()


@async_test
async def test_close_makes_pending_writes_durable_and_releases_them():
    storage = GatedStorage(auto=True)
    runtime, node, transport = make_runtime(storage)
    runtime.on_peer_message("b", "write-and-echo")
    await until(lambda: node.seen)
    await runtime.close()
    assert storage.durable == storage.writes == 1
    assert transport.sent == [("b", ("echo", "write-and-echo"), 1)]
    with pytest.raises(NodeHalted):
        await runtime.request(req(1), timeout=1)


@async_test
async def test_stats_count_messages_requests_and_roles():
    storage = GatedStorage(auto=True)
    runtime, _node, transport = make_runtime(storage)
    runtime.on_peer_message("b", "x")
    await runtime.request(req(1, kind="get"), timeout=5)
    await until(lambda: transport.sent)
    stats = runtime.stats
    assert stats.received == {"str": 1} and stats.sent == {"tuple": 1}
    assert stats.requests == {"get": 1} and stats.answers == {"ok": 1}
    assert stats.roles == {"follower": 1} and stats.records == {"role": 1}
    await runtime.close()


@async_test
async def test_on_batch_end_follows_each_batch_of_inputs():
    storage = GatedStorage(auto=True)
    runtime, node, _ = make_runtime(storage)
    await asyncio.sleep(0.01)
    node.batch_ends.clear()
    for i in range(5):
        runtime.on_peer_message("b", i)  # queued together: one batch
    await until(lambda: node.batch_ends)
    await asyncio.sleep(0.01)
    assert node.batch_ends == [5]
    await runtime.close()
