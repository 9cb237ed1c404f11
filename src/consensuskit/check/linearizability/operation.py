"""Operations as the linearizability checker sees them: a call, an output, an interval.

An operation's interval is closed, ``[call, ret]``.  ``ret`` is ``math.inf`` for an
operation that never returned (a timeout, a crashed client): it may have taken effect
at any moment after ``call``, or never.  Its output is then ``UNKNOWN``, which every
model accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class _Unknown:
    """The output of an operation whose outcome the client never learned."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"  # one instance across processes (pickled by name)


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True, slots=True)
class Call:
    """What a client asked for.

    ``kind`` is one of the model's operation kinds: get/put/delete/cas/append for the
    key-value model, read/write/cas for registers (get/put are accepted as aliases).
    """

    kind: str
    key: Any = None
    value: Any = None
    expected: Any = None
    expected_version: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Much cheaper to pickle (for the process pool) than a slotted dataclass's state.
        return (Call, (self.kind, self.key, self.value, self.expected, self.expected_version))

    def describe(self) -> str:
        key = "" if self.key is None else f" {self.key}"
        if self.kind in ("get", "read", "delete"):
            return f"{self.kind}{key}"
        if self.kind == "cas":
            if self.expected_version is not None:
                return f"cas{key} v{self.expected_version}→{self.value!r}"
            return f"cas{key} {self.expected!r}→{self.value!r}"
        return f"{self.kind}{key} {self.value!r}"


@dataclass(frozen=True, slots=True)
class Operation:
    id: int  # position in the checked history, 0-based
    client: str
    call: float
    ret: float  # math.inf: never returned
    input: Call
    output: Any  # model-specific; UNKNOWN when the outcome is unknown
    line: int | None = None  # where it came from in the input file

    def __reduce__(self) -> tuple[Any, ...]:
        return (Operation, (self.id, self.client, self.call, self.ret, self.input, self.output, self.line))

    @property
    def pending(self) -> bool:
        return math.isinf(self.ret)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "call": self.call,
            "return": None if self.pending else self.ret,
            "input": self.input.describe(),
            "output": "unknown" if self.output is UNKNOWN else _jsonable(self.output),
            "line": self.line,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
