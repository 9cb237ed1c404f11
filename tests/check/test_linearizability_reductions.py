"""The search's reductions for unanswered operations (search.py's module docstring):
they must leave every verdict as the full search gives it, and make histories with many
unanswered operations cheap.

The equivalence is a property: random small histories (a few values, so reads do see
writes; random answers, so many histories are illegal; some operations unanswered) get
the same verdict from a model, from the same model with its two optional methods
hidden (the full search) and from a checker written straight from the definition (no
reduction at all), and a linearization that is a real one when the verdict is ok.
"""

from __future__ import annotations

import gzip
import math
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.check.linearizability import (
    UNKNOWN,
    Call,
    KVModel,
    Operation,
    RegisterModel,
    check_partition,
    read_history,
)
from consensuskit.check.linearizability.models import UNREAD, forget_unread_values
from consensuskit.check.linearizability.search import (
    ORDERS,
    RETURNED_FIRST,
    TIME_ORDER,
    _forgettable,
    _search,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "linearizability"


class FullSearch:
    """A model with ``read_only`` and ``forget_unread_values`` hidden."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name = model.name

    def init(self) -> Any:
        return self.model.init()

    def step(self, state: Any, call: Call, output: Any) -> Any:
        return self.model.step(state, call, output)

    def describe_state(self, state: Any) -> str:
        return self.model.describe_state(state)

    def describe_operation(self, call: Call, output: Any) -> str:
        return self.model.describe_operation(call, output)


VALUES = (1, 2, 3)


@st.composite
def kv_histories(draw: Any, most_unanswered: bool = False) -> list[Operation]:
    """Up to 9 ops, three in four answered; ``most_unanswered``: up to 11, three in four
    unanswered writes (a faulty run's shape, where the free ops' reductions matter)."""
    ops = []
    for i in range(draw(st.integers(min_value=1, max_value=11 if most_unanswered else 9))):
        kind = draw(st.sampled_from(("get", "put", "put", "cas", "delete")))
        call = draw(st.floats(min_value=0, max_value=10))
        answered = draw(st.booleans()) or draw(st.booleans())
        if most_unanswered and kind != "get":
            answered = not answered
        ret = call + draw(st.floats(min_value=0, max_value=4)) if answered else math.inf
        version = draw(st.integers(min_value=0, max_value=4))
        value = draw(st.sampled_from((None, *VALUES)))
        if kind == "get":
            inp = Call("get", key="k")
            out: Any = {"value": value, "version": version}
        elif kind == "put":
            inp = Call("put", key="k", value=draw(st.sampled_from((*VALUES, 7, 8, 9))))
            out = {"version": version}
        elif kind == "cas":
            new, expected = draw(st.sampled_from((*VALUES, 7, 8))), draw(st.sampled_from(VALUES))
            inp = Call("cas", key="k", value=new, expected=expected)
            if draw(st.booleans()):
                out = {"swapped": True, "version": version}
            else:
                out = {"swapped": False, "value": value, "version": version}
        else:
            inp = Call("delete", key="k")
            out = {"deleted": draw(st.booleans())}
        if answered and draw(st.integers(0, 5)) == 0:
            # returned, but its answer was lost: it took effect, before it returned
            out = UNKNOWN
        ops.append(Operation(i, f"c{i}", call, ret, inp, out if answered else UNKNOWN))
    return ops


@st.composite
def faulty_kv_histories(draw: Any) -> list[Operation]:
    """A faulty run's shape in small: a sequential execution (op i takes effect at time
    i) in which many writes went unanswered, some of those took effect and some never
    did, so that reads and versions after them can only be explained by the right free
    ops at the right points (the rounds' budgets, the memo's kinds of twins and forced
    moves all matter); and one answer in four corrupted, so many are not linearizable."""
    model = KVModel()
    state = model.init()
    ops = []
    for i in range(draw(st.integers(min_value=1, max_value=12))):
        kind = draw(st.sampled_from(("get", "get", "put", "put", "cas", "delete")))
        if kind == "get":
            inp = Call("get", key="k")
        elif kind == "put":
            inp = Call("put", key="k", value=draw(st.sampled_from((1, 2, 7, 8, 9))))
        elif kind == "cas":
            inp = Call(
                "cas", key="k", value=draw(st.sampled_from((3, 7, 8))), expected=draw(st.sampled_from(VALUES))
            )
        else:
            inp = Call("delete", key="k")
        call = i - draw(st.integers(min_value=0, max_value=3)) - 0.5
        unanswered = kind != "get" and draw(st.booleans())
        if unanswered and draw(st.booleans()):
            # never took effect
            ops.append(Operation(i, f"c{i}", call, math.inf, inp, UNKNOWN))
            continue
        value, version = state if state is not None else (None, 0)
        _, state = model.step(state, inp, UNKNOWN)
        if kind == "get":
            out: Any = {"value": value, "version": version}
        elif kind == "put":
            out = {"version": state[1]}
        elif kind == "cas":
            swapped = state != (value, version) if value is not None else False
            out = (
                {"swapped": True, "version": state[1]}
                if swapped
                else {"swapped": False, "value": value, "version": version}
            )
        else:
            out = {"deleted": value is not None or version != 0}
        if unanswered:
            ops.append(Operation(i, f"c{i}", call, math.inf, inp, UNKNOWN))
        else:
            if kind != "get" and draw(st.integers(0, 5)) == 0:
                out = UNKNOWN  # returned, answer lost: a cas of it changes the state or not
            ret = i + draw(st.integers(min_value=0, max_value=3)) + 0.5
            ops.append(Operation(i, f"c{i}", call, ret, inp, out))
    answered = [n for n, op in enumerate(ops) if op.output is not UNKNOWN]
    if answered and draw(st.integers(0, 3)) == 0:
        n = draw(st.sampled_from(answered))
        op = ops[n]
        wrong = dict(op.output)
        field = draw(st.sampled_from(sorted(wrong)))
        wrong[field] = draw(st.sampled_from((None, True, False, 0, 1, 2, 3, 7)))
        ops[n] = Operation(op.id, op.client, op.call, op.ret, op.input, wrong)
    return ops


@st.composite
def version_gap_histories(draw: Any) -> list[Operation]:
    """Answered puts whose versions show how many writes took effect between them, and
    unanswered puts of values nobody reads (twins, once forgotten) and deletes, invoked
    at random points, of which just enough, or one too few, could fill the gaps: where
    the rounds' budgets and the memo's forgetting of twins that cannot run short are
    exact or wrong by one."""
    ops: list[Operation] = []
    version = 0
    t = 0.0
    for i in range(draw(st.integers(min_value=2, max_value=12))):
        t += draw(st.sampled_from((0.0, 0.5, 1.0)))
        kind = draw(st.sampled_from(("put", "put", "free-put", "free-put", "free-delete", "get")))
        if kind == "free-put":
            ops.append(Operation(i, f"c{i}", t, math.inf, Call("put", key="k", value=100 + i), UNKNOWN))
        elif kind == "free-delete":
            ops.append(Operation(i, f"c{i}", t, math.inf, Call("delete", key="k"), UNKNOWN))
        elif kind == "put":
            version += 1 + draw(st.integers(min_value=0, max_value=2))  # writes unseen between
            ret = t + draw(st.sampled_from((0.0, 0.5, 2.0)))
            ops.append(Operation(i, f"c{i}", t, ret, Call("put", key="k", value=i), {"version": version}))
        else:
            value = draw(st.sampled_from([None] + [op.input.value for op in ops if op.ret != math.inf]))
            seen = {"value": value, "version": draw(st.integers(min_value=0, max_value=version + 1))}
            ops.append(
                Operation(i, f"c{i}", t, t + draw(st.sampled_from((0.0, 1.0))), Call("get", key="k"), seen)
            )
    return ops


@st.composite
def register_histories(draw: Any) -> list[Operation]:
    ops = []
    for i in range(draw(st.integers(min_value=1, max_value=9))):
        kind = draw(st.sampled_from(("read", "write", "write", "cas")))
        call = draw(st.floats(min_value=0, max_value=10))
        answered = draw(st.booleans()) or draw(st.booleans())
        ret = call + draw(st.floats(min_value=0, max_value=4)) if answered else math.inf
        if kind == "read":
            inp, out = Call("read"), draw(st.sampled_from((None, *VALUES)))
        elif kind == "write":
            inp, out = Call("write", value=draw(st.sampled_from((*VALUES, 7, 8)))), None
        else:
            new, expected = draw(st.sampled_from((*VALUES, 7))), draw(st.sampled_from((None, *VALUES)))
            inp = Call("cas", value=new, expected=expected)
            out = draw(st.booleans())
        ops.append(Operation(i, f"c{i}", call, ret, inp, out if answered else UNKNOWN))
    return ops


def assert_a_real_linearization(
    ops: list[Operation], model: Any, order: list[int], whole: bool = True
) -> None:
    """``order`` is a linearization of ``ops`` (with ``whole=False``, of some of them: the
    longest legal prefix an illegal history's explanation shows)."""
    if whole:
        assert sorted(order) == list(range(len(ops)))
    else:
        assert len(set(order)) == len(order)
    state = model.init()
    for n, i in enumerate(order):
        legal, state = model.step(state, ops[i].input, ops[i].output)
        assert legal, f"op {i} is illegal at position {n}"
        # real time: nothing placed after op i returned before op i was invoked
        assert all(not ops[j].ret < ops[i].call for j in order[n + 1 :])


def by_definition(ops: list[Operation], model: Any, most_free: int | None = None) -> bool:
    """Linearizable straight from the definition, no search tricks: some order of the ops
    that respects real time and the model, in which every op that never returned with an
    unknown outcome may also be left out (and, with ``most_free``, at most that many of
    those are placed).  A configuration (ops placed, state) that failed once fails again,
    so failures are memoised; nothing else is pruned."""
    free = [op.output is UNKNOWN and op.pending for op in ops]
    failed: set[tuple[frozenset[int], Any]] = set()

    def extend(placed: frozenset[int], state: Any) -> bool:
        left = [i for i in range(len(ops)) if i not in placed]
        if all(free[i] for i in left):
            return True
        if (placed, state) in failed:
            return False
        earliest_return = min(ops[i].ret for i in left)
        spent = sum(free[i] for i in placed)
        for i in left:
            if ops[i].call > earliest_return:
                continue  # some op still to place returned before this one was called
            if free[i] and most_free is not None and spent >= most_free:
                continue
            legal, after = model.step(state, ops[i].input, ops[i].output)
            if legal and extend(placed | {i}, after):
                return True
        failed.add((placed, state))
        return False

    return extend(frozenset(), model.init())


def same_verdict(ops: list[Operation], model: Any) -> None:
    """Each search order alone (tiny histories are decided by the first order's first
    turn, so the default runs only that one), with and without the model's methods,
    gives the definition's verdict."""
    expected = "ok" if by_definition(ops, model) else "illegal"
    for order in ORDERS:
        for searched_model in (model, FullSearch(model)):
            result = check_partition(ops, searched_model, orders=(order,))
            assert result.verdict == expected, (order, searched_model)
            assert_a_real_linearization(ops, model, result.linearization, whole=expected == "ok")


@settings(max_examples=600, deadline=None)
@given(kv_histories())
def test_the_kv_model_reduced_and_in_full_agree(ops: list[Operation]) -> None:
    same_verdict(ops, KVModel())


@settings(max_examples=600, deadline=None)
@given(kv_histories(most_unanswered=True))
def test_the_kv_model_reduced_and_in_full_agree_when_most_writes_are_unanswered(ops: list[Operation]) -> None:
    same_verdict(ops, KVModel())


@settings(max_examples=800, deadline=None)
@given(faulty_kv_histories())
def test_the_kv_model_reduced_and_in_full_agree_on_faulty_runs(ops: list[Operation]) -> None:
    same_verdict(ops, KVModel())


@settings(max_examples=800, deadline=None)
@given(version_gap_histories())
def test_the_kv_model_reduced_and_in_full_agree_on_version_gaps(ops: list[Operation]) -> None:
    same_verdict(ops, KVModel())


@settings(max_examples=600, deadline=None)
@given(st.one_of(version_gap_histories(), faulty_kv_histories()), st.integers(min_value=0, max_value=4))
def test_each_round_of_returned_first_is_exact_for_its_budget(ops: list[Operation], budget: int) -> None:
    """A round of returned-first fails iff no linearization lets at most its budget of
    free ops take effect.  The rounds end in one whose budget cannot run short, so a
    round that wrongly fails only costs time: this is where the memo's forgetting of the
    free ops that cannot run short (search.py) is checked exactly."""
    searched = [op for op in ops if not (op.output is UNKNOWN and op.pending and op.input.kind == "get")]
    expected = "ok" if by_definition(searched, KVModel(), most_free=budget) else "illegal"
    result = _search(searched, KVModel(), None, math.inf, (RETURNED_FIRST,), budget=budget)
    assert result.verdict == expected


@settings(max_examples=400, deadline=None)
@given(register_histories())
def test_the_cas_register_reduced_and_in_full_agree(ops: list[Operation]) -> None:
    same_verdict(ops, RegisterModel(cas=True))


def test_unanswered_writes_of_values_no_output_shows_and_no_cas_expects_are_forgotten() -> None:
    ops = [
        Operation(0, "a", 0, 1, Call("put", key="k", value=1), {"version": 1}),
        Operation(1, "b", 0, math.inf, Call("put", key="k", value=2), UNKNOWN),
        Operation(2, "c", 0, math.inf, Call("cas", key="k", value=3, expected=4), UNKNOWN),
        Operation(3, "d", 0, 1, Call("cas", key="k", value=4, expected=5), {"swapped": False, "value": 6}),
        Operation(4, "e", 0, math.inf, Call("put", key="k", value=5), UNKNOWN),  # a cas expects 5
        Operation(5, "f", 0, math.inf, Call("put", key="k", value=6), UNKNOWN),  # a cas saw 6
        Operation(6, "g", 0, 1, Call("put", key="k", value=7), {"version": 2}),  # answered
        Operation(7, "h", 2, 3, Call("get", key="k"), {"value": 1, "version": 3}),
    ]
    calls = forget_unread_values(ops, ("put",))
    assert [c.value for c in calls] == [1, UNREAD, UNREAD, 4, 5, 6, 7, None]
    # append concatenates values: the kv model forgets none then
    with_append = [*ops, Operation(8, "i", 4, 5, Call("append", key="k", value="x"), None)]
    assert [c.value for c in KVModel().forget_unread_values(with_append)] == [1, 2, 3, 4, 5, 6, 7, None, "x"]


def hard_unless_reduced(pending: list[Call]) -> list[Operation]:
    """The shape of a long faulty run's key: a put answered, then ``pending`` unanswered
    ops, then reads showing that none of them took effect (yet).  The full search tries
    the unanswered ops before the reads in every combination first: 2^len(pending)."""
    ops = [Operation(0, "w", -1, -0.5, Call("put", key="k", value="seen"), {"version": 1})]
    ops += [Operation(i, f"p{i}", i / 2, math.inf, call, UNKNOWN) for i, call in enumerate(pending, start=1)]
    seen = {"value": "seen", "version": 1}
    ops += [Operation(len(ops) + n, "r", 100 + n, 100.5 + n, Call("get", key="k"), seen) for n in range(20)]
    return ops


def decide(ops: list[Operation], order: str = TIME_ORDER) -> Any:
    """The verdict of the search in ``order`` alone, found within a polynomial number of
    steps (k^2 for k unanswered ops, with each skip of a twin one step); without the
    rule under test, no verdict in 5 s.  (The other order tries the reads that returned
    first and needs none of these rules for this shape.)"""
    result = check_partition(ops, KVModel(), deadline=time.time() + 5, orders=(order,))
    assert result.verdict == "ok"
    assert_a_real_linearization(ops, KVModel(), result.linearization)
    return result


def test_unanswered_reads_are_left_out_of_the_search() -> None:
    # Reads that differ (here by a value a get ignores, as a request id would) are no
    # twins: without the rule, a delete before them costs 2^30 orders.
    reads = [Call("get", key="k", value=i) for i in range(30)]
    assert decide(hard_unless_reduced([Call("delete", key="k"), *reads])).explored < 1000


def test_unanswered_twins_are_linearized_in_invocation_order() -> None:
    # 40 unanswered deletes: equal calls, so 41 choices, not 2^40.
    assert decide(hard_unless_reduced([Call("delete", key="k")] * 40)).explored < 50_000


def test_unread_writes_become_twins() -> None:
    # 40 unanswered puts of values nobody reads: forgotten, then twins.
    pending = [Call("put", key="k", value=1000 + i) for i in range(40)]
    assert decide(hard_unless_reduced(pending)).explored < 50_000


def test_a_faulty_runs_key_with_dozens_of_unanswered_writes_is_decided_returned_first() -> None:
    """A 32-client Raft run's key (tests/data/linearizability/README.md): 56 unanswered
    writes, few of which took effect.  Trying the ops that returned before the free ones,
    with at most 0, 1, 2, 4, ... free ops taking effect per round, decides it in 1M
    steps; in time order there is no verdict in 60 s (about 100M steps)."""
    ops = read_history(DATA / "raft-240010-32-clients-k0.jsonl", "consensuskit")
    result = check_partition(ops, KVModel(), deadline=time.time() + 60, orders=(RETURNED_FIRST,))
    assert result.verdict == "ok"
    assert_a_real_linearization(ops, KVModel(), result.linearization)
    assert result.explored < 5_000_000
    assert check_partition(ops, KVModel(), deadline=time.time() + 60).verdict == "ok"


def test_a_faulty_runs_long_key_is_decided_in_time_order(tmp_path: Path) -> None:
    """The first 20 s of a 32-client Raft run's key (2,095 ops, 47 unanswered): decided
    in time order in about 3M steps, with no verdict returned-first in 20 s (about
    100M): the free ops invoked early stay candidates at every point where the ops that
    returned are stuck, all the way down the history.  The default runs both orders in
    turns and decides it."""
    path = tmp_path / "history.jsonl"
    path.write_bytes(gzip.decompress((DATA / "raft-240005-32-clients-k2-first-20s.jsonl.gz").read_bytes()))
    ops = read_history(path, "consensuskit")
    result = check_partition(ops, KVModel(), deadline=time.time() + 60, orders=(TIME_ORDER,))
    assert result.verdict == "ok"
    assert_a_real_linearization(ops, KVModel(), result.linearization)
    assert result.explored < 10_000_000
    assert check_partition(ops, KVModel(), deadline=time.time() + 60).verdict == "ok"


def read_gzipped(tmp_path: Path, name: str) -> list[Operation]:
    path = tmp_path / name.removesuffix(".gz")
    path.write_bytes(gzip.decompress((DATA / name).read_bytes()))
    return read_history(path, "consensuskit")


def test_forced_moves_decide_a_faulty_runs_key_in_time_order(tmp_path: Path) -> None:
    """Key k0 of a 32-client Raft run (931 ops, 67 unanswered writes): before forced
    moves and the memo by dominance (search.py) neither order gave a verdict in 60 s
    (about 90M steps); time order now decides it in about 200,000 steps.  Dozens of
    reads concurrent with each other and with free writes: each read that fits is taken
    at once instead of trying every subset of them after every subset of free ops."""
    ops = read_gzipped(tmp_path, "raft-240042-32-clients-k0.jsonl.gz")
    result = check_partition(ops, KVModel(), deadline=time.time() + 60, orders=(TIME_ORDER,))
    assert result.verdict == "ok"
    assert_a_real_linearization(ops, KVModel(), result.linearization)
    assert result.explored < 2_000_000


def test_budgeted_rounds_forget_the_free_ops_that_cannot_run_short(tmp_path: Path) -> None:
    """Key k1 of the same run (959 ops, 56 unanswered writes, 31 of them puts of values
    nobody read): its linearization needs 8 free ops to take effect, so returned-first
    runs rounds of budget 0 to 8.  The memo forgetting, in each round, which of the
    interchangeable unread puts were spent while more were left than the budget decides
    it in about 4M steps, 25M without; the search before 2026-12-07 gave no verdict in
    60 s in either order."""
    ops = read_gzipped(tmp_path, "raft-240042-32-clients-k1.jsonl.gz")
    result = check_partition(ops, KVModel(), deadline=time.time() + 60, orders=(RETURNED_FIRST,))
    assert result.verdict == "ok"
    assert_a_real_linearization(ops, KVModel(), result.linearization)
    assert result.explored < 10_000_000
    assert check_partition(ops, KVModel(), deadline=time.time() + 60).verdict == "ok"


def test_the_memo_forgets_only_the_twins_that_cannot_run_short() -> None:
    """_forgettable on one kind of four twins (ops 0-3), whose call entries are 1-4 or
    1, 2, 6, 7, the first return entry left being 5.  A kind is forgotten when at
    least as many of it are left, already invoked, as the budget has left; the count
    spent is kept in unary above bit n (here 4); with no budget left only that count."""
    n = 4
    nxt = [1, 2, 3, 4, 5, -1]
    match = [-1, 9, 9, 9, 9, -1]  # entries 1-4 are calls, 5 a return
    unary = [((1 << k) - 1) << n for k in range(6)]
    invoked = [(0b1111, [1, 2, 3, 4])]
    # one spent, 2 of budget left, 3 left invoked: forgotten
    assert _forgettable(0b0001, 1, 3, n, invoked, nxt, match) == unary[1]
    # two spent, 2 of budget left, 2 left invoked: forgotten
    assert _forgettable(0b0011, 2, 4, n, invoked, nxt, match) == unary[2]
    # three spent, 2 of budget left, 1 left: kept
    assert _forgettable(0b0111, 3, 5, n, invoked, nxt, match) == 0b0111 | unary[3]
    # two of the four not invoked yet: one spent, 2 of budget left, 1 left invoked: kept
    late = [(0b1111, [1, 2, 6, 7])]
    assert _forgettable(0b0001, 1, 3, n, late, nxt, match) == 0b0001 | unary[1]
    # no budget left: which free ops were spent is all one
    assert _forgettable(0b0011, 2, 2, n, late, nxt, match) == unary[2]
