"""Hostile peer messages made from real ones: what a broken or hostile member sends.

A protocol's real traffic is harvested from a short simulated run (``harvest``: the
same node ids, transaction ids and keys a 3-node cluster uses), then ``mutated`` draws
one of those messages and changes it: none of it (a replay, maybe to another node), or
one to three spots at any depth, each a field or an item replaced by a value at the edge
of its declared type (int64 bounds, negative, empty and unknown node ids, names of
transactions that exist or not) or by a value of any type at all.  The result is a
``Raw`` (tests/server/test_fuzz_peer.py): packed as is, so it can hold what the codec
then refuses; what a node gets is what ``decode`` makes of it.

Used by the peer-port fuzzing of live clusters (tests/server/test_fuzz_peer.py) and the
in-process fuzzing of simulated nodes (tests/protocols/test_fuzz_messages.py).
"""

from __future__ import annotations

import typing
from typing import Any

import msgpack
from hypothesis import strategies as st

from consensuskit.core.messages import CODEC_VERSION, EXT_MESSAGE, message_fields, registered_messages
from consensuskit.sim import SimConfig, Simulation

EDGE_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, 3, 10, 2**31, 2**62, 2**63 - 2, 2**63 - 1, 2**63, 2**64 - 1]
NODE_IDS = ["n1", "n2", "n3", "n9", "", "x" * 300]
HARVEST_SECONDS = 10.0
HARVEST_LIMIT = 400


class Raw:
    """A message packed as is: its tag and its fields, whatever their values."""

    def __init__(self, tag: int, fields: list[Any]) -> None:
        self.tag, self.fields = tag, fields

    def __repr__(self) -> str:
        cls = registered_messages().get(self.tag)
        return f"{cls.__name__ if cls else self.tag}{self.fields!r}"


def _pack(value: Any) -> Any:
    if isinstance(value, Raw):
        return [msgpack.ExtType(EXT_MESSAGE, value.tag.to_bytes(2, "big")), *(_pack(f) for f in value.fields)]
    if isinstance(value, (list, tuple)):
        return [_pack(v) for v in value]
    if isinstance(value, dict):
        return {_pack_key(k): _pack(v) for k, v in value.items()}
    return value


def _pack_key(key: Any) -> Any:
    return tuple(_pack(key)) if isinstance(key, (list, tuple)) else key


def payload_of(value: Any) -> bytes:
    """The codec's bytes for ``value`` (a ``Raw`` at any depth packed as a message)."""
    return bytes([CODEC_VERSION]) + msgpack.packb(_pack(value), use_bin_type=True)


