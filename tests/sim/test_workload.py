"""Clients, statuses, history records and checker hooks (with the toy protocol)."""

from __future__ import annotations

import json

import pytest

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.sim import History, InvariantViolation

from .toy import toy_sim


def test_ok_op_and_history_record():
    sim = toy_sim()
    h = sim.submit(Op(kind="put", key="k0", value=5), node="n1")
    assert not h.done and h.status is None
    assert sim.run_until_true(lambda: h.done, timeout=1.0)
    assert h.status == "ok" and h.attempts == 1
    assert h.result == {"version": 1}
    rec = h.record.to_dict()
    assert rec["process"] == h.request.client_id and rec["seq"] == 1
    assert rec["op"] == "put" and rec["key"] == "k0" and rec["value"] == 5
    assert 0 <= rec["invoke"] < rec["complete"] and rec["index"] == 1
    g = sim.submit(Op(kind="get", key="k0"), node="n1")
    sim.run_until_true(lambda: g.done, timeout=1.0)
    assert g.result == {"value": 5, "version": 1}


def test_retry_follows_leader_hint_with_same_seq():
    sim = toy_sim()
    h = sim.submit(Op(kind="put", key="k0", value=1), node="n2", client_id="x", seq=41)
    sim.run_until_true(lambda: h.done, timeout=1.0)
    assert h.status == "ok" and h.attempts == 2
    assert h.response.ok and h.response.seq == 41
    invokes = [r for r in sim.trace.tail(500) if r["ev"] == "invoke"]
    assert [(r["node"], r["seq"], r["attempt"]) for r in invokes] == [("n2", 41, 1), ("n1", 41, 2)]
    nxt = sim.submit(Op(kind="get", key="k0"), client_id="x")
    assert nxt.request.seq == 42


def test_definite_rejections_give_fail():
    sim = toy_sim(options={"reject_all": True}, op_timeout=0.1, op_deadline=0.5)
    h = sim.submit(Op(kind="put", key="k0", value=1))
    sim.run_for(1.0)
    assert h.status == "fail" and h.attempts > 2
    assert h.record.complete == pytest.approx(h.record.invoke + 0.5)
    assert h.response is not None and h.response.error == "not-leader"


def test_lost_answers_give_unknown_and_late_answer_is_ignored():
    sim = toy_sim(op_timeout=0.2, op_deadline=0.6)
    hold = sim.add_filter(lambda s, d, m: "hold" if isinstance(m, ClientResponse) else None)
    h = sim.submit(Op(kind="put", key="k0", value=1), node="n1")
    sim.run_for(1.0)
    assert h.status == "unknown" and h.record.complete is None and h.attempts == 3
    assert sim.history.counts() == {"ok": 0, "fail": 0, "unknown": 1}
    sim.remove_filter(hold)
    assert sim.release_held() >= 1
    sim.run_for(0.1)
    assert h.status == "unknown"
    assert any(r["ev"] == "late" for r in sim.trace.tail(100))
    assert sim.responses and all(resp.seq == h.request.seq for _, _, resp in sim.responses)


def test_op_to_crashed_node_times_out_then_retries_elsewhere():
    sim = toy_sim(op_timeout=0.3, op_deadline=2.0)
    sim.crash("n2")
    h = sim.submit(Op(kind="put", key="k0", value=1), node="n2")
    sim.run_for(2.0)
    # The first attempt may have applied as far as the client knows, but a later
    # attempt got an answer: ok wins.
    assert h.status == "ok" and h.attempts >= 2


def test_workload_history_is_well_formed(tmp_path):
    path = tmp_path / "history.jsonl"
    sim = toy_sim(clients=4, duration=3.0, settle=1.0, keys=2, history_path=str(path))
    result = sim.run()
    hist = result.history
    assert len(hist) > 50 and not sim.pending_ops()
    counts = hist.counts()
    assert counts == result.to_json()["ops"] and counts["ok"] > 50
    writes = [r.value for r in hist if r.op in ("put", "cas")]
    assert len(writes) == len(set(writes))  # unique values
    by_client: dict[str, list[int]] = {}
    for r in hist:
        assert r.status in ("ok", "fail", "unknown")
        assert (r.complete is None) == (r.status == "unknown")
        assert r.complete is None or r.complete >= r.invoke
        by_client.setdefault(r.process, []).append(r.seq)
    assert sorted(by_client) == ["c1", "c2", "c3", "c4"]
    for seqs in by_client.values():
        assert seqs == list(range(1, len(seqs) + 1))
    lines = path.read_text().splitlines()
    assert len(lines) == len(hist)
    first = json.loads(lines[0])
    assert set(first) >= {
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
    }
    again = History.from_jsonl(str(path))
    assert [r.to_dict() for r in again] == [json.loads(json.dumps(r.to_dict())) for r in hist]
    assert sim.checker.responses > 0 and sim.checker.finals == 1


