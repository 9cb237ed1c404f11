"""How long the garbage collector stops the process: one node per process, so its pauses
are the node's (a pause is a loop stall: no heartbeat leaves, no message is read).

Rules this module owns:
  * ``install()`` adds one ``gc.callbacks`` hook to the process (idempotent); ``serve``
    calls it, in-process test clusters do not (several nodes would share the counters);
  * counts and durations are plain numbers per generation, read at scrape time
    (``metrics.py``); the hook does no allocation-heavy work.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any


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


def stats() -> GcStats | None:
    """The counters, or None when ``install`` was not called in this process."""
    return _watch.stats if _watch is not None else None
