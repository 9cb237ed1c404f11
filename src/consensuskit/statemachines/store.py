"""The kv store's map of key to entry: sharded and copy-on-write, so a snapshot copies nothing.

A protocol takes a state machine's snapshot on its event loop, and copying a million-key
dict there held the loop 30-126 ms (the copy touches every key and value, which a long
load has scattered across memory): the largest stall left at a large state.

Rules this module owns:
  * the keys live in ``SHARDS`` dicts; a key's shard is fixed by the CRC-32 of its UTF-8
    bytes (of its ``repr`` for a key that is not a str), the same on every replica and in
    every run, unlike ``hash()``;
  * ``freeze()`` hands out the shards as they are, a tuple of references, and marks them
    shared; the first write to a shared shard copies that shard (a 256th of the store,
    under a millisecond at a million keys) and changes the copy.  So a frozen shard never
    changes, and a snapshot reads it later, from any thread, as it was; the copying is
    spread over the writes that follow a snapshot instead of done at once;
  * release: freeing a frozen store's shards at once (when a protocol drops its older
    snapshot) decrefs every key and value they hold, 23 ms at a million keys.  So the
    store keeps the last freeze's shards, and at the next freeze hands them to a list
    from which each later write drops one: a 256th of the store freed per write, not a
    whole store's worth in one loop turn (if nothing else still holds them);
  * order: shard by shard, each in insertion order, a function of the commands applied
    (and of the snapshot restored, whose order ``from_items`` keeps within each shard):
    the same on every replica at the same point of the log;
  * the dicts hold only what the caller stores: with the kv store's keys and entries,
    none of which the collector tracks (statemachines/kv_entry.py), the collector tracks
    no shard either, frozen or not.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

SHARDS = 256  # a power of two: a shard is the CRC's low bits
_MASK = SHARDS - 1
# Cursors a frozen store keeps for readers part-way through it (see FrozenStore).
_MAX_CURSORS = 8


def shard_of(key: Any) -> int:
    if type(key) is str:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) & _MASK
    return zlib.crc32(repr(key).encode("utf-8", "surrogatepass")) & _MASK


class ShardedStore:
    """A dict-like map of key to entry (``get``, ``set``, ``pop``), frozen cheaply."""

    __slots__ = ("_count", "_last_frozen", "_retired", "_shards", "_shared")

    def __init__(self) -> None:
        self._shards: list[dict[Any, Any]] = [{} for _ in range(SHARDS)]
        self._shared = bytearray(SHARDS)  # 1: the shard is also a frozen store's
        self._count = 0
        self._last_frozen: tuple[dict[Any, Any], ...] = ()  # kept for _retired (module rules)
        self._retired: list[dict[Any, Any]] = []  # shards of an older freeze, one dropped per write

    @classmethod
    def from_items(cls, items: Iterable[tuple[Any, Any]]) -> ShardedStore:
        """A store of ``items`` in their order (a later duplicate key replaces the entry)."""
        store = cls()
        shards = store._shards
        for key, entry in items:
            shards[shard_of(key)][key] = entry
        store._count = sum(len(shard) for shard in shards)
        return store

    def __len__(self) -> int:
        return self._count

    # ``get``, ``set`` and ``pop`` find the key's shard; a read-modify-write finds it once
    # (``shard_of``) and passes it to the ``*_in`` forms.
    def get(self, key: Any) -> Any:
        return self._shards[shard_of(key)].get(key)

    def set(self, key: Any, entry: Any) -> None:
        self.set_in(shard_of(key), key, entry)

    def pop(self, key: Any) -> Any:
        return self.pop_in(shard_of(key), key)

    def get_in(self, shard: int, key: Any) -> Any:
        """``get(key)``, where ``shard == shard_of(key)``."""
        return self._shards[shard].get(key)

    def set_in(self, shard: int, key: Any, entry: Any) -> None:
        """``set(key, entry)``, where ``shard == shard_of(key)``."""
        writable = self._writable(shard)
        before = len(writable)
        writable[key] = entry
        self._count += len(writable) - before

    def pop_in(self, shard: int, key: Any) -> Any:
        """Remove ``key`` (``shard == shard_of(key)``); its entry, or None when it was
        absent (nothing is copied then)."""
        if key not in self._shards[shard]:
            return None
        self._count -= 1
        return self._writable(shard).pop(key)

    def _writable(self, i: int) -> dict[Any, Any]:
        """Shard ``i``, copied first if a frozen store shares it; every write comes here,
        and drops one retired shard (module rules)."""
        if self._retired:
            self._retired.pop()
        shard = self._shards[i]
        if self._shared[i]:
            shard = self._shards[i] = shard.copy()
            self._shared[i] = 0
        return shard

    def __iter__(self) -> Iterator[Any]:
        """The keys, in the store's order."""
        return itertools.chain.from_iterable(self._shards)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return itertools.chain.from_iterable(shard.items() for shard in self._shards)

    def freeze(self) -> FrozenStore:
        """The store as it is now, unchanged by later writes, without copying it."""
        self._shared = bytearray(b"\x01") * SHARDS
        self._retired.extend(self._last_frozen)
        self._last_frozen = tuple(self._shards)
        return FrozenStore(self._last_frozen, self._count)


class FrozenStore:
    """A store as ``freeze()`` left it, read in order a slice at a time.

    Its dicts cannot be sliced by position, so each reader (the WAL's sync worker, a
    peer's transport, perhaps both at once from two threads) keeps a cursor, found by
    where its last slice ended: reading it all in order is one pass, not a skip from the
    start for every slice.  Its shards never change, so its iterators stay valid."""

    __slots__ = ("_count", "_cursors", "_lock", "_shards")

    def __init__(self, shards: tuple[dict[Any, Any], ...], count: int) -> None:
        self._shards = shards
        self._count = count
        self._cursors: dict[int, tuple[Iterator[Any], Iterator[Any]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def slice(self, start: int, stop: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The keys and the entries at positions [start, stop)."""
        n = stop - start
        with self._lock:
            cursor = self._cursors.pop(start, None)
            keys_it, entries_it = cursor if cursor is not None else self._seek(start)
            keys = tuple(itertools.islice(keys_it, n))
            entries = tuple(itertools.islice(entries_it, n))
            if stop < self._count:
                if len(self._cursors) >= _MAX_CURSORS:
                    del self._cursors[next(iter(self._cursors))]
                self._cursors[stop] = (keys_it, entries_it)
        return keys, entries

    def _seek(self, start: int) -> tuple[Iterator[Any], Iterator[Any]]:
        """Iterators from position ``start``: whole shards skipped by their sizes."""
        shards = self._shards
        first = 0
        while first < len(shards) and start >= len(shards[first]):
            start -= len(shards[first])
            first += 1
        rest = shards[first:]
        keys_it = itertools.chain.from_iterable(rest)
        entries_it = itertools.chain.from_iterable(shard.values() for shard in rest)
        next(itertools.islice(keys_it, start, start), None)
        next(itertools.islice(entries_it, start, start), None)
        return keys_it, entries_it