def test_history_from_jsonl_rejects_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": "c1", "seq": 1, "op": "get", "key": "k0", "invoke": 0, "status": "maybe"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        History.from_jsonl(str(path))


def test_violation_stops_run_with_time_and_trace_tail():
    result = toy_sim(bugs=frozenset({"boom"}), clients=2).run()
    [v] = result.invariant_violations
    assert v["name"] == "boom" and v["time"] is not None
    [exc] = result.violations
    assert 0 < len(exc.trace_tail) <= 40 and exc.trace_tail[-1]["ev"] == "violation"
    assert result.virtual_time < 2.0  # stopped early
    assert not result.ok


def test_scripted_stepping_raises_violation():
    sim = toy_sim(bugs=frozenset({"boom"}), clients=2)
    sim.start_workload()
    with pytest.raises(InvariantViolation) as info:
        sim.run_for(5.0)
    assert info.value.time == sim.now and sim.violations == [info.value]


def test_check_every_step_off_skips_after_step():
    sim = toy_sim(bugs=frozenset({"boom"}), clients=2, check_every_step=False)
    result = sim.run()
    assert result.invariant_violations == [] and sim.checker.steps == 0


def test_unknown_protocol_and_bug_are_clear_errors():
    with pytest.raises(KeyError, match="valid: toy"):
        toy_sim(protocol="nope")
    with pytest.raises(ValueError, match="valid: boom"):
        toy_sim(bugs=frozenset({"nope"}))


def test_submitted_request_finds_both_client_paths():
    sim = toy_sim()
    h = sim.submit(Op(kind="put", key="k0", value=1), node="n1", client_id="c", seq=7)
    raw = ClientRequest(client_id="r", seq=3, op=Op(kind="get", key="k0"))
    sim.send_request("n1", raw)
    assert sim.submitted_request("c", 7) == h.request
    assert sim.submitted_request("r", 3) == raw
    assert sim.submitted_request("c", 8) is None and sim.submitted_request("nobody", 1) is None


class _TimedWorkload:
    """A workload that paces itself: idle until 0.2 s, then one put per call."""

    def __init__(self) -> None:
        self.now = -1.0
        self.wake_at = 0.0
        self.seen: list[tuple[str, float]] = []

    def next_op(self, rng):
        self.seen.append(("next_op", self.now))
        if self.now < 0.2:
            self.wake_at = 0.2
            return None
        return Op(kind="put", key="k0", value=len(self.seen))

    def learn(self, op, result):
        self.seen.append(("learn", self.now))


def test_a_timed_workload_reads_the_clock_and_may_wait_for_its_moment():
    """A workload with ``now`` gets the virtual time before each call; ``next_op`` may
    answer None and is asked again at its ``wake_at`` (etcd's keep-alives, services/etcd.py)."""
    import random

    from consensuskit.sim.workload import WorkloadClient

    sim = toy_sim()
    ops = _TimedWorkload()
    client = WorkloadClient(sim, "timed", ops, random.Random(1))
    client.start()
    sim.run_until(0.5)
    client.stopped = True
    assert ops.seen[0][0] == "next_op" and ops.seen[0][1] < 0.2
    assert ops.seen[1] == ("next_op", 0.2)  # asked again exactly at wake_at, not before
    invokes = [r.invoke for r in sim.history if r.process == "timed"]
    assert invokes and min(invokes) == 0.2
    learned = [t for kind, t in ops.seen if kind == "learn"]
    completes = sorted(r.complete for r in sim.history if r.process == "timed" and r.complete is not None)
    assert learned and learned == completes[: len(learned)]  # the time of each answer
