"""The garbage collector of a node's process: its pauses timed, and kept short.

One node per process, so the collector's pauses are the node's: a pause is a loop stall
(no heartbeat leaves, no message is read).  A full collection walks every container
object alive; a started node holds a few hundred thousand from its imports alone (aiohttp,
grpc, protobuf, cryptography), and under benchmark load on a shared 2-core machine one
full collection took 0.1-0.26 s: a leader silent for most of an election timeout.

Rules this module owns:
  * ``install()`` adds one ``gc.callbacks`` hook to the process (idempotent); ``serve``
    calls it, in-process test clusters do not (several nodes would share the counters);
  * counts and durations are plain numbers per generation, read at scrape time
    (``metrics.py``); the hook does no allocation-heavy work;
  * ``freeze_startup()`` (``serve``, once the node started) moves everything alive then
    (modules, the app, the recovered state) to the permanent generation: later full
    collections walk only what the node made since.  Frozen objects are never
    collected; what startup leaves behind is garbage-free after the ``collect`` first;
  * ``raise_young_threshold()`` (``serve``, once) sets the first threshold to
    ``YOUNG_THRESHOLD`` instead of Python's 700.  A node allocates containers for every
    request (the request, its future, its log entry, the HTTP objects) and frees most
    of them a few milliseconds later, once it is answered; at 700 a young collection ran
    every few dozen requests, so whatever was in flight survived two of them and was
    promoted to the old generation, whose growth triggered a full collection every few
    seconds.  Measured (docs/server.md), a Raft leader loaded to a million keys for
    120 s: 46 full collections of up to 0.3-0.4 s, 10.5 s of collection in all; at
    20,000, 2 full collections, 3.5 s in all, no pause above 0.25 s.  (At 50,000 the
    total is the same and the young pauses longer.)  The simulator raises it too
    (``sim/simulation.py``).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Final

# The collector's first threshold in a node process (module rules).
YOUNG_THRESHOLD: Final = 20_000


@dataclass(slots=True)
class GcStats:
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # per generation
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    max_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


class _Watch:
    __slots__ = ("started", "stats")

    def __init__(self) -> None:
        self.stats = GcStats()
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self.started
        generation = min(int(info.get("generation", 0)), 2)
        stats = self.stats
        stats.collections[generation] += 1
        stats.seconds[generation] += elapsed
        if elapsed > stats.max_seconds[generation]:
            stats.max_seconds[generation] = elapsed


_watch: _Watch | None = None


def install() -> GcStats:
    """Start timing this process's collections; returns the live counters."""
    global _watch
    if _watch is None:
        _watch = _Watch()
        gc.callbacks.append(_watch)
    return _watch.stats


def freeze_startup() -> int:
    """Collect, then freeze what is alive (see the module rules); returns how many
    objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def raise_young_threshold(threshold: int = YOUNG_THRESHOLD) -> None:
    """Set the collector's first threshold to ``threshold`` (module rules), keeping the
    others; a collector that is off (threshold 0) stays off."""
    young, *older = gc.get_threshold()
    if young:
        gc.set_threshold(threshold, *older)


def stats() -> GcStats | None:
    """The counters, or None when ``install`` was not called in this process."""
    return _watch.stats if _watch is not None else None
