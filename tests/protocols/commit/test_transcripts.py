"""The commit family's rules as transcripts: ``testdata/*.txt`` through the simulator
harness (tests/transcript/harness.py).  The file name's prefix names the protocol.
Regenerate with ``pytest --rewrite`` and review the diff.

The bug-knob tests prove the transcripts check real rules: with the rule broken, the
same commands print something else, and the checker names the broken invariant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))
PROTOCOL_BY_PREFIX = {"2pc": "2pc", "3pc": "3pc", "paxos": "paxos-commit"}


def protocol_of(path: Path) -> str:
    return PROTOCOL_BY_PREFIX[path.stem.split("_", 1)[0]]


def test_each_protocol_has_transcripts():
    assert {protocol_of(f) for f in FILES} == set(PROTOCOL_BY_PREFIX.values())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_transcript(path, protocol_of(path))


@pytest.mark.parametrize(
    ("name", "bug", "violation"),
    [
        ("2pc_commit.txt", "vote-before-log", "vote-not-durable"),
        ("2pc_commit.txt", "decide-before-log", "decision-not-durable"),
        ("3pc_termination_all_uncertain.txt", "3pc-commit-when-uncertain", "validity"),
        ("paxos_commit_recovery.txt", "vote-before-log", "vote-not-durable"),
    ],
)
def test_transcript_fails_when_the_rule_is_broken(name: str, bug: str, violation: str):
    path = TESTDATA / name
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(path, protocol_of(path), (bug,))
    assert f"VIOLATION {violation}" in outputs_with_bugs(path, protocol_of(path), (bug,))
