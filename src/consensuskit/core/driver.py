"""The durability driver: persist -> send -> apply, written once for every runtime.

The idea is etcd-io/raft's Ready / Advance.  A runtime hands a node a *batch* of inputs;
what the node produced meanwhile is the batch's Ready: the storage writes it made, the
outputs that must wait until those writes are durable (sends and client answers, held in
``outbox``), and the messages that may leave at once (``early``).  ``end_batch`` closes
the batch; when the sync the driver started completes, the host calls ``advance``.

Rules this module owns (the simulator, the server runtime and the tests' fake env all
subclass ``Driver``, so none of them writes these rules again):
  * an output leaves only once every storage write made before it was produced is
    durable.  At most one sync runs at a time;
  * pipelining: while a sync runs the node keeps handling inputs.  Outputs of a batch
    made when no write is pending ride on the running sync; outputs made while writes
    are pending (``disk.dirty``) wait for the next sync, which takes every write
    made meanwhile (group commit).  A sync starts at the end of a batch that left
    writes pending with none running, or when the running one completes and writes
    accumulated;
  * held outputs are released in the order they were produced; a sync that starts
    takes every output still waiting for "the next sync" first;
  * ``send_early`` is the one exception to the barrier, for messages that depend on no
    unsynced write of the sender (a Raft leader's replication traffic): they leave at
    the end of the batch that produced them, before its held outputs.  Its twin for
    client answers, ``deliver_early`` (hosts that offer it), is for an answer that
    depends on no unsynced write either (the result of a committed command: durable on
    a quorum, whatever this node's disk holds); such answers ride in ``early`` too;
  * after each batch the node's ``on_batch_end`` runs (when the host set ``batch_end``:
    runtimes that batch say so with ``calls_batch_end``), before anything is released;
  * ``advance`` reports how far the log is durable (``report_durable``): the log's last
    position when the sync began, lowered by any truncation made while it ran (entries
    above the cut may differ from what reached the disk).  Hosts turn the report into
    the node's ``on_durable`` input;
  * after ``halt`` nothing more is handled or released.

No I/O, no clock, no threads here: the host says how to run a sync (a worker thread,
simulated time, at once), how to transmit and how to answer a client.  The storage the
driver watches (``disk``, usually the node's own storage) offers ``dirty`` (writes not
yet taken by a sync), ``begin_sync()`` (take them: the host's ``run_sync`` makes them
durable), ``log_last()`` and a writable ``truncated_below`` (lowest ``position - 1``
truncated since the last ``begin_sync``).
"""

from __future__ import annotations

from typing import Any, Protocol

from consensuskit.core.compiled import mypyc_attr


class SyncingStorage(Protocol):
    """What the driver needs of the node's storage (besides the node's own use)."""

    truncated_below: int | None

    @property
    def dirty(self) -> bool: ...

    def begin_sync(self) -> Any: ...

    def log_last(self) -> int: ...


