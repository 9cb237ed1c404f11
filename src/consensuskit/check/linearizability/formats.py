"""Reading histories: the project's own JSON lines and Porcupine's two test formats.

Every reader returns operations (``Operation``) with call and return times; a reader
error names the file and line (``HistoryFormatError``).  Formats:

* ``consensuskit`` — JSON lines, either one record per operation as the simulator and
  the server's test clients write them (docs/history.md), or one record per *event*
  (``{"event": "invoke"|"ok"|"fail"|"info", "process": ..., "time": ..., ...}``,
  described in docs/linearizability.md);
* ``porcupine-etcd`` — Jepsen's etcd logs (``INFO  jepsen.util - 2 :invoke :cas [3 0]``);
* ``porcupine-kv`` — Porcupine's kv logs (``{:process 0, :type :invoke, :f :get, ...}``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensuskit.check.linearizability.operation import UNKNOWN, Call, Operation

FORMATS = ("consensuskit", "porcupine-etcd", "porcupine-kv")


class HistoryFormatError(ValueError):
    """A history that cannot be read; the message names the file and line."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


@dataclass(slots=True)
class _Open:
    call: Call
    time: float
    line: int


def _finish(
    ops: list[tuple[str, float, float, Call, Any, int]],
) -> list[Operation]:
    ops.sort(key=lambda o: (o[1], o[5]))
    return [
        Operation(id=i, client=client, call=call, ret=ret, input=inp, output=out, line=line)
        for i, (client, call, ret, inp, out, line) in enumerate(ops)
    ]


# -- consensuskit ---------------------------------------------------------------------


_OPS = ("get", "put", "delete", "cas", "append", "read", "write")


def _call_from(record: dict[str, Any], source: str, line: int, kinds: tuple[str, ...] | None = _OPS) -> Call:
    kind = record.get("op")
    if kinds is None:  # the model names the kinds it knows (Model.validate)
        if not isinstance(kind, str) or not kind:
            raise HistoryFormatError(source, line, f"op must be a non-empty string, got {kind!r}")
    elif kind not in kinds:
        raise HistoryFormatError(source, line, f"unknown op {kind!r}; valid: {', '.join(_OPS)}")
    expected_version = record.get("expected_version")
    if expected_version is not None and not isinstance(expected_version, int):
        raise HistoryFormatError(
            source, line, f"expected_version must be an integer, got {expected_version!r}"
        )
    return Call(
        kind=kind,
        key=_hashable(record.get("key")),
        value=_hashable(record.get("value")),
        expected=_hashable(record.get("expected")),
        expected_version=expected_version,
    )


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _time(record: dict[str, Any], name: str, source: str, line: int) -> float:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HistoryFormatError(source, line, f"{name!r} must be a number, got {value!r}")
    return float(value)


def read_consensuskit_records(
    records: Iterable[tuple[int, dict[str, Any]]], source: str, kinds: tuple[str, ...] | None = _OPS
) -> list[Operation]:
    """Operations from (line number, record) pairs of either consensuskit variant.
    ``kinds=None`` accepts any op kind (a service's own model validates them)."""
    ops: list[tuple[str, float, float, Call, Any, int]] = []
    open_ops: dict[str, _Open] = {}
    for line, record in records:
        if not isinstance(record, dict):
            raise HistoryFormatError(source, line, "expected a JSON object")
        if "event" in record:
            _read_event(record, line, source, open_ops, ops, kinds)
            continue
        for name in ("process", "op", "invoke"):
            if name not in record:
                raise HistoryFormatError(source, line, f"record lacks {name!r} (and has no 'event')")
        status = record.get("status")
        if status not in ("ok", "fail", "unknown"):
            raise HistoryFormatError(source, line, f"status must be ok, fail or unknown, got {status!r}")
        call = _call_from(record, source, line, kinds)
        invoke = _time(record, "invoke", source, line)
        if status == "fail":
            continue  # definitely not applied: no constraint on anything
        if status == "unknown":
            ops.append((str(record["process"]), invoke, math.inf, call, UNKNOWN, line))
            continue
        complete = _time(record, "complete", source, line)
        if complete < invoke:
            raise HistoryFormatError(
                source, line, f"completes at {complete} before its invocation at {invoke}"
            )
        ops.append((str(record["process"]), invoke, complete, call, record.get("result"), line))
    for process, pending in open_ops.items():
        ops.append((process, pending.time, math.inf, pending.call, UNKNOWN, pending.line))
    return _finish(ops)


def _read_event(
    record: dict[str, Any],
    line: int,
    source: str,
    open_ops: dict[str, _Open],
    ops: list[tuple[str, float, float, Call, Any, int]],
    kinds: tuple[str, ...] | None = _OPS,
) -> None:
    event = record["event"]
    if "process" not in record:
        raise HistoryFormatError(source, line, "event lacks 'process'")
    process = str(record["process"])
    t = _time(record, "time", source, line)
    if event == "invoke":
        if process in open_ops:
            first = open_ops[process].line
            raise HistoryFormatError(
                source, line, f"process {process} invokes again while its op from line {first} is open"
            )
        open_ops[process] = _Open(_call_from(record, source, line, kinds), t, line)
        return
    if event not in ("ok", "fail", "info"):
        raise HistoryFormatError(source, line, f"unknown event {event!r}; valid: invoke, ok, fail, info")
    pending = open_ops.pop(process, None)
    if pending is None:
        raise HistoryFormatError(source, line, f"{event} for process {process} with no invocation")
    if t < pending.time:
        raise HistoryFormatError(source, line, f"completes at {t} before its invocation at {pending.time}")
    if event == "ok":
        ops.append((process, pending.time, t, pending.call, record.get("result"), pending.line))
    elif event == "info":
        ops.append((process, pending.time, math.inf, pending.call, UNKNOWN, pending.line))
    # fail: definitely not applied, dropped


