"""Sequential specifications the checker tests histories against.

A model is any object with this interface (``Model`` below); states must be hashable
and compare with ``==`` (the search memoises (linearized set, state) pairs):

* ``init()`` — the state before any operation;
* ``step(state, call, output) -> (legal, next_state)`` — may ``call`` return ``output``
  in ``state``?  ``output`` may be ``UNKNOWN`` (the client never learned it): then
  only the effect matters and the step is always legal;
* ``partition(ops)`` — independent sub-histories (P-compositionality), e.g. one per key;
  return ``[ops]`` when the model cannot be split;
* ``describe_operation(call, output)`` and ``describe_state(state)`` — words for
  explanations and the HTML page;
* ``validate(call)`` — raise ``ModelError`` for an operation the model does not know.

Three optional methods let the search (search.py) cut histories with many unanswered
operations down to size; a model without them is searched in full:

* ``read_only(call)`` — true when an operation of this kind whose answer never came
  changes nothing (a read);
* ``forget_unread_values(ops)`` — the ops' calls with the value of every unanswered
  write that no operation reads or compares against replaced by ``UNREAD``; it must
  leave every step's legality unchanged, so only models whose steps merely compare
  values for equality offer it;
* ``changes_nothing(call, output)`` — true when an operation with this answer leaves
  *every* state in which it is legal as it was (a read with its answer; a cas answered
  not swapped): the search then takes it as soon as it fits.  Not true of an op that
  merely happens to change nothing in some state (a write of the value already there,
  an unanswered cas): elsewhere it changes the state.

Built in: ``register`` (read/write), ``cas-register`` (read/write/cas) and ``kv``
(get/put/delete/cas by value or version, and append as in Porcupine's kv model).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any, Protocol

from consensuskit.check.linearizability.operation import UNKNOWN, Call, Operation


class ModelError(ValueError):
    """An operation the model cannot interpret."""


class Model(Protocol):
    name: str

    def init(self) -> Hashable: ...

    def step(self, state: Any, call: Call, output: Any) -> tuple[bool, Hashable]: ...

    def partition(self, ops: list[Operation]) -> list[list[Operation]]: ...

    def describe_operation(self, call: Call, output: Any) -> str: ...

    def describe_state(self, state: Any) -> str: ...

    def validate(self, call: Call) -> None: ...


class _Unread:
    """A written value that no operation of the history reads or compares against."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREAD"

    def __reduce__(self) -> str:
        return "UNREAD"


UNREAD: Any = _Unread()


def forget_unread_values(ops: list[Operation], writes: tuple[str, ...]) -> list[Call]:
    """The ops' calls, each unanswered write (a kind in ``writes``, cas included) of a
    value that no output shows and no cas expects rewritten to write ``UNREAD``.

    Sound for models that only compare a state's value for equality with what an output
    shows or a cas expects: such a value and ``UNREAD`` both differ from all of those,
    so every step answers alike.  Only unanswered writes: the search's twins are
    unanswered ops, and rewriting answered ones too cost a tenth of an easy history's
    check for no gain seen.  Unhashable values are left as they are."""
    seen: set[Any] = set()
    calls = [op.input for op in ops]
    try:
        for op in ops:
            if op.input.kind == "cas":
                seen.add(op.input.expected)
            out = op.output
            if out is UNKNOWN:
                continue
            if isinstance(out, dict):
                if "value" in out:
                    seen.add(out["value"])
            else:
                seen.add(out)
        for i, op in enumerate(ops):
            call = op.input
            if op.output is not UNKNOWN or not (call.kind in writes or call.kind == "cas"):
                continue
            if call.value not in seen:
                calls[i] = Call(call.kind, call.key, UNREAD, call.expected, call.expected_version)
        return calls
    except TypeError:  # an unhashable value
        return calls


def partition_by_key(ops: list[Operation]) -> list[list[Operation]]:
    groups: dict[Any, list[Operation]] = defaultdict(list)
    for op in ops:
        groups[op.input.key].append(op)
    return list(groups.values())


def _field(output: Any, name: str) -> Any:
    """``output[name]`` for the project's dict outputs, the output itself otherwise."""
    return output.get(name) if isinstance(output, dict) else output


def _describe_output(output: Any) -> str:
    if output is UNKNOWN:
        return "outcome unknown"
    if output is None:
        return "ok"
    if isinstance(output, dict):
        if not output:
            return "ok"
        return ", ".join(f"{k}={v!r}" for k, v in output.items())
    return repr(output)


_READS = ("read", "get")
_WRITES = ("write", "put")


class RegisterModel:
    """One register per key (or a single one when operations carry no key).

    read returns the value (``None`` for the initial "nil"); write sets it; with
    ``cas=True`` also cas(expected → value), whose output is swapped or not.
    """

    def __init__(self, *, cas: bool = False, initial: Any = None) -> None:
        self.cas = cas
        self.initial = initial
        self.name = "cas-register" if cas else "register"

    def init(self) -> Hashable:
        return self.initial

    def validate(self, call: Call) -> None:
        kinds = _READS + _WRITES + (("cas",) if self.cas else ())
        if call.kind not in kinds:
            hint = " (use the cas-register or kv model)" if call.kind == "cas" else ""
            raise ModelError(f"the {self.name} model has no {call.kind!r} operation{hint}")

    def step(self, state: Any, call: Call, output: Any) -> tuple[bool, Hashable]:
        kind = call.kind
        if kind in _READS:
            return (output is UNKNOWN or _field(output, "value") == state), state
        if kind in _WRITES:
            return True, call.value
        # cas
        matches = state == call.expected
        after = call.value if matches else state
        if output is UNKNOWN:
            return True, after
        return bool(_field(output, "swapped")) == matches, after

    def partition(self, ops: list[Operation]) -> list[list[Operation]]:
        return partition_by_key(ops)

    def read_only(self, call: Call) -> bool:
        return call.kind in _READS

    def changes_nothing(self, call: Call, output: Any) -> bool:
        if output is UNKNOWN:
            return False
        # a cas answered not swapped is legal only where it does not match
        return call.kind in _READS or (call.kind == "cas" and not _field(output, "swapped"))

    def forget_unread_values(self, ops: list[Operation]) -> list[Call]:
        return forget_unread_values(ops, _WRITES)

    def describe_operation(self, call: Call, output: Any) -> str:
        return f"{call.describe()} → {_describe_output(output)}"

    def describe_state(self, state: Any) -> str:
        return "nil" if state is None else repr(state)


