"""Synthetic key-value histories: linearizable by construction, or with one anomaly.

A history is made the way a correct store would produce it: each of ``clients``
sequential clients invokes operations on random keys, every operation takes effect at
a random instant inside its ``[invoke, complete]`` interval, and results come from
applying the effects in instant order to the project's own KV state machine
(statemachines/kv.py).  That order is a linearization, so a clean history is always
linearizable.  Written values are unique (client index * 1 000 000 + counter, as the
simulator's workload does), which is what makes the injected anomalies provable:

* ``stale-read`` — a get returns the value of a write ``w0`` although a later write
  ``w1`` began after ``w0`` completed and itself completed before the get was invoked;
* ``lost-write`` — an acknowledged put never takes effect (later results are computed
  without it), and a get invoked after the put completed, with no other write to that
  key overlapping either of them, returns the value from before the put;
* ``duplicate-write`` — a put is applied a second time after another write ``w2`` that
  began after the put completed, and a get invoked after ``w2`` completed observes it.

Each anomaly is chosen among the generated operations when one fits; otherwise three
operations are appended after the end that exhibit it.  Either way the result is
definitely not linearizable.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consensuskit.core.client import Op
from consensuskit.statemachines.kv import KVStateMachine

INJECTIONS = ("stale-read", "lost-write", "duplicate-write")

# Operation mix: reads dominate, as in the simulator's workload.
_KINDS = ("get", "put", "cas", "delete")
_CUMULATIVE = (0.45, 0.75, 0.95, 1.0)


@dataclass(slots=True)
class _Planned:
    process: str
    seq: int
    op: Op
    invoke: float
    complete: float | None  # None: the client never learned the outcome
    effect: float | None  # None: never took effect
    result: Any = None

    @property
    def status(self) -> str:
        return "ok" if self.complete is not None else "unknown"

    def end(self) -> float:
        return self.complete if self.complete is not None else float("inf")

    def writes(self) -> bool:
        """Definitely changed its key: an acknowledged put or successful cas."""
        if self.complete is None:
            return False
        if self.op.kind == "put":
            return True
        return self.op.kind == "cas" and bool(self.result and self.result.get("swapped"))

    def may_write(self) -> bool:
        return self.op.kind in ("put", "cas", "delete")


def generate_kv_history(
    ops: int,
    keys: int = 100,
    clients: int = 16,
    seed: int = 0,
    inject: str | None = None,
    *,
    unknown_rate: float = 0.0,
) -> list[dict[str, Any]]:
    """``ops`` operation records (plus up to three for an appended anomaly) in the
    consensuskit per-operation format (docs/history.md), in invocation order.

    ``unknown_rate`` is the fraction of operations whose client never learns the
    outcome (status ``unknown``); half of those take effect anyway."""
    if ops < 0 or keys < 1 or clients < 1:
        raise ValueError(f"need ops >= 0, keys >= 1, clients >= 1; got {ops}, {keys}, {clients}")
    if inject is not None and inject not in INJECTIONS:
        raise ValueError(f"unknown injection {inject!r}; valid: {', '.join(INJECTIONS)}")
    if not 0.0 <= unknown_rate <= 1.0:
        raise ValueError(f"unknown_rate must be in [0, 1], got {unknown_rate}")
    rng = random.Random(seed)
    planned = _plan(ops, keys, clients, rng, unknown_rate)
    _execute(planned)
    if inject == "stale-read":
        _inject_stale_read(planned, rng)
    elif inject == "lost-write":
        _inject_lost_write(planned, rng)
    elif inject == "duplicate-write":
        _inject_duplicate_write(planned, rng)
    planned.sort(key=lambda p: (p.invoke, p.process))
    return [_record(p) for p in planned]


def _plan(ops: int, keys: int, clients: int, rng: random.Random, unknown_rate: float) -> list[_Planned]:
    names = [f"c{n}" for n in range(1, clients + 1)]
    # (when the client is free, client index): clients run concurrently, each is
    # sequential, and the one free first goes next.
    ready = [(rng.uniform(0.0, 0.002), c) for c in range(clients)]
    heapq.heapify(ready)
    counters = [0] * clients
    planned: list[_Planned] = []
    for _ in range(ops):
        free, c = heapq.heappop(ready)
        counters[c] += 1
        key = f"k{rng.randrange(keys)}"
        kind = _KINDS[bisect.bisect_left(_CUMULATIVE, rng.random())]
        value = (c + 1) * 1_000_000 + counters[c]
        if kind == "get":
            op = Op(kind="get", key=key)
        elif kind == "put":
            op = Op(kind="put", key=key, value=value)
        elif kind == "delete":
            op = Op(kind="delete", key=key)
        elif rng.random() < 0.5:  # filled in from the state at the effect (see _execute)
            op = Op(kind="cas", key=key, value=value, expected_version=-1)
        else:
            op = Op(kind="cas", key=key, value=value, expected=-1)
        invoke = round(free, 6)
        # Mostly short operations, some slow ones: slow ones overlap many others.
        duration = rng.uniform(0.0005, 0.004) if rng.random() < 0.9 else rng.uniform(0.004, 0.03)
        complete = round(invoke + duration, 6)
        effect = rng.uniform(invoke, complete)
        if rng.random() < unknown_rate:
            planned.append(
                _Planned(names[c], counters[c], op, invoke, None, effect if rng.random() < 0.5 else None)
            )
        else:
            planned.append(_Planned(names[c], counters[c], op, invoke, complete, effect))
        heapq.heappush(ready, (complete + rng.uniform(0.0, 0.002), c))
    _choose_cas_expectations(planned, rng)
    return planned


def _choose_cas_expectations(planned: list[_Planned], rng: random.Random) -> None:
    """Most cas operations expect what the key holds when they are invoked (so many
    succeed), the rest something stale."""
    machine = KVStateMachine()
    by_effect = sorted((p for p in planned if p.effect is not None), key=lambda p: p.effect or 0.0)
    # A cas's expectation is decided at its invocation from the effects before it.
    events = sorted(
        [(p.invoke, 0, n) for n, p in enumerate(planned) if p.op.kind == "cas"]
        + [(p.effect or 0.0, 1, n) for n, p in enumerate(by_effect)]
    )
    for _, is_effect, n in events:
        if is_effect:
            machine.execute(by_effect[n].op)
            continue
        p = planned[n]
        current = machine.execute(Op(kind="get", key=p.op.key))
        fresh = rng.random() < 0.8
        if p.op.expected_version is not None:
            version = current["version"] if fresh else max(0, current["version"] - 1)
            p.op = Op(kind="cas", key=p.op.key, value=p.op.value, expected_version=version)
        else:
            expected = current["value"] if fresh else rng.choice([None, p.op.value - 1])
            p.op = Op(kind="cas", key=p.op.key, value=p.op.value, expected=expected)


def _execute(planned: list[_Planned], extra: Iterable[tuple[float, Op]] = ()) -> None:
    """Apply every effect (plus ``extra`` ones, results discarded) in instant order."""
    machine = KVStateMachine()
    events: list[tuple[float, int, Any]] = [(p.effect, 0, p) for p in planned if p.effect is not None]
    events += [(t, 1, op) for t, op in extra]
    events.sort(key=lambda e: (e[0], e[1]))
    for _, is_extra, item in events:
        if is_extra:
            machine.execute(item)
        else:
            item.result = machine.execute(item.op)
    for p in planned:
        if p.complete is None or p.effect is None:
            p.result = None


def _written(p: _Planned) -> tuple[Any, int]:
    return p.op.value, p.result["version"]


def _by_key(planned: list[_Planned]) -> dict[str, list[_Planned]]:
    groups: dict[str, list[_Planned]] = {}
    for p in planned:
        groups.setdefault(p.op.key, []).append(p)
    return groups


def _gets(planned: list[_Planned], rng: random.Random) -> list[_Planned]:
    gets = [p for p in planned if p.op.kind == "get" and p.complete is not None]
    rng.shuffle(gets)
    return gets


def _inject_stale_read(planned: list[_Planned], rng: random.Random) -> None:
    groups = _by_key(planned)
    for g in _gets(planned, rng)[:200]:
        writes = [w for w in groups[g.op.key] if w.writes()]
        before = [w for w in writes if w.end() < g.invoke]
        if not before:
            continue
        w1 = max(before, key=lambda w: w.invoke)
        older = [w for w in writes if w.end() < w1.invoke]
        if not older:
            continue
        w0 = max(older, key=lambda w: w.end())
        value, version = _written(w0)
        g.result = {"value": value, "version": version}
        return
    _append_anomaly(planned, rng)


def _inject_lost_write(planned: list[_Planned], rng: random.Random) -> None:
    groups = _by_key(planned)
    for g in _gets(planned, rng)[:200]:
        same_key = groups[g.op.key]
        puts = [w for w in same_key if w.op.kind == "put" and w.complete is not None and w.end() < g.invoke]
        if not puts:
            continue
        w = max(puts, key=lambda p: p.end())
        # Nothing else that may write this key can fall between the put and the get.
        window = (w.invoke, g.end())
        if any(o is not w and o.may_write() and _overlaps(o, window) for o in same_key):
            continue
        w.effect = None
        result = w.result
        _execute(planned)
        w.result = result  # still acknowledged
        return
    _append_anomaly(planned, rng)


def _overlaps(p: _Planned, window: tuple[float, float]) -> bool:
    return p.invoke <= window[1] and p.end() >= window[0]


def _inject_duplicate_write(planned: list[_Planned], rng: random.Random) -> None:
    groups = _by_key(planned)
    effects = sorted(p.effect for p in planned if p.effect is not None)
    for g in _gets(planned, rng)[:200]:
        same_key = groups[g.op.key]
        w2s = [w for w in same_key if w.writes() and w.end() < g.invoke]
        if not w2s:
            continue
        w2 = max(w2s, key=lambda p: p.invoke)
        puts = [w for w in same_key if w.op.kind == "put" and w.complete is not None and w.end() < w2.invoke]
        if not puts:
            continue
        w = max(puts, key=lambda p: p.end())
        assert g.effect is not None
        # Re-apply the put after every effect before the get's (so nothing overwrites
        # it in between) and after the get's invocation (so after w2 completed).
        earlier = [t for t in effects if t < g.effect]
        start = max(g.invoke, earlier[-1] if earlier else g.invoke)
        _execute(planned, [((start + g.effect) / 2, w.op)])
        return
    _append_anomaly(planned, rng)


def _append_anomaly(planned: list[_Planned], rng: random.Random) -> None:
    """No operation fits: append put a, put b, get → a on one key, one after another.

    Each anomaly in its smallest form (a stale read of a; put b lost; put a applied
    again after b): a is written once, and put b began after put a completed and
    completed before the get began."""
    end = max((p.end() for p in planned if p.complete is not None), default=0.0)
    key = rng.choice(sorted({p.op.key for p in planned}) or ["k0"])
    process = "c1"
    seq = max((p.seq for p in planned if p.process == process), default=0)
    tail: list[_Planned] = []
    for n, (kind, value) in enumerate((("put", -1), ("put", -2), ("get", None))):
        invoke = round(end + 0.001 + 0.002 * n, 6)
        complete = round(invoke + 0.001, 6)
        op = Op(kind=kind, key=key, value=value if kind == "put" else None)
        tail.append(_Planned(process, seq + n + 1, op, invoke, complete, (invoke + complete) / 2))
    planned.extend(tail)
    _execute(planned)
    first = tail[0]
    tail[2].result = {"value": first.op.value, "version": first.result["version"]}


def _record(p: _Planned) -> dict[str, Any]:
    return {
        "process": p.process,
        "seq": p.seq,
        "op": p.op.kind,
        "key": p.op.key,
        "value": p.op.value,
        "expected": p.op.expected,
        "expected_version": p.op.expected_version,
        "invoke": p.invoke,
        "complete": p.complete,
        "status": p.status,
        "result": p.result if p.complete is not None else None,
        "index": None,
        "attempts": 1,
    }
