"""The Wing-Gong / Lowe search with memoisation, as Porcupine and Knossos do it.

The history is a doubly linked list of call and return entries in time order.  The
search walks it: at a call entry it tries to linearize that operation now (the model
step must be legal and the configuration reached, the linearized set and the new state,
must not have failed before, below); it then removes the call and its return from the
list and starts again from the head.  Reaching a return entry means the operation it belongs
to was not linearized before it returned: undo the last choice (backtrack) and try the
next call.  The history is linearizable iff the list empties, or holds only unanswered
operations that never returned: those take effect last, or never.

Ties: entries are sorted by time with calls before returns, so intervals are closed (an
operation invoked at the instant another returned may be ordered either way).
Operations that never returned have their return at the end of the history.

An operation whose outcome is unknown and that never returned is *free*: it may take
effect at any moment after its call, or never.  The others are *bound*.  A long faulty
run leaves dozens of free operations per key, most of which never took effect, and the
search is exponential in them.  What keeps such histories tractable (none of it changes a
verdict):

* a free read (the model's ``read_only``; also a read that returned without its answer)
  changes nothing and constrains nothing: it is left out of the search and placed in the
  linearization afterwards, after every operation that returned before it was invoked;
* the value of a free write that no operation ever reads or compares against (the
  model's ``forget_unread_values``) is replaced by one token: no step can tell such
  values apart, so such writes become equal calls (twins, below) and states that differ
  only in them are one state to the memo;
* free operations with equal calls (after the previous rule) are twins: either may stand
  wherever the other does, so the search linearizes twins in the order they were invoked
  only.  k twins cost k+1 choices, not 2^k;
* the search ends when every bound operation is linearized: the free ones left take
  effect last, or never;
* two orders of trying linearizations run in turns, and the first verdict is the answer
  (each search is exact).  Time order is Lowe's: a free op is tried as soon as it was
  invoked.  Returned first: from each configuration the bound candidates are tried first
  and the free ones only after all of those failed, in rounds that let at most 0, 1, 2,
  4, ... free ops take effect (a round that fails without ever reaching its budget is
  final), so a free write that did take effect is found by backtracking to just before
  the operation that shows it, not after every combination of the free writes before
  it.  On 32-client runs, returned-first decides in a second keys with 50-100 free ops
  that time order does not decide in a minute, and time order some keys of 2,000-4,000
  operations that returned-first does not (its early free ops stay candidates at every
  point where the bound ops are stuck, all the way down); the turns cost at most twice
  the better order.

Four more rules cut what both orders explore (2026-12-07); none loses a linearization.  The
*candidates* of a configuration are the ops left whose call entry comes before the first
return entry left: each was invoked no later than every op left returned.

* A free op whose step leaves the state as it was (a cas whose compare fails, a delete
  of an absent key) is never linearized.  A linearization that has it there stays one
  without it: every other op sees the same states, real time only loses a constraint,
  and a free op may never take effect.
* Forced moves.  An op is *still* when the model's ``changes_nothing`` says that, with
  its answer, it leaves every state in which it is legal as it was (a read with its
  answer, a cas answered not swapped, a delete answered that nothing was there).  While
  free ops are left, a configuration reached anew is first scanned for a bound still
  candidate that fits; the walk also stops at one it meets first.  It is then the only
  move tried from there: any linearization from that configuration stays one with that
  op moved to the front, since it fits there and changes nothing there, and changed
  nothing where it stood (it was legal there too), so every other op sees the same
  states; and it breaks no real-time order, being invoked no later than every op left
  returned.  Not so an op that merely changes nothing in this state (a write of the
  value there, a cas that returned without its answer): where it stood it may have
  changed the state.  Without the rule, the reads of 32 clients concurrent with dozens
  of free writes are tried in every order with every subset of those at each backtrack.
  (With no free op left the scan costs more than it saves: a history of 50 clients
  without unanswered ops took twice as long with it.)
* Memo by dominance.  A failed configuration is remembered as (bound ops linearized,
  state) with the set of free ops linearized, and one with the same bound ops and state
  and a superset of those free ops fails too: whatever continues it continues the failed
  one, since the free ops it spent more are ones the failed one may leave out.  Twins
  keep this true: from a configuration whose linearized twins are the first invoked of
  their kind (every one the search reaches), a linearization with twins out of order
  becomes one in order by giving the k-th twin taking effect the k-th earliest call of
  those left, which is no later.  Only failed configurations count, not the ones on the
  stack, whose other branches may still succeed first.  Configurations that differ only
  in which free ops were spent to reach a state (a free put then a free delete, or the
  delete alone) were most of the search on a 32-client run's key before the rule:
  527,000 configurations, 3,800 pairs of bound ops and state (key k1 of Raft seed
  240042, time order).
* Forgetting twins that cannot run short.  In a round of returned-first whose budget is
  below the number of free ops, a failure
  holds for the configurations with the same bound ops and state that spent at least as
  many free ops (they have at most as much budget left) and, kind by kind of twins,
  either spent no fewer of that kind or spent fewer but the failed one still had at
  least as many of that kind left already invoked (call entry before the first return
  entry left, so they stay candidates to the end) as its budget left: a continuation
  takes at most that many of the kind, and the failed one could have taken the same
  number of its own, equal calls at the same points.  So the memo keeps the count spent
  (in unary, above the ops' bits, so that one subset test decides it) and forgets the
  kinds that cannot run short; with no budget left it forgets which free ops were spent
  at all.  Without it, each round re-explored every way of having spent interchangeable
  free ops: 24.7M steps on the key above, 4.2M with it.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from consensuskit.check.linearizability.models import Model
from consensuskit.check.linearizability.operation import UNKNOWN, Operation

OK = "ok"
ILLEGAL = "illegal"
UNKNOWN_VERDICT = "unknown"
SKIPPED = "skipped"  # not checked: another part already failed

_CHECK_CLOCK_EVERY = 4096
_STEPS_KEPT_PER_OP = 1024
_NO_FREE_OPS = [0]  # the memo's free ops of a configuration of a part without any

# The orders in which the search tries linearizations (``_walk``): Lowe's, candidates in
# time order; and the ops that returned first, free ones after them, in rounds of a
# growing budget of free ops.
TIME_ORDER = "time-order"
RETURNED_FIRST = "returned-first"
ORDERS = (TIME_ORDER, RETURNED_FIRST)


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
    ops: list[Operation],
    model: Model,
    key: Any = None,
    deadline: float = math.inf,
    orders: tuple[str, ...] = ORDERS,
) -> PartitionResult:
    """Decide one sub-history.  ``ops[i].id`` need not be ``i``: results index ``ops``.

    ``deadline`` is a ``time.time()`` value after which the answer is "unknown".
    ``orders``: the search orders run in turns (ORDERS); each alone is exact, so tests
    run each alone."""
    started = time.perf_counter()
    read_only = getattr(model, "read_only", None)
    searched = [
        i
        for i, op in enumerate(ops)
        if not (op.output is UNKNOWN and read_only is not None and read_only(op.input))
    ]
    if len(searched) == len(ops):
        result = _search(ops, model, key, deadline, orders)
    else:
        result = _search([ops[i] for i in searched], model, key, deadline, orders)
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


@dataclass(slots=True)
class _Walk:
    """One search's outcome: its verdict (``None`` while it runs), the linearization or
    longest prefix found (op indices), and its steps."""

    verdict: str | None = None
    linearization: list[int] = field(default_factory=list)
    explored: int = 0


def _search(
    ops: list[Operation],
    model: Model,
    key: Any,
    deadline: float,
    orders: tuple[str, ...],
    budget: int | None = None,
) -> PartitionResult:
    """A search per order of ``orders`` (ORDERS), in turns of _CHECK_CLOCK_EVERY steps;
    the first verdict is the answer (each search is exact).  They differ only in the
    order they try linearizations, and each decides in seconds histories with many free
    ops that the other cannot decide in minutes (docs/linearizability.md).  ``budget``
    (for tests): each order runs the one round of that budget of free ops only."""
    for name in orders:
        if name not in ORDERS:
            raise ValueError(f"unknown search order {name!r}; valid: {', '.join(ORDERS)}")
    n = len(ops)
    # Entry e: 0 is the head sentinel; 1..2n are calls and returns in time order.
    order = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    opid = [-1] * (2 * n + 1)
    match = [-1] * (2 * n + 1)  # call entry -> its return entry
    call_entry = [0] * n
    for e, (_, is_return, i) in enumerate(order, start=1):
        opid[e] = i
        if is_return:
            match[call_entry[i]] = e
        else:
            call_entry[i] = e
    outputs = [op.output for op in ops]
    # The reductions of the model's methods serve unanswered operations: without any,
    # the history is searched as it is.
    forget = getattr(model, "forget_unread_values", None) if UNKNOWN in outputs else None
    calls = forget(ops) if forget is not None else [op.input for op in ops]
    twin = _twins(ops, calls)
    # Unanswered ops that never returned may take effect at any moment after their
    # call, or never: ``free[i]``.  The others are bound: all must be linearized.
    free = [op.output is UNKNOWN and op.pending for op in ops]
    changes_nothing = getattr(model, "changes_nothing", None)
    still = [
        not free[i] and changes_nothing is not None and changes_nothing(calls[i], outputs[i])
        for i in range(n)
    ]
    history = _History(opid, match, calls, outputs, twin, free, _kinds(twin, call_entry), still)
    if True not in free:
        orders = orders[:1]  # without free ops the orders are one
    walks = [_Walk() for _ in orders]
    turns = [
        _walk(history, model, walk, free_last=name == RETURNED_FIRST, only_budget=budget)
        for name, walk in zip(orders, walks, strict=True)
    ]
    decided = verdict = None
    while verdict is None:
        for walk, turn in zip(walks, turns, strict=True):
            next(turn, None)
            if walk.verdict is not None:
                decided, verdict = walk, walk.verdict
                break
        else:
            if time.time() > deadline:
                decided, verdict = max(walks, key=lambda walk: len(walk.linearization)), UNKNOWN_VERDICT
    assert decided is not None
    result = PartitionResult(
        key=key,
        verdict=verdict,
        ops=ops,
        explored=sum(walk.explored for walk in walks),
        linearization=decided.linearization,
    )
    if verdict == ILLEGAL:
        result.unplaced = _unplaced(ops, model, decided.linearization)
    return result


def _kinds(twin: list[int], call_entry: list[int]) -> list[tuple[int, list[int]]]:
    """The kinds of free ops of two or more twins: (the ops' bits, their call entries in
    invocation order)."""
    members: dict[int, list[int]] = {}  # first twin -> the kind's ops in invocation order
    first = list(range(len(twin)))
    for i in sorted(range(len(twin)), key=lambda i: call_entry[i]):
        if twin[i] != -1:
            first[i] = first[twin[i]]
            members[first[i]].append(i)
        else:
            members[i] = [i]
    return [
        (sum(1 << i for i in kind), [call_entry[i] for i in kind])
        for kind in members.values()
        if len(kind) > 1
    ]


@dataclass(slots=True)
class _History:
    """One part as the search walks it (``_search`` builds it)."""

    opid: list[int]  # entry -> op
    match: list[int]  # call entry -> its return entry; -1 for a return
    calls: list[Any]  # op -> its call, unread values forgotten
    outputs: list[Any]
    twin: list[int]  # op -> the free op of an equal call invoked just before it, or -1
    free: list[bool]
    kinds: list[tuple[int, list[int]]]  # _kinds
    still: list[bool]  # op -> bound, and changes nothing wherever it is legal


def _walk(
    history: _History,
    model: Model,
    walk: _Walk,
    *,
    free_last: bool,
    only_budget: int | None = None,
) -> Iterator[None]:
    """The search, yielding every _CHECK_CLOCK_EVERY steps; its outcome goes to ``walk``.

    ``free_last``: from each configuration, try the bound ops first and the free ones
    only after all of those failed (the free phase), in rounds that let at most 0, 1, 2,
    4, ... free ops take effect; a round that failed without ever reaching its budget
    failed for good.  Otherwise candidates are tried in time order, in one round.

    Either way, a configuration reached anew is first scanned for a bound candidate that
    fits and leaves the state as it is (a forced move: the only one tried from there),
    and a free op that would leave the state as it is is never linearized (the module
    docstring says why neither loses a linearization)."""
    opid, match, calls, outputs = history.opid, history.match, history.calls, history.outputs
    twin, free, kinds, still = history.twin, history.free, history.kinds, history.still
    n = len(free)
    free_total = free.count(True)
    free_mask = sum(1 << i for i in range(n) if free[i])
    step = model.step
    # Each op's steps by state before it: (legal, state after, the same state).  The
    # search asks the same few hundred of them millions of times.
    outcomes: list[dict[Hashable, tuple[bool, Hashable, bool]]] = [{} for _ in range(n)]

    uncached: dict[Hashable, tuple[bool, Hashable, bool]] = {}  # never written

    def stepped(i: int, state: Hashable) -> tuple[bool, Hashable, bool]:
        """Op ``i``'s step from ``state``, not in the cache: taken, and cached.  (The hit
        is looked up inline, where the search asks: a call there costs.)"""
        legal, after = step(state, calls[i], outputs[i])
        outcome = (legal, after, after == state)
        cached = outcomes[i]
        if len(cached) < _STEPS_KEPT_PER_OP:
            if cached is not uncached:
                cached[state] = outcome
        else:  # so many states that they seldom recur (appends): keep none
            outcomes[:] = [uncached] * n
        return outcome

    nxt = list(range(1, 2 * n + 2))
    nxt[-1] = -1
    prv = list(range(-1, 2 * n))
    best: list[int] = []
    explored = 0
    next_yield = _CHECK_CLOCK_EVERY
    # ``only_budget`` (tests): the round of that budget only, which fails if no
    # linearization lets at most that many free ops take effect.
    budget = (0 if free_last else free_total) if only_budget is None else only_budget

    while True:
        # Only a budget below the number of free ops can run short: then the memo keeps
        # how many were spent and may forget which (_forgettable).
        bounded = budget < free_total
        state: Hashable = model.init()
        linearized = 0
        bound_left = n - free_total
        free_left = free_total
        budget_met = False
        # (bound ops linearized, state) -> the sets of free ops linearized with them in
        # configurations that failed, none a subset of another.
        failed: dict[tuple[int, Hashable], list[int]] = {}
        # (call entry, state before it, free phase, forced move)
        stack: list[tuple[int, Hashable, bool, bool]] = []
        round_best: list[int] = []
        best_pending = False  # stack grew beyond ``round_best`` since it was saved
        # The stack was never shorter than this since ``round_best`` was saved, so its
        # first ``kept`` entries are still round_best's: a save copies only the rest.
        kept = 0
        free_phase = False
        fresh = True  # a configuration not yet scanned for a forced move
        entry = nxt[0]
        verdict = OK
        while bound_left:
            explored += 1
            if explored >= next_yield:
                next_yield = explored + _CHECK_CLOCK_EVERY
                # What an "unknown" verdict would show if the time ran out here.
                walk.explored = explored
                walk.linearization = max(best, round_best, key=len)
                if len(stack) > len(walk.linearization):
                    walk.linearization = [opid[e] for e, _, _, _ in stack]
                yield
            forced = False
            m = -1
            if fresh:
                fresh = False
                entry = nxt[0]
                # A bound candidate that fits and changes nothing: take it and only it.
                # (With no free op left the scan costs more than it saves: the walk
                # meets such a candidate first often enough, below.)
                e = entry if free_left else -1
                while e != -1 and match[e] != -1:
                    i = opid[e]
                    if still[i]:
                        explored += 1
                        outcome = outcomes[i].get(state)
                        if outcome is None:
                            outcome = stepped(i, state)
                        legal, after, same = outcome
                        if legal:
                            forced = True
                            entry, m = e, match[e]
                            break
                    e = nxt[e]
            if not forced:
                m = match[entry]
            if m != -1:  # a call
                i = opid[entry]
                if not forced:
                    if free_last and free[i] is not free_phase:
                        entry = nxt[entry]
                        continue
                    t = twin[i]
                    if t != -1 and not (linearized >> t) & 1:
                        entry = nxt[entry]  # its twin first
                        continue
                    if free[i] and free_total - free_left >= budget:
                        budget_met = True
                        entry = nxt[entry]
                        continue
                    outcome = outcomes[i].get(state)
                    if outcome is None:
                        outcome = stepped(i, state)
                    legal, after, same = outcome
                    if same:
                        if free[i]:
                            legal = False  # a free op that changes nothing may as well never happen
                        else:
                            forced = legal and still[i]
                if legal:
                    bit = linearized | (1 << i)
                    if not free_mask:  # (the common case, kept cheap)
                        fits = (bit, after) not in failed
                    else:
                        freed = bit & free_mask
                        fits = True
                        known = failed.get((bit ^ freed, after))
                        if known is not None:
                            if bounded:
                                freed |= ((1 << (free_total - free_left + free[i])) - 1) << n
                            for f in known:
                                if not f & ~freed:
                                    fits = False  # failed before with these free ops or fewer
                                    break
                    if fits:
                        stack.append((entry, state, free_phase, forced))
                        state = after
                        linearized = bit
                        if free[i]:
                            free_left -= 1
                        else:
                            bound_left -= 1
                        free_phase = False
                        # lift the call and its return out of the list
                        p, q = prv[entry], nxt[entry]
                        nxt[p] = q
                        if q != -1:
                            prv[q] = p
                        p, q = prv[m], nxt[m]
                        nxt[p] = q
                        if q != -1:
                            prv[q] = p
                        if len(stack) > len(round_best):
                            best_pending = True
                        fresh = True
                        continue
                if not forced:
                    entry = nxt[entry]
                    continue
                # the forced move's configuration was seen: this one fails with it
            # a return whose operation is not linearized: the free ops before it next,
            # or backtrack
            elif free_last and not free_phase and free_left:
                free_phase = True
                entry = nxt[0]
                continue
            if best_pending:
                del round_best[kept:]
                round_best += [opid[e] for e, _, _, _ in stack[kept:]]
                best_pending = False
                kept = len(stack)
            was_forced = True
            while was_forced and stack:
                if not free_mask:
                    failed[linearized, state] = _NO_FREE_OPS
                else:
                    freed = linearized & free_mask
                    memo = (linearized ^ freed, state)
                    if bounded:
                        freed = _forgettable(freed, free_total - free_left, budget, n, kinds, nxt, match)
                    known = failed.get(memo)
                    if known is None:
                        failed[memo] = [freed]
                    else:
                        known[:] = [f for f in known if freed & ~f]
                        known.append(freed)
                entry, state, free_phase, was_forced = stack.pop()
                i = opid[entry]
                linearized &= ~(1 << i)
                if free[i]:
                    free_left += 1
                else:
                    bound_left += 1
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
            if len(stack) < kept:
                kept = len(stack)
            if was_forced:  # the stack emptied on a forced move: nothing else to try
                verdict = ILLEGAL
                break
            entry = nxt[entry]
        walk.explored = explored
        if verdict == OK:
            # the free ops left take effect last (in any order: none of them returned)
            walk.linearization = [opid[e] for e, _, _, _ in stack] + [
                i for i in range(n) if not (linearized >> i) & 1
            ]
            walk.verdict = OK
            return
        if len(round_best) > len(best):
            best = round_best
        if not budget_met or only_budget is not None:
            walk.linearization = best
            walk.verdict = ILLEGAL
            return
        # Failed within the budget: the list is whole again (every lift undone).
        budget = max(1, 2 * budget)


def _forgettable(
    freed: int,
    spent: int,
    budget: int,
    n: int,
    kinds: list[tuple[int, list[int]]],
    nxt: list[int],
    match: list[int],
) -> int:
    """A failed configuration's free ops ``freed`` as the memo keeps them in a round of
    a binding budget (module docstring): without the kinds of twins that have at least
    as many left, already invoked, as the budget has left, and with how many free ops
    were spent, in unary above bit ``n``."""
    unary = ((1 << spent) - 1) << n
    left = budget - spent
    if left <= 0:
        return unary  # no more free op may take effect: which ones did is all one
    first_return = nxt[0]
    while match[first_return] != -1:
        first_return = nxt[first_return]
    for mask, entries in kinds:
        used = (freed & mask).bit_count()
        if used and bisect_left(entries, first_return) - used >= left:
            freed &= ~mask
    return freed | unary


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
