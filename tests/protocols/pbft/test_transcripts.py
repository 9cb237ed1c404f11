"""PBFT's quorum and view-change rules as transcripts: ``testdata/*.txt`` run through the
simulator harness (tests/transcript/harness.py).  Regenerate with ``pytest --rewrite``
and review the diff.

Each bug-knob test proves a transcript checks a real rule: with the rule broken, the
same commands print something else, including the checker's VIOLATION.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_transcript(path, "pbft")


@pytest.mark.parametrize(
    ("name", "bug", "violation"),
    [
        ("prepared_before_commit.txt", "early-commit", "committed-prepared"),
        ("view_change.txt", "new-view-ignores-prepared", "committed-keeps-seq"),
    ],
)
def test_transcript_fails_when_the_rule_is_broken(name: str, bug: str, violation: str):
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / name, "pbft", (bug,))
    assert f"VIOLATION {violation}" in outputs_with_bugs(TESTDATA / name, "pbft", (bug,))


def test_quorum_transcript_fails_with_crash_fault_quorums():
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / "quorums.txt", "pbft", ("small-quorums",))
