"""The gossip monitor (check/gossip.py): convergence after settle is checked in every
``sim`` run, and the bug knob ``keep-local`` proves the check can fail."""

from __future__ import annotations

from consensuskit.check.gossip import residue
from consensuskit.sim import SimConfig, Simulation


def run(seed: int, bugs: frozenset[str] = frozenset(), **options: object):
    cfg = SimConfig(
        protocol="gossip",
        node_ids=tuple(f"n{i}" for i in range(1, 7)),
        seed=seed,
        duration=3.0,
        settle=4.0,
        clients=3,
        nemesis=("crash", "partition", "loss", "pause"),
        bugs=bugs,
        options=dict(options),
    )
    return Simulation(cfg).run()


def test_replicas_converge_under_faults_and_the_metrics_say_so() -> None:
    result = run(seed=1)
    assert result.ok, result.invariant_violations
    metrics = result.metrics
    assert metrics["converged"] and metrics["distinct_states"] == 1 and metrics["residue"] == 0.0
    assert metrics["live_replicas"] == 6 and metrics["messages"] > 0 and metrics["bytes"] > 0
    assert set(metrics["messages_by_type"]) <= {
        "Rumor", "RumorFeedback", "RumorRequest", "DigestProbe", "LeafDigest", "Want", "Entries",
        "FullState", "StateRequest",
    }  # fmt: skip


def test_keep_local_bug_is_caught_as_divergence() -> None:
    result = run(seed=1, bugs=frozenset({"keep-local"}))
    assert not result.ok
    reasons = [v["detail"] for v in result.invariant_violations]
    assert any("did not converge after settle" in r for r in reasons), reasons
    assert result.metrics["converged"] is False and result.metrics["residue"] > 0


def test_no_anti_entropy_and_no_rumors_is_caught_too() -> None:
    """Without any dissemination the replicas differ: the check is not vacuous."""
    result = run(seed=2, rumor=False, anti_entropy_period=0)
    assert not result.ok


def test_residue_counts_missing_newest_entries() -> None:
    states = {"a": (("k", 2, "x"), ("j", 1, "x")), "b": (("k", 1, "y"),)}
    assert residue(states) == 2 / 4
    assert residue({"a": (("k", 1, "x"),), "b": (("k", 1, "x"),)}) == 0.0
