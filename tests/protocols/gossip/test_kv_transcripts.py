"""gossip-kv's rules as transcripts: ``testdata_kv/*.txt`` run through the simulator
harness (tests/transcript/harness.py). Regenerate with ``pytest --rewrite`` and review.

The bug-knob test proves the transcript checks a real rule: with anti-entropy repairing
only missing keys, the replicas keep their concurrent versions of x."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata_kv"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    run_transcript(path, "gossip-kv")


def test_the_transcript_fails_when_anti_entropy_repairs_only_missing_keys() -> None:
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(TESTDATA / "hlc_lww.txt", "gossip-kv", ("missing-keys-only",))
    out = outputs_with_bugs(TESTDATA / "hlc_lww.txt", "gossip-kv", ("missing-keys-only",))
    assert "result={value:1 version:65536000 origin:n1}" in out  # n1 kept its own x
