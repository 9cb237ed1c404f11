"""The byzantine-generals seed scenario passes, by seed, and is reachable by id."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.scenarios import run_scenario

CATALOG = default_catalog()


def test_the_scenario_is_the_byzantine_familys() -> None:
    assert list(CATALOG.scenarios("byzantine")) == ["byzantine-generals"]
    assert CATALOG.scenario("byzantine-generals").protocol == "byzantine"


@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_outcome_holds(seed: int) -> None:
    run = run_scenario(CATALOG.scenario("byzantine-generals"), seed=seed)
    failed = [f"{e.text} ({e.detail})" for e in run.expectations if not e.passed]
    assert run.passed, (failed, [str(v) for v in run.violations], run.error)
    assert len(run.expectations) == 11 and any("5/4" in n or "attack: g1,g2,g3,g4" in n for n in run.notes)


def test_the_cli_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    from consensuskit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["scenario", "run", "byzantine-generals"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "PASSED byzantine-generals" in out
    assert "naive majority splits the loyal generals" in out
