"""The Wing-Gong / Lowe search with memoisation, as Porcupine and Knossos do it.

The history is a doubly linked list of call and return entries in time order.  The
search walks it: at a call entry it tries to linearize that operation now (the model
step must be legal and the pair (linearized set, new state) must not have been seen
before); it then removes the call and its return from the list and starts again from the
head.  Reaching a return entry means the operation it belongs to was not linearized
before it returned: undo the last choice (backtrack) and try the next call.  The history
is linearizable iff the list empties.

Ties: entries are sorted by time with calls before returns, so intervals are closed (an
operation invoked at the instant another returned may be ordered either way).
Operations that never returned have their return at the end of the history.

Three reductions keep histories with many unanswered operations tractable (each leaves
the verdict unchanged; the search is exponential in the operations it may reorder, and
an unanswered one may go anywhere after its call):

* a read whose answer never came (the model's ``read_only``) changes nothing and
  constrains nothing: it is left out of the search and placed in the linearization
  afterwards, after every operation that returned before it was invoked;
* the value of an unanswered write that no operation ever reads or compares against
  (the model's ``forget_unread_values``) is replaced by one token: no step can tell
  such values apart, so such writes become equal calls (twins, below) and states that
  differ only in them are one state to the memo;
* unanswered operations with equal calls (after the previous rule) are twins: either
  may stand wherever the other does, so the search linearizes twins in the order they
  were invoked only.  k twins cost k+1 choices, not 2^k.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from consensuskit.check.linearizability.models import Model
from consensuskit.check.linearizability.operation import UNKNOWN, Operation

OK = "ok"
ILLEGAL = "illegal"
UNKNOWN_VERDICT = "unknown"
SKIPPED = "skipped"  # not checked: another part already failed

_CHECK_CLOCK_EVERY = 4096


@dataclass(slots=True)
class PartitionResult:
    """The verdict on one independent sub-history (one key, for the kv model)."""

    key: Any
    verdict: str  # ok / illegal / unknown / skipped
    ops: list[Operation]
    # A linearization (all ops) when ok; the longest partial one found otherwise.
    linearization: list[int] = field(default_factory=list)
    # Model state after each op of ``linearization``, described in words.
    states: list[str] = field(default_factory=list)
    # Ops that could not be placed after the longest partial linearization: (id, why).
    unplaced: list[tuple[int, str]] = field(default_factory=list)
    explored: int = 0  # search steps
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key
            if isinstance(self.key, (str, int, float)) or self.key is None
            else repr(self.key),
            "verdict": self.verdict,
            "ops": len(self.ops),
            "linearized": len(self.linearization),
            "unplaced": [{"op": self.ops[i].to_json(), "why": why} for i, why in self.unplaced],
            "explored": self.explored,
            "seconds": round(self.seconds, 6),
        }


def check_partition(
    ops: list[Operation], model: Model, key: Any = None, deadline: float = math.inf
) -> PartitionResult:
    """Decide one sub-history.  ``ops[i].id`` need not be ``i``: results index ``ops``.

    ``deadline`` is a ``time.time()`` value after which the answer is "unknown"."""
    started = time.perf_counter()
    read_only = getattr(model, "read_only", None)
    searched = [
        i
        for i, op in enumerate(ops)
        if not (op.output is UNKNOWN and read_only is not None and read_only(op.input))
    ]
    if len(searched) == len(ops):
        result = _search(ops, model, key, deadline)
    else:
        result = _search([ops[i] for i in searched], model, key, deadline)
        result.ops = ops
        result.linearization = [searched[i] for i in result.linearization]
        result.unplaced = [(searched[i], why) for i, why in result.unplaced]
        if result.verdict == OK:
            result.linearization = _with_unanswered_reads(ops, result.linearization)
    result.states = _states(ops, model, result.linearization)
    result.seconds = time.perf_counter() - started
    return result


def _with_unanswered_reads(ops: list[Operation], order: list[int]) -> list[int]:
    """``order`` (a linearization of the searched ops) with every op left out of the
    search put right after the last op of ``order`` that returned before it was invoked
    (ties in invocation order): every op that must precede it then does, and none that
    must follow it precedes it.  That point only moves on as invocations come later, so
    one pass over ``order`` by return time places them all."""
    placed = set(order)
    left_out = sorted((i for i in range(len(ops)) if i not in placed), key=lambda i: (ops[i].call, i))
    by_return = sorted(range(len(order)), key=lambda n: ops[order[n]].ret)
    before: dict[int, list[int]] = defaultdict(list)  # position in order -> ops to put there
    k = position = 0
    for i in left_out:
        while k < len(by_return) and ops[order[by_return[k]]].ret < ops[i].call:
            position = max(position, by_return[k] + 1)
            k += 1
        before[position].append(i)
    out: list[int] = []
    for n, j in enumerate(order):
        out += before.get(n, ())
        out.append(j)
    out += before.get(len(order), ())
    return out


def _twins(ops: list[Operation], calls: list[Any]) -> list[int]:
    """For each op, the unanswered op with an equal call invoked just before it (-1
    if none): the search linearizes an op only after its twin."""
    twin = [-1] * len(ops)
    unanswered = [i for i, op in enumerate(ops) if op.output is UNKNOWN and op.pending]
    last: dict[Any, int] = {}
    for i in sorted(unanswered, key=lambda i: (ops[i].call, i)):
        try:
            twin[i] = last.get(calls[i], -1)
            last[calls[i]] = i
        except TypeError:  # an unhashable call: no twins for it
            continue
    return twin


def _search(ops: list[Operation], model: Model, key: Any, deadline: float) -> PartitionResult:
    n = len(ops)
    # Entry e: 0 is the head sentinel; 1..2n are calls and returns in time order.
    order = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    opid = [-1] * size
    match = [-1] * size  # call entry -> its return entry
    call_entry = [0] * n
    for e, (_, is_return, i) in enumerate(order, start=1):
        opid[e] = i
        if is_return:
            match[call_entry[i]] = e
        else:
            call_entry[i] = e
    outputs = [op.output for op in ops]
    # Both reductions serve unanswered operations: without any, the history is searched
    # as it is.
    forget = getattr(model, "forget_unread_values", None) if UNKNOWN in outputs else None
    calls = forget(ops) if forget is not None else [op.input for op in ops]
    twin = _twins(ops, calls)
    step = model.step

    state: Hashable = model.init()
    linearized = 0
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, Hashable]] = []  # (call entry, state before it)
    best: list[int] = []
    best_pending = False  # stack grew beyond ``best`` since it was saved
    # The stack was never shorter than this since ``best`` was saved, so its first
    # ``kept`` entries are still best's: a save copies only the rest.
    kept = 0
    explored = 0
    entry = nxt[0]
    verdict = OK
    while nxt[0] != -1:
        explored += 1
        if explored % _CHECK_CLOCK_EVERY == 0 and time.time() > deadline:
            verdict = UNKNOWN_VERDICT
            break
        m = match[entry]
        if m != -1:  # a call
            i = opid[entry]
            t = twin[i]
            if t != -1 and not (linearized >> t) & 1:
                entry = nxt[entry]  # its twin first
                continue
            legal, after = step(state, calls[i], outputs[i])
            if legal:
                bit = linearized | (1 << i)
                memo = (bit, after)
                if memo not in seen:
                    seen.add(memo)
                    stack.append((entry, state))
                    state = after
                    linearized = bit
                    # lift the call and its return out of the list
                    p, q = prv[entry], nxt[entry]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    p, q = prv[m], nxt[m]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    if len(stack) > len(best):
                        best_pending = True
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        # a return whose operation is not linearized: backtrack
        if best_pending:
            del best[kept:]
            best += [opid[e] for e, _ in stack[kept:]]
            best_pending = False
            kept = len(stack)
        if not stack:
            verdict = ILLEGAL
            break
        entry, state = stack.pop()
        if len(stack) < kept:
            kept = len(stack)
        linearized &= ~(1 << opid[entry])
        m = match[entry]
        # unlift: the return first, then the call (the reverse of lift)
        p, q = prv[m], nxt[m]
        nxt[p] = m
        if q != -1:
            prv[q] = m
        p, q = prv[entry], nxt[entry]
        nxt[p] = entry
        if q != -1:
            prv[q] = entry
        entry = nxt[entry]

    result = PartitionResult(key=key, verdict=verdict, ops=ops, explored=explored)
    if verdict == OK:
        result.linearization = [opid[e] for e, _ in stack]
    else:
        if best_pending or len(stack) > len(best):
            best = [opid[e] for e, _ in stack]
        result.linearization = best
        if verdict == ILLEGAL:
            result.unplaced = _unplaced(ops, model, best)
    return result


def _states(ops: list[Operation], model: Model, order: list[int]) -> list[str]:
    state = model.init()
    out = []
    for i in order:
        _, state = model.step(state, ops[i].input, ops[i].output)
        out.append(model.describe_state(state))
    return out


def _unplaced(ops: list[Operation], model: Model, prefix: list[int]) -> list[tuple[int, str]]:
    """The operations that must come next after ``prefix`` and none of which fits.

    After a partial linearization, the next operation must be one invoked no later
    than the earliest return among the rest (intervals are closed).  The state is
    replayed from the ops themselves: the search's may hold the unread-value token."""
    state = model.init()
    for i in prefix:
        _, state = model.step(state, ops[i].input, ops[i].output)
    done = set(prefix)
    rest = [i for i in range(len(ops)) if i not in done]
    if not rest:
        return []
    earliest_return = min(ops[i].ret for i in rest)
    state_words = model.describe_state(state)
    why = []
    for i in rest:
        op = ops[i]
        if op.call > earliest_return:
            continue
        legal, _ = model.step(state, op.input, op.output)
        if legal:
            reason = (
                f"{model.describe_operation(op.input, op.output)} fits after the prefix, but every "
                "way of continuing from there failed"
            )
        else:
            reason = (
                f"{model.describe_operation(op.input, op.output)} is impossible when the state "
                f"is {state_words}"
            )
        why.append((i, reason))
    return why
