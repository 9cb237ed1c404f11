"""Hypothesis over whole simulations: any cluster size, any mix of faults, any seed ->
no Multi-Paxos invariant breaks and every member converges after the faults heal."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.sim import NEMESIS_KINDS

from .multipaxos_sweep import config, run_seed


@pytest.mark.timeout(300)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.sampled_from([1, 2, 3, 4, 5]),
    seed=st.integers(0, 10**6),
    faults=st.sets(st.sampled_from(NEMESIS_KINDS), min_size=1),
    alpha=st.integers(1, 6),
    snapshot_threshold=st.sampled_from([0, 5, 30]),
    pre_vote=st.booleans(),
)
def test_random_faults_never_break_safety(nodes, seed, faults, alpha, snapshot_threshold, pre_vote):
    cfg = config(
        nodes,
        duration=2.0,
        settle=3.0,
        nemesis=tuple(sorted(faults)),
        options={
            "alpha": alpha,
            "snapshot_threshold": snapshot_threshold,
            "snapshot_trailing": 2,
            "pre_vote": pre_vote,
        },
    )
    _, reason, _ = run_seed(cfg, seed)
    assert reason == ""
