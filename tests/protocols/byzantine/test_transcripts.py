"""The generals' rules as transcripts (tests/transcript/harness.py) on the simulator,
through the ``generals_catalog`` plug-in's registry.  Regenerate with ``pytest
--rewrite`` and review the diff.  Each rule's transcript prints something else with
its bug knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensuskit.catalog import generals_catalog
from tests.transcript.datadriven import Arg, parse, run_file
from tests.transcript.harness import Harness

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))
PROTOCOL = "byzantine-generals"


def harness() -> Harness:
    return Harness(registry=generals_catalog().registry(), protocol=PROTOCOL)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    run_file(path, harness().handle)


def outputs_with_bugs(path: Path, bugs: tuple[str, ...]) -> str:
    h = harness()
    out: list[str] = []
    for case in parse(path.read_text(encoding="utf-8"), str(path)).cases:
        if case.command == "add-nodes" and bugs:
            case.args = [a for a in case.args if a.key != "bugs"] + [Arg("bugs", bugs, listed=True)]
        out.append(h.handle(case))
    return "".join(out)


@pytest.mark.parametrize(
    ("name", "bug", "violation"),
    [
        ("om1_traitor_commander.txt", "trust-commander", "VIOLATION ic1"),
        ("sm1_three_generals.txt", "accept-forgeries", "VIOLATION ic2"),
    ],
)
def test_the_rule_breaks_with_its_bug_knob(name: str, bug: str, violation: str) -> None:
    path = TESTDATA / name
    clean = outputs_with_bugs(path, ())
    broken = outputs_with_bugs(path, (bug,))
    assert "VIOLATION" not in clean and violation in broken
