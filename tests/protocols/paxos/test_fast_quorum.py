"""Quorum sizes and rule O4 (``quorum.safe_value``), checked against naive twins."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot
from consensuskit.protocols.paxos.fast import check_acceptor_count
from consensuskit.protocols.paxos.quorum import classic_quorum, fast_quorum, safe_value


@pytest.mark.parametrize(
    "n, classic, fast", [(3, 2, 3), (4, 3, 3), (5, 3, 4), (6, 4, 5), (7, 4, 6), (8, 5, 6), (9, 5, 7)]
)
def test_sizes(n: int, classic: int, fast: int):
    assert (classic_quorum(n), fast_quorum(n)) == (classic, fast)


@pytest.mark.parametrize("n", range(1, 10))
def test_two_fast_quorums_and_a_classic_quorum_always_intersect(n: int):
    """The Fast Paxos requirement, by brute force over every choice of quorums."""
    acceptors = range(n)
    fast = [set(q) for q in combinations(acceptors, fast_quorum(n))]
    classic = [set(q) for q in combinations(acceptors, classic_quorum(n))]
    for a in fast:
        for b in fast:
            common = a & b
            assert all(common & c for c in classic), (n, a, b)
    assert all(a & b for a in classic for b in classic)


@pytest.mark.parametrize("n, f", [(4, 1), (5, 1), (8, 2), (3, 0)])
def test_acceptor_count_accepted(n: int, f: int):
    check_acceptor_count(n, f)


@pytest.mark.parametrize("n, f", [(3, 1), (2, 1), (7, 2), (5, 2)])
def test_acceptor_count_refused(n: int, f: int):
    with pytest.raises(ValueError, match="3f\\+1"):
        check_acceptor_count(n, f)


B1, B2, B4 = Ballot(1, 1), Ballot(2, 1), Ballot(4, 3)


def test_no_votes_leave_the_proposer_free():
    assert safe_value([(ZERO_BALLOT, None, False)] * 3, 5) == (False, None)


def test_classic_round_value_is_forced():
    reports = [(B1, "a", True), (B4, "c", False), (ZERO_BALLOT, None, False)]
    assert safe_value(reports, 5) == (True, "c")


def test_fast_round_value_that_may_have_been_chosen_is_forced():
    # n=5, fast quorum 4; Q = 3 reports: 2 votes for "a" at B1 + 2 absent acceptors could
    # make 4, so "a" may have been chosen and must be picked even if "b" ties.
    reports = [(B1, "a", True), (B1, "a", True), (B1, "b", True)]
    assert safe_value(reports, 5) == (True, "a")


def test_fast_round_with_nothing_possibly_chosen_picks_the_most_voted():
    # Seed 004's collision with n=5, every acceptor reporting: 3 W, 2 V; neither reached 4.
    reports = [(B1, "V", True)] * 2 + [(B1, "W", True)] * 3
    assert safe_value(reports, 5) == (True, "W")


def test_tie_is_broken_the_same_way_whatever_the_order():
    a = safe_value([(B1, "V", True), (B1, "W", True), (B2, "x", False)][:2] * 2, 4)
    b = safe_value([(B1, "W", True), (B1, "V", True)] * 2, 4)
    assert a == b


def naive_possibly_chosen(reports, n: int) -> set:
    """Values v such that some fast quorum could consist of v-voters at the top ballot,
    counting every acceptor outside the reports as a possible v-voter."""
    top = max(b for b, _, _ in reports)
    outside = n - len(reports)
    out = set()
    for value in {v for b, v, _ in reports if b == top}:
        voters = sum(1 for b, v, _ in reports if b == top and v == value)
        if voters + outside >= fast_quorum(n):
            out.add(value)
    return out


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(4, 7),
    data=st.data(),
)
def test_o4_agrees_with_the_naive_definition(n: int, data):
    size = data.draw(st.integers(classic_quorum(n), n))
    votes = data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=size, max_size=size))
    reports = [(B1, v, True) for v in votes]
    possible = naive_possibly_chosen(reports, n)
    assert len(possible) <= 1, "two values possibly chosen: the quorum sizes are unsafe"
    forced, value = safe_value(reports, n)
    assert forced
    if possible:
        assert value in possible
    else:
        assert value in votes
