"""Batches of log entries bounded by count and by estimated bytes, for every log protocol.

Why bytes: a message holds its peer link while it is written (heartbeats and votes
queue behind it) and is held whole in memory at both ends; one over the peer transport's
message limit is never delivered.  A batch capped only by count (64 values of 1 MiB) made
64 MiB messages, which the transport refused outright until it learnt to fragment them:
replication stalled for good.  A byte cap keeps every batch small.

Rules this module owns:
  * a batch holds at least one item, whatever its size: an entry larger than the cap
    travels alone (the server's configuration bounds one command below the transport's
    message limit, see server/config.py);
  * after the first, an item joins only while the batch stays within ``max_items`` and
    its estimated bytes within ``max_bytes``;
  * sizes are ``core/messages.estimated_size`` estimates (plus a fixed overhead a log
    entry adds), cached by log index where a leader sends the same entry to several
    peers (``EntrySizes``); a cache entry goes when its index is truncated, compacted or
    the log is reset, so a replaced entry is measured again;
  * the cache is one contiguous run of indexes in a flat array of machine integers,
    grown at its end: a compaction of 100,000 entries drops a prefix with one memmove
    (no Python object per size to free, no dict to rebuild: that took 5-10 ms, in the
    request that triggered the snapshot).  An index outside the run and not at its end
    (a peer behind where the leader first measured, or ahead of the run) is measured
    each time, uncached.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from consensuskit.core.messages import estimated_size

# What a log entry adds to its command's estimate (index, term or zxid, kind, framing).
ENTRY_OVERHEAD: Final = 48


def entry_size(data: Any) -> int:
    """The estimated size of a log entry carrying ``data`` (None for a no-op)."""
    return ENTRY_OVERHEAD if data is None else ENTRY_OVERHEAD + estimated_size(data)


def batch_length(sizes: Iterable[int], max_items: int, max_bytes: int) -> tuple[int, int]:
    """How many leading items of ``sizes`` form one batch, and their total bytes.  Reads
    ``sizes`` only as far as the batch goes (plus the item that ends it)."""
    total = 0
    n = 0
    for size in sizes:
        if n == max_items or (n and total + size > max_bytes):
            break
        total += size
        n += 1
    return n, total


class EntrySizes:
    """Estimated entry sizes by log index, measured once however many peers get them.

    ``sizes[i]`` is the size of index ``base + i``; the run only grows at its end."""

    __slots__ = ("base", "measure", "sizes")

    def __init__(self, measure: Callable[[Any], int]) -> None:
        self.measure = measure
        self.base = 0
        self.sizes = array("q")

    def take(self, entries: Sequence[Any], first_index: int, max_bytes: int) -> tuple[int, int]:
        """How many leading ``entries`` (the first at ``first_index``) fit one batch of at
        most ``max_bytes`` (at least one), and their total bytes."""
        return batch_length(self._sizes(entries, first_index), len(entries), max_bytes)

    def _sizes(self, entries: Sequence[Any], index: int) -> Iterator[int]:
        sizes = self.sizes
        if not sizes:
            self.base = index
        pos = index - self.base
        for entry in entries:
            if 0 <= pos < len(sizes):
                yield sizes[pos]
            elif pos == len(sizes):
                size = self.measure(entry)
                sizes.append(size)
                yield size
            else:
                yield self.measure(entry)
            pos += 1

    def cached(self) -> range:
        """The indexes whose sizes are cached."""
        return range(self.base, self.base + len(self.sizes))

    def drop_from(self, index: int) -> None:
        """Entries from ``index`` on were truncated (and may be replaced)."""
        keep = index - self.base
        if keep <= 0:
            self.clear()
        elif keep < len(self.sizes):
            del self.sizes[keep:]

    def drop_through(self, index: int) -> None:
        """Entries up to ``index`` were compacted away."""
        drop = index + 1 - self.base
        if drop >= len(self.sizes):
            self.clear()
        elif drop > 0:
            del self.sizes[:drop]
            self.base = index + 1

    def clear(self) -> None:
        self.sizes = array("q")
        self.base = 0
