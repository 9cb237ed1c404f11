"""Every SWIM scenario passes, and the memberlist regressions fail with the bug knob that
restores the behaviour they guard against."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.scenarios import run_scenario

CATALOG = default_catalog()

SWIM_IDS = [
    "swim-detect",
    "swim-refute",
    "swim-join",
    "swim-leave",
    "swim-no-resurrection",
    "swim-restart-low-incarnation",
]


def test_every_swim_scenario_exists():
    assert [s for s in CATALOG.scenarios() if s.startswith("swim-")] == SWIM_IDS


@pytest.mark.parametrize("scenario_id", SWIM_IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(CATALOG.scenario(scenario_id), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


@pytest.mark.parametrize(
    ("scenario_id", "bug", "violation"),
    [
        ("swim-no-resurrection", "push-pull-resurrects", "precedence"),
        ("swim-restart-low-incarnation", "drop-stale-alive", None),
        ("swim-detect", "never-declare-dead", None),
        ("swim-detect", "foreign-incarnation", "incarnation-owner"),
        ("swim-detect", "unbounded-retransmit", "dissemination-bound"),
    ],
)
def test_scenario_fails_with_the_bug_knob(scenario_id: str, bug: str, violation: str | None):
    run = run_scenario(CATALOG.scenario(scenario_id), seed=0, options={"bugs": (bug,)})
    assert not run.passed
    if violation is not None:
        assert [v.name for v in run.violations] == [violation]
    else:
        assert any(not e.passed for e in run.expectations)


def test_scenario_is_deterministic():
    a = run_scenario(CATALOG.scenario("swim-refute"), seed=3).to_json()
    b = run_scenario(CATALOG.scenario("swim-refute"), seed=3).to_json()
    assert a["trace_sha256"] == b["trace_sha256"] and a["events"] == b["events"]
