"""Message registry and the one msgpack codec for every message, entry and snapshot.

A message class is a frozen, slotted, keyword-only dataclass registered with a unique
integer tag via ``@message(tag)``.  Tags are only ever appended, never reused, so peers
of different versions agree on what they can decode.  A class whose instances a node
keeps by the hundred thousand may instead be a frozen, keyword-only ``msgspec.Struct``
declared ``gc=False`` (the log's entry, its request and operation): the collector never
tracks those, so its collections do not walk a long log (docs/server.md, "the
collector").  Such a class must never be part of a reference cycle (one would leak), and
says which of its fields are appended in a class attribute, ``__appended__ = {name:
absent}``.  Either kind encodes the same way; ``message_fields`` reads both.

Wire format of ``encode(obj)``: one version byte (``CODEC_VERSION``) followed by a
msgpack document.  Registered dataclasses, at any nesting depth, travel as a msgpack
array ``[marker, field1, field2, ...]`` (fields in declaration order) whose first item,
the marker, is msgpack extension type ``EXT_MESSAGE`` holding the tag as 2 big-endian
bytes.  Messages are packed inline, in one pass (version 1 nested a packed payload per
message, which cost several times more).  The marker is the only extension a frame may
hold: any other, msgpack's own timestamp included, is refused while parsing.  Decoding
checks the version, the tag, the field count and the declared scalar types, and raises
``CodecError`` naming what was wrong.  A field declared
``int`` (alone or in a union) must hold a value within int64, ``WIRE_INT_MIN`` …
``WIRE_INT_MAX``: msgpack carries up to 2^64-1, and a peer's 2^64-1 would make the
receiver's next term, ballot or index unstorable (a halt, issue 10).  A field declared as
a registered message class (or a union with one) must hold that class, and a
``tuple[M, ...]`` of a message class only instances of M: a peer's integer where a log
entry or a ballot belongs must not reach a handler.  Likewise a ``tuple[S, ...]`` of a
scalar type (``str``, ``int`` within int64, ...) holds only S: a peer's map where a node
id belongs once became a message destination and halted a 2PC participant.  An instance of M is also one of a
registered subclass of M (decoded by its own tag): a family may extend an entry type
and still send it in its base's messages.

A field appended to a class after a release carries ``metadata=appended(absent)``
(every such field after the class's other fields): a frame without it, written by that
release, decodes with ``absent`` in its place (which may differ from the field's default,
so a reader can tell an old frame from a new one that holds the default).  Encoding
always writes every field; a frame missing a field that is not appended is refused.

``iter_encode(obj)`` yields the same bytes as ``encode(obj)`` in pieces of about
``piece_bytes``, so a 100 MB snapshot can be written or streamed without a 100 MB copy.

Two implementations write and read this format.  The reference, on msgpack
(``_reference_encode``/``_reference_decode``), defines it: its bytes, values and errors.
``encode``/``decode`` run msgspec's msgpack engine instead (2-2.5x faster to encode,
about 1.3x to decode: benchmarks/wire_codec.py) and hand the reference anything they are
not sure to do exactly as it does, so the wire and the WAL did not change by a byte (the
engine section below; tests/core/test_codec_engines.py holds them to it).
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import msgpack
import msgspec

CODEC_VERSION = 2
EXT_MESSAGE = 1
MARKER_BYTES = 2  # a marker's payload: the tag, big-endian
WIRE_INT_MIN = -(2**63)
WIRE_INT_MAX = 2**63 - 1

T = TypeVar("T")


class CodecError(ValueError):
    """Bytes from outside that are not a valid message (remote misbehaviour)."""


class UnknownMessage(CodecError):
    """A well-formed frame naming a message tag this release does not know: most likely
    a newer release's message (a rolling upgrade), which a peer can skip."""


_BY_TAG: dict[int, type] = {}
_TAG_OF: dict[type, int] = {}
# Classes registered with streamed=True (see ``message``).
_STREAMED: set[type] = set()
_CHECKS: dict[type, tuple[tuple[str, tuple[type, ...] | None], ...]] = {}

_SCALARS = (int, float, str, bytes, bool)


_APPENDED = "consensuskit.appended"  # the metadata key ``appended`` sets


def appended(absent: Any) -> dict[str, Any]:
    """Field metadata: this field was appended after a release; frames of that release,
    which lack it, decode with ``absent`` (module docstring)."""
    return {_APPENDED: absent}


def message(tag: int, *, streamed: bool = False) -> Callable[[type[T]], type[T]]:
    """Register a dataclass under ``tag`` for the codec.

    ``streamed``: the message may carry a whole state (a snapshot), and is a value: what
    it holds never changes once it is made (a state machine's snapshot is immutable,
    ``core.service.StateMachine``).  So whoever writes one may encode it later, piece by
    piece (``iter_encode``): the peer transport as it writes it to the socket, the disk
    WAL in its sync worker thread.  The sender's event loop is never held for the whole
    encoding of a large state (which stops its heartbeats).  The bytes are the same."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls) and not _is_frozen_struct(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass (or a frozen Struct) to be a message")
        if tag in _BY_TAG and _BY_TAG[tag] is not cls:
            other = _BY_TAG[tag]
            raise ValueError(f"message tag {tag} used by both {other.__name__} and {cls.__name__}")
        _required_fields(cls)  # appended fields only at the end (raises TypeError)
        _BY_TAG[tag] = cls
        _TAG_OF[cls] = tag
        if streamed:
            _STREAMED.add(cls)
        _fast_frozen_init(cls)
        return cls

    return register


def is_streamed(obj: Any) -> bool:
    """``obj``'s class was registered with ``streamed=True``."""
    return type(obj) in _STREAMED


