"""The synthetic history generator: clean histories pass, each injected anomaly is caught."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.check.linearizability import check_history
from consensuskit.check.linearizability.formats import read_consensuskit_records
from consensuskit.check.linearizability.synthetic import INJECTIONS, generate_kv_history

SEEDS = range(6)
FIELDS = {
    "process",
    "seq",
    "op",
    "key",
    "value",
    "expected",
    "expected_version",
    "invoke",
    "complete",
    "status",
    "result",
    "index",
    "attempts",
}


def verdict(records: list[dict]) -> str:
    return check_history(records, model="kv", workers=1, timeout=60).verdict


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(400, 100, 16), (300, 5, 16), (60, 2, 4)])
def test_clean_history_is_linearizable(seed: int, shape: tuple[int, int, int]):
    ops, keys, clients = shape
    records = generate_kv_history(ops, keys, clients, seed)
    assert len(records) == ops
    assert verdict(records) == "ok"


@pytest.mark.parametrize("seed", SEEDS)
def test_clean_history_with_unknown_outcomes_is_linearizable(seed: int):
    records = generate_kv_history(300, 10, 16, seed, unknown_rate=0.05)
    assert any(r["status"] == "unknown" for r in records)
    assert verdict(records) == "ok"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("inject", INJECTIONS)
@pytest.mark.parametrize("shape", [(400, 100, 16), (300, 5, 16), (60, 2, 4)])
def test_injected_anomaly_is_flagged(inject: str, seed: int, shape: tuple[int, int, int]):
    ops, keys, clients = shape
    records = generate_kv_history(ops, keys, clients, seed, inject=inject)
    assert verdict(records) == "illegal"


@pytest.mark.parametrize("inject", INJECTIONS)
@pytest.mark.parametrize("ops", [0, 1, 2, 5])
def test_anomaly_is_appended_when_no_operation_fits(inject: str, ops: int):
    records = generate_kv_history(ops, 3, 2, seed=1, inject=inject)
    assert len(records) == ops + 3
    tail = records[-3:]
    assert [r["op"] for r in tail] == ["put", "put", "get"]
    assert tail[2]["result"]["value"] == tail[0]["value"]  # reads the overwritten value
    assert verdict(records) == "illegal"


def test_stale_read_changes_exactly_one_get_result():
    clean = generate_kv_history(500, 20, 16, seed=3)
    stale = generate_kv_history(500, 20, 16, seed=3, inject="stale-read")
    changed = [(a, b) for a, b in zip(clean, stale, strict=True) if a != b]
    assert len(changed) == 1
    before, after = changed[0]
    assert before["op"] == "get" and after["op"] == "get"
    assert {k: v for k, v in before.items() if k != "result"} == {
        k: v for k, v in after.items() if k != "result"
    }
    assert before["result"] != after["result"]


@pytest.mark.parametrize("inject", ["lost-write", "duplicate-write"])
def test_write_anomalies_keep_operations_and_times(inject: str):
    """Only results change: the same operations at the same times, by the same clients."""
    clean = generate_kv_history(500, 20, 16, seed=4)
    broken = generate_kv_history(500, 20, 16, seed=4, inject=inject)

    def strip(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "result"}

    assert [strip(r) for r in clean] == [strip(r) for r in broken]
    assert clean != broken


def test_same_seed_same_history_other_seed_another():
    assert generate_kv_history(300, 10, 8, seed=7) == generate_kv_history(300, 10, 8, seed=7)
    assert generate_kv_history(300, 10, 8, seed=7) != generate_kv_history(300, 10, 8, seed=8)


def test_records_follow_the_history_format():
    records = generate_kv_history(2000, 100, 16, seed=5, unknown_rate=0.02)
    assert json.loads(json.dumps(records)) == records  # plain JSON values only
    processes = {r["process"] for r in records}
    assert processes == {f"c{n}" for n in range(1, 17)}
    assert {r["key"] for r in records} <= {f"k{n}" for n in range(100)}
    assert [r["invoke"] for r in records] == sorted(r["invoke"] for r in records)
    written = [r["value"] for r in records if r["op"] in ("put", "cas")]
    assert len(written) == len(set(written))  # unique values
    for r in records:
        assert set(r) == FIELDS
        if r["status"] == "unknown":
            assert r["complete"] is None and r["result"] is None
            continue
        assert r["status"] == "ok" and r["complete"] >= r["invoke"]
        result = r["result"]
        if r["op"] == "get":
            assert set(result) == {"value", "version"}
        elif r["op"] == "put":
            assert set(result) == {"version"}
        elif r["op"] == "delete":
            assert set(result) == {"deleted"}
        elif result["swapped"]:
            assert set(result) == {"swapped", "version"}
        else:
            assert set(result) == {"swapped", "value", "version"}
    # Each client is sequential: its operations do not overlap.
    for process in processes:
        mine = [r for r in records if r["process"] == process]
        for a, b in itertools.pairwise(mine):
            assert b["invoke"] >= (a["complete"] if a["complete"] is not None else a["invoke"])
    ops = read_consensuskit_records(enumerate(records, start=1), "synthetic")
    assert len(ops) == len(records)
    assert sum(math.isinf(op.ret) for op in ops) == sum(r["status"] == "unknown" for r in records)


def test_clients_overlap_in_real_time():
    records = generate_kv_history(1000, 100, 16, seed=2)
    events = sorted([(r["invoke"], 1) for r in records] + [(r["complete"], -1) for r in records])
    in_flight = peak = 0
    for _, delta in events:
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak >= 8


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(ops=-1), "ops >= 0"),
        (dict(ops=10, keys=0), "keys >= 1"),
        (dict(ops=10, clients=0), "clients >= 1"),
        (dict(ops=10, inject="phantom"), "unknown injection 'phantom'"),
        (dict(ops=10, unknown_rate=1.5), "unknown_rate"),
    ],
)
def test_bad_arguments_are_refused(args: dict, message: str):
    with pytest.raises(ValueError, match=message):
        generate_kv_history(**args)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.integers(min_value=0, max_value=80),
    keys=st.integers(min_value=1, max_value=4),
    clients=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
    inject=st.sampled_from([None, *INJECTIONS]),
    unknown_rate=st.sampled_from([0.0, 0.1]),
)
def test_property_verdict_matches_injection(ops, keys, clients, seed, inject, unknown_rate):
    records = generate_kv_history(ops, keys, clients, seed, inject=inject, unknown_rate=unknown_rate)
    assert verdict(records) == ("ok" if inject is None else "illegal")
