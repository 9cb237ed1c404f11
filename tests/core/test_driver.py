"""The durability driver's ordering rules (core/driver.py), alone and against a naive twin.

The twin knows nothing of pipelining or group commit: it stamps every held output with
the number of writes made by the end of its batch (the driver's unit) and releases the
longest prefix of outputs whose stamps are durable.  Driven by the same batches and sync
completions, the real driver must release the same outputs at the same steps, report the
same durable positions, and never leave an output or a write waiting while no sync runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.driver import Driver


class CountingStorage:
    """Counts writes; a sync makes the writes it took durable.  Its log is a length."""

    def __init__(self) -> None:
        self.writes = 0
        self.taken = 0
        self.durable = 0
        self.log = 0
        self.truncated_below: int | None = None

    @property
    def dirty(self) -> bool:
        return self.writes > self.taken

    def write(self) -> None:
        self.writes += 1

    def append(self) -> None:
        self.writes += 1
        self.log += 1

    def truncate(self) -> None:
        self.writes += 1
        if self.log:
            position = self.log  # truncate the last entry
            below = self.truncated_below
            if below is None or position - 1 < below:
                self.truncated_below = position - 1
            self.log -= 1

    def begin_sync(self) -> int:
        self.taken = self.writes
        return self.writes

    def log_last(self) -> int:
        return self.log


class Host(Driver):
    """Releases into ``released`` as (step, output); syncs wait for ``complete``."""

    __slots__ = ("durable", "pending_sync", "released", "step", "syncs_started")

    def __init__(self) -> None:
        super().__init__(CountingStorage())
        self.released: list[tuple[int, Any]] = []
        self.durable: list[int] = []
        self.pending_sync: int | None = None
        self.syncs_started = 0
        self.step = 0

    def release(self, outputs: list[Any]) -> None:
        self.released += [(self.step, out) for out in outputs]

    def run_sync(self, writes: int) -> None:
        assert self.pending_sync is None, "two syncs at once"
        self.pending_sync = writes
        self.syncs_started += 1

    def report_durable(self, position: int) -> None:
        self.durable.append(position)

    def complete(self) -> None:
        upto = self.pending_sync
        assert upto is not None
        self.pending_sync = None
        self.disk.durable = upto
        self.advance()


class Naive:
    """The twin: stamps and a durable count; a sync starts whenever writes wait."""

    def __init__(self) -> None:
        self.writes = 0
        self.durable = 0
        self.log = 0
        self.running: tuple[int, int] | None = None  # (writes taken, log position)
        self.low: int | None = None  # lowest truncation point while running
        self.queue: list[tuple[int, Any]] = []  # (stamp, output)
        self.released: list[tuple[int, Any]] = []
        self.reports: list[int] = []
        self.step = 0

    def _drain(self) -> None:
        while self.queue and self.queue[0][0] <= self.durable:
            self.released.append((self.step, self.queue.pop(0)[1]))

    def _maybe_start(self) -> None:
        if self.running is None and self.writes > self.durable:
            self.running = (self.writes, self.log)
            self.low = None

    def batch(self, effects: list[tuple[str, Any]]) -> None:
        early: list[Any] = []
        held: list[Any] = []
        for kind, out in effects:
            if kind == "write":
                self.writes += 1
            elif kind == "append":
                self.writes += 1
                self.log += 1
            elif kind == "truncate":
                self.writes += 1
                if self.log:
                    if self.low is None or self.log - 1 < self.low:
                        self.low = self.log - 1
                    self.log -= 1
            elif kind == "early":
                early.append(out)
            else:
                held.append(out)
        # The driver sees a batch as a whole: its outputs wait for all of its writes.
        self.queue += [(self.writes, out) for out in held]
        self.released += [(self.step, out) for out in early]
        if self.running is None and self.writes == self.durable:
            self._drain()
        self._maybe_start()

    def complete(self) -> None:
        assert self.running is not None
        upto, position = self.running
        self.running = None
        self.durable = upto
        self._drain()
        self.reports.append(position if self.low is None else min(position, self.low))
        self._maybe_start()


def run_batch(host: Host, effects: list[tuple[str, Any]]) -> None:
    storage = host.disk
    for kind, out in effects:
        if kind == "write":
            storage.write()
        elif kind == "append":
            storage.append()
        elif kind == "truncate":
            storage.truncate()
        elif kind == "early":
            host.early.append(out)
        else:
            host.outbox.append(out)
    host.end_batch()


# ------------------------------------------------------------------ single rules
def test_outputs_without_writes_leave_at_once():
    host = Host()
    run_batch(host, [("out", "a"), ("out", "b")])
    assert host.released == [(0, "a"), (0, "b")] and not host.syncing


def test_outputs_wait_for_the_sync_of_the_writes_before_them():
    host = Host()
    run_batch(host, [("append", None), ("out", "a")])
    assert host.released == [] and host.syncing and host.held == 1
    host.complete()
    assert host.released == [(0, "a")] and host.durable == [1] and not host.syncing


def test_pipelining_outputs_of_a_batch_without_writes_ride_on_the_running_sync():
    host = Host()
    run_batch(host, [("append", None), ("out", "a")])
    run_batch(host, [("out", "b")])  # may reflect the writes being synced: waits for them
    assert host.released == []
    host.complete()
    assert [o for _, o in host.released] == ["a", "b"] and not host.syncing


def test_group_commit_writes_made_during_a_sync_share_the_next_one():
    host = Host()
    run_batch(host, [("append", None), ("out", "a")])
    run_batch(host, [("append", None), ("out", "b")])
    run_batch(host, [("out", "c")])  # no write of its own, but b's write is pending
    run_batch(host, [("append", None), ("out", "d")])
    assert host.syncs_started == 1
    host.complete()
    assert [o for _, o in host.released] == ["a"] and host.syncs_started == 2
    host.complete()
    assert [o for _, o in host.released] == ["a", "b", "c", "d"] and host.durable == [1, 3]


def test_early_messages_leave_at_the_end_of_their_batch_before_the_sync():
    host = Host()
    run_batch(host, [("append", None), ("out", "answer"), ("early", "append-entries")])
    assert host.released == [(0, "append-entries")] and host.syncing


def test_on_batch_end_runs_before_anything_leaves():
    host = Host()
    calls: list[int] = []

    def batch_end() -> None:
        calls.append(len(host.released))
        host.early.append("replicate")
        host.disk.append()

    host.batch_end = batch_end
    run_batch(host, [("out", "a")])
    assert calls == [0] and host.released == [(0, "replicate")] and host.syncing


def test_an_input_run_inside_the_durable_report_keeps_the_order():
    """A host that hands on_durable to the node at once (the simulator) ends that input's
    batch inside ``advance``: outputs still waiting for the next sync go first."""

    class Immediate(Host):
        __slots__ = ()

        def report_durable(self, position: int) -> None:
            super().report_durable(position)
            self.outbox.append(f"durable-{position}")
            self.end_batch()

    host = Immediate()
    run_batch(host, [("append", None), ("out", "a")])
    run_batch(host, [("append", None), ("out", "b")])
    host.complete()
    assert [o for _, o in host.released] == ["a"] and host.syncing
    host.complete()
    assert [o for _, o in host.released] == ["a", "b", "durable-1", "durable-2"]


def test_a_truncation_during_the_sync_lowers_the_durable_report():
    host = Host()
    run_batch(host, [("append", None), ("append", None), ("append", None)])
    run_batch(host, [("truncate", None), ("truncate", None)])  # log 3 -> 1 while syncing
    host.complete()
    assert host.durable == [1]  # entries 2 and 3 on disk are not the log's any more
    host.complete()
    assert host.durable == [1, 1]


def test_halt_releases_nothing_more():
    host = Host()
    run_batch(host, [("append", None), ("out", "a")])
    host.halt()
    host.complete()
    run_batch(host, [("out", "b")])
    assert host.released == [] and host.durable == []


def test_a_host_that_syncs_at_once_releases_in_order():
    class Inline(Host):
        __slots__ = ()

        def run_sync(self, writes: int) -> None:
            self.disk.durable = writes
            self.advance()

    host = Inline()
    run_batch(host, [("append", None), ("out", "a")])
    run_batch(host, [("out", "b"), ("append", None), ("out", "c")])
    assert [o for _, o in host.released] == ["a", "b", "c"] and host.durable == [1, 2]


def test_flush_syncs_writes_no_sync_took():
    host = Host()
    host.disk.append()
    host.flush()
    assert host.syncing
    host.complete()
    assert host.durable == [1] and not host.syncing


# ------------------------------------------------------------------ against the twin
_effect = st.sampled_from(["write", "append", "truncate", "out", "out", "early"])
_step = st.one_of(st.just(("sync",)), st.tuples(st.just("batch"), st.lists(_effect, max_size=5)))


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=40))
def test_the_driver_releases_as_the_naive_twin(steps):
    host, twin = Host(), Naive()
    ids = iter(range(10**6))
    stamps: dict[int, int] = {}
    for i, step in enumerate(steps):
        host.step = twin.step = i
        if step[0] == "sync":
            if host.pending_sync is None:
                assert twin.running is None
                continue
            host.complete()
            twin.complete()
        else:
            effects = [(kind, next(ids)) for kind in step[1]]
            for kind, out in effects:
                if kind == "out":
                    stamps[out] = host.disk.writes + sum(
                        1 for k, o in effects if o < out and k in ("write", "append", "truncate")
                    )
            run_batch(host, effects)
            twin.batch(effects)
        assert host.released == twin.released
        assert host.durable == twin.reports
        for _, out in host.released:  # the barrier itself, stated directly
            assert out not in stamps or stamps[out] <= host.disk.durable
        if not host.syncing:  # nothing waits while no sync runs
            assert host.held == 0 and not host.disk.dirty
    held = [o for _, o in host.released if o in stamps]
    assert held == sorted(held)  # held outputs leave in production order


@pytest.mark.parametrize("broken", ["no-barrier", "no-pipelining-check"])
def test_the_twin_comparison_catches_a_broken_driver(broken):
    """The property can fail: a driver that releases a batch's outputs while a write
    before them is pending disagrees with the twin."""

    class Broken(Host):
        __slots__ = ()

        def end_batch(self) -> None:
            if broken == "no-barrier":
                out, self.outbox = self.outbox, []
                self.release(out)  # as if nothing were pending
                self.flush()
                return
            if broken == "no-pipelining-check" and self.syncing and self.disk.dirty and self.outbox:
                out, self.outbox = self.outbox, []
                self.sync_outputs += out  # rides the running sync though it wrote
                return
            super().end_batch()

    host, twin = Broken(), Naive()
    plan = [[("append", 0), ("out", 1)], [("append", 2), ("out", 3)]]
    for i, effects in enumerate(plan):
        host.step = twin.step = i
        run_batch(host, effects)
        twin.batch(effects)
    host.step = twin.step = 9
    if host.pending_sync is not None:
        host.complete()
    twin.complete()
    assert host.released != twin.released
