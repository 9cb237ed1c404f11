"""Message registry and the one msgpack codec for every message, entry and snapshot.

A message class is a frozen, slotted, keyword-only dataclass registered with a unique
integer tag via ``@message(tag)``.  Tags are only ever appended, never reused, so peers
of different versions agree on what they can decode.

Wire format of ``encode(obj)``: one version byte (``CODEC_VERSION``) followed by a
msgpack document.  Registered dataclasses, at any nesting depth, travel as msgpack
extension type ``EXT_MESSAGE`` whose payload is ``[tag, field1, field2, ...]`` in
declaration order.  Decoding checks the version, the tag, the field count and the
declared scalar types, and raises ``CodecError`` naming what was wrong.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

CODEC_VERSION = 1
EXT_MESSAGE = 1

T = TypeVar("T")


class CodecError(ValueError):
    """Bytes from outside that are not a valid message (remote misbehaviour)."""


_BY_TAG: dict[int, type] = {}
_TAG_OF: dict[type, int] = {}
_CHECKS: dict[type, tuple[tuple[str, tuple[type, ...] | None], ...]] = {}

_SCALARS = (int, float, str, bytes, bool)


def message(tag: int) -> Callable[[type[T]], type[T]]:
    """Register a dataclass under ``tag`` for the codec."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be a message")
        if tag in _BY_TAG and _BY_TAG[tag] is not cls:
            other = _BY_TAG[tag]
            raise ValueError(f"message tag {tag} used by both {other.__name__} and {cls.__name__}")
        _BY_TAG[tag] = cls
        _TAG_OF[cls] = tag
        return cls

    return register


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
    for f in dataclasses.fields(cls):
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
    return None


def _default(obj: Any) -> Any:
    cls = type(obj)
    tag = _TAG_OF.get(cls)
    if tag is not None:
        payload = [tag]
        for f in dataclasses.fields(obj):
            payload.append(getattr(obj, f.name))
        return msgpack.ExtType(EXT_MESSAGE, _packb(payload))
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot encode {cls.__name__}: not a registered message")


def _packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def _ext_hook(code: int, data: bytes) -> Any:
    if code != EXT_MESSAGE:
        raise CodecError(f"unknown msgpack extension type {code}")
    payload = _unpackb(data)
    if not isinstance(payload, tuple) or not payload or not isinstance(payload[0], int):
        raise CodecError("malformed message: payload is not [tag, fields...]")
    tag = payload[0]
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise CodecError(f"unknown message tag {tag}")
    checks = _field_checks(cls)
    values = payload[1:]
    if len(values) != len(checks):
        raise CodecError(
            f"malformed {cls.__name__}: expected {len(checks)} fields, got {len(values)}"
        )
    kwargs = {}
    for (name, accepted), value in zip(checks, values, strict=True):
        if accepted is not None and not isinstance(value, accepted):
            raise CodecError(
                f"malformed {cls.__name__}: field {name!r} has type {type(value).__name__}"
            )
        if isinstance(value, bool) and accepted is not None and bool not in accepted:
            raise CodecError(f"malformed {cls.__name__}: field {name!r} is a bool")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed {cls.__name__}: {exc}") from exc


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(
        data, ext_hook=_ext_hook, use_list=False, raw=False, strict_map_key=False
    )


def encode(obj: Any) -> bytes:
    """Serialize a message (or any msgpack value containing messages)."""
    return bytes([CODEC_VERSION]) + _packb(obj)


def decode(data: bytes) -> Any:
    """Inverse of ``encode``; raises ``CodecError`` on anything it cannot trust."""
    if not data:
        raise CodecError("empty frame")
    if data[0] != CODEC_VERSION:
        raise CodecError(f"unsupported codec version {data[0]} (this build speaks {CODEC_VERSION})")
    try:
        value = _unpackb(data[1:])
        _reject_foreign_extensions(value)
        return value
    except CodecError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise CodecError(f"malformed frame: {exc}") from exc
    except Exception as exc:  # msgpack raises assorted errors on truncated input
        raise CodecError(f"malformed frame: {type(exc).__name__}: {exc}") from exc


def _reject_foreign_extensions(value: Any) -> None:
    """msgpack decodes its timestamp extension (-1) without asking ``ext_hook``; we never
    send one, so a frame carrying it is malformed."""
    if isinstance(value, msgpack.Timestamp):
        raise CodecError("unknown msgpack extension type -1 (timestamp)")
    if isinstance(value, tuple):
        for item in value:
            _reject_foreign_extensions(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_foreign_extensions(key)
            _reject_foreign_extensions(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _reject_foreign_extensions(getattr(value, f.name))


def summarize(msg: Any) -> str:
    """A short human-readable form: the message's own ``summary()`` if it has one."""
    summary = getattr(msg, "summary", None)
    if summary is not None:
        return str(summary())
    return type(msg).__name__
