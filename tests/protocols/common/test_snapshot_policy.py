"""snapshot_due against a naive twin that counts the entries a snapshot must wait for, and
the turns replicas take for a large state's snapshots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consensuskit.protocols.common.snapshot_policy import (
    AMORTIZE_CAP,
    AMORTIZE_FLOOR,
    entries_kept,
    snapshot_due,
    stagger_turn,
)


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


def snapshots_taken(rank: int, replicas: int, keys: int, steps: list[int], threshold: int = 200) -> list[int]:
    """Where one replica snapshots while it applies entries ``steps`` at a time."""
    taken, last, position = [], 0, 0
    for step in steps:
        position += step
        if snapshot_due(position - last, threshold, keys, position, lambda: (rank, replicas)):
            taken.append(position)
            last = position
    return taken


def test_replicas_write_a_large_snapshot_one_at_a_time():
    """Three replicas applying the same log one entry at a time: without turns all three
    would write at 100,000, 200,000, ... at once and leave no quorum a free disk."""
    keys, steps = 10 * AMORTIZE_CAP, [1] * (5 * AMORTIZE_CAP)
    taken = [snapshots_taken(rank, 3, keys, steps) for rank in range(3)]
    # Turns of 33,333 entries: 0..33,332 is rank 0's, then rank 1's, rank 2's, rank 0's...
    # A cycle is 99,999 entries; each waits a cycle, then for its turn.
    assert taken[0] == [99_999, 199_998, 299_997, 399_996, 499_995]
    assert taken[1] == [133_332, 233_331, 333_330, 433_329]
    assert taken[2] == [166_665, 266_664, 366_663, 466_662]
    # A small state, or a lone replica, does not wait for a turn.
    assert snapshots_taken(1, 3, AMORTIZE_FLOOR, [1] * 1000) == [200, 400, 600, 800, 1000]
    assert snapshots_taken(0, 1, keys, steps) == [100_000, 200_000, 300_000, 400_000, 500_000]


@given(
    st.integers(2, 7),
    st.integers(0, 6),
    st.integers(AMORTIZE_FLOOR + 1, 3 * AMORTIZE_CAP),
    st.lists(st.integers(1, 5000), min_size=1, max_size=400),
)
def test_a_turn_is_kept_and_the_log_stays_bounded(replicas: int, rank: int, keys: int, steps: list[int]):
    """Every large snapshot falls in the replica's turn, unless it had waited twice the
    interval (it jumped past its turn): so no more than 2 * interval + one batch of
    entries ever sits after a snapshot."""
    rank %= replicas
    interval = min(keys, AMORTIZE_CAP)
    width = interval // replicas
    last, position = 0, 0
    for step in steps:
        position += step
        if snapshot_due(position - last, 200, keys, position, lambda: (rank, replicas)):
            assert position - last >= width * replicas
            assert (position // width) % replicas == rank or position - last >= 2 * interval
            last = position
        assert position - last < 2 * interval + step


def test_stagger_turn_ranks_the_replica_among_the_sorted_voters():
    assert stagger_turn("b", ("c", "a", "b")) == (1, 3)
    assert stagger_turn("d", ("c", "a", "b")) == (3, 4)  # a learner counts as one more
    assert stagger_turn("a", ("a",)) == (0, 1)


def test_a_large_states_snapshot_keeps_a_quarter_interval_of_log():
    """So that a follower a few seconds behind catches up from the log, not from a
    transfer and restore of the whole state."""
    assert entries_kept(20, 10) == entries_kept(20, AMORTIZE_FLOOR) == 20
    assert entries_kept(20, 1000) == 250
    assert entries_kept(0, 10 * AMORTIZE_CAP) == AMORTIZE_CAP // 4
    assert entries_kept(30_000, 10 * AMORTIZE_CAP) == 30_000
