"""The search's reductions for unanswered operations (search.py's module docstring):
they must leave every verdict as the full search gives it, and make histories with many
unanswered operations cheap.

The equivalence is a property: random small histories (a few values, so reads do see
writes; random answers, so many histories are illegal; some operations unanswered) get
the same verdict from a model and from the same model with its two optional methods
hidden (the full search), and a linearization that is a real one when the verdict is ok.
"""

from __future__ import annotations

import math
import time
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
)
from consensuskit.check.linearizability.models import UNREAD, forget_unread_values


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
def kv_histories(draw: Any) -> list[Operation]:
    ops = []
    for i in range(draw(st.integers(min_value=1, max_value=9))):
        kind = draw(st.sampled_from(("get", "put", "put", "cas", "delete")))
        call = draw(st.floats(min_value=0, max_value=10))
        answered = draw(st.booleans()) or draw(st.booleans())
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
        if kind == "get" and answered and draw(st.integers(0, 5)) == 0:
            out = UNKNOWN  # returned, but its answer was lost: still a read of nothing
        ops.append(Operation(i, f"c{i}", call, ret, inp, out if answered else UNKNOWN))
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


def same_verdict(ops: list[Operation], model: Any) -> None:
    reduced = check_partition(ops, model)
    full = check_partition(ops, FullSearch(model))
    assert reduced.verdict == full.verdict
    if reduced.verdict == "ok":
        assert_a_real_linearization(ops, model, reduced.linearization)
    else:
        for result in (reduced, full):
            assert_a_real_linearization(ops, model, result.linearization, whole=False)


@settings(max_examples=600, deadline=None)
@given(kv_histories())
def test_the_kv_model_reduced_and_in_full_agree(ops: list[Operation]) -> None:
    same_verdict(ops, KVModel())


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


def decide(ops: list[Operation]) -> Any:
    """The verdict, found within a polynomial number of steps (k^2 for k unanswered ops,
    with each skip of a twin one step); without the rule under test, no verdict in 5 s."""
    result = check_partition(ops, KVModel(), deadline=time.time() + 5)
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
