"""Every ZAB seed scenario passes, and each issues.md regression scenario fails with the
Zab paper's rule (its ``paper-*`` knob)."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.scenarios import run_scenario

CATALOG = default_catalog()

ZAB_IDS = [
    "zab-fast-leader-election",
    "zab-recovery",
    "zab-broadcast",
    "zab-observer",
    "zab-old-leader-returns",
    "zab-disk-loss",
    "zab-issue1-propose-to-acked",
    "zab-issue2-redundant-propose",
    "zab-issue3-commit-ld",
]


def test_every_zab_scenario_of_the_seed_list_exists():
    assert [s for s in CATALOG.scenarios() if s.startswith("zab-")] == ZAB_IDS


@pytest.mark.parametrize("scenario_id", ZAB_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(scenario_id: str, seed: int):
    run = run_scenario(CATALOG.scenario(scenario_id), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)


@pytest.mark.parametrize(
    ("scenario_id", "bug", "how"),
    [
        # The joiner never gets the PROPOSAL committed while its ACK-LD was in flight.
        ("zab-issue1-propose-to-acked", "paper-propose-acked", "after healing"),
        ("zab-issue2-redundant-propose", "paper-redundant-propose", "zxid-order"),
        ("zab-issue3-commit-ld", "paper-commit-ld-ack", "commit-order"),
    ],
)
def test_issue_scenario_fails_with_the_papers_rule(scenario_id: str, bug: str, how: str):
    run = run_scenario(CATALOG.scenario(scenario_id), options={"bugs": [bug]})
    assert not run.passed
    failed = [e.text for e in run.expectations if not e.passed] + [str(v) for v in run.violations]
    assert any(how in f for f in failed), failed


def test_the_disk_loss_scenario_elects_a_leader_without_the_writes_when_an_empty_server_votes():
    run = run_scenario(CATALOG.scenario("zab-disk-loss"), options={"bugs": ["vote-after-wipe"]})
    assert not run.passed
    assert [str(v).split(":")[0] for v in run.violations] == ["primary-integrity"], run.violations
