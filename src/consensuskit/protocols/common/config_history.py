"""Configurations by log position: which membership governs an index (slot).

Raft (dissertation §4.1): a configuration entry takes effect as soon as it is appended,
at its own index, committed or not.  Multi-Paxos: a configuration decided at slot ``s``
governs slots ``s + alpha`` on.  Both ask "which configuration is in force at ``i``?".

Rules this module owns:
  * a configuration recorded at index ``i`` governs every index from ``i`` up to the
    next recorded one; ``latest`` is the newest recorded (in Raft possibly uncommitted);
  * the base (the first entry: the initial members, or a snapshot's configuration)
    governs everything before the first recorded one, at any index;
  * truncating from ``i`` forgets the configurations recorded at ``i`` or later (their
    entries left the log), never the base;
  * compacting up to ``c`` folds everything at or before ``c`` into a new base at ``c``:
    the configuration in force at ``c`` (or one given, ``rebase``: a snapshot's);
    ``reset`` replaces the whole history with one base (a snapshot replaced the log).

Invariant: the indexes strictly increase; there is always a base.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Generic, TypeVar

C = TypeVar("C")


class ConfigHistory(Generic[C]):
    __slots__ = ("entries", "indexes")

    def __init__(self, base_index: int, base: C) -> None:
        # (index, configuration), oldest first; ``indexes`` mirrors the first members so
        # a lookup is one bisect (this sits on per-message paths).
        self.entries: list[tuple[int, C]] = [(base_index, base)]
        self.indexes: list[int] = [base_index]

    @classmethod
    def of(cls, entries: Iterable[tuple[int, C]]) -> ConfigHistory[C]:
        """A history from (index, configuration) pairs, base first; ValueError when
        there are none or the indexes do not increase (a peer's garbage)."""
        items = list(entries)
        if not items:
            raise ValueError("a configuration history needs a base")
        history = cls(*items[0])
        for index, config in items[1:]:
            history.record(index, config)
        return history

    def record(self, index: int, config: C) -> None:
        """``config`` governs from ``index`` on (after every configuration recorded)."""
        if index <= self.indexes[-1]:
            raise ValueError(f"configuration at {index} is not after {self.indexes[-1]}")
        self.entries.append((index, config))
        self.indexes.append(index)

    def at(self, index: int) -> C:
        """The configuration in force at ``index``."""
        indexes = self.indexes
        if len(indexes) == 1 or index < indexes[1]:
            return self.entries[0][1]  # the common case: no change since the base
        return self.entries[bisect_right(indexes, index) - 1][1]

    def latest(self) -> tuple[int, C]:
        return self.entries[-1]

    def base(self) -> tuple[int, C]:
        return self.entries[0]

    def since(self, index: int) -> list[tuple[int, C]]:
        """The configuration in force at ``index`` (as recorded at ``index``) and every
        later one."""
        pos = max(1, bisect_right(self.indexes, index))  # the base is never later
        return [(index, self.at(index)), *self.entries[pos:]]

    def between(self, lo: int, hi: int) -> list[C]:
        """The distinct configurations in force somewhere in ``lo..hi``, oldest first."""
        out = [self.at(lo)]
        for first, config in self.entries[bisect_right(self.indexes, lo) :]:
            if first > hi:
                break
            if config not in out:
                out.append(config)
        return out

    def truncate_from(self, index: int) -> None:
        """Forget the configurations recorded at ``index`` or later (never the base)."""
        cut = max(1, bisect_left(self.indexes, index))
        del self.entries[cut:]
        del self.indexes[cut:]

    def compact(self, upto: int) -> None:
        """Fold everything up to ``upto`` into the base (no-op at or below the base)."""
        if upto > self.indexes[0]:
            self.rebase(upto, self.at(upto))

    def rebase(self, index: int, config: C) -> None:
        """``config`` is the base at ``index``; configurations recorded up to ``index``
        are folded into it, later ones kept."""
        pos = bisect_right(self.indexes, index)
        if pos == 0:
            raise ValueError(f"cannot rebase at {index}: before the base at {self.indexes[0]}")
        self.entries[:pos] = [(index, config)]
        self.indexes[:pos] = [index]

    def reset(self, index: int, config: C) -> None:
        """Only ``config``, the base at ``index``: the whole log was replaced."""
        self.entries = [(index, config)]
        self.indexes = [index]
