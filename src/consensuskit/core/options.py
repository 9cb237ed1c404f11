"""Protocol options from plain dicts (CLI ``--option``, configs, scenarios).

Every protocol keeps its options in a dataclass; these helpers give them one way to be
built from a dict and one wording for the errors users see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def options_from_dict(cls: type[T], values: dict[str, Any], protocol: str) -> T:
    """``cls(**values)`` after naming any unknown key and the valid ones.

    Fields whose default is a tuple or frozenset get their value converted to that type
    (JSON and TOML give lists), so options stay hashable and immutable."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {protocol} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    converted = dict(values)
    for name, value in values.items():
        kind = _container_kind(fields[name])
        if kind is not None and isinstance(value, (list, tuple, set, frozenset)):
            converted[name] = kind(value)
    return cls(**converted)


def _container_kind(f: dataclasses.Field[Any]) -> type | None:
    default: Any = f.default
    if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    if isinstance(default, frozenset):
        return frozenset
    if isinstance(default, tuple):
        return tuple
    return None


def check_bug_names(bugs: Iterable[str], valid: Iterable[str]) -> None:
    valid = tuple(valid)
    bad = sorted(set(bugs) - set(valid))
    if bad:
        raise ValueError(f"unknown bug {', '.join(bad)}; valid: {', '.join(valid)}")
