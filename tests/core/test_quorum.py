"""Majority arithmetic against a deliberately naive twin."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.quorum import committed_index, has_quorum, quorum_size


def naive_committed(match: dict[str, int], voters: list[str]) -> int:
    best = 0
    for candidate in range(0, max([0, *match.values()]) + 1):
        count = sum(1 for v in voters if match.get(v, 0) >= candidate)
        if 2 * count > len(voters):
            best = candidate
    return best


def naive_has_quorum(granted: list[str], voters: list[str]) -> bool:
    yes = {g for g in granted if g in voters}
    return 2 * len(yes) > len(set(voters))


@pytest.mark.parametrize(
    ("voters", "size"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (9, 5)]
)
def test_quorum_size_table(voters, size):
    assert quorum_size(voters) == size


@pytest.mark.parametrize(
    ("match", "voters", "expected"),
    [
        ({}, [], 0),
        ({"a": 5}, ["a"], 5),
        ({"a": 5, "b": 3}, ["a", "b"], 3),
        ({"a": 5, "b": 3, "c": 1}, ["a", "b", "c"], 3),
        ({"a": 5, "b": 3}, ["a", "b", "c"], 3),
        ({"a": 5}, ["a", "b", "c"], 0),
        ({"a": 9, "b": 7, "c": 7, "d": 2}, ["a", "b", "c", "d"], 7),
        ({"a": 9, "b": 8, "c": 2, "d": 1}, ["a", "b", "c", "d"], 2),
        ({"a": 9, "learner": 100, "x": 100}, ["a", "b", "c"], 0),
    ],
)
def test_committed_index_examples(match, voters, expected):
    assert committed_index(match, voters) == expected


@pytest.mark.parametrize(
    ("granted", "voters", "expected"),
    [
        ([], [], False),
        (["a"], ["a"], True),
        (["a"], ["a", "b"], False),
        (["a", "b"], ["a", "b", "c"], True),
        (["a", "a"], ["a", "b", "c"], False),
        (["a", "x", "y"], ["a", "b", "c"], False),
        (["a", "b"], ["a", "b", "c", "d"], False),
        (["a", "b", "d"], ["a", "b", "c", "d"], True),
    ],
)
def test_has_quorum_examples(granted, voters, expected):
    assert has_quorum(granted, voters) is expected


names = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "x", "y"])
voter_lists = st.lists(names, unique=True, max_size=7)
matches = st.dictionaries(names, st.integers(min_value=0, max_value=20), max_size=9)


@settings(max_examples=300, deadline=None)
@given(matches, voter_lists)
def test_committed_index_matches_naive(match, voters):
    assert committed_index(match, voters) == naive_committed(match, voters)
    assert committed_index(match, iter(voters)) == naive_committed(match, voters)


@settings(max_examples=300, deadline=None)
@given(st.lists(names, max_size=9), voter_lists)
def test_has_quorum_matches_naive(granted, voters):
    assert has_quorum(granted, voters) is naive_has_quorum(granted, voters)
    assert has_quorum(iter(granted), iter(voters)) is naive_has_quorum(granted, voters)


@settings(max_examples=200, deadline=None)
@given(matches, voter_lists)
def test_committed_index_is_backed_by_a_quorum(match, voters):
    c = committed_index(match, voters)
    holders = [v for v in voters if match.get(v, 0) >= c]
    if voters:
        assert has_quorum(holders, voters)
    # nothing larger is held by a quorum
    assert not has_quorum([v for v in voters if match.get(v, 0) >= c + 1], voters)
