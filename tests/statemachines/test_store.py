"""ShardedStore: a map frozen without copying; writes copy only the shards they reach."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.statemachines.store import SHARDS, ShardedStore, shard_of


def frozen_items(frozen, step: int = 7) -> list:
    """Everything in a frozen store, read ``step`` positions a slice."""
    out = []
    for start in range(0, len(frozen), step):
        keys, entries = frozen.slice(start, min(len(frozen), start + step))
        out.extend(zip(keys, entries, strict=True))
    return out


def test_a_key_shard_is_its_crc32_the_same_in_every_process():
    # hash() of a str differs between processes (PYTHONHASHSEED): replicas would order
    # their snapshots differently.  The CRC does not.
    assert [shard_of(k) for k in ("a", "b", "k1")] == [67, 249, 169]
    code = "from consensuskit.statemachines.store import shard_of; print(shard_of('a'), shard_of(b'a'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout for _ in "ab"}
    assert len(runs) == 1 and runs.pop().split()[0] == "67"


def test_freezing_copies_nothing_and_a_write_copies_only_its_shard():
    store = ShardedStore.from_items((f"k{i}", i) for i in range(2000))
    frozen = store.freeze()
    before = dict(frozen_items(frozen))
    shards = list(store._shards)
    assert all(a is b for a, b in zip(shards, frozen._shards, strict=True))  # nothing copied
    store.set("k1", "new")
    store.set("brand-new", 1)
    assert store.pop("k2") == 2
    assert store.pop("absent") is None  # copies nothing
    touched = {shard_of("k1"), shard_of("brand-new"), shard_of("k2")}
    for i in range(SHARDS):
        assert (store._shards[i] is shards[i]) == (i not in touched), i
    assert dict(frozen_items(frozen)) == before  # the frozen store did not move
    assert store.get("k1") == "new" and store.get("k2") is None and len(store) == 2000
    store.set("k1", "again")  # the shard is the store's own now: no second copy
    assert store._shards[shard_of("k1")] is not shards[shard_of("k1")]


def test_order_is_shard_by_shard_each_in_insertion_order_and_a_restore_keeps_it():
    keys = [f"key{i}" for i in range(3000)]
    random.Random(5).shuffle(keys)
    store = ShardedStore.from_items((k, 1) for k in keys)
    order = list(store)
    assert order == sorted(keys, key=lambda k: (shard_of(k), keys.index(k)))
    again = ShardedStore.from_items(frozen_items(store.freeze(), step=100))
    assert list(again) == order


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.integers(0, 60), st.integers()),
            st.tuples(st.just("pop"), st.integers(0, 60), st.just(0)),
            st.tuples(st.just("freeze"), st.just(0), st.just(0)),
        ),
        max_size=80,
    ),
    st.integers(1, 9),
)
def test_every_frozen_store_keeps_the_contents_of_its_moment(ops, step):
    store, model, frozen = ShardedStore(), {}, []
    for op, key, value in ops:
        if op == "set":
            store.set(f"k{key}", value)
            model[f"k{key}"] = value
        elif op == "pop":
            assert store.pop(f"k{key}") == model.pop(f"k{key}", None)
        else:
            frozen.append((store.freeze(), dict(model)))
        assert len(store) == len(model)
    assert dict(store.items()) == model
    for snapshot, contents in frozen:
        assert len(snapshot) == len(contents)
        assert dict(frozen_items(snapshot, step)) == contents


def test_readers_interleaved_or_out_of_order_read_the_same_sequence():
    store = ShardedStore.from_items((f"k{i}", i) for i in range(5000))
    frozen = store.freeze()
    whole = frozen_items(frozen, step=5000)
    assert [k for k, _ in whole] == list(store)
    a, b = (frozen_items(frozen, step) for step in (64, 37))
    assert a == b == whole
    # Two readers at once, alternating slices, as the WAL's worker and a peer's transport
    starts = {"a": 0, "b": 0}
    got: dict[str, list] = {"a": [], "b": []}
    for reader in itertools.islice(itertools.cycle("ab"), 400):
        step = 50 if reader == "a" else 33
        start = starts[reader]
        if start < len(frozen):
            keys, entries = frozen.slice(start, min(len(frozen), start + step))
            got[reader].extend(zip(keys, entries, strict=True))
            starts[reader] = start + step
    assert got["a"] == got["b"] == whole
    for start in (4321, 17, 0, 4999, 2500):  # random access
        keys, entries = frozen.slice(start, start + 1)
        assert list(zip(keys, entries, strict=True)) == whole[start : start + 1]


class Counted:
    """A value that counts its own release."""

    freed = 0

    def __del__(self) -> None:
        Counted.freed += 1


def test_an_older_freeze_is_released_a_shard_per_write_not_at_once():
    # Dropping a snapshot used to free every shard copied since at once (23 ms at a
    # million keys); the store holds them and each write drops one.
    store = ShardedStore.from_items((f"k{i}", Counted()) for i in range(4096))
    old = store.freeze()
    for i in range(4096):  # every shard copied; the old values live only in ``old``
        store.set(f"k{i}", "new")
    Counted.freed = 0
    store.freeze()
    del old  # the protocol drops its older snapshot
    assert Counted.freed == 0
    store.set("one more", 1)
    assert 0 < Counted.freed < 4096 // 64  # one shard's worth (about 16 values)
    for i in range(SHARDS):
        store.set(f"more{i}", i)
    assert Counted.freed == 4096
