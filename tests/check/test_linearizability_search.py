"""The search on hand-made histories with known answers."""

from __future__ import annotations

import math
import multiprocessing
import time

import pytest

from consensuskit.check.linearizability import (
    UNKNOWN,
    Call,
    KVModel,
    Operation,
    RegisterModel,
    check_history,
    check_operations,
    check_partition,
)
from consensuskit.check.linearizability import checker as checker_module
from consensuskit.check.linearizability import search as search_module

REG = RegisterModel(cas=True)


def op(
    i: int,
    call: float,
    ret: float,
    kind: str,
    value=None,
    output=None,
    *,
    expected=None,
    key=None,
    client=None,
):
    return Operation(
        id=i,
        client=client or f"c{i}",
        call=call,
        ret=ret,
        input=Call(kind, key=key, value=value, expected=expected),
        output=output,
    )


def test_sequential_history_is_linearizable_in_real_time_order() -> None:
    ops = [
        op(0, 0, 1, "write", 1),
        op(1, 2, 3, "read", output=1),
        op(2, 4, 5, "write", 2),
        op(3, 6, 7, "read", output=2),
    ]
    result = check_partition(ops, REG)
    assert result.verdict == "ok" and result.linearization == [0, 1, 2, 3]
    assert result.states == ["1", "1", "2", "2"]


def test_a_read_of_an_overwritten_value_after_the_overwrite_returned_is_illegal() -> None:
    ops = [op(0, 0, 1, "write", 1), op(1, 2, 3, "write", 2), op(2, 4, 5, "read", output=1)]
    result = check_partition(ops, REG)
    assert result.verdict == "illegal"
    assert result.linearization == [0, 1]
    assert [i for i, _ in result.unplaced] == [2]
    assert "read → 1 is impossible when the state is 2" in result.unplaced[0][1]


def test_concurrent_ops_may_take_effect_in_either_order() -> None:
    # write 2 overlaps the read, so the read may see 1 or 2
    for seen in (1, 2):
        ops = [op(0, 0, 1, "write", 1), op(1, 2, 6, "write", 2), op(2, 3, 5, "read", output=seen)]
        assert check_partition(ops, REG).verdict == "ok"


def test_intervals_are_closed() -> None:
    # the read is invoked at the very instant the write returned: either order is allowed
    ops = [op(0, 0, 2, "write", 1), op(1, 2, 3, "read", output=None)]
    assert check_partition(ops, REG).verdict == "ok"
    ops = [op(0, 0, 2, "write", 1), op(1, 2.0001, 3, "read", output=None)]
    assert check_partition(ops, REG).verdict == "illegal"


def test_a_pending_write_may_take_effect_late_or_never() -> None:
    pending = op(1, 1, math.inf, "write", 2, UNKNOWN)
    # never observed
    ops = [op(0, 0, 1, "write", 1), pending, op(2, 5, 6, "read", output=1)]
    assert check_partition(ops, REG).verdict == "ok"
    # observed long after its invocation
    ops = [op(0, 0, 1, "write", 1), pending, op(2, 5, 6, "read", output=2), op(3, 7, 8, "read", output=2)]
    assert check_partition(ops, REG).verdict == "ok"
    # but once observed it cannot be un-observed
    ops = [op(0, 0, 1, "write", 1), pending, op(2, 5, 6, "read", output=2), op(3, 7, 8, "read", output=1)]
    assert check_partition(ops, REG).verdict == "illegal"


def test_a_pending_write_cannot_take_effect_before_it_was_invoked() -> None:
    ops = [op(0, 0, 1, "read", output=2), op(1, 3, math.inf, "write", 2, UNKNOWN)]
    assert check_partition(ops, REG).verdict == "illegal"


