"""Seed sweeps: deterministic per seed, whatever the worker count."""

from __future__ import annotations

import dataclasses

from consensuskit.sim import NEMESIS_KINDS, SimConfig
from consensuskit.sweep import reproduce_command, run_seed, run_sweep

BASE = SimConfig(
    node_ids=("n1", "n2", "n3"), duration=1.0, settle=1.0, clients=2, nemesis=NEMESIS_KINDS
)


def test_same_seeds_give_same_digests_in_process_and_in_workers() -> None:
    seeds = [0, 1, 2, 3]
    alone = run_sweep(BASE, seeds, workers=1, progress=False)
    pooled = run_sweep(BASE, seeds, workers=2, progress=False)
    assert [o.seed for o in alone.outcomes] == seeds == [o.seed for o in pooled.outcomes]
    assert [o.trace_sha256 for o in alone.outcomes] == [o.trace_sha256 for o in pooled.outcomes]
    assert [o.events for o in alone.outcomes] == [o.events for o in pooled.outcomes]
    assert len({o.trace_sha256 for o in alone.outcomes}) == len(seeds)  # seeds do differ


def test_sweep_outcome_is_the_single_run_outcome() -> None:
    result = run_sweep(BASE, [7], workers=1, progress=False)
    alone = run_seed(BASE, 7)
    assert result.outcomes == [dataclasses.replace(alone, wall_seconds=result.outcomes[0].wall_seconds)]


def test_bug_seeds_fail_with_reason() -> None:
    cfg = dataclasses.replace(BASE, clients=0, nemesis=(), bugs=frozenset({"vote-twice"}))
    result = run_sweep(cfg, range(12), workers=1, progress=False)
    assert result.failures
    assert all(f.reason.startswith("invariant election-safety") for f in result.failures)
    doc = result.to_json()
    assert doc["passed"] == 12 - len(result.failures)
    assert doc["failures"][0]["command"] == reproduce_command(cfg, result.failures[0].seed)
    assert "--bug vote-twice" in doc["failures"][0]["command"]
