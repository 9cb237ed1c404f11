"""SWIM under the simulator with the membership monitor (check/swim_monitor.py): strong
completeness under crashes, detection time, accuracy with Lifeguard on and off."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from consensuskit.cli import app
from consensuskit.sim import SimConfig, SimResult, Simulation


def run(nodes: int, duration: float, seed: int = 0, bugs: tuple[str, ...] = (), **flags: Any) -> SimResult:
    config = SimConfig(
        protocol="swim",
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        seed=seed,
        duration=duration,
        clients=0,
        bugs=frozenset(bugs),
        flags=flags,
    )
    return Simulation(config).run()


@pytest.mark.parametrize("seed", [0, 1])
def test_every_crash_is_detected_by_every_live_member(seed: int):
    result = run(10, 90.0, seed=seed, crashes=2)
    metrics = result.metrics
    assert result.ok, result.invariant_violations
    assert metrics["crashes"] == 2 and metrics["undetected"] == 0
    # SWIM: e/(e-1) ~ 1.58 periods to the first suspicion when the others are alive; the
    # suspicion comes at the end of the probe period, hence up to one period more.
    assert 0.5 <= metrics["first_detection_periods"]["mean"] <= 4.0
    assert metrics["full_detection_periods"]["mean"] >= metrics["first_detection_periods"]["mean"]
    assert metrics["false_positives"] == 0
    assert 1.5 <= metrics["messages_per_member_per_period"] <= 6.0


def test_strong_completeness_fails_when_nobody_declares_the_dead():
    result = run(10, 90.0, crashes=2, bugs=("never-declare-dead",))
    assert not result.ok
    assert {v["name"] for v in result.invariant_violations} == {"swim-monitor"}
    assert "strong completeness" in result.invariant_violations[0]["detail"]


def test_lifeguard_cuts_false_positives_of_healthy_members():
    """Lifeguard (2018) §5: slow members wrongly accuse healthy ones; local health and
    dynamic suspicion stop those accusations from killing anyone."""
    on = off = 0
    for seed in (0, 1):
        on += run(20, 120.0, seed=seed, crashes=1, slow_members=3, loss=0.05, lifeguard=True).metrics[
            "false_positives_healthy"
        ]
        off += run(20, 120.0, seed=seed, crashes=1, slow_members=3, loss=0.05, lifeguard=False).metrics[
            "false_positives_healthy"
        ]
    assert off >= 10 and on * 5 <= off, (on, off)


def test_same_seed_same_trace():
    a, b = run(8, 30.0, seed=4, crashes=1, loss=0.1), run(8, 30.0, seed=4, crashes=1, loss=0.1)
    assert a.trace_sha256 == b.trace_sha256 and a.metrics == b.metrics


def test_cli_runs_swim_with_its_flags():
    result = CliRunner().invoke(
        app,
        [
            "sim",
            "swim",
            "--nodes",
            "8",
            "--duration",
            "20",
            "--clients",
            "1",
            "--json",
            "--crashes",
            "1",
            "--loss",
            "0.05",
            "--lifeguard",
            "off",
        ],
    )
    assert result.exit_code == 0, result.output

    doc = json.loads(result.stdout)
    assert doc["service"] == "membership" and doc["linearizable"] is None
    assert doc["metrics"]["lifeguard"] is False and doc["metrics"]["crashes"] == 1
    assert set(doc["metrics"]["first_detection_periods"]) == {"mean", "p99"}


def test_cli_names_the_valid_flags_for_an_unknown_one():
    result = CliRunner().invoke(app, ["sim", "swim", "--nodes", "3", "--crash", "1"])
    assert result.exit_code == 2
    assert "--crashes" in result.output and "--slow-members" in result.output


def test_too_many_faults_for_the_group_is_one_line():
    with pytest.raises(ValueError, match="crashes \\+ slow-members < nodes"):
        run(3, 5.0, crashes=2, slow_members=1)


def test_the_membership_service_answers_a_members_view():
    from consensuskit.services.membership import SERVICE

    sim = Simulation(SimConfig(protocol="swim", node_ids=("n1", "n2", "n3"), clients=0))
    sim.run_until(2.0)
    listed = sim.submit(SERVICE.op("members"), node="n2")
    one = sim.submit(SERVICE.op("member", "n3"), node="n2")
    unknown = sim.submit(SERVICE.op("member", "n9"), node="n2")
    sim.run_until_true(lambda: listed.done and one.done and unknown.done, 5.0)
    assert [m["id"] for m in listed.result] == ["n1", "n2", "n3"]
    assert one.result == {"id": "n3", "address": "n3", "state": "alive", "incarnation": 0}
    assert unknown.record.status == "ok" and unknown.result is None
    with pytest.raises(ValueError, match="member needs"):
        SERVICE.op("member")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_sweep_with_every_fault_keeps_every_rule(seed: int):
    """``make sweep``: random faults (partitions, pauses, crashes, loss, duplication,
    reordering, skew) on top of the monitor's crashes and slow members: every per-step rule
    holds.  Strong completeness is not asked for here: a random partition may still cut
    members off from the news when the duration ends."""
    config = SimConfig(
        protocol="swim",
        node_ids=tuple(f"n{i}" for i in range(1, 11)),
        seed=seed,
        duration=90.0,
        clients=1,
        nemesis=("partition", "crash", "pause", "loss", "dup", "reorder", "skew"),
        flags={"crashes": 1, "slow_members": 1, "loss": 0.02},
    )
    result = Simulation(config).run()
    assert not [v for v in result.invariant_violations if v["name"] != "swim-monitor"], (
        result.invariant_violations
    )