# Hosts subclass it: the server's runtime, the simulator's envs, the tests' fake env.
@mypyc_attr(allow_interpreted_subclasses=True)
class Driver:
    """The output half of an ``Env``: holds outputs behind the durability barrier.

    A host subclasses it and implements ``release`` and ``run_sync`` (and, to tell the
    node about durability, ``report_durable``); it calls ``end_batch`` after each batch
    of inputs and ``advance`` when the sync it was asked to run is complete.
    """

    __slots__ = (
        "batch_end",
        "disk",
        "early",
        "next_outputs",
        "outbox",
        "stopped",
        "sync_outputs",
        "sync_position",
        "syncing",
    )

    def __init__(self, disk: Any) -> None:
        # The storage the driver watches (SyncingStorage): usually the node's own.
        self.disk = disk
        # Outputs of the batch being handled, in production order.
        self.outbox: list[Any] = []
        # send_early outputs of the batch being handled.
        self.early: list[Any] = []
        # The running sync (at most one) and the outputs released when it completes.
        self.syncing = False
        self.sync_outputs: list[Any] = []
        # Outputs that depend on writes the running sync does not cover.
        # Invariant: every output in sync_outputs was produced before any in next_outputs.
        self.next_outputs: list[Any] = []
        # disk.log_last() when the running sync began.
        self.sync_position = 0
        self.stopped = False
        # The node's on_batch_end, when the host batches (set once the node exists).
        self.batch_end: Any = None

    # ------------------------------------------------------------- effects (the Env side)
    # A host that lets messages leave early defines ``send_early`` (appending to
    # ``early``): protocols test for it, so it is not offered here.
    def send(self, dst: Any, msg: Any) -> None:
        self.outbox.append((dst, msg))

    def deliver(self, response: Any) -> None:
        self.outbox.append((None, response))

    # ------------------------------------------------------------------ host hooks
    def release(self, outputs: list[Any]) -> None:
        """Transmit / answer ``outputs`` now, in order (they passed the barrier)."""
        raise NotImplementedError

    def release_early(self, outputs: list[Any]) -> None:
        """A batch's ``send_early`` outputs leave (by default like any release)."""
        self.release(outputs)

    def run_sync(self, writes: Any) -> None:
        """Make ``writes`` (what ``disk.begin_sync()`` returned) durable, then call
        ``advance`` (possibly before returning) or, if the sync failed, ``halt``."""
        raise NotImplementedError

    def report_durable(self, position: int) -> None:
        """The log is durable up to ``position``: hand the node its ``on_durable``."""

    # ------------------------------------------------------------------ Ready / Advance
    @property
    def held(self) -> int:
        """Outputs produced and not yet released (what a crash now would lose)."""
        return len(self.outbox) + len(self.early) + len(self.sync_outputs) + len(self.next_outputs)

    def end_batch(self) -> None:
        """The batch of inputs is handled: run ``on_batch_end``, let the early messages
        leave, then hold, release or start a sync for the rest."""
        if self.stopped:
            return
        batch_end = self.batch_end
        if batch_end is not None:
            batch_end()
        early = self.early
        if early:
            self.early = []
            self.release_early(early)
            if self.stopped:
                return
        out = self.outbox
        if self.disk.dirty:
            if self.syncing:
                # Depends on writes the running sync does not cover: the next one.
                if out:
                    self.next_outputs += out
                    self.outbox = []
            else:
                self.outbox = []
                self._start_sync(out)
        elif out:
            self.outbox = []
            if self.syncing:
                # No write pending, but the outputs may reflect the writes being synced.
                self.sync_outputs += out
            else:
                self.release(out)

    def advance(self) -> None:
        """The running sync completed: release what waited for it, report durability,
        and start the next sync if writes accumulated meanwhile (group commit)."""
        if self.stopped or not self.syncing:
            return
        self.syncing = False
        outputs = self.sync_outputs
        self.sync_outputs = []
        position = self.sync_position
        below = self.disk.truncated_below
        if below is not None and below < position:
            position = below
        if outputs:
            self.release(outputs)
            if self.stopped:
                return
        # Before the next sync starts: a host that hands the report to the node at once
        # sees its outputs held behind the writes still pending, in order.
        self.report_durable(position)
        if self.stopped or self.syncing:
            return
        if self.disk.dirty:
            self._start_sync([])
        elif self.next_outputs:  # not reachable: outputs wait only behind writes
            pending = self.next_outputs
            self.next_outputs = []
            self.release(pending)

    def flush(self) -> None:
        """Start a sync for writes no sync took yet (e.g. before shutting down)."""
        if not self.stopped and not self.syncing and self.disk.dirty:
            self._start_sync([])

    def halt(self) -> None:
        """Stop for good: drop everything held; nothing more is released."""
        self.stopped = True
        self.syncing = False
        self.outbox = []
        self.early = []
        self.sync_outputs = []
        self.next_outputs = []

    def _start_sync(self, outputs: list[Any]) -> None:
        storage = self.disk
        writes = storage.begin_sync()
        self.sync_position = storage.log_last()
        storage.truncated_below = None
        pending = self.next_outputs
        if pending:
            self.next_outputs = []
            pending += outputs
            outputs = pending
        self.syncing = True
        self.sync_outputs = outputs
        self.run_sync(writes)
