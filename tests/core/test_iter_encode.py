"""iter_encode: the bytes of encode(), in pieces that stay small however large the value."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import CODEC_VERSION, LazyArray, decode, encode, iter_encode
from consensuskit.protocols.raft.messages import (
    COMMAND,
    ClusterConfig,
    HardState,
    InstallSnapshot,
    LogEntry,
    Snapshot,
)
from consensuskit.statemachines.kv import KVStateMachine

from .test_codec import any_message

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
# Sets must sort, as encode() sorts them: one element type per set.
sets = (
    st.sets(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=30)
    | st.frozensets(st.text(max_size=5), max_size=30)
    | st.sets(st.binary(max_size=5), max_size=30)
)
keys = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=6)


def lazy(items: list, group: int, small_items: bool = False) -> LazyArray:
    """A LazyArray of ``items`` (whole groups of them); ``small_items`` packs its slices
    whole (messages, sets and nested containers included: the same bytes)."""
    count = len(items) // group
    items = items[: count * group]

    def chunk(start: int, stop: int) -> tuple:
        return tuple(items[start * group : stop * group])

    return LazyArray(count, group, chunk, small_items)


def containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    # Lists up to 40 items, so that small slice sizes cut them into several slices.
    return (
        st.lists(inner, max_size=40)
        | st.builds(lazy, st.lists(inner, max_size=40), st.integers(1, 4), st.booleans())
        | st.lists(inner, max_size=40).map(tuple)
        | st.dictionaries(keys, inner, max_size=8)
        | st.builds(
            LogEntry, term=st.integers(0, 9), index=st.integers(0, 9), kind=st.just(COMMAND), data=inner
        )
        | st.builds(
            ClusterConfig, voters=st.lists(st.text(max_size=3), max_size=20).map(tuple), learners=st.just(())
        )
    )


values = st.recursive(scalars | sets | any_message, containers, max_leaves=120)
slice_items = st.integers(min_value=1, max_value=6) | st.just(32 * 1024)
piece_bytes = st.integers(min_value=1, max_value=64) | st.just(1 << 20)


@SETTINGS
@given(values, slice_items, piece_bytes)
def test_pieces_join_to_exactly_encode(value, slice_items, piece_bytes):
    pieces = list(iter_encode(value, slice_items=slice_items, piece_bytes=piece_bytes))
    assert all(type(p) is bytes and p for p in pieces)
    assert b"".join(pieces) == encode(value)


@SETTINGS
@given(st.lists(scalars, min_size=1, max_size=600).map(tuple), st.integers(1, 300), st.integers(1, 200))
def test_long_flat_arrays_are_sliced_exactly(value, slice_items, piece_bytes):
    # Past the first slice (256 items at most) the slicing adapts to the bytes seen.
    assert b"".join(iter_encode(value, slice_items=slice_items, piece_bytes=piece_bytes)) == encode(value)


@pytest.mark.parametrize("n", [15, 16, 17, 0xFFFF, 0x10000, 0x10001])
def test_array_header_widths(n):
    # fixarray, array16 and array32 headers, for the whole array and for its slices.
    value = {"a": tuple(range(n)), "b": [str(i) for i in range(n)]}
    for slice_items in (15, 16, 17, 0xFFFF, 0x10000, 0x10001):
        assert b"".join(iter_encode(value, slice_items=slice_items, piece_bytes=4096)) == encode(value)


def test_special_values_match():
    value = (
        math.nan,
        -0.0,
        math.inf,
        2**64 - 1,
        -(2**63),
        msgpack.ExtType(5, b"x"),
        bytearray(b"ab"),
        memoryview(b"cd"),
        True,
        1,
        {(1, 2): frozenset({"b", "a"})},
    )
    for slice_items in (1, 2, 100):
        assert b"".join(iter_encode(value, slice_items=slice_items, piece_bytes=1)) == encode(value)


def kv_snapshot(keys: int, sessions: int) -> Snapshot:
    sm = KVStateMachine()
    for i in range(keys):
        sm.execute(Op(kind="put", key=f"key{i:07d}", value=f"{i:050x}" if i % 2 else f"{i:050x}".encode()))
    for i in range(0, keys, 3):
        sm.execute(Op(kind="put", key=f"key{i:07d}", value="again"))  # version 2: a tuple entry
    for c in range(sessions):
        request = ClientRequest(client_id=f"client-{c}", seq=c + 1, op=Op(kind="get", key=f"key{c:07d}"))
        sm.apply(request)
    config = ClusterConfig(voters=("a", "b", "c"), learners=("d",))
    return Snapshot(last_index=70_000, last_term=8, config=config, data=sm.snapshot())


def test_raft_snapshot_of_a_kv_store():
    snap = kv_snapshot(20_000, 600)
    blob = encode(snap)
    piece_bytes = 64 * 1024
    pieces = list(iter_encode(snap, slice_items=8192, piece_bytes=piece_bytes))
    assert b"".join(pieces) == blob
    assert decode(b"".join(pieces)) == snap
    assert len(pieces) > len(blob) // piece_bytes
    # No piece much larger than asked for (the first slice of 256 items is 15 KB here).
    assert max(map(len, pieces)) < 2 * piece_bytes
    install = InstallSnapshot(term=9, leader="a", snapshot=snap)
    assert b"".join(iter_encode(install, slice_items=5, piece_bytes=100)) == encode(install)


def test_large_values_make_smaller_slices():
    # 32k items of 10 KB each would be a 320 MB slice; the slicing follows the bytes.
    value = tuple(bytes([i % 256]) * 10_000 for i in range(3000))
    pieces = list(iter_encode(value, piece_bytes=100_000))
    assert b"".join(pieces) == encode(value)
    # pieces[0]: version byte and array header; pieces[1]: the first slice, 256 items.
    assert len(pieces[1]) == 256 * (10_000 + 3)
    assert max(map(len, pieces[2:])) <= 110_000


def test_pieces_are_produced_lazily():
    # The first piece comes before the walk reaches the bad item at the end.
    pieces = iter_encode((*range(100_000), object()), piece_bytes=1000)
    assert next(pieces)[0] == CODEC_VERSION
    with pytest.raises(TypeError, match="cannot encode object"):
        list(pieces)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        [1, {2: object()}],
        {1, "a"},
        HardState(term=1, voted_for=object()),
        2**64,
        (0,) * 300 + (2**64,),
    ],
    ids=["object", "nested", "unsortable-set", "bad-field", "huge-int", "huge-int-in-slice"],
)
def test_raises_what_encode_raises(value):
    with pytest.raises(Exception) as expected:
        encode(value)
    with pytest.raises(expected.type):
        b"".join(iter_encode(value, slice_items=10))


def nested(depth: int, inner: object, wrap) -> object:
    value = inner
    for _ in range(depth):
        value = wrap(value)
    return value


WRAPS = {
    "list": lambda v: [v, 1],
    "dict": lambda v: {"k": v},
    "message": lambda v: LogEntry(term=1, index=1, kind=COMMAND, data=v),
    "long-tuple": lambda v: (v, *range(20)),  # sliced at slice_items=4
}


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
@pytest.mark.parametrize("inner", [(), (1,), {"a": 1}], ids=["empty", "scalars", "map"])
def test_nesting_limit_matches_encode(wrap, inner):
    # Find where encode() starts refusing, then check iter_encode agrees on both sides.
    lo, hi = 1, 2000
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        try:
            encode(nested(mid, inner, wrap))
            lo = mid
        except ValueError:
            hi = mid
    accepted, refused = nested(lo, inner, wrap), nested(hi, inner, wrap)
    assert b"".join(iter_encode(accepted, slice_items=4)) == encode(accepted)
    with pytest.raises(ValueError, match="recursion limit"):
        b"".join(iter_encode(refused, slice_items=4))


@pytest.mark.parametrize("kwargs", [{"slice_items": 0}, {"piece_bytes": 0}])
def test_sizes_must_be_positive(kwargs):
    with pytest.raises(ValueError, match="must be positive"):
        iter_encode(1, **kwargs)


def test_a_lazy_array_is_encoded_as_the_tuple_of_its_items():
    items = tuple(f"k{i}" for i in range(5000))
    calls: list[tuple[int, int]] = []

    def chunk(start: int, stop: int) -> tuple:
        calls.append((start, stop))
        return items[start * 2 : stop * 2]

    array = LazyArray(2500, 2, chunk)
    value = {"flat": array, "n": 1}
    assert encode(value) == encode({"flat": items, "n": 1})
    calls.clear()
    pieces = list(iter_encode(value, slice_items=64, piece_bytes=256))
    assert b"".join(pieces) == encode({"flat": items, "n": 1})
    assert len(calls) > 10 and all(stop - start <= 32 for start, stop in calls)  # built a chunk at a time
    assert decode(encode(value)) == {"flat": items, "n": 1}


def test_a_lazy_array_reads_as_the_sequence_of_its_items():
    items = (1, "a", 2, "b", 3, "c")
    array = LazyArray(3, 2, lambda start, stop: items[start * 2 : stop * 2])
    assert len(array) == 6 and tuple(array) == items and list(array) == list(items)
    assert array == items and items == array and array == list(items)
    assert array != items[:4] and array != (1, "a", 2, "b", 3, "x") and array != "1a2b3c"
    assert (array[0], array[3], array[-1], array[1:4]) == (1, "b", "c", ("a", 2, "b"))
    with pytest.raises(IndexError):
        array[6]
    assert repr(array) == "LazyArray(1, 'a', 2, 'b', 3, 'c')"
    assert LazyArray(0, 3, lambda start, stop: ()) == () and len(LazyArray(0, 3, lambda a, b: ())) == 0
    with pytest.raises(ValueError, match="count >= 0 and group >= 1"):
        LazyArray(1, 0, lambda start, stop: ())
    with pytest.raises(TypeError):
        hash(array)
