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


def assert_amortized(
    taken: list[tuple[int, int]],
    threshold: int,
    keyspace: int,
    min_large: int = 2,
    turn: tuple[int, int] = (0, 1),
) -> None:
    """Small states snapshot every ``threshold`` entries; a state above the floor waits
    for as many entries as it has keys (the first large gap may straddle the floor).
    With ``turn`` = (rank, replicas) of several replicas, a large snapshot also waits
    for the replica's turn (a cycle of turns is ``keys`` entries, less the remainder of
    ``keys // replicas``): after the first in its turn, every one comes a cycle later."""
    rank, replicas = turn
    gaps = [(b - a, keys) for (a, _), (b, keys) in itertools.pairwise(taken)]
    small = [gap for gap, keys in gaps if keys <= AMORTIZE_FLOOR]
    large = [(gap, keys) for gap, keys in gaps if keys > AMORTIZE_FLOOR]
    assert small and all(gap == threshold for gap in small), small
    assert len(large) >= min_large, large
    assert large[-1][1] == keyspace, large
    if replicas == 1:
        assert all(gap == keys for gap, keys in large[1:]), large
        assert large[-1] == (keyspace, keyspace), large
        return
    cycles = [(keys // replicas) * replicas for _, keys in large]
    assert all(cycle <= gap < 2 * keys for (gap, keys), cycle in zip(large, cycles, strict=True)), large
    assert all(gap == cycle for (gap, _), cycle in zip(large[2:], cycles[2:], strict=True)), large
    in_turn = [
        (position // (keys // replicas)) % replicas == rank
        for position, keys in taken
        if keys > AMORTIZE_FLOOR
    ]
    assert all(in_turn[1:]), taken
