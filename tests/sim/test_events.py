"""sim/events.py: ``push_event``/``pop_event`` pop exactly in the order of ``heapq`` on
the entry tuples, however entries arrive (equal times, popped entries queued again, 5
and 5.0), with the hand-written heap of the compiled build (``native_push``/
``native_pop``, run interpreted here too) and with what the build picked."""

from __future__ import annotations

import heapq
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.sim import events

# A few times, so that many entries share one; ints beside floats of equal value.
TIMES = st.sampled_from([0.0, -0.0, 0.5, 1, 1.0, 1.5, 2, 3.25, 1e9])
SCRIPTS = st.lists(st.tuples(st.sampled_from(["push", "push", "again", "pop"]), TIMES), max_size=80)
HEAPS = {
    "native-heap": (events.native_push, events.native_pop),
    "picked": (events.push_event, events.pop_event),
}


@pytest.mark.parametrize("heap_kind", sorted(HEAPS))
@settings(max_examples=200, deadline=None)
@given(script=SCRIPTS)
def test_pops_follow_the_order_of_a_heap_of_tuples(heap_kind, script):
    push, pop = HEAPS[heap_kind]
    queue, heap = [], []
    seq = itertools.count()
    popped, expected = [], []
    for action, t in script:
        if action == "push":
            entry = (t, next(seq), "new")
        elif action == "again" and popped:
            entry = (t, popped[0][1], "again")  # a deferred event queued again: its old seq
        else:
            if heap:
                assert queue[0] == heap[0]
                popped.append(pop(queue))
                expected.append(heapq.heappop(heap))
            continue
        if any(e[1] == entry[1] for e in heap):
            continue  # the simulator never queues one seq twice
        push(queue, entry)
        heapq.heappush(heap, entry)
        assert len(queue) == len(heap)
    assert sorted(queue) == sorted(heap)
    while heap:
        popped.append(pop(queue))
        expected.append(heapq.heappop(heap))
    assert popped == expected
    assert queue == []


@pytest.mark.parametrize("heap_kind", sorted(HEAPS))
def test_entries_of_one_time_leave_in_seq_order_even_when_queued_out_of_it(heap_kind):
    push, pop = HEAPS[heap_kind]
    queue: list = []
    for entry in [(1.0, 5, "e"), (1, 2, "b"), (0.5, 9, "a"), (1.0, 7, "f"), (1.0, 3, "c")]:
        push(queue, entry)
    assert [pop(queue)[2] for _ in range(5)] == ["a", "b", "c", "e", "f"]
    with pytest.raises(IndexError):
        pop(queue)


def test_the_build_picks_heapq_interpreted_and_its_own_heap_compiled():
    if events.NATIVE:
        assert (events.push_event, events.pop_event) == (events.native_push, events.native_pop)
    else:
        assert (events.push_event, events.pop_event) == (heapq.heappush, heapq.heappop)
