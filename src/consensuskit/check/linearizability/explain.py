"""Verdicts in words: what failed, how far a linearization got, what cannot be placed."""

from __future__ import annotations

import math

from consensuskit.check.linearizability.checker import CheckResult
from consensuskit.check.linearizability.models import Model
from consensuskit.check.linearizability.operation import Operation
from consensuskit.check.linearizability.search import ILLEGAL, OK

_SHOWN = 12  # prefix operations shown before eliding


def _when(op: Operation) -> str:
    ret = "never returned" if math.isinf(op.ret) else f"{op.ret:g}"
    where = f", line {op.line}" if op.line is not None else ""
    return f"[{op.call:g}, {ret}]{where}"


def describe(op: Operation, model: Model) -> str:
    return f"{op.client}: {model.describe_operation(op.input, op.output)} {_when(op)}"


def explain(result: CheckResult, model: Model) -> str:
    parts = len(result.partitions)
    head = f"{result.ops} operations in {parts} part{'s' if parts != 1 else ''}, {result.seconds:.3f} s"
    if result.verdict == OK:
        return f"linearizable: {head}."
    failing = result.failing
    if result.verdict != ILLEGAL or failing is None:
        undecided = [p for p in result.partitions if p.verdict not in (OK, ILLEGAL)]
        return (
            f"unknown: the time budget ran out with {len(undecided)} part(s) undecided ({head}); "
            "this is not a verdict either way."
        )
    bad = sum(1 for p in result.partitions if p.verdict == ILLEGAL)
    key = "" if failing.key is None else f" for key {failing.key!r}"
    lines = [
        f"NOT linearizable: {head}; {bad} part(s) fail.",
        f"The smallest failing part{key} has {len(failing.ops)} operations; the longest "
        f"linearizable prefix found places {len(failing.linearization)} of them:",
    ]
    order = failing.linearization
    shown = order if len(order) <= _SHOWN else order[-_SHOWN:]
    if len(order) > _SHOWN:
        lines.append(f"  ... {len(order) - _SHOWN} earlier operations ...")
    offset = len(order) - len(shown)
    for n, i in enumerate(shown, start=offset + 1):
        state = failing.states[n - 1] if n - 1 < len(failing.states) else "?"
        lines.append(f"  {n:>4}. {describe(failing.ops[i], model)}  ⇒ {state}")
    if failing.unplaced:
        lines.append("After that prefix, no operation can be placed next:")
        for i, why in failing.unplaced:
            lines.append(f"  - {failing.ops[i].client} {_when(failing.ops[i])}: {why}")
    return "\n".join(lines)
