"""Each ZAB bug knob is caught at the CLI's default options (``consensuskit sweep zab
--nodes 5 --nemesis all``) by a seed found with the 40-seed sweep, by the invariant it
breaks; the same seed passes without the knob."""

from __future__ import annotations

import pytest

from consensuskit.cli import build_config
from consensuskit.sweep import run_seed

# knob -> (a catching seed, the invariant that catches it)
CATCHES = {
    "ack-before-persist": (0, "durable-ack"),
    "epoch-before-persist": (0, "epoch-after-history"),
    "trunc-across-epoch": (4, "trunc-within-epoch"),
    "vote-ignores-epoch": (3, "election-order"),
    "paper-propose-acked": (0, "prefix-consistency"),
    "paper-redundant-propose": (0, "zxid-order"),
    "paper-commit-ld-ack": (0, "commit-order"),
    "vote-after-wipe": (2, "primary-integrity"),
}


def test_every_zab_knob_has_a_catching_seed():
    from consensuskit.protocols.zab import BUGS

    assert set(CATCHES) == set(BUGS)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bug", sorted(CATCHES))
def test_knob_is_caught_by_its_invariant(bug: str):
    seed, invariant = CATCHES[bug]
    caught = run_seed(build_config("zab", 5, 0, 10.0, 3, "all", [bug]), seed)
    assert not caught.ok and caught.reason.startswith(f"invariant {invariant}:"), caught.reason
    clean = run_seed(build_config("zab", 5, 0, 10.0, 3, "all", None), seed)
    assert clean.ok, clean.reason
