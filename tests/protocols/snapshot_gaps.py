"""The check every log protocol's snapshot-policy test shares
(protocols/common/snapshot_policy.py): record each new snapshot as it is taken, then
judge the gaps between them."""

from __future__ import annotations

import itertools

from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR


def note_snapshot(taken: list[tuple[int, int]], last: int | None, keys: int) -> None:
    """Append (snapshot's last index, keys in the state) when a new snapshot appeared."""
    if last is not None and (not taken or taken[-1][0] != last):
        taken.append((last, keys))


def assert_amortized(taken: list[tuple[int, int]], threshold: int, keyspace: int, min_large: int = 2) -> None:
    """Small states snapshot every ``threshold`` entries; a state above the floor waits
    for as many entries as it has keys (the first large gap may straddle the floor)."""
    gaps = [(b - a, keys) for (a, _), (b, keys) in itertools.pairwise(taken)]
    small = [gap for gap, keys in gaps if keys <= AMORTIZE_FLOOR]
    large = [(gap, keys) for gap, keys in gaps if keys > AMORTIZE_FLOOR]
    assert small and all(gap == threshold for gap in small), small
    assert len(large) >= min_large and all(gap == keys for gap, keys in large[1:]), large
    assert large[-1] == (keyspace, keyspace), large