def test_failed_cas_and_successful_cas_constrain_order() -> None:
    ops = [
        op(0, 0, 1, "write", 1),
        op(1, 2, 5, "cas", 3, True, expected=1),
        op(2, 3, 4, "cas", 4, False, expected=1),  # lost the race: linearized after op 1
        op(3, 6, 7, "read", output=3),
    ]
    assert check_partition(ops, REG).verdict == "ok"
    bad = [*ops[:3], op(3, 6, 7, "read", output=4)]
    assert check_partition(bad, REG).verdict == "illegal"


def test_timeout_answers_unknown_not_a_verdict() -> None:
    # Many concurrent writes and then an impossible read: the search must try every
    # order of the writes before giving up, far more than the budget allows.
    ops = [op(i, 0, 100, "write", i) for i in range(18)] + [op(18, 101, 102, "read", output=99)]
    result = check_partition(ops, RegisterModel(), deadline=time.time() + 0.2)
    assert result.verdict in ("unknown", "illegal")
    full = check_operations(ops, RegisterModel(), timeout=0.2)
    assert full.ok in (None, False)
    if full.ok is None:
        assert full.timed_out and "not a verdict" in full.explain(RegisterModel())


def test_timeout_zero_on_a_hard_history_is_unknown() -> None:
    ops = [op(i, 0, 100, "write", i) for i in range(60)] + [
        op(60 + i, 101 + 2 * i, 102 + 2 * i, "read", output=(i * 7) % 60) for i in range(40)
    ]
    result = check_operations(ops, RegisterModel(), timeout=0.0)
    assert result.ok is None and result.verdict == "unknown"


def kv_record(process: str, seq: int, op_name: str, key: str, invoke: float, complete: float | None, **rest):
    return {
        "process": process,
        "seq": seq,
        "op": op_name,
        "key": key,
        "invoke": invoke,
        "complete": complete,
        "status": rest.pop("status", "ok"),
        **rest,
    }


def test_parts_are_checked_per_key_and_the_smallest_failure_is_reported() -> None:
    records = [
        kv_record("c1", 1, "put", "a", 0, 1, value=1, result={"version": 1}),
        kv_record("c1", 2, "get", "a", 2, 3, result={"value": 1, "version": 1}),
        kv_record("c2", 1, "put", "b", 0, 1, value=5, result={"version": 1}),
        kv_record("c2", 2, "put", "b", 2, 3, value=6, result={"version": 2}),
        kv_record("c2", 3, "get", "b", 4, 5, result={"value": 5, "version": 1}),  # stale
        kv_record("c3", 1, "get", "c", 0, 1, result={"value": 9, "version": 1}),  # never written
    ]
    result = check_history(records, model="kv", workers=1)
    assert result.ok is False
    assert result.failing is not None and result.failing.key == "c"
    text = result.explain(KVModel())
    assert "NOT linearizable" in text and "for key 'c'" in text
    every = check_operations(
        result.partitions[0].ops + result.partitions[1].ops + result.partitions[2].ops,
        KVModel(),
        stop_at_first_failure=False,
    )
    assert sorted(p.key for p in every.partitions if p.verdict == "illegal") == ["b", "c"]


def test_fail_ops_are_dropped_and_unknown_ops_stay_open() -> None:
    records = [
        kv_record("c1", 1, "put", "a", 0, 1, value=1, result={"version": 1}),
        kv_record("c2", 1, "put", "a", 1.5, 2, value=2, status="fail"),
        kv_record("c3", 1, "put", "a", 3, None, value=3, status="unknown"),
        kv_record("c1", 2, "get", "a", 10, 11, result={"value": 3, "version": 2}),
    ]
    assert check_history(records, model="kv").ok is True
    records[1]["status"] = "ok"
    records[1]["result"] = {"version": 2}
    assert check_history(records, model="kv").ok is False


