"""The codec's two implementations agree: ``encode``/``decode`` (msgspec's msgpack, the
engine) write the bytes and give the values or CodecError of the msgpack reference
(``_reference_encode``/``_reference_decode``) for every value and every frame, so the
engine changed no byte of the wire or the WAL; and the engine, not the reference, does the
work for every message."""

from __future__ import annotations

import collections
import datetime
import enum
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.core import messages
from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import CODEC_VERSION, CodecError, decode, encode, message_field_names
from consensuskit.protocols.raft.messages import COMMAND, ClusterConfig, LogEntry, RejoinConfig, Snapshot

from .test_codec import SAMPLES, any_message, frame, marker
from .test_iter_encode import values

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1 == 1.0 == True``, ``(1,) != [1]``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) if a == b else (math.isnan(a) and math.isnan(b))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    names = message_field_names(type(a))
    if names is not None:
        return type(a) is type(b) and all(same(getattr(a, name), getattr(b, name)) for name in names)
    return bool(a == b)


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return ("value", fn(arg))
    except CodecError as exc:
        return ("CodecError", str(exc))
    except Exception as exc:  # encode's errors: the type is what callers catch
        return ("error", type(exc).__name__)


def assert_same_encoding(value: Any) -> None:
    mine, reference = outcome(encode, value), outcome(messages._reference_encode, value)
    assert mine == reference


def assert_same_decoding(data: bytes) -> None:
    mine, reference = outcome(decode, data), outcome(messages._reference_decode, data)
    assert mine[0] == reference[0], (mine, reference)
    assert same(mine[1], reference[1]), (mine, reference)


# -- encode: the same bytes ----------------------------------------------------------------


@SETTINGS
@given(values)
def test_any_value_encodes_to_the_reference_bytes(value):
    assert_same_encoding(value)


@SETTINGS
@given(any_message)
def test_every_message_encodes_to_the_reference_bytes(msg):
    assert encode(msg) == messages._reference_encode(msg)


INT_EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
INT_EDGES += [-1, -31, -32, -33, -127, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]


@pytest.mark.parametrize("value", [*INT_EDGES, 2**64, -(2**63) - 1], ids=repr)
def test_int_widths(value):
    assert_same_encoding(value)
    assert_same_encoding(LogEntry(term=1, index=2, kind=COMMAND, data=value))


@pytest.mark.parametrize("n", LENGTHS)
def test_str_bytes_array_and_map_header_widths(n):
    for value in ("é" * n, "x" * n, b"y" * n, tuple(range(n)), [None] * n, {i: i for i in range(n)}):
        assert_same_encoding(value)
        assert_same_encoding(Op(kind="put", key="k", value=value))
        assert_same_decoding(encode(value))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, 5e-324, 1.5], ids=repr)
def test_floats(value):
    assert_same_encoding(value)
    assert_same_decoding(encode(value))


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    __slots__ = ()


Pair = collections.namedtuple("Pair", "a b")


@pytest.mark.parametrize(
    "value",
    [
        {"b", "a"},  # the reference sorts a set
        frozenset({3, 1, 2}),
        (frozenset({"z", "y"}), {1: {2, 1}}),
        Color.RED,  # subclasses of native types: as the Packer writes them
        Name("n"),
        Pair(1, 2),
        bytearray(b"ab"),
        memoryview(b"cd"),
        msgpack.ExtType(5, b"x"),
        True,
        {(1, 2): "tuple key", None: 1, 2.5: b"", b"k": [1, {"x": (2,)}]},
        LogEntry(term=1, index=1, kind=COMMAND, data={"deep": [ClusterConfig(voters=("a",))]}),
        object(),  # refused, by both
        LogEntry(term=1, index=1, kind=COMMAND, data=object()),
        "\ud800",  # a lone surrogate: refused by both
    ],
    ids=repr,
)
def test_values_the_engine_leaves_to_the_reference(value):
    assert_same_encoding(value)


def test_nesting_deeper_than_the_packer_allows_is_refused_as_before():
    value: Any = 1
    for _ in range(1100):
        value = [value]
    assert_same_encoding(value)
    assert outcome(encode, value)[0] == "error"


# -- decode: the same values, the same errors ----------------------------------------------


@SETTINGS
@given(values)
def test_any_encoded_value_decodes_as_the_reference_decodes_it(value):
    try:
        data = messages._reference_encode(value)
    except (TypeError, ValueError, OverflowError):
        return
    assert_same_decoding(data)


@SETTINGS
@given(st.binary(max_size=64))
def test_garbage_decodes_or_fails_as_in_the_reference(data):
    assert_same_decoding(bytes([CODEC_VERSION]) + data)
    assert_same_decoding(data)


@SETTINGS
@given(any_message | values, st.data())
def test_corrupted_frames_decode_or_fail_as_in_the_reference(value, data):
    try:
        good = bytearray(messages._reference_encode(value))
    except (TypeError, ValueError, OverflowError):
        return
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
        good[pos] = data.draw(st.integers(min_value=0, max_value=255))
    assert_same_decoding(bytes(good))
    cut = data.draw(st.integers(min_value=0, max_value=len(good)))
    assert_same_decoding(bytes(good[:cut]))


