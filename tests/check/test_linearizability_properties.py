"""Properties: real executions are always linearizable; one injected anomaly never is.

A history is built from a sequential execution of the kv model: operation i takes
effect at time i, and its interval [call, ret] is drawn around that instant, so
intervals overlap at random.  Then exactly one anomaly may be injected:

* stale read — a get invoked after a put returned reads the state from before it;
* lost write — an acknowledged put has no effect (later outputs are computed
  without it) and a later get, invoked after everything returned, sees the result;
* duplicated write — a put takes effect twice (as a retry without sessions would).

The workload has no deletes, so a key's version counts its writes and every injected
anomaly contradicts the versions the writes returned: definitely not linearizable.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.check.linearizability import KVModel, check_history

KINDS = ("get", "put", "cas-value", "cas-version")


@st.composite
def executions(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=24))
    keys = draw(st.sampled_from([["a"], ["a", "b"]]))
    steps = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        before = draw(st.floats(min_value=0.0, max_value=3.0))
        after = draw(st.floats(min_value=0.0, max_value=3.0))
        steps.append(
            {
                "kind": kind,
                "key": draw(st.sampled_from(keys)),
                "call": i - before,
                "ret": i + after,
                "guess": draw(st.integers(min_value=0, max_value=3)),
            }
        )
    return steps


def execute(
    steps: list[dict[str, Any]], skip: int | None = None, twice: int | None = None
) -> list[dict[str, Any]]:
    """Records of a sequential run; ``skip``/``twice``: the put at that step is lost/applied twice."""
    return run(steps, skip, twice)[0]


def run(
    steps: list[dict[str, Any]], skip: int | None = None, twice: int | None = None
) -> tuple[list[dict[str, Any]], list[tuple[Any, int]]]:
    """(records, the key's (value, version) just before each step)."""
    state: dict[str, tuple[int, int]] = {}
    records = []
    befores = []
    for i, s in enumerate(steps):
        key, kind = s["key"], s["kind"]
        value, version = state.get(key, (None, 0))
        befores.append((value, version))
        rec: dict[str, Any] = {
            "process": f"p{i}",
            "seq": i,
            "key": key,
            "invoke": s["call"],
            "complete": s["ret"],
        }
        rec["status"] = "ok"
        if kind == "get":
            rec.update(op="get", result={"value": value, "version": version})
        elif kind == "put":
            new = 1000 + i
            rec.update(op="put", value=new, result={"version": version + 1})
            if i != skip:
                state[key] = (new, version + (2 if i == twice else 1))
        else:
            new = 1000 + i
            if kind == "cas-value":
                expected = value if s["guess"] == 0 else 1000 + s["guess"] * 7
                rec.update(op="cas", value=new, expected=expected)
                matches = expected == value
            else:
                rec.update(op="cas", value=new, expected_version=s["guess"])
                matches = s["guess"] == version
            if matches:
                state[key] = (new, version + 1)
                rec["result"] = {"swapped": True, "version": version + 1}
            else:
                rec["result"] = {"swapped": False, "value": value, "version": version}
        records.append(rec)
    end = max(s["ret"] for s in steps) + 1
    for j, key in enumerate(sorted({s["key"] for s in steps})):
        value, version = state.get(key, (None, 0))
        records.append(
            {
                "process": f"final{j}",
                "seq": 0,
                "op": "get",
                "key": key,
                "invoke": end,
                "complete": end + 1,
                "status": "ok",
                "result": {"value": value, "version": version},
            }
        )
    return records, befores


@settings(max_examples=150, deadline=None)
@given(executions())
def test_sequential_executions_with_overlaps_are_linearizable(steps: list[dict[str, Any]]) -> None:
    result = check_history(execute(steps), model="kv", timeout=30)
    assert result.ok is True, result.explain(KVModel())


def _puts(steps: list[dict[str, Any]]) -> list[int]:
    return [i for i, s in enumerate(steps) if s["kind"] == "put"]


@settings(max_examples=150, deadline=None)
@given(executions(), st.data())
def test_a_stale_read_is_always_flagged(steps: list[dict[str, Any]], data: Any) -> None:
    puts = _puts(steps)
    if not puts:
        steps = [*steps, {"kind": "put", "key": "a", "call": len(steps), "ret": len(steps) + 0.5, "guess": 0}]
        puts = [len(steps) - 1]
    p = data.draw(st.sampled_from(puts))
    records, befores = run(steps)
    put = records[p]
    value, version = befores[p]  # the key just before the put took effect
    call = put["complete"] + data.draw(st.floats(min_value=0.001, max_value=5.0))
    records.append(
        {
            "process": "stale",
            "seq": 0,
            "op": "get",
            "key": put["key"],
            "invoke": call,
            "complete": call + 1,
            "status": "ok",
            "result": {"value": value, "version": version},
        }
    )
    assert check_history(records, model="kv", timeout=30).ok is False


@settings(max_examples=150, deadline=None)
@given(executions(), st.data())
def test_a_lost_write_is_always_flagged(steps: list[dict[str, Any]], data: Any) -> None:
    puts = _puts(steps)
    if not puts:
        steps = [*steps, {"kind": "put", "key": "a", "call": len(steps), "ret": len(steps) + 0.5, "guess": 0}]
        puts = [len(steps) - 1]
    records = execute(steps, skip=data.draw(st.sampled_from(puts)))
    assert check_history(records, model="kv", timeout=30).ok is False


@settings(max_examples=150, deadline=None)
@given(executions(), st.data())
def test_a_duplicated_write_is_always_flagged(steps: list[dict[str, Any]], data: Any) -> None:
    puts = _puts(steps)
    if not puts:
        steps = [*steps, {"kind": "put", "key": "a", "call": len(steps), "ret": len(steps) + 0.5, "guess": 0}]
        puts = [len(steps) - 1]
    records = execute(steps, twice=data.draw(st.sampled_from(puts)))
    assert check_history(records, model="kv", timeout=30).ok is False
