"""sim/events.py: the EventQueue pops exactly in the order of a heap of the entry
tuples, however entries arrive (equal times, popped entries queued again, 5 and 5.0),
with the hand-written heap of the compiled build and with heapq."""

from __future__ import annotations

import heapq
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.sim import events
from consensuskit.sim.events import EventQueue

# A few times, so that many entries share one; ints beside floats of equal value.
TIMES = st.sampled_from([0.0, -0.0, 0.5, 1, 1.0, 1.5, 2, 3.25, 1e9])
SCRIPTS = st.lists(st.tuples(st.sampled_from(["push", "push", "again", "pop"]), TIMES), max_size=80)


@pytest.fixture(params=[True, False], ids=["native-heap", "heapq"])
def native(request, monkeypatch):
    # Interpreted, both paths run; compiled, NATIVE is a constant and this changes nothing.
    monkeypatch.setattr(events, "NATIVE", request.param)


# The fixture only sets a module constant: nothing to reset between examples.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=SCRIPTS)
def test_pops_follow_the_order_of_a_heap_of_tuples(native, script):
    queue, heap = EventQueue(), []
    seq = itertools.count()
    popped, expected = [], []
    for action, t in script:
        if action == "push":
            entry = (t, next(seq), "new")
        elif action == "again" and popped:
            entry = (t, popped[0][1], "again")  # a deferred event queued again: its old seq
        else:
            if heap:
                assert queue.head() == heap[0] and queue.head_time() == heap[0][0]
                popped.append(queue.pop())
                expected.append(heapq.heappop(heap))
            continue
        if any(e[1] == entry[1] for e in heap):
            continue  # the simulator never queues one seq twice
        queue.push(entry)
        heapq.heappush(heap, entry)
        assert len(queue) == len(heap) and queue
    assert queue.entries() == sorted(heap)
    while heap:
        popped.append(queue.pop())
        expected.append(heapq.heappop(heap))
    assert popped == expected
    assert not queue and len(queue) == 0


def test_entries_of_one_time_leave_in_seq_order_even_when_queued_out_of_it(native):
    queue = EventQueue()
    for entry in [(1.0, 5, "e"), (1, 2, "b"), (0.5, 9, "a"), (1.0, 7, "f"), (1.0, 3, "c")]:
        queue.push(entry)
    assert [queue.pop()[2] for _ in range(5)] == ["a", "b", "c", "e", "f"]
    with pytest.raises(IndexError):
        queue.pop()
