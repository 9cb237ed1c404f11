"""Seed sweeps: correct Raft survives every fault; each deliberate bug is caught.

The CI sweep is 200 seeds x (3 and 5 nodes) x all faults.  `make sweep` runs the long
one (10,000 seeds per size, marked slow).
"""

from __future__ import annotations

import os

import pytest

from consensuskit.sim import NEMESIS_KINDS, SimConfig
from consensuskit.sweep import run_sweep

WORKERS = os.cpu_count() or 1


def config(nodes: int, **overrides) -> SimConfig:
    base = dict(
        protocol="raft",
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        duration=5.0,
        clients=3,
        nemesis=NEMESIS_KINDS,
    )
    base.update(overrides)
    return SimConfig(**base)


@pytest.mark.parametrize("nodes", [3, 5])
def test_ci_sweep_all_faults_no_violation(nodes: int):
    result = run_sweep(config(nodes), range(200), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in result.failures] == []
    assert result.passed == 200


def test_sweep_with_snapshots_streamed_in_tiny_chunks():
    # Frequent snapshots sent in 24-byte chunks: lost, duplicated, reordered and stale
    # chunks under every fault must never break an invariant or the history.
    options = {"snapshot_chunk_bytes": 24, "snapshot_threshold": 30}
    result = run_sweep(config(5, duration=8.0, options=options), range(60), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in result.failures] == []


# Each bug with the sweep that catches it and the properties allowed to report it.
BUG_SWEEPS = {
    "vote-twice": (dict(nodes=5), {"election-safety"}),
    "skip-log-check": (dict(nodes=5), {"log-matching", "state-machine-safety", "convergence"}),
    "stale-read": (dict(nodes=3), {"read-freshness"}),
    # A wiped node votes at once: a server lacking committed entries can win with its
    # vote (caught when the commit happens, or when such a server leads); having forgotten
    # its vote it can also elect two leaders of one term, whose different entries at one
    # (index, term) log matching may report before election safety does.
    "vote-after-wipe": (
        dict(nodes=5),
        {"unsafe-commit", "leader-completeness", "state-machine-safety", "election-safety", "log-matching"},
    ),
    # Small batches open the window in which only old-term entries are acknowledged.
    "commit-previous-term": (
        dict(nodes=3, options={"max_batch_entries": 1}),
        {"commit-rule", "unsafe-commit", "leader-completeness", "state-machine-safety"},
    ),
}


@pytest.mark.parametrize("bug", sorted(BUG_SWEEPS))
def test_every_bug_knob_is_caught_by_a_sweep(bug: str):
    shape, properties = BUG_SWEEPS[bug]
    nodes = shape["nodes"]
    cfg = config(nodes, bugs=frozenset({bug}), duration=10.0, options=shape.get("options", {}))
    result = run_sweep(cfg, range(40), workers=WORKERS, progress=False)
    assert result.failures, f"{bug} went unnoticed in 40 seeds"
    for failure in result.failures:
        assert failure.reason.split(":")[0].removeprefix("invariant ") in properties, failure.reason


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_long_sweep(nodes: int):
    result = run_sweep(config(nodes, duration=10.0), range(10_000), workers=WORKERS, progress=True)
    assert [(f.seed, f.reason) for f in result.failures] == []