def test_parallel_parts_agree_with_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    records = []
    for k in range(6):
        for i in range(20):
            records.append(
                kv_record(f"c{k}", i, "put", f"k{k}", 2 * i, 2 * i + 1, value=i, result={"version": i + 1})
            )
    records.append(kv_record("z", 0, "get", "k3", 100, 101, result={"value": 3, "version": 4}))
    monkeypatch.setattr(checker_module, "PARALLEL_THRESHOLD", 10)
    # No in-process head start: every part goes to the pool.
    monkeypatch.setattr(checker_module, "IN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(search_module, "_CHECK_CLOCK_EVERY", 1)
    calls = []
    real_pool = checker_module._check_in_pool
    monkeypatch.setattr(checker_module, "_check_in_pool", lambda *a: calls.append(len(a[2])) or real_pool(*a))
    parallel = check_history(records, model="kv", workers=2)
    assert calls and calls[0] >= 1, "the pool was not used"
    serial = check_history(records, model="kv", workers=1)
    assert parallel.ok is serial.ok is False
    assert parallel.failing is not None and parallel.failing.key == "k3"
    good = check_history(records[:-1], model="kv", workers=2)
    assert good.ok is True and len(good.partitions) == 6


def test_result_json_shape() -> None:
    records = [kv_record("c1", 1, "get", "a", 0, 1, result={"value": 1, "version": 1})]
    doc = check_history(records, model="kv").to_json()
    assert doc["verdict"] == "not-linearizable" and doc["linearizable"] is False
    assert doc["ops"] == 1 and doc["partitions"][0]["verdict"] == "illegal"
    assert doc["failing_partition"]["unplaced"][0]["op"]["input"] == "get a"


class SlowOnKeyModel(KVModel):
    """The kv model, slowed down on one key (``slow``, seconds per step) or raising there
    in a worker process (``slow`` None): a part a worker is stuck on, or one it fails
    on.  Defined at module level so the checker's worker processes can import it."""

    def __init__(self, key: str, slow: float | None) -> None:
        super().__init__()
        self.key, self.slow = key, slow

    def step(self, state, call, output):
        if call.key == self.key:
            if self.slow is None:
                if multiprocessing.parent_process() is None:
                    return super().step(state, call, output)  # the caller's own head start
                raise RuntimeError(f"a model error on {self.key}")
            time.sleep(self.slow)
        return super().step(state, call, output)


def _history(*, bad_read: bool, keys: int = 3, writes: int = 20) -> list[Operation]:
    """Writes to ``keys`` keys and, with ``bad_read``, a read of k0 no order explains."""
    ops = []
    for k in range(keys):
        for i in range(writes):
            ops.append(
                op(len(ops), 2 * i, 2 * i + 1, "put", i, {"version": i + 1}, key=f"k{k}", client=f"c{k}")
            )
    if bad_read:
        ops.append(op(len(ops), 100, 101, "get", output={"value": 3, "version": 4}, key="k0", client="z"))
    return ops


def test_a_failure_found_in_one_part_stops_the_workers_searching_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """k0's part is illegal; k1's worker would step for 40 s or more.  The check returns
    as soon as k0 fails, and no worker process is left behind (killing one never hangs
    the parent: each has a pipe of its own, no shared lock)."""
    monkeypatch.setattr(checker_module, "PARALLEL_THRESHOLD", 10)
    # No in-process head start (one step of each part): every part goes to a worker.
    monkeypatch.setattr(checker_module, "IN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(search_module, "_CHECK_CLOCK_EVERY", 1)
    started = time.monotonic()
    result = check_operations(_history(bad_read=True), SlowOnKeyModel("k1", 2.0), workers=2)
    assert time.monotonic() - started < 30
    assert result.ok is False and result.failing is not None and result.failing.key == "k0"
    assert {p.key: p.verdict for p in result.partitions}["k1"] == "skipped"
    assert multiprocessing.active_children() == []


def test_an_error_in_a_worker_is_raised_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checker_module, "PARALLEL_THRESHOLD", 10)
    monkeypatch.setattr(checker_module, "IN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(search_module, "_CHECK_CLOCK_EVERY", 1)
    with pytest.raises(RuntimeError, match="a model error on k2"):
        check_operations(_history(bad_read=False), SlowOnKeyModel("k2", None), workers=2)
    assert multiprocessing.active_children() == []
