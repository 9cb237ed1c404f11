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
    the log is reset, so a replaced entry is measured again.
"""

from __future__ import annotations

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
    """Estimated entry sizes by log index, measured once however many peers get them."""

    __slots__ = ("by_index", "measure")

    def __init__(self, measure: Callable[[Any], int]) -> None:
        self.measure = measure
        self.by_index: dict[int, int] = {}

    def take(self, entries: Sequence[Any], first_index: int, max_bytes: int) -> tuple[int, int]:
        """How many leading ``entries`` (the first at ``first_index``) fit one batch of at
        most ``max_bytes`` (at least one), and their total bytes."""
        return batch_length(self._sizes(entries, first_index), len(entries), max_bytes)

    def _sizes(self, entries: Sequence[Any], index: int) -> Iterator[int]:
        by_index = self.by_index
        for entry in entries:
            size = by_index.get(index)
            if size is None:
                size = by_index[index] = self.measure(entry)
            yield size
            index += 1

    def drop_from(self, index: int) -> None:
        """Entries from ``index`` on were truncated (and may be replaced)."""
        if self.by_index:
            self.by_index = {i: size for i, size in self.by_index.items() if i < index}

    def drop_through(self, index: int) -> None:
        """Entries up to ``index`` were compacted away."""
        if self.by_index:
            self.by_index = {i: size for i, size in self.by_index.items() if i > index}

    def clear(self) -> None:
        self.by_index = {}
