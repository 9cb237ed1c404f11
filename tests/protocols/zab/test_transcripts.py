"""ZAB's rules as transcripts: ``testdata/*.txt`` run through the simulator harness
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


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_transcript(path, "zab")


@pytest.mark.parametrize(
    ("name", "bug"),
    [
        ("fle_order.txt", "vote-ignores-epoch"),
        ("fle_order.txt", "trunc-across-epoch"),
        ("newleader_persist.txt", "ack-before-persist"),
        ("rejoin_after_disk_loss.txt", "vote-after-wipe"),
    ],
)
def test_transcript_fails_when_the_rule_is_broken(name: str, bug: str):
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / name, "zab", (bug,))
    assert "VIOLATION" in outputs_with_bugs(TESTDATA / name, "zab", (bug,))
