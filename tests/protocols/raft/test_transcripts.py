"""Raft's rules as transcripts: ``testdata/*.txt`` run through the simulator harness
(tests/transcript/harness.py).  Regenerate with ``pytest --rewrite`` and review the diff.

Each bug-knob test below proves a transcript checks a real rule: with the rule broken,
the same commands print something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_raft_rules_have_at_least_15_transcripts():
    assert len(FILES) >= 15, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_transcript(path, "raft")


@pytest.mark.parametrize(
    ("name", "bug"),
    [
        ("commit_current_term_only.txt", "commit-previous-term"),
        ("figure_8.txt", "commit-previous-term"),
        ("vote_once_per_term.txt", "vote-twice"),
        ("log_matching.txt", "skip-log-check"),
    ],
)
def test_transcript_fails_when_the_rule_is_broken(name: str, bug: str):
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / name, "raft", (bug,))
    # ... and the checker names the broken invariant on the way.
    assert "VIOLATION" in outputs_with_bugs(TESTDATA / name, "raft", (bug,))
