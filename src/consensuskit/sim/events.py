"""The simulator's timed event queue: a list of entries ``(time, seq, kind, ...)`` kept
as a binary heap by ``push_event`` and ``pop_event``; entries leave in ``(time, seq)`` order.

Rules this module owns:
  * the order is exactly that of ``heapq`` on the entry tuples: the earliest time first,
    and among entries of one time the smallest ``seq`` first (``seq`` is unique, so
    nothing past it is ever compared).  ``q[0]`` is the head, as with ``heapq``;
  * compiled (``make compiled``), ``push_event``/``pop_event`` are this module's own
    heap, which compares two float times as floats and then the seqs when the times are
    equal.  ``heapq`` compares tuples, testing equality and then order element by element
    through the generic comparison (about five times the cost, and compiled this is the
    simulator's busiest loop); a time that is not a float (an int from a script) falls
    back to the tuples' own comparison, so the order never differs;
  * interpreted (the default install), ``push_event``/``pop_event`` are
    ``heapq.heappush`` and ``heapq.heappop`` themselves: C code, faster than any heap
    written in Python, and no Python frame per event.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Final

Entry = tuple[Any, ...]


def _before(a: Entry, b: Entry) -> bool:
    """``a < b`` for two entries (see the module rules)."""
    ta = a[0]
    tb = b[0]
    if isinstance(ta, float) and isinstance(tb, float):
        x: float = ta  # unboxed once each (compiled)
        y: float = tb
        if x != y:
            return x < y
        return bool(a[1] < b[1])
    return bool(a < b)


def _rise(heap: list[Entry], pos: int, entry: Entry) -> None:
    """Put ``entry`` at ``pos`` or above it, moving the parents it sorts before one
    level down (heapq's ``_siftdown``)."""
    while pos > 0:
        parent_pos = (pos - 1) >> 1
        parent = heap[parent_pos]
        if not _before(entry, parent):
            break
        heap[pos] = parent
        pos = parent_pos
    heap[pos] = entry


def native_push(heap: list[Entry], entry: Entry) -> None:
    """``heapq.heappush`` with ``_before`` as the order."""
    heap.append(entry)
    _rise(heap, len(heap) - 1, entry)


def native_pop(heap: list[Entry]) -> Entry:
    """``heapq.heappop`` with ``_before`` as the order (IndexError when empty)."""
    last = heap.pop()
    if not heap:
        return last
    first = heap[0]
    # heapq._siftup: move the smaller child up until a leaf, then let ``last`` rise from there.
    end = len(heap)
    pos = 0
    child = 1
    while child < end:
        right = child + 1
        if right < end and not _before(heap[child], heap[right]):
            child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    _rise(heap, pos, last)
    return first


# A compiled function has no bytecode: then the hand-written heap above is the fast one.
NATIVE: Final = not hasattr(_before, "__code__")
push_event: Final[Callable[[list[Entry], Entry], None]] = native_push if NATIVE else heappush
pop_event: Final[Callable[[list[Entry]], Entry]] = native_pop if NATIVE else heappop