def to_raw(obj: Any) -> Any:
    """A decoded message (or value) as the ``Raw`` tree that packs to the same bytes."""
    tags = {c: t for t, c in registered_messages().items()}
    if type(obj) in tags:
        return Raw(tags[type(obj)], [to_raw(getattr(obj, f.name)) for f in message_fields(type(obj))])
    if isinstance(obj, (list, tuple)):
        return [to_raw(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_raw(v) for k, v in obj.items()}
    return obj


def harvest(protocol: str, options: dict[str, Any] | None = None) -> list[tuple[str, str, Raw]]:
    """Up to HARVEST_LIMIT distinct (src, dst, message) a 3-node ``protocol`` run sends
    while two clients use it (the first ones of each class first)."""
    sim = Simulation(
        SimConfig(
            protocol=protocol,
            node_ids=("n1", "n2", "n3"),
            clients=2,
            duration=HARVEST_SECONDS,
            options=dict(options or {}),
            # Only the traffic is wanted; the monitors start with run(), not here.
            check_every_step=False,
            check_linearizability=False,
        )
    )
    seen: dict[str, tuple[str, str, Any]] = {}
    tags = set(registered_messages().values())

    def observe(src: str, dst: str, msg: Any) -> None:
        if type(msg) in tags and len(seen) < HARVEST_LIMIT * 4:
            seen.setdefault(repr(msg), (src, dst, msg))

    sim.add_observer(observe)
    sim.start_workload()
    sim.run_until(HARVEST_SECONDS)
    sim.close()
    by_class: dict[str, list[tuple[str, str, Any]]] = {}
    for sent in seen.values():
        by_class.setdefault(type(sent[2]).__name__, []).append(sent)
    # Round robin over the classes: a rare one (a termination message) is not crowded out.
    out: list[tuple[str, str, Raw]] = []
    while len(out) < HARVEST_LIMIT and any(by_class.values()):
        for name in sorted(by_class):
            if by_class[name]:
                src, dst, msg = by_class[name].pop(0)
                out.append((src, dst, to_raw(msg)))
    return out[:HARVEST_LIMIT]


def strings_of(messages: list[tuple[str, str, Raw]]) -> list[str]:
    """Every short string the harvested messages hold (transaction ids, keys, names)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if len(value) <= 40:
                found.add(value)
        elif isinstance(value, Raw):
            for item in value.fields:
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)

    for _, _, msg in messages:
        walk(msg)
    return sorted(found)


scalars = st.one_of(
    st.sampled_from(EDGE_INTS),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(NODE_IDS),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)


def anything() -> st.SearchStrategy[Any]:
    """A value of any type: a scalar, a short list, a map, a message marker."""
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-2, 2)), scalars, max_size=2),
        # A marker of any class with no fields: a nested message of the wrong class.
        st.sampled_from(sorted(registered_messages())).map(lambda tag: Raw(tag, [])),
    )


def edge_value(hint: Any, like: Any, names: list[str]) -> st.SearchStrategy[Any]:
    """A value of ``hint``'s type (or else ``like``'s) at the edges of its range."""
    kind = hint if hint in (int, str, bool, float, bytes) else type(like)
    if kind is int:
        return st.one_of(st.sampled_from(EDGE_INTS), st.integers(-3, 12))
    if kind is str:
        return st.one_of(st.sampled_from(NODE_IDS), st.sampled_from(names or ["n1"]), st.text(max_size=6))
    if kind is bool:
        return st.booleans()
    if kind is float:
        return st.sampled_from([0.0, -1.0, 1e308, float("nan"), float("inf"), float("-inf")])
    if kind is bytes:
        return st.binary(max_size=16)
    if kind is list:
        return st.sampled_from([[], like + like, like[:-1]])
    return st.nothing()


@st.composite
def _mutate(draw: st.DrawFn, value: Any, hint: Any, names: list[str], others: st.SearchStrategy[Any]) -> Any:
    """``value`` with one spot (``value`` itself, or one at any depth inside) changed."""
    inside = isinstance(value, (Raw, list)) and len(value.fields if isinstance(value, Raw) else value) > 0
    if inside and draw(st.integers(0, 2)) > 0:
        if isinstance(value, Raw):
            cls = registered_messages()[value.tag]
            hints = typing.get_type_hints(cls)
            names_of = [f.name for f in message_fields(cls)]
            i = draw(st.integers(0, len(value.fields) - 1))
            fields = list(value.fields)
            field_hint = hints.get(names_of[i], Any) if i < len(names_of) else Any
            fields[i] = draw(_mutate(fields[i], field_hint, names, others))
            return Raw(value.tag, fields)
        i = draw(st.integers(0, len(value) - 1))
        items = list(value)
        items[i] = draw(_mutate(items[i], Any, names, others))
        return items
    if draw(st.integers(0, 3)) == 0:
        return draw(others)
    return draw(st.one_of(edge_value(hint, value, names), others))


@st.composite
def mutated(draw: st.DrawFn, harvested: list[tuple[str, str, Raw]]) -> tuple[str, str, Raw]:
    """(src, dst, message): a harvested message, replayed as is or with 1-3 spots changed."""
    src, dst, raw = draw(st.sampled_from(harvested))
    names = strings_of(harvested)
    others = anything()
    for _ in range(draw(st.integers(0, 3))):
        raw = draw(_mutate(raw, Any, names, others))
    return src, dst, raw
