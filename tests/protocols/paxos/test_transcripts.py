"""The Paxos family's rules as transcripts: ``testdata/*.txt`` run through the
simulator harness (tests/transcript/harness.py).  Each file names its protocol in
``add-nodes``; the file name's prefix (basic_, fast_, multi_) says which it covers.
Regenerate with ``pytest --rewrite`` and review the diff.

The bug-knob tests prove transcripts check real rules: with the rule broken, the same
commands print something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcript.runner import outputs_with_bugs, run_transcript, run_transcript_with_bugs

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))
PROTOCOL_BY_PREFIX = {"basic": "basic-paxos", "fast": "fast-paxos", "multi": "multipaxos"}


def protocol_of(path: Path) -> str:
    return PROTOCOL_BY_PREFIX[path.stem.split("_", 1)[0]]


def test_paxos_family_has_at_least_8_transcripts_covering_each_variant():
    assert len(FILES) >= 8, [f.name for f in FILES]
    assert {protocol_of(f) for f in FILES} == set(PROTOCOL_BY_PREFIX.values())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_transcript(path, protocol_of(path))


@pytest.mark.parametrize(
    ("name", "bug"),
    [
        ("basic_no_accept_below_promise.txt", "accept-lower-ballot"),
        ("basic_value_from_highest_accepted.txt", "ignore-promise"),
        ("multi_leader_change_keeps_chosen.txt", "skip-phase1-on-takeover"),
        ("multi_lease_wait.txt", "lease-without-wait"),
    ],
)
def test_transcript_fails_when_the_rule_is_broken(name: str, bug: str):
    path = TESTDATA / name
    with pytest.raises(AssertionError, match="differs"):
        run_transcript_with_bugs(path, protocol_of(path), (bug,))
    # ... and the checker names the broken invariant on the way.
    assert "VIOLATION" in outputs_with_bugs(path, protocol_of(path), (bug,))
