"""Check a whole history: split it (P-compositionality), search each part, explain.

Parts are checked in parallel on all cores when the history is large.  The verdict is
``ok`` only if every part is linearizable, ``illegal`` if any part is not, and
``unknown`` when the time budget ran out first (never a wrong verdict).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, cast

from consensuskit.check.linearizability.models import Model
from consensuskit.check.linearizability.operation import Operation
from consensuskit.check.linearizability.search import (
    ILLEGAL,
    OK,
    SKIPPED,
    UNKNOWN_VERDICT,
    PartitionResult,
    check_partition,
)

# Below this many operations a process pool costs more than it saves.
PARALLEL_THRESHOLD = 5000
# With a pool, each part first gets this many seconds in this process: shipping a part
# to a worker (pickling it there and its result back) costs about as much as checking
# an easy one, so only the parts that need longer go to the pool.
IN_PROCESS_SECONDS = 0.25


@dataclass(slots=True)
class CheckResult:
    verdict: str  # ok / illegal / unknown
    model: str
    ops: int
    seconds: float
    partitions: list[PartitionResult] = field(default_factory=list)
    timed_out: bool = False

    @property
    def ok(self) -> bool | None:
        """True / False, or None when the checker could not decide in time."""
        return {OK: True, ILLEGAL: False}.get(self.verdict)

    @property
    def failing(self) -> PartitionResult | None:
        """The smallest part that is not linearizable."""
        bad = [p for p in self.partitions if p.verdict == ILLEGAL]
        return min(bad, key=lambda p: len(p.ops)) if bad else None

    def explain(self, model: Model) -> str:
        from consensuskit.check.linearizability.explain import explain

        return explain(self, model)

    def to_json(self) -> dict[str, Any]:
        failing = self.failing
        return {
            "verdict": {OK: "linearizable", ILLEGAL: "not-linearizable"}.get(self.verdict, "unknown"),
            "linearizable": self.ok,
            "model": self.model,
            "ops": self.ops,
            "seconds": round(self.seconds, 6),
            "timed_out": self.timed_out,
            "partitions": [p.to_json() for p in self.partitions],
            "failing_partition": failing.to_json() if failing is not None else None,
        }


def check_operations(
    ops: list[Operation],
    model: Model,
    *,
    timeout: float | None = None,
    workers: int | None = None,
    stop_at_first_failure: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Decide whether ``ops`` is linearizable with respect to ``model``.

    ``timeout`` is a budget in seconds for the whole check; ``workers`` caps the process
    pool (default: all cores, used only for large histories with several parts).  Parts
    are checked smallest first and, as Porcupine does, checking stops at the first part
    that fails (the rest are reported as ``skipped``) unless ``stop_at_first_failure``
    is false: proving an illegal part illegal can take far longer than finding one.
    ``on_progress(done, total)`` is called as parts finish."""
    started = time.perf_counter()
    for op in ops:
        model.validate(op.input)
    deadline = time.time() + timeout if timeout is not None else math.inf
    parts = [p for p in model.partition(list(ops)) if p]
    parts.sort(key=len)
    keys = [p[0].input.key for p in parts]
    workers = workers if workers is not None else (os.cpu_count() or 1)
    results: list[PartitionResult | None] = [None] * len(parts)
    pool_worth_it = workers > 1 and len(parts) > 1 and len(ops) >= PARALLEL_THRESHOLD
    budget = IN_PROCESS_SECONDS if pool_worth_it else math.inf
    hard: list[int] = []
    done = 0
    for n, (part, key) in enumerate(zip(parts, keys, strict=True)):
        result = check_partition(part, model, key, min(deadline, time.time() + budget))
        if result.verdict == UNKNOWN_VERDICT and time.time() < deadline:
            hard.append(n)  # out of its in-process budget, not of the caller's
            continue
        results[n] = result
        done += 1
        if on_progress is not None:
            on_progress(done, len(parts))
        if stop_at_first_failure and result.verdict == ILLEGAL:
            hard = []
            break
    if hard:
        _check_in_pool(
            parts, keys, hard, model, deadline, workers, stop_at_first_failure, results, on_progress, done
        )
    final = [
        r if r is not None else PartitionResult(key=k, verdict=SKIPPED, ops=p)
        for r, k, p in zip(results, keys, parts, strict=True)
    ]
    verdicts = {r.verdict for r in final}
    verdict = ILLEGAL if ILLEGAL in verdicts else UNKNOWN_VERDICT if UNKNOWN_VERDICT in verdicts else OK
    return CheckResult(
        verdict=verdict,
        model=model.name,
        ops=len(ops),
        seconds=time.perf_counter() - started,
        partitions=final,
        timed_out=UNKNOWN_VERDICT in verdicts,
    )


def _check_one(args: tuple[int, list[Operation], Model, Any, float]) -> tuple[int, PartitionResult]:
    n, part, model, key, deadline = args
    result = check_partition(part, model, key, deadline)
    result.ops = []  # the parent has them: sending them back would cost more than the search
    return n, result


def _worker(conn: Connection) -> None:
    """One checker process: parts in, results (or the exception a part raised) out, over
    its own pipe, until it is sent None."""
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent went away
            return
        if job is None:
            return
        try:
            answer: Any = _check_one(job)
        except Exception as exc:  # the parent raises it, as a pool would
            answer = exc
        conn.send(answer)


def _check_in_pool(
    parts: list[list[Operation]],
    keys: list[Any],
    which: list[int],
    model: Model,
    deadline: float,
    workers: int,
    stop_at_first_failure: bool,
    results: list[PartitionResult | None],
    on_progress: Callable[[int, int], None] | None,
    done: int,
) -> None:
    # Worker processes of our own, each with a pipe of its own, rather than a
    # multiprocessing.Pool: a failure found in one part kills the workers still searching
    # others, and a Pool's terminate() can hang on a shared queue lock that a killed
    # worker held (seen in CI).  A killed worker here holds nothing anyone waits for.
    context: Any = multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")
    jobs = [(n, parts[n], model, keys[n], deadline) for n in which]
    # Largest first keeps both cores busy to the end; results are re-ordered by index.
    jobs.sort(key=lambda job: -len(job[1]))
    pending = iter(jobs)
    processes: dict[Connection, BaseProcess] = {}
    finished = False
    try:
        for _ in range(min(workers, len(jobs))):
            conn, child = context.Pipe()
            process = context.Process(target=_worker, args=(child,), daemon=True)
            process.start()
            child.close()
            processes[conn] = process
        busy: set[Connection] = set()
        for conn in processes:
            job = next(pending, None)
            if job is not None:
                conn.send(job)
                busy.add(conn)
        while busy:
            for ready in wait(list(busy)):
                conn = cast(Connection, ready)
                try:
                    answer = conn.recv()
                except EOFError:
                    raise RuntimeError("a linearizability checker process died") from None
                if isinstance(answer, BaseException):
                    raise answer
                n, result = answer
                result.ops = parts[n]
                results[n] = result
                done += 1
                if on_progress is not None:
                    on_progress(done, len(parts))
                if stop_at_first_failure and result.verdict == ILLEGAL:
                    return  # the others are killed below
                job = next(pending, None)
                if job is None:
                    busy.discard(conn)
                else:
                    conn.send(job)
        finished = True
    finally:
        for conn, process in processes.items():
            if finished:
                with contextlib.suppress(OSError):
                    conn.send(None)  # idle: it exits on its own
            else:
                process.kill()
        for conn, process in processes.items():
            process.join()
            conn.close()
