"""Ballots: total order, the literal values of seed 003, node numbering, codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.core.messages import decode, encode
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot, node_numbers

ballots = st.builds(Ballot, st.integers(0, 50), st.integers(0, 9))


def test_seed_003_literals():
    s1, s5 = Ballot(3, 1), Ballot(4, 5)
    assert (str(s1), str(s5)) == ("3.1", "4.5")
    assert s1 < s5 and s1 > ZERO_BALLOT
    assert Ballot.parse("4.5") == s5


def test_round_first_then_node():
    assert Ballot(3, 9) < Ballot(4, 1) and Ballot(4, 1) < Ballot(4, 2)


@given(ballots, ballots)
def test_total_order_agrees_with_tuples(a: Ballot, b: Ballot):
    assert (a < b) == ((a.round, a.node) < (b.round, b.node))
    assert (a == b) == ((a.round, a.node) == (b.round, b.node))


@given(ballots)
def test_codec_round_trip(b: Ballot):
    assert decode(encode(b)) == b


@pytest.mark.parametrize("text", ["3", "a.1", "3.", ".1", "3.1.2"])
def test_parse_rejects_garbage(text: str):
    with pytest.raises(ValueError, match="not a ballot"):
        Ballot.parse(text)


def test_node_numbers():
    assert node_numbers(["S1", "S2", "S5"]) == {"S1": 1, "S2": 2, "S5": 5}
    assert node_numbers(["A", "B", "C"]) == {"A": 1, "B": 2, "C": 3}
    # Trailing numbers that collide (P1, A1) fall back to positions.
    assert node_numbers(["P1", "P2", "A1"]) == {"P1": 1, "P2": 2, "A1": 3}
    assert node_numbers(["n0", "n1"]) == {"n0": 1, "n1": 2}