REQ_TAG = messages._TAG_OF[ClientRequest]
OP_TAG = messages._TAG_OF[Op]
CONFIG_TAG = messages._TAG_OF[ClusterConfig]
REJOIN_TAG = messages._TAG_OF[RejoinConfig]
SNAPSHOT_TAG = messages._TAG_OF[Snapshot]
ENTRY_TAG = messages._TAG_OF[LogEntry]
OP = [marker(OP_TAG), "put", "k", "v", None, None]


@pytest.mark.parametrize(
    "data",
    [
        # The release before principals: a request without its appended field.
        frame(REQ_TAG, "c", 1, OP, None),
        # A registered subclass where its base class is declared.
        frame(SNAPSHOT_TAG, 1, 1, [marker(REJOIN_TAG), ("a",), (), ("a",)], None),
        # msgpack's timestamp extension, in a field and in a container.
        bytes([CODEC_VERSION])
        + msgpack.packb([marker(ENTRY_TAG), 1, 1, "c", datetime.datetime.now(datetime.UTC)], datetime=True),
        bytes([CODEC_VERSION]) + msgpack.packb({"t": [datetime.datetime.now(datetime.UTC)]}, datetime=True),
        # A marker outside a message head, an unknown extension, an unknown tag.
        bytes([CODEC_VERSION]) + msgpack.packb([1, marker(OP_TAG)]),
        bytes([CODEC_VERSION]) + msgpack.packb(msgpack.ExtType(7, b"\x00\x01")),
        frame(9999, 1),
        bytes([CODEC_VERSION])
        + msgpack.packb([msgpack.ExtType(7, OP_TAG.to_bytes(2, "big")), "put", "k", 1, None, None]),
        # Map keys the engine leaves to the reference: an array, a message.
        bytes([CODEC_VERSION]) + msgpack.packb({(1, 2): 3}),
        bytes([CODEC_VERSION]) + msgpack.packb({msgpack.ExtType(1, b"x"): 3}),
        messages._reference_encode({ClusterConfig(voters=("a",)): 1, 2: 3}),
        bytes([CODEC_VERSION]) + msgpack.packb({datetime.datetime.now(datetime.UTC): 3}, datetime=True),
        # Field checks: a bool for an int, an int beyond int64, a wrong class in a tuple of entries.
        frame(messages._TAG_OF[LogEntry], True, 1, "c", None),
        frame(messages._TAG_OF[LogEntry], 2**63, 1, "c", None),
        frame(messages._TAG_OF[LogEntry], 1, 1, "bogus-kind", None),
        bytes([CODEC_VERSION])
        + msgpack.packb([marker(REQ_TAG), "c", 1, [marker(CONFIG_TAG), (), ()], None, None]),
        # Trailing bytes, an empty frame, another version.
        frame(CONFIG_TAG, ("a",), ()) + b"\x00",
        b"",
        bytes([CODEC_VERSION + 1]) + msgpack.packb(1),
    ],
)
def test_frames_the_engine_leaves_to_the_reference(data):
    assert_same_decoding(data)


# -- the engine does the work ----------------------------------------------------------------


@pytest.fixture
def no_reference(monkeypatch):
    """The reference implementation fails the test if it is reached."""

    def reached(_: Any) -> Any:
        raise AssertionError("the reference implementation did the work")

    monkeypatch.setattr(messages, "_reference_encode", reached)
    monkeypatch.setattr(messages, "_reference_decode", reached)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(any_message)
def test_the_engine_encodes_and_decodes_every_message_itself(no_reference, msg):
    data = encode(msg)
    assert same(decode(data), msg)


def test_the_engine_handles_the_samples_and_their_log_records(no_reference):
    for msg in SAMPLES:
        assert same(decode(encode(msg)), msg)
    records = [LogEntry(term=1, index=i, kind=COMMAND, data=SAMPLES[0]) for i in range(100)]
    assert same(decode(encode(records)), tuple(records))


def test_a_snapshot_sized_value_is_left_to_the_reference(monkeypatch):
    # The engine would copy every container of a large state; the reference's C needs none.
    calls: list[str] = []
    for name in ("_reference_encode", "_reference_decode"):
        real = getattr(messages, name)
        monkeypatch.setattr(messages, name, lambda arg, real=real, name=name: calls.append(name) or real(arg))
    state = {f"key{i:06d}": (f"value{i}", i) for i in range(messages._ENGINE_MAX_ITEMS + 1)}
    snap = Snapshot(last_index=1, last_term=1, config=ClusterConfig(voters=("a",)), data=state)
    data = encode(snap)
    assert calls == ["_reference_encode"]
    blob = encode(
        Snapshot(last_index=1, last_term=1, config=ClusterConfig(voters=("a",)), data=b"x" * (1 << 20))
    )
    assert calls == ["_reference_encode"]  # one large scalar: no container to copy
    assert len(blob) > messages._ENGINE_MAX_FRAME
    assert same(decode(data), snap)  # a frame under _ENGINE_MAX_FRAME: the engine's
    assert calls == ["_reference_encode"]
    assert decode(blob).data == b"x" * (1 << 20)
    assert calls == ["_reference_encode", "_reference_decode"]
    small = encode(
        Snapshot(
            last_index=1,
            last_term=1,
            config=ClusterConfig(voters=("a",)),
            data=dict(list(state.items())[:10]),
        )
    )
    decode(small)
    assert len(calls) == 2