class KVModel:
    """A map of keys to (value, version), checked one key at a time.

    The per-key state is ``None`` (absent) or ``(value, version)``.  Versions follow
    statemachines/kv.py: absent = 0, every put or successful cas adds 1, delete makes
    the key absent.  Outputs are checked field by field when present (the project's
    dict outputs: get → value/version, put → version, delete → deleted, cas → swapped,
    and on a failed cas the current value/version); a plain value output is the value
    read.  ``missing`` is what a get of an absent key returns (``None`` here, ``""`` in
    Porcupine's kv histories, where append concatenates strings).
    With ``partitioned=False`` the whole map is one state (slow; for cross-checking).
    """

    name = "kv"

    def __init__(self, *, missing: Any = None, partitioned: bool = True) -> None:
        self.missing = missing
        self.partitioned = partitioned

    def init(self) -> Hashable:
        return None if self.partitioned else ()

    def validate(self, call: Call) -> None:
        if call.kind not in ("get", "put", "delete", "cas", "append"):
            raise ModelError(f"the kv model has no {call.kind!r} operation")

    def step(self, state: Any, call: Call, output: Any) -> tuple[bool, Hashable]:
        if self.partitioned:
            return self._step_key(state, call, output)
        items = dict((k, (v, ver)) for k, v, ver in state)
        legal, after = self._step_key(items.get(call.key), call, output)
        if after is None:
            items.pop(call.key, None)
        else:
            items[call.key] = after
        return legal, tuple(sorted(((k, v, ver) for k, (v, ver) in items.items()), key=_sort_key))

    def _step_key(self, cur: Any, call: Call, output: Any) -> tuple[bool, Any]:
        kind = call.kind
        value, version = cur if cur is not None else (self.missing, 0)
        unknown = output is UNKNOWN
        if kind == "get":
            if unknown:
                return True, cur
            if isinstance(output, dict):
                legal = output.get("value") == value and output.get("version", version) == version
            else:
                legal = output == value
            return legal, cur
        if kind == "put":
            after = (call.value, version + 1)
            return unknown or _version_matches(output, version + 1), after
        if kind == "append":
            base = value if value is not None else ""
            return True, (base + call.value, version + 1)
        if kind == "delete":
            if unknown or not isinstance(output, dict) or "deleted" not in output:
                return True, None
            return bool(output["deleted"]) == (cur is not None), None
        # cas
        if call.expected_version is not None:
            matches = version == call.expected_version
        else:
            matches = (value if cur is not None else None) == call.expected
        after = (call.value, version + 1) if matches else cur
        if unknown:
            return True, after
        swapped = _field(output, "swapped")
        if bool(swapped) != matches:
            return False, after
        if matches:
            return _version_matches(output, version + 1), after
        if isinstance(output, dict):
            seen_value = output.get("value", value if cur is not None else None)
            seen_version = output.get("version", version)
            return seen_value == (value if cur is not None else None) and seen_version == version, after
        return True, after

    def partition(self, ops: list[Operation]) -> list[list[Operation]]:
        return partition_by_key(ops) if self.partitioned else [ops]

    def read_only(self, call: Call) -> bool:
        return call.kind == "get"

    def changes_nothing(self, call: Call, output: Any) -> bool:
        if output is UNKNOWN:
            return False
        kind = call.kind
        if kind == "cas":  # answered not swapped: legal only where it does not match
            return not _field(output, "swapped")
        if kind == "delete":  # answered deleted=False: legal only when absent
            return isinstance(output, dict) and "deleted" in output and not output["deleted"]
        return kind == "get"

    def forget_unread_values(self, ops: list[Operation]) -> list[Call]:
        if any(op.input.kind == "append" for op in ops):
            return [op.input for op in ops]  # values are concatenated, not compared
        return forget_unread_values(ops, ("put",))

    def describe_operation(self, call: Call, output: Any) -> str:
        return f"{call.describe()} → {_describe_output(output)}"

    def describe_state(self, state: Any) -> str:
        if not self.partitioned:
            return "{" + ", ".join(f"{k}: {v!r} (v{ver})" for k, v, ver in state) + "}"
        if state is None:
            return "absent" if self.missing is None else f"absent (reads {self.missing!r})"
        return f"{state[0]!r} (version {state[1]})"


def _version_matches(output: Any, version: int) -> bool:
    if isinstance(output, dict) and output.get("version") is not None:
        return output["version"] == version
    return True


def _sort_key(item: tuple[Any, Any, Any]) -> str:
    return repr(item[0])


MODEL_NAMES = ("kv", "register", "cas-register")


def get_model(name: str, **options: Any) -> Model:
    if name == "kv":
        return KVModel(**options)
    if name == "register":
        return RegisterModel(cas=False, **options)
    if name == "cas-register":
        return RegisterModel(cas=True, **options)
    raise ModelError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
