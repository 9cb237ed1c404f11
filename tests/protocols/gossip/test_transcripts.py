"""Gossip's rules as transcripts: ``testdata/*.txt`` run through the simulator harness
(tests/transcript/harness.py). Regenerate with ``pytest --rewrite`` and review the diff.

The bug-knob test proves a transcript checks a real rule: with merge broken, the same
commands print something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    run_transcript(path, "gossip")


def test_digest_transcript_fails_when_merge_keeps_local_entries() -> None:
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / "digest_exchange.txt", "gossip", ("keep-local",))
    out = outputs_with_bugs(TESTDATA / "digest_exchange.txt", "gossip", ("keep-local",))
    assert "x@1.n1" in out
