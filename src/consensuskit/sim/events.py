"""The simulator's timed event queue: entries ``(time, seq, kind, ...)`` leave in
``(time, seq)`` order.

Rules this module owns:
  * the order is exactly that of a heap of the entry tuples (``heapq``): the earliest
    time first, and among entries of one time the smallest ``seq`` first (``seq`` is
    unique, so nothing past it is ever compared);
  * it is a binary heap like ``heapq``'s, with its own comparison: two float times are
    compared as floats, then the seqs when the times are equal.  ``heapq`` compares
    tuples, which tests equality and then order element by element through the generic
    comparison (five times the cost, and compiled this is the simulator's busiest loop);
    a time that is not a float (an int from a script) falls back to the tuples' own
    comparison, so the order never differs;
  * interpreted (the default install), ``heapq`` itself is faster than a heap written
    in Python: the queue uses it then, on the same list.
"""

from __future__ import annotations

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


# A compiled function has no bytecode: then the hand-written heap below is the fast one.
NATIVE: Final = not hasattr(_before, "__code__")


class EventQueue:
    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[Entry] = []

    def push(self, entry: Entry) -> None:
        heap = self._heap
        if not NATIVE:
            heappush(heap, entry)
            return
        heap.append(entry)
        # heapq._siftdown: move the new entry up while it sorts before its parent.
        pos = len(heap) - 1
        while pos > 0:
            parent_pos = (pos - 1) >> 1
            parent = heap[parent_pos]
            if not _before(entry, parent):
                break
            heap[pos] = parent
            pos = parent_pos
        heap[pos] = entry

    def pop(self) -> Entry:
        """The first entry (IndexError when empty)."""
        heap = self._heap
        if not NATIVE:
            return heappop(heap)
        last = heap.pop()
        if not heap:
            return last
        first = heap[0]
        # heapq._siftup: move the smaller child up until a leaf, then sift ``last`` down.
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
        while pos > 0:
            parent_pos = (pos - 1) >> 1
            parent = heap[parent_pos]
            if not _before(last, parent):
                break
            heap[pos] = parent
            pos = parent_pos
        heap[pos] = last
        return first

    def head(self) -> Entry:
        """The first entry, left in place (IndexError when empty)."""
        return self._heap[0]

    def head_time(self) -> Any:
        """The first entry's time (IndexError when empty)."""
        return self._heap[0][0]

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def entries(self) -> list[Entry]:
        """Every entry, first to last (for inspection, not for hot paths)."""
        return sorted(self._heap)