def _is_frozen_struct(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, msgspec.Struct) and cls.__struct_config__.frozen


class _StructField:
    """What the codec reads of a Struct's field, as of a dataclass field."""

    __slots__ = ("metadata", "name")
    init = True
    default_factory = dataclasses.MISSING

    def __init__(self, name: str, metadata: dict[str, Any]) -> None:
        self.name = name
        self.metadata = metadata


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}
_UNSEEN = object()


def message_field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass or msgspec Struct type (the two kinds a message
    class may be), in declaration order; None for any other type.  Cached per type."""
    names = _FIELD_NAMES.get(kind, _UNSEEN)
    if names is _UNSEEN:
        if dataclasses.is_dataclass(kind):
            names = tuple(f.name for f in dataclasses.fields(kind))
        elif isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            names = kind.__struct_fields__
        else:
            names = None
        _FIELD_NAMES[kind] = names
    return names  # type: ignore[return-value]


def message_fields(cls: type) -> tuple[Any, ...]:
    """A message class's fields in declaration order, each with ``name`` and ``metadata``
    (``appended``): a dataclass's own, or a Struct's (module docstring)."""
    if dataclasses.is_dataclass(cls):
        return dataclasses.fields(cls)
    appended_fields: dict[str, Any] = getattr(cls, "__appended__", {})
    return tuple(
        _StructField(name, {_APPENDED: appended_fields[name]} if name in appended_fields else {})
        for name in cls.__struct_fields__  # type: ignore[attr-defined]
    )


def _fast_frozen_init(cls: type) -> None:
    """Give a frozen slotted dataclass an ``__init__`` that sets each slot through its
    member descriptor's setter instead of ``object.__setattr__(self, name, value)``:
    the same signature (defaults and all), the same fields set in the same order, then
    ``__post_init__`` as before.  Frozen dataclasses pay a named ``object.__setattr__``
    call per field, about a third of what building a message costs (a simulator builds
    one or more per event).  Anything unusual (a default factory, an init=False field,
    an ``__init__`` not generated by dataclasses) keeps the generated one."""
    params = getattr(cls, "__dataclass_params__", None)
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if params is None or not params.frozen or code is None or code.co_filename != "<string>":
        return
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if any(not f.init or f.default_factory is not dataclasses.MISSING for f in fields):
        return
    if any(name == "self" or name.startswith("_set_") for name in names):
        return  # would shadow the parameter or a setter
    setters = _slot_setters(cls, names)
    if setters is None:
        return
    # The generated signature (dataclasses puts keyword-only fields last): reused as is.
    arg_names = code.co_varnames[1 : code.co_argcount]
    kw_names = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    if sorted((*arg_names, *kw_names)) != sorted(names):
        return
    head = ", ".join(("self", *arg_names, *(("*", *kw_names) if kw_names else ())))
    lines = [f"def __init__({head}):"]
    lines += [f"    _set_{i}(self, {name})" for i, name in enumerate(names)]
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    if not names:
        lines.append("    pass")
    env: dict[str, Any] = {f"_set_{i}": setter for i, setter in enumerate(setters)}
    # Compiled as "<string>" like the generated one: _slot_setters (the decoder) still
    # recognises an __init__ that sets exactly the fields.
    exec("\n".join(lines), env)  # the source holds only dataclass field names
    fast = env["__init__"]
    fast.__defaults__ = init.__defaults__  # type: ignore[union-attr]
    fast.__kwdefaults__ = init.__kwdefaults__  # type: ignore[union-attr]
    fast.__annotations__ = dict(init.__annotations__)  # type: ignore[union-attr]
    fast.__qualname__ = f"{cls.__qualname__}.__init__"
    fast.__module__ = cls.__module__
    fast.__doc__ = init.__doc__  # type: ignore[union-attr]
    cls.__init__ = fast  # type: ignore[misc]


# Per registered class: its size_hint method (or None) and its field names.
_SIZERS: dict[type, tuple[Callable[[Any], int] | None, tuple[str, ...]]] = {}
_ESTIMATE_DEPTH = 16


def estimated_size(obj: Any, depth: int = 0) -> int:
    """A cheap estimate of ``obj``'s encoded size, for flow control (not exact): its
    strings (4 bytes a character when not ASCII) and bytes at their length, 9 bytes per
    other scalar, a few bytes per container and registered message; anything nested
    deeper than 16 levels, or unknown, counts 9.  What matters is that a large value
    counts as large: a batch capped by an estimate that ignored it could outgrow the
    peer transport's frame limit, and a message over it is never delivered.

    A registered class may define ``size_hint(self) -> int`` for a faster answer than
    the walk over its fields (ClientRequest does: every log entry of a command holds
    one, and the walk costs several microseconds)."""
    kind = type(obj)
    if kind is str:
        return len(obj) if obj.isascii() else 4 * len(obj)
    if kind is bytes or kind is bytearray:
        return len(obj)
    if obj is None:
        return 1
    if depth >= _ESTIMATE_DEPTH:
        return 9
    if kind is tuple or kind is list:
        return 5 + sum([estimated_size(item, depth + 1) for item in obj])
    if kind is dict:
        return 5 + sum([estimated_size(k, depth + 1) + estimated_size(v, depth + 1) for k, v in obj.items()])
    if kind in _TAG_OF:
        sizer = _SIZERS.get(kind)
        if sizer is None:
            sizer = _SIZERS[kind] = (
                getattr(kind, "size_hint", None),
                tuple(f.name for f in message_fields(kind)),
            )
        hint, names = sizer
        if hint is not None:
            return hint(obj)
        return 4 + sum([estimated_size(getattr(obj, name), depth + 1) for name in names])
    return 9


def message_type(tag: int) -> type:
    return _BY_TAG[tag]


def registered_messages() -> dict[int, type]:
    return dict(sorted(_BY_TAG.items()))


def _field_checks(cls: type) -> tuple[tuple[str, tuple[type, ...] | None], ...]:
    """For each field, the scalar types it accepts, or None when not checked."""
    cached = _CHECKS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    checks: list[tuple[str, tuple[type, ...] | None]] = []
    for f in message_fields(cls):
        checks.append((f.name, _accepted_types(hints.get(f.name, Any))))
    result = tuple(checks)
    _CHECKS[cls] = result
    return result


def _accepted_types(hint: Any) -> tuple[type, ...] | None:
    if hint in _SCALARS:
        # msgpack has one integer type; a float field may arrive as an int.
        return (int, float) if hint is float else (hint,)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        accepted: list[type] = []
        for arg in typing.get_args(hint):
            if arg is type(None):
                accepted.append(type(None))
                continue
            sub = _accepted_types(arg)
            if sub is None:
                return None
            accepted.extend(sub)
        return tuple(accepted)
    if origin is tuple or hint is tuple:
        return (tuple,)
    if origin is dict or hint is dict:
        return (dict,)
    if isinstance(hint, type) and hint in _TAG_OF:
        return (hint,)  # a nested message: decoded as exactly that class
    return None


def _element_class(hint: Any) -> type | tuple[type, ...] | None:
    """For a field declared ``tuple[X, ...]`` (or that or None): M when X is a registered
    message M, the scalar types X accepts when X is a scalar type (or a union of them),
    else None (not checked)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [_element_class(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        return found[0] if len(found) == 1 else None
    args = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    if len(args) != 2 or args[1] is not Ellipsis:
        return None
    if isinstance(args[0], type) and args[0] in _TAG_OF:
        return args[0]
    accepted = _accepted_types(args[0])
    if accepted is not None and set(accepted) <= set(_SCALARS) | {type(None)}:
        return accepted
    return None


def _element_error(
    cls: type, name: str, element: type | tuple[type, ...], items: tuple[Any, ...]
) -> str | None:
    """Why a decoded ``tuple[X, ...]`` field's ``items`` are not all X, or None."""
    kinds = element if isinstance(element, tuple) else (element,)
    for item in items:
        wrong = not isinstance(item, kinds) or ((item is True or item is False) and bool not in kinds)
        if wrong:
            want = " or ".join(k.__name__ for k in kinds)
            return f"malformed {cls.__name__}: field {name!r} holds a {type(item).__name__}, not a {want}"
        if type(item) is int and not WIRE_INT_MIN <= item <= WIRE_INT_MAX:
            return f"malformed {cls.__name__}: field {name!r} holds {item}, outside int64"
    return None


def _required_fields(cls: type) -> int:
    """How many leading fields every frame of ``cls`` holds (the rest are appended)."""
    fields = message_fields(cls)
    required = len(fields)
    for i, f in enumerate(fields):
        if _APPENDED in f.metadata:
            required = min(required, i)
        elif required < len(fields):
            raise TypeError(f"{cls.__name__}.{f.name}: a field after an appended field must be appended too")
    return required


class _Marker:
    """What the decoder makes of a message's leading extension: the class to build."""

    __slots__ = ("absent", "build", "checks", "cls", "elements", "names", "required", "wire_build")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.checks = _field_checks(cls)
        self.names = tuple(name for name, _ in self.checks)
        self.required = _required_fields(cls)
        # What an older frame without the appended fields decodes with, in field order.
        self.absent = tuple(f.metadata[_APPENDED] for f in message_fields(cls)[self.required :])
        hints = typing.get_type_hints(cls)
        self.elements = tuple(_element_class(hints.get(name, Any)) for name in self.names)
        self.build = _compile_builder(self)
        self.wire_build = _compile_wire_builder(self)


def _slot_setters(cls: type, names: tuple[str, ...]) -> list[Callable[[Any, Any], None]] | None:
    """The slot descriptors' setters, when building ``cls`` field by field is exactly its
    generated ``__init__`` (a slotted dataclass whose fields are all init fields)."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if code is None or code.co_filename != "<string>":  # not the one dataclasses generated
        return None
    fields = dataclasses.fields(cls)
    if tuple(f.name for f in fields) != names or not all(f.init for f in fields):
        return None
    setters = []
    for name in names:
        descriptor = cls.__dict__.get(name)
        if type(descriptor) is not types.MemberDescriptorType:
            return None
        setters.append(descriptor.__set__)
    return setters


def _slot_building_lines(setters: list[Callable[[Any, Any], None]], env: dict[str, Any]) -> list[str]:
    """Generated lines that make ``obj`` of ``cls`` from ``v0, v1, ...`` through the slot
    setters (put into ``env``), as a builder does without calling the frozen __init__."""
    env["new"] = object.__new__
    lines = ["    obj = new(cls)"]
    for i, setter in enumerate(setters):
        env[f"set{i}"] = setter
        lines.append(f"    set{i}(obj, v{i})")
    return lines


def _compile_builder(marker: _Marker) -> Callable[[tuple[Any, ...]], Any]:
    """A per-class decoder with the field checks unrolled (as dataclasses generates its
    __init__): several times faster than a loop.  Any doubt falls back to ``_build``,
    which raises the detailed CodecError."""
    # ``values`` is the whole decoded array, marker first (no slice copied per message).
    n = len(marker.checks)
    env: dict[str, Any] = {"cls": marker.cls, "slow": _build, "marker": marker, "Marker": _Marker}
    lines = [
        "def build(values):",
        f"    if len(values) != {n + 1}:",
        "        return slow(marker, values[1:])",
    ]
    lines.append(f"    (_head, {''.join(f'v{i}, ' for i in range(n))}) = values")
    for i, (_, accepted) in enumerate(marker.checks):
        if accepted is None:
            lines.append(f"    if v{i}.__class__ is Marker:")
        else:
            # msgpack yields exactly int, float, str, bytes, bool, None, tuple or dict, so
            # one set lookup on the exact class is the whole check (a bool is not an int
            # here); anything else takes the slow path, which explains the refusal.
            env[f"acc{i}"] = frozenset(accepted)
            lines.append(f"    if v{i}.__class__ not in acc{i}:")
            if int in accepted:  # and within int64 (the module rules)
                lines.append("        return slow(marker, values[1:])")
                bounds = f"{WIRE_INT_MIN} <= v{i} <= {WIRE_INT_MAX}"
                lines.append(f"    if v{i}.__class__ is int and not {bounds}:")
        lines.append("        return slow(marker, values[1:])")
        element = marker.elements[i]
        if isinstance(element, tuple):  # tuple[S, ...] of a scalar type: the exact classes
            env[f"elem{i}"] = frozenset(element)
            check = f"e.__class__ in elem{i}"
            if int in element:
                check += f" and (e.__class__ is not int or {WIRE_INT_MIN} <= e <= {WIRE_INT_MAX})"
            lines.append(f"    if v{i}.__class__ is tuple and not all({check} for e in v{i}):")
            lines.append("        return slow(marker, values[1:])")
        elif element is not None:  # tuple[M, ...]: every item an M
            env[f"elem{i}"] = element
            check = f"e.__class__ is elem{i} or isinstance(e, elem{i})"  # the exact class first: cheap
            lines.append(f"    if v{i}.__class__ is tuple and not all({check} for e in v{i}):")
            lines.append("        return slow(marker, values[1:])")
    setters = _slot_setters(marker.cls, marker.names)
    if setters is None:
        kwargs = ", ".join(f"{name}=v{i}" for i, name in enumerate(marker.names))
        lines += [
            "    try:",
            f"        return cls({kwargs})",
            "    except (TypeError, ValueError):",
            "        return slow(marker, values[1:])",
        ]
    else:
        # What the generated frozen __init__ does, minus its object.__setattr__ per field
        # (half the cost of building an entry); __post_init__ still validates.
        lines += _slot_building_lines(setters, env)
        if hasattr(marker.cls, "__post_init__"):
            lines += [
                "    try:",
                "        obj.__post_init__()",
                "    except (TypeError, ValueError):",
                "        return slow(marker, values[1:])",
            ]
        lines.append("    return obj")
    exec("\n".join(lines), env)  # the source holds only dataclass field names
    return env["build"]  # type: ignore[no-any-return]


# Per class: (extension marker to emit, getter of the field values as a tuple).
_ENCODERS: dict[type, tuple[msgpack.ExtType, Callable[[Any], tuple[Any, ...]]]] = {}
_MARKERS: dict[bytes, _Marker] = {}


def _encoder(cls: type) -> tuple[msgpack.ExtType, Callable[[Any], tuple[Any, ...]]] | None:
    cached = _ENCODERS.get(cls)
    if cached is not None:
        return cached
    tag = _TAG_OF.get(cls)
    if tag is None:
        return None
    names = [f.name for f in message_fields(cls)]
    if not names:
        getter: Callable[[Any], tuple[Any, ...]] = lambda obj: ()  # noqa: E731
    elif len(names) == 1:
        one = operator.attrgetter(names[0])
        getter = lambda obj: (one(obj),)  # noqa: E731
    else:
        getter = operator.attrgetter(*names)
    cached = (msgpack.ExtType(EXT_MESSAGE, _tag_bytes(tag)), getter)
    _ENCODERS[cls] = cached
    return cached


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(MARKER_BYTES, "big")


class LazyArray:
    """A long array built on demand, a chunk at a time: ``count`` elements of ``group``
    items each, ``chunk(start, stop)`` giving the items of elements [start, stop) as a
    tuple.  The codec encodes it exactly as the tuple of all its items (``iter_encode``
    one chunk at a time), and decoding gives that tuple; it compares equal to any
    sequence with the same items.

    Why: a state machine's snapshot is taken on the event loop, and flattening a million
    keys into one tuple there costs a fifth of a second.  With a LazyArray it copies two
    tuples (a few ms) and whoever encodes the snapshot (the WAL's sync worker, the peer
    transport between writes) does the flattening.  Like any snapshot it is a value:
    ``chunk`` must give the same items every time (it reads only what it captured).

    ``small_items``: every item is small (a key and its short history, not a whole
    state), so ``iter_encode`` packs a slice of items in one C call instead of walking
    each item as it would a container that might be large.  The bytes are the same
    either way; only how large one piece may grow depends on it."""

    __slots__ = ("chunk", "count", "group", "small_items")

    def __init__(
        self, count: int, group: int, chunk: Callable[[int, int], tuple[Any, ...]], small_items: bool = False
    ) -> None:
        if count < 0 or group < 1:
            raise ValueError(f"a LazyArray needs count >= 0 and group >= 1, got {count}, {group}")
        self.count = count
        self.group = group
        self.chunk = chunk
        self.small_items = small_items

    def chunks(self, elements: int) -> Iterator[tuple[Any, ...]]:
        """The items, ``elements`` elements (``elements * group`` items) a chunk."""
        for start in range(0, self.count, elements):
            yield self.chunk(start, min(self.count, start + elements))

    def __len__(self) -> int:
        return self.count * self.group

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.chunks(4096))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("LazyArray index out of range")
        element, offset = divmod(i, self.group)
        return self.chunk(element, element + 1)[offset]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (LazyArray, tuple, list)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # compared by value, like a list

    def __repr__(self) -> str:
        return f"LazyArray{tuple(self)!r}"


def _default(obj: Any) -> Any:
    # A message becomes an array [marker, field1, field2, ...] packed inline (no nested
    # packb): the marker is a tiny extension holding the tag.
    encoder = _encoder(type(obj))
    if encoder is not None:
        marker, getter = encoder
        return [marker, *getter(obj)]
    if type(obj) is LazyArray:
        return tuple(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if type(obj) is int:  # msgpack hands over an int beyond its range: its own error
        raise OverflowError("Integer value out of range")
    raise TypeError(f"cannot encode {type(obj).__name__}: not a registered message")


def _marker_for(data: bytes) -> _Marker:
    marker = _MARKERS.get(data)
    if marker is not None:
        return marker
    if len(data) != MARKER_BYTES:
        raise CodecError("malformed message marker")
    tag = int.from_bytes(data, "big")
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise UnknownMessage(f"unknown message tag {tag}")
    marker = _MARKERS[data] = _Marker(cls)
    return marker


def _build(marker: _Marker, values: tuple[Any, ...]) -> Any:
    cls = marker.cls
    checks = marker.checks
    held = len(values)
    if not marker.required <= held <= len(checks):
        expected = str(len(checks)) if marker.required == len(checks) else f"{marker.required}-{len(checks)}"
        raise CodecError(f"malformed {cls.__name__}: expected {expected} fields, got {held}")
    for (name, accepted), value in zip(checks[:held], values, strict=True):
        if accepted is not None:
            if not isinstance(value, accepted):
                raise CodecError(f"malformed {cls.__name__}: field {name!r} has type {type(value).__name__}")
            if (value is True or value is False) and bool not in accepted:
                raise CodecError(f"malformed {cls.__name__}: field {name!r} is a bool")
            if type(value) is int and not WIRE_INT_MIN <= value <= WIRE_INT_MAX:
                raise CodecError(f"malformed {cls.__name__}: field {name!r} is {value}, outside int64")
            element = marker.elements[marker.names.index(name)]
            if element is not None and type(value) is tuple:
                error = _element_error(cls, name, element, value)
                if error is not None:
                    raise CodecError(error)
        elif type(value) is _Marker:
            raise CodecError(f"malformed {cls.__name__}: field {name!r} is a bare message marker")
    if held < len(checks):  # an older release's frame: the appended fields it lacks
        values = (*values, *marker.absent[held - len(checks) :])
    try:
        return cls(**dict(zip(marker.names, values, strict=True)))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed {cls.__name__}: {exc}") from exc


def _unpackb(data: bytes) -> Any:
    # Markers handed out by ext_hook must each be consumed by list_hook as the head of
    # an array; one left over sits where no message can be.
    outstanding = 0

    def ext_hook(code: int, payload: bytes) -> Any:
        nonlocal outstanding
        if code != EXT_MESSAGE:
            raise CodecError(f"unknown msgpack extension type {code}")
        outstanding += 1
        return markers.get(payload) or _marker_for(payload)

    def list_hook(seq: tuple[Any, ...]) -> Any:
        nonlocal outstanding
        if seq:
            head = seq[0]
            if head.__class__ is _Marker:
                outstanding -= 1
                return head.build(seq)
        return seq

    markers = _MARKERS

    # msgpack decodes its own timestamp extension (-1) without asking ext_hook; every
    # form of it holds 4 bytes or more (shorter ones are refused as invalid), and our
    # only extension, a marker, holds MARKER_BYTES, so the length cap refuses it while
    # parsing, wherever it sits in a frame of any size.
    value = msgpack.unpackb(
        data,
        ext_hook=ext_hook,
        list_hook=list_hook,
        use_list=False,
        raw=False,
        strict_map_key=False,
        max_ext_len=MARKER_BYTES,
    )
    if outstanding:
        raise CodecError("malformed frame: a message marker outside a message")
    return value


def _reference_encode(obj: Any) -> bytes:
    """``encode`` on msgpack: the bytes and the errors that define the format."""
    # The version byte is packed as msgpack's positive fixint, which is that very byte,
    # so the frame is built in one buffer: no second copy of a 100 MB snapshot.
    packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=False)
    packer.pack(CODEC_VERSION)
    packer.pack(obj)
    return packer.bytes()


# Types the Packer writes itself without calling ``default`` (bool is an int).
_NATIVE = (type(None), int, float, str, bytes, bytearray, memoryview, dict, list, tuple)
# Exact types whose packing contains nothing to walk: packed as the Packer would.
_SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes})
# A long array's first slice; later ones are sized from the bytes per item seen so far.
_FIRST_SLICE = 256
# The Packer's nesting limit (msgpack's DEFAULT_RECURSE_LIMIT): iter_encode refuses what
# encode() refuses.
_MAX_DEPTH = 1024

SLICE_ITEMS = 32 * 1024
PIECE_BYTES = 1 << 20


class _Slice:
    """Consecutive items of a long list or tuple, packed as one run when all are scalars
    (or all are small: a LazyArray's ``small_items``)."""

    __slots__ = ("items", "nbytes", "small")

    def __init__(self, items: Sequence[Any], small: bool = False) -> None:
        self.items = items
        self.nbytes = 0  # set once packed as a run: how the next slice is sized
        self.small = small


def _slices(
    count: int,
    group: int,
    take: Callable[[int, int], Sequence[Any]],
    most: int,
    target: int,
    small: bool = False,
) -> Iterator[_Slice]:
    """Consecutive slices of an array of ``count`` elements of ``group`` items each
    (``take(start, stop)``: the items of elements [start, stop)): the first about
    ``_short(most)`` items, each later one sized from the bytes per item seen so far to
    about ``target`` bytes (a fixed item count would let 32k large values make one giant
    piece), never more than ``most`` items, always whole elements."""
    start, step = 0, max(1, _short(most) // group)
    while start < count:
        stop = min(count, start + step)
        piece = _Slice(take(start, stop), small)
        yield piece
        start = stop
        if piece.nbytes:
            step = max(1, min(most, target * step * group // piece.nbytes) // group)


def _short(most: int) -> int:
    """Arrays and maps up to this many items are never sliced."""
    return min(most, _FIRST_SLICE)


def _array_header_size(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def _all_scalars(values: Any) -> bool:
    return _SCALAR_TYPES.issuperset(map(type, values))


def _too_deep() -> ValueError:
    return ValueError("recursion limit exceeded")


def _open(item: Any, out: msgpack.Packer, most: int, target: int, depth: int) -> Iterator[Any] | None:
    """Start packing ``item`` (at nesting ``depth``) into ``out``, as the Packer with
    ``_default`` would: None when it is now wholly packed, else it is a container whose
    header is packed and the returned iterator gives what follows (items, map keys and
    values, or _Slices)."""
    kind = type(item)
    short = _short(most)
    if kind is list or kind is tuple:
        n = len(item)
        if n and depth >= _MAX_DEPTH:
            raise _too_deep()
        if n <= short and _all_scalars(item):
            out.pack(item)
            return None
        out.pack_array_header(n)
        if n <= short:
            return iter(item)
        return _slices(n, 1, lambda start, stop: item[start:stop], most, target)
    if kind is LazyArray:
        n = len(item)
        if n and depth >= _MAX_DEPTH:
            raise _too_deep()
        out.pack_array_header(n)
        return _slices(item.count, item.group, item.chunk, most, target, item.small_items)
    if kind is dict:
        if item and depth >= _MAX_DEPTH:
            raise _too_deep()
        if len(item) <= short and _all_scalars(item) and _all_scalars(item.values()):
            out.pack(item)
            return None
        out.pack_map_header(len(item))
        return itertools.chain.from_iterable(item.items())
    if not isinstance(item, _NATIVE):
        encoder = _encoder(kind)
        if encoder is not None:
            if depth >= _MAX_DEPTH:
                raise _too_deep()
            marker, getter = encoder
            fields = getter(item)
            out.pack_array_header(1 + len(fields))
            out.pack(marker)
            return iter(fields)
        if isinstance(item, (set, frozenset)):
            return _open(sorted(item), out, most, target, depth)
    # A subclass of a native type, an extension, or something ``_default`` refuses:
    # the Packer does exactly what encode() would, raising included.
    out.pack(item)
    return None


def _buffered(out: msgpack.Packer) -> int:
    with out.getbuffer() as view:
        return view.nbytes


def iter_encode(
    obj: Any, *, slice_items: int = SLICE_ITEMS, piece_bytes: int = PIECE_BYTES
) -> Iterator[bytes]:
    """``encode(obj)`` in pieces: their concatenation is exactly ``encode(obj)``.

    Walks ``obj`` as the Packer would, so no piece is much larger than ``piece_bytes``
    or one slice of a long array (at most ``slice_items`` items, sized to about
    ``piece_bytes``); a single scalar (a 50 MB bytes value) is one piece.  Raises what
    encode() would, when the pieces get there.  Pure computation: deterministic."""
    if slice_items < 1 or piece_bytes < 1:
        raise ValueError(f"slice_items and piece_bytes must be positive, got {slice_items}, {piece_bytes}")
    return _iter_encode(obj, slice_items, piece_bytes)


def _iter_encode(obj: Any, slice_items: int, piece_bytes: int) -> Iterator[bytes]:
    out = msgpack.Packer(default=_default, use_bin_type=True, autoreset=False)
    runs = msgpack.Packer(default=_default, use_bin_type=True)
    pack = out.pack
    pack(CODEC_VERSION)
    stack: list[Iterator[Any]] = [iter((obj,))]
    depths = [0]  # the nesting depth of what each iterator in ``stack`` gives
    loose = 0  # scalars packed one by one since the buffer was last measured
    while stack:
        depth = depths[-1]
        for item in stack[-1]:
            kind = type(item)
            if kind in _SCALAR_TYPES:
                pack(item)
                loose += 1
                if loose < 256:
                    continue
            elif kind is _Slice:
                run = item.items
                # Packed as an array of its own, minus that array's header: the items
                # belong to the enclosing array, whose header is already out.  msgspec's
                # C packs scalars to the same bytes about twice as fast (a snapshot's
                # keys and values); anything it refuses goes to the reference, which
                # packs it or raises its own error.  Small items that are containers
                # (the etcd service's (key, history) pairs) go to the reference whole:
                # its C packs them seven times faster than walking them here.
                if _all_scalars(run):
                    try:
                        packed = _WIRE_ENCODER.encode(run)
                    except Exception:
                        packed = runs.pack(run)
                elif item.small:
                    packed = runs.pack(run)
                else:
                    stack.append(iter(run))
                    depths.append(depth)
                    break
                skip = _array_header_size(len(run))
                item.nbytes = len(packed) - skip
                if _buffered(out):
                    yield out.bytes()
                    out.reset()
                yield packed[skip:]
                continue
            else:
                child = _open(item, out, slice_items, piece_bytes, depth)
                if child is not None:
                    stack.append(child)
                    depths.append(depth + 1)
                    break
            loose = 0
            if _buffered(out) >= piece_bytes:
                yield out.bytes()
                out.reset()
        else:
            stack.pop()
            depths.pop()
    if _buffered(out):
        yield out.bytes()


assert 0 <= CODEC_VERSION < 0x80, "the version must pack as a one-byte positive fixint"


def _reference_decode(data: bytes | bytearray | memoryview) -> Any:
    """``decode`` on msgpack: the values and the errors that define the format."""
    if not data:
        raise CodecError("empty frame")
    if data[0] != CODEC_VERSION:
        raise CodecError(f"unsupported codec version {data[0]} (this build speaks {CODEC_VERSION})")
    try:
        return _unpackb(memoryview(data)[1:])
    except CodecError:
        raise
    except ValueError as exc:  # msgpack's ExtraData, FormatError and StackError too
        if "max_ext_len" in str(exc):  # see _unpackb
            raise CodecError(
                f"malformed frame: an extension longer than a message marker ({MARKER_BYTES} bytes): "
                "msgpack's timestamp, or another we never write"
            ) from exc
        raise CodecError(f"malformed frame: {exc}") from exc
    except Exception as exc:  # msgpack raises assorted errors on truncated input
        raise CodecError(f"malformed frame: {type(exc).__name__}: {exc}") from exc


# -- the msgspec engine ------------------------------------------------------------------
#
# encode() and decode() run msgspec's msgpack (C) over plain values: a message becomes
# the list [Ext(EXT_MESSAGE, tag), field1, ...] through a converter compiled per class,
# and back through a builder compiled per class, so one Python frame per message is the
# whole cost.  The msgpack implementation above stays the reference: whatever the engine
# is not sure to do exactly as it does (a set to sort, a subclass of a native type, a
# frame that does not parse, validate or is an older release's) goes to it, so the bytes
# written and the values or CodecError read are the reference's in every case
# (tests/core/test_codec_engines.py compares the two).

_WIRE_ENCODER = msgspec.msgpack.Encoder()
_WIRE_DECODER = msgspec.msgpack.Decoder()  # untyped: arrays as lists, extensions as Ext
_WIRE_EXT = msgspec.msgpack.Ext
_HEADER = bytes([CODEC_VERSION])
# Exact classes msgspec writes as the Packer does and reads as the Unpacker does.
_WIRE_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
# Past these sizes (a snapshot's state, not a message) the reference does the work: the
# engine's Python walk would copy every container (lists become tuples on the way in,
# a map of tuples is rebuilt on the way out) where msgpack's C needs no copy, so it
# would cost memory and time where it saves nothing.
_ENGINE_MAX_ITEMS = 4096
_ENGINE_MAX_FRAME = 1 << 20


class _NotWire(Exception):
    """The engine leaves this value or frame to the reference implementation."""


_CONVERTERS: dict[type, Callable[[Any], list[Any]]] = {}


def _to_wire(value: Any) -> Any:
    """``value`` with every message as its list (a value without one is returned as is)."""
    kind = value.__class__
    if kind in _WIRE_SCALARS:
        return value
    convert = _CONVERTERS.get(kind)
    if convert is not None or (kind in _TAG_OF and (convert := _compile_converter(kind)) is not None):
        return convert(value)
    if kind is tuple or kind is list:
        if _WIRE_SCALARS.issuperset(map(type, value)):
            return value
        if len(value) > _ENGINE_MAX_ITEMS:
            raise _NotWire
        return [_to_wire(item) for item in value]
    if kind is dict:
        if _WIRE_SCALARS.issuperset(map(type, value)) and _WIRE_SCALARS.issuperset(map(type, value.values())):
            return value
        if len(value) > _ENGINE_MAX_ITEMS:
            raise _NotWire
        return {_to_wire(key): _to_wire(item) for key, item in value.items()}
    raise _NotWire  # a set (sorted by the reference), a subclass, something unencodable


def _compile_converter(cls: type) -> Callable[[Any], list[Any]] | None:
    encoder = _encoder(cls)
    if encoder is None:
        return None
    names = [f.name for f in message_fields(cls)]
    env: dict[str, Any] = {
        "marker": _WIRE_EXT(EXT_MESSAGE, encoder[0].data),
        "scalars": _WIRE_SCALARS,
        "wire": _to_wire,
        "converters": _CONVERTERS,
    }
    lines = ["def convert(obj):"]
    for i, name in enumerate(names):
        # A nested message goes straight to its converter (one frame less per message).
        lines.append(f"    v{i} = obj.{name}")
        lines.append(f"    if v{i}.__class__ not in scalars:")
        lines.append(f"        c = converters.get(v{i}.__class__)")
        lines.append(f"        v{i} = wire(v{i}) if c is None else c(v{i})")
    lines.append(f"    return [marker, {''.join(f'v{i}, ' for i in range(len(names)))}]")
    exec("\n".join(lines), env)  # the source holds only dataclass field names
    convert: Callable[[Any], list[Any]] = env["convert"]
    _CONVERTERS[cls] = convert
    return convert


def _from_wire(value: Any) -> Any:
    """A decoded value with lists as tuples and every message built (``_reference_decode``'s
    value), or _NotWire when only the reference can say what the frame is."""
    kind = value.__class__
    if kind is list:
        if value:
            head = value[0]
            if head.__class__ is _WIRE_EXT:
                marker = _MARKERS.get(head.data)
                if marker is None:
                    marker = _marker_for(head.data)  # CodecError: the reference explains
                return marker.wire_build(value)
        if _WIRE_SCALARS.issuperset(map(type, value)):
            return tuple(value)
        return tuple([_from_wire(item) for item in value])
    if kind in _WIRE_SCALARS:
        return value
    if kind is dict and _WIRE_SCALARS.issuperset(map(type, value)):
        if _WIRE_SCALARS.issuperset(map(type, value.values())):
            return value
        return {key: _from_wire(item) for key, item in value.items()}
    # An extension outside a message head (a timestamp decodes as a datetime), a map
    # key that is an array or a message: the reference decides.
    raise _NotWire


def _compile_wire_builder(marker: _Marker) -> Callable[[list[Any]], Any]:
    """``_compile_builder`` for the engine's lists: the same checks, but any doubt (an
    older release's frame, a subclass where a class is declared, a failed check) gives
    up rather than explains: the reference decodes the frame again and explains."""
    n = len(marker.checks)
    env: dict[str, Any] = {
        "cls": marker.cls,
        "NotWire": _NotWire,
        "scalars": _WIRE_SCALARS,
        "wire": _from_wire,
        "markers": _MARKERS,
        "Ext": _WIRE_EXT,
    }
    lines = [
        "def build(values):",
        f"    if len(values) != {n + 1} or values[0].code != {EXT_MESSAGE}:",
        "        raise NotWire",
        f"    (_head, {''.join(f'v{i}, ' for i in range(n))}) = values",
    ]
    for i, (_, accepted) in enumerate(marker.checks):
        if accepted is None or not _WIRE_SCALARS.issuperset(accepted):  # may hold an array or a map
            # A nested message goes straight to its builder (one frame less per message).
            lines.append(f"    if v{i}.__class__ is list and v{i} and v{i}[0].__class__ is Ext:")
            lines.append(f"        m = markers.get(v{i}[0].data)")
            lines.append(f"        v{i} = wire(v{i}) if m is None else m.wire_build(v{i})")
            lines.append(f"    elif v{i}.__class__ not in scalars:")
            lines.append(f"        v{i} = wire(v{i})")
        if accepted is None:
            continue
        env[f"acc{i}"] = frozenset(accepted)
        lines.append(f"    if v{i}.__class__ not in acc{i}:")
        lines.append("        raise NotWire")
        if int in accepted:
            lines.append(f"    if v{i}.__class__ is int and not {WIRE_INT_MIN} <= v{i} <= {WIRE_INT_MAX}:")
            lines.append("        raise NotWire")
        element = marker.elements[i]
        if isinstance(element, tuple):  # tuple[S, ...] of a scalar type: the exact classes
            env[f"elem{i}"] = frozenset(element)
            lines.append(f"    if v{i}.__class__ is tuple:")
            lines.append(f"        for e in v{i}:")
            lines.append(f"            if e.__class__ not in elem{i}:")
            lines.append("                raise NotWire")
            if int in element:
                lines.append(
                    f"            if e.__class__ is int and not {WIRE_INT_MIN} <= e <= {WIRE_INT_MAX}:"
                )
                lines.append("                raise NotWire")
        elif element is not None:  # tuple[M, ...]: exactly M (a subclass: the reference)
            env[f"elem{i}"] = element
            lines.append(f"    if v{i}.__class__ is tuple:")
            lines.append(f"        for e in v{i}:")
            lines.append(f"            if e.__class__ is not elem{i}:")
            lines.append("                raise NotWire")
    setters = _slot_setters(marker.cls, marker.names)
    if setters is None:
        kwargs = ", ".join(f"{name}=v{i}" for i, name in enumerate(marker.names))
        lines.append(f"    return cls({kwargs})")
    else:
        lines += _slot_building_lines(setters, env)
        if hasattr(marker.cls, "__post_init__"):
            lines.append("    obj.__post_init__()")
        lines.append("    return obj")
    exec("\n".join(lines), env)  # the source holds only dataclass field names
    return env["build"]  # type: ignore[no-any-return]


def encode(obj: Any) -> bytes:
    """Serialize a message (or any msgpack value containing messages)."""
    try:
        return _HEADER + _WIRE_ENCODER.encode(_to_wire(obj))
    except Exception:  # the reference encodes it, or raises its own error
        return _reference_encode(obj)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Inverse of ``encode``; raises ``CodecError`` on anything it cannot trust.

    Any bytes-like object works and is not copied (a 100 MB snapshot stays one buffer)."""
    if data and data[0] == CODEC_VERSION and len(data) <= _ENGINE_MAX_FRAME:
        try:
            return _from_wire(_WIRE_DECODER.decode(memoryview(data)[1:]))
        except Exception:  # the reference decodes it, or explains why not
            pass
    return _reference_decode(data)


def summarize(msg: Any) -> str:
    """A short human-readable form: the message's own ``summary()`` if it has one."""
    summary = getattr(msg, "summary", None)
    if summary is not None:
        return str(summary())
    return type(msg).__name__
