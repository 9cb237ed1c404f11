"""Same seed and config => same trace digest, in every runtime; the trace file and tail
agree."""

from __future__ import annotations

import dataclasses
import gc
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.sim import NEMESIS_KINDS, RUNTIMES, Schedule, SimConfig, Simulation, WallClockExceeded
from consensuskit.sim.simulation import GC_YOUNG_THRESHOLD

from .build import interpreted_only
from .toy import toy_sim

FULL = {
    "node_ids": ("n1", "n2", "n3", "n4", "n5"),
    "clients": 3,
    "duration": 3.0,
    "settle": 1.0,
    "nemesis": NEMESIS_KINDS,
    "nemesis_interval": (0.05, 0.2),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_same_seed_same_digest_three_runs(runtime):
    results = [toy_sim(seed=7, runtime=runtime, **FULL).run() for _ in range(3)]
    digests = {r.trace_sha256 for r in results}
    assert len(digests) == 1
    assert len({r.events for r in results}) == 1
    assert len({json.dumps([o.to_dict() for o in r.history]) for r in results}) == 1
    assert results[0].events > 1000 and sum(results[0].faults.values()) > 10


@pytest.mark.parametrize("protocol", ["raft", "multipaxos"])
@pytest.mark.parametrize("runtime", ["batched", "unbatched"])
def test_same_seed_same_digest_with_batches_early_sends_and_durability_reports(protocol, runtime):
    config = SimConfig(
        protocol=protocol,
        seed=11,
        runtime=runtime,
        duration=2.0,
        settle=1.0,
        **{k: v for k, v in FULL.items() if k != "duration" and k != "settle"},
    )
    first, second = (Simulation(config).run() for _ in range(2))
    assert first.runtime == second.runtime == runtime
    assert first.trace_sha256 == second.trace_sha256 and first.events == second.events > 500
    assert first.ok, first.invariant_violations


def test_the_runtimes_differ_and_random_is_one_of_them():
    digests = {rt: toy_sim(seed=7, runtime=rt, **FULL).run() for rt in RUNTIMES}
    assert digests["batched"].trace_sha256 != digests["unbatched"].trace_sha256
    picked = digests["random"].runtime
    assert digests["random"].trace_sha256 == digests[picked].trace_sha256


def test_different_seeds_differ():
    digests = {toy_sim(seed=s, **FULL).run().trace_sha256 for s in range(4)}
    assert len(digests) == 4


def test_trace_file_is_deterministic_and_matches_count(tmp_path):
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    results = [toy_sim(seed=3, trace_path=str(p), **FULL).run() for p in paths]
    a, b = (p.read_bytes() for p in paths)
    assert a == b
    lines = a.decode().splitlines()
    sim = toy_sim(seed=3, **FULL)
    sim.run()
    assert len(lines) == sim.trace.count and results[0].trace_sha256 == sim.trace.sha256()
    records = [json.loads(line) for line in lines]
    assert {"t", "ev"} <= set(records[0])
    kinds = {r["ev"] for r in records}
    assert {"send", "deliver", "drop", "timer", "sync", "fault", "invoke", "complete"} <= kinds
    sends = [r for r in records if r["ev"] == "send" and r["dst"].startswith("n")]
    assert all("type" in r and "msg" in r for r in sends)
    assert records[-40:] == sim.trace.tail(40)


def test_digest_independent_of_when_it_is_read():
    plain = toy_sim(seed=5, **FULL)
    plain.run_for(2.0)
    peeked = toy_sim(seed=5, **FULL)
    for _ in range(20):
        peeked.run_for(0.1)
        peeked.trace.sha256()  # flushes a partial batch
    assert plain.trace.sha256() == peeked.trace.sha256()


_times = st.floats(min_value=0.0, max_value=1.5, allow_nan=False).map(lambda t: round(t, 3))
_nodes = st.sampled_from(["n1", "n2", "n3"])
_lines = st.one_of(
    st.tuples(_times, st.sampled_from(["crash", "restart", "pause", "resume", "isolate"]), _nodes).map(
        lambda x: f"{x[0]} {x[1]} {x[2]}"
    ),
    st.tuples(_times, st.sampled_from(["heal", "bridge", "isolate-leader"])).map(lambda x: f"{x[0]} {x[1]}"),
    st.tuples(_times, _nodes, _nodes).map(lambda x: f"{x[0]} block {x[1]} {x[2]}"),
    st.tuples(_times, st.floats(0, 0.9).map(lambda p: round(p, 2))).map(
        lambda x: f"{x[0]} network loss={x[1]}"
    ),
    st.tuples(_times, _nodes, st.floats(-0.5, 0.5).map(lambda s: round(s, 2))).map(
        lambda x: f"{x[0]} clock {x[1]} skew={x[2]} drift=0.01"
    ),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_lines, max_size=12), st.integers(0, 2**32))
def test_random_schedules_are_deterministic(lines, seed):
    text = "\n".join(lines)

    def once() -> tuple[str, dict[str, int]]:
        sim = toy_sim(seed=seed, clients=2, duration=1.5, settle=0.5)
        Schedule.parse(text).install(sim)
        result = sim.run()
        assert result.invariant_violations == []  # the toy's prefix property holds
        return result.trace_sha256, result.ops

    assert once() == once()


def _thresholds_during_run(sim):
    seen = []
    inner = sim.run_until

    def run_until(t):
        seen.append(gc.get_threshold())
        inner(t)

    sim.run_until = run_until
    return seen


@interpreted_only
def test_run_raises_the_collectors_first_threshold_and_restores_it():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        sim = toy_sim(seed=5, **FULL)
        seen = _thresholds_during_run(sim)
        sim.run()
        assert seen and set(seen) == {(GC_YOUNG_THRESHOLD, 10, 10)}
        assert gc.get_threshold() == (700, 10, 10)
        # A higher threshold (or 0: automatic collection off) is left as it is.
        for mine in ((10 * GC_YOUNG_THRESHOLD, 5, 5), (0, 10, 10)):
            gc.set_threshold(*mine)
            sim = toy_sim(seed=5, **FULL)
            seen = _thresholds_during_run(sim)
            sim.run()
            assert set(seen) == {mine} and gc.get_threshold() == mine
    finally:
        gc.set_threshold(*before)


@interpreted_only
def test_digest_independent_of_the_collector():
    before = gc.get_threshold()
    try:
        digests = set()
        for threshold in (50, 0):  # a young collection every 50 allocations, then none
            sim = toy_sim(seed=9, **FULL)
            inner = sim.run_until

            def run_until(t, inner=inner, threshold=threshold):
                gc.set_threshold(threshold, 1, 1)  # inside run(), which set its own
                inner(t)

            sim.run_until = run_until
            digests.add(sim.run().trace_sha256)
        assert len(digests) == 1
    finally:
        gc.set_threshold(*before)


def test_a_wall_clock_limit_ends_a_run_that_would_not_end_and_changes_no_other() -> None:
    config = SimConfig(node_ids=("n1", "n2", "n3"), seed=4, duration=2.0, clients=2)
    unlimited = Simulation(config).run()
    limited = Simulation(config).run(wall_limit=600)
    assert limited.trace_sha256 == unlimited.trace_sha256  # the clock is only read
    crawling = dataclasses.replace(config, options={"heartbeat_interval": 1e-9})
    sim = Simulation(crawling)
    started = time.perf_counter()
    with pytest.raises(WallClockExceeded, match=r"stopped at virtual time 0\.\d+"):
        sim.run(wall_limit=0.5)
    assert time.perf_counter() - started < 10