def _json_lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                raise HistoryFormatError(str(path), line, f"not JSON ({exc.msg}); truncated line?") from None


def read_consensuskit(path: str | Path, kinds: tuple[str, ...] | None = _OPS) -> list[Operation]:
    path = Path(path)
    return read_consensuskit_records(_json_lines(path), str(path), kinds)


# -- Porcupine: Jepsen etcd logs ------------------------------------------------------

_ETCD = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$"
)
_CAS_VALUE = re.compile(r"^\[(-?\d+)\s+(-?\d+)\]$")


def _etcd_value(text: str, source: str, line: int) -> Any:
    if text == "nil":
        return None
    if text == ":timed-out":
        return UNKNOWN
    cas = _CAS_VALUE.match(text)
    if cas:
        return (int(cas.group(1)), int(cas.group(2)))
    try:
        return int(text)
    except ValueError:
        raise HistoryFormatError(source, line, f"unreadable value {text!r}") from None


def read_porcupine_etcd(path: str | Path) -> list[Operation]:
    """Jepsen's etcd register histories; the line number is the timestamp.

    ``:info`` leaves the operation open (it may take effect any time later, or never);
    ``:fail :read :timed-out`` returns with an unknown output; ``:fail :cas`` is a
    definite failed cas."""
    path = Path(path)
    source = str(path)
    ops: list[tuple[str, float, float, Call, Any, int]] = []
    open_ops: dict[str, _Open] = {}
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            m = _ETCD.match(text)
            if m is None:
                raise HistoryFormatError(
                    source, line, "not a Jepsen etcd line (INFO jepsen.util - P :type :f value)"
                )
            process, kind, f_name, raw = m.groups()
            value = _etcd_value(raw, source, line)
            t = float(line)
            if kind == "invoke":
                if process in open_ops:
                    raise HistoryFormatError(source, line, f"process {process} invokes while an op is open")
                if f_name == "read":
                    call = Call(kind="read")
                elif f_name == "write":
                    call = Call(kind="write", value=value)
                else:
                    if not isinstance(value, tuple):
                        raise HistoryFormatError(source, line, f"cas needs [from to], got {raw!r}")
                    call = Call(kind="cas", expected=value[0], value=value[1])
                open_ops[process] = _Open(call, t, line)
                continue
            if kind == "info":
                info = open_ops.pop(process, None)
                if info is None:
                    raise HistoryFormatError(source, line, f":info for process {process} with no invocation")
                # Open to the end of the history: it may take effect any time later, or never.
                ops.append((process, info.time, math.inf, info.call, UNKNOWN, info.line))
                continue
            pending = open_ops.pop(process, None)
            if pending is None:
                raise HistoryFormatError(source, line, f":{kind} for process {process} with no invocation")
            if pending.call.kind != {"read": "read", "write": "write", "cas": "cas"}[f_name]:
                raise HistoryFormatError(
                    source, line, f":{kind} :{f_name} completes a {pending.call.kind} (line {pending.line})"
                )
            if f_name == "read":
                output: Any = UNKNOWN if kind == "fail" else value
            elif f_name == "write":
                output = None
            else:
                output = kind == "ok"
            ops.append((process, pending.time, t, pending.call, output, pending.line))
    for process, pending in open_ops.items():
        ops.append((process, pending.time, math.inf, pending.call, UNKNOWN, pending.line))
    return _finish(ops)


# -- Porcupine: kv logs ---------------------------------------------------------------

_KV = re.compile(
    r'^\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), :key "(.*)", :value (nil|"(.*)")\}$'
)


def read_porcupine_kv(path: str | Path) -> list[Operation]:
    """Porcupine's get/put/append histories; the line number is the timestamp."""
    path = Path(path)
    source = str(path)
    ops: list[tuple[str, float, float, Call, Any, int]] = []
    open_ops: dict[str, _Open] = {}
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            m = _KV.match(text)
            if m is None:
                raise HistoryFormatError(
                    source, line, "not a Porcupine kv line ({:process N, :type ..., ...})"
                )
            process, kind, f_name, key, raw, value = m.groups()
            t = float(line)
            if kind == "invoke":
                if process in open_ops:
                    raise HistoryFormatError(source, line, f"process {process} invokes while an op is open")
                call = Call(kind=f_name, key=key, value=None if raw == "nil" else value)
                open_ops[process] = _Open(call, t, line)
                continue
            pending = open_ops.pop(process, None)
            if pending is None:
                raise HistoryFormatError(source, line, f":ok for process {process} with no invocation")
            output: Any = value if f_name == "get" else {}
            ops.append((process, pending.time, t, pending.call, output, pending.line))
    for process, pending in open_ops.items():
        ops.append((process, pending.time, math.inf, pending.call, UNKNOWN, pending.line))
    return _finish(ops)


def read_history(path: str | Path, fmt: str) -> list[Operation]:
    if fmt == "consensuskit":
        return read_consensuskit(path)
    if fmt == "porcupine-etcd":
        return read_porcupine_etcd(path)
    if fmt == "porcupine-kv":
        return read_porcupine_kv(path)
    raise HistoryFormatError(str(path), None, f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
