"""snapshot_due against a naive twin that counts the entries a snapshot must wait for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consensuskit.protocols.common.snapshot_policy import AMORTIZE_CAP, AMORTIZE_FLOOR, snapshot_due


def naive_due(applied_since: int, threshold: int, keys: int) -> bool:
    if threshold <= 0:
        return False
    wait = threshold
    if keys > AMORTIZE_FLOOR:
        wait = max(wait, min(keys, AMORTIZE_CAP))
    return applied_since >= wait


def test_a_small_state_snapshots_every_threshold_entries():
    assert not snapshot_due(199, 200, 10)
    assert snapshot_due(200, 200, 10)
    assert snapshot_due(200, 200, AMORTIZE_FLOOR)
    assert not snapshot_due(10_000, 0, 10)  # disabled


def test_a_large_state_waits_for_as_many_entries_as_keys_up_to_the_cap():
    assert not snapshot_due(200, 200, 1000)
    assert not snapshot_due(999, 200, 1000)
    assert snapshot_due(1000, 200, 1000)
    assert snapshot_due(AMORTIZE_CAP, 200, 10 * AMORTIZE_CAP)
    assert not snapshot_due(AMORTIZE_CAP - 1, 200, 10 * AMORTIZE_CAP)


@given(st.integers(0, 300_000), st.integers(-1, 5000), st.integers(0, 300_000))
def test_matches_the_naive_twin(applied_since: int, threshold: int, keys: int):
    assert snapshot_due(applied_since, threshold, keys) == naive_due(applied_since, threshold, keys)
