"""Seed 004's vote: 9 generals, 1 traitor, loyal votes 4/4."""

from __future__ import annotations

import random

import pytest

from consensuskit.protocols.byzantine import ATTACK, RETREAT, interactive_vote, message_count, naive_vote

VOTES = {f"g{i}": ATTACK if i <= 4 else RETREAT for i in range(1, 9)} | {"g9": ATTACK}


def test_naive_majority_splits_the_loyal_generals() -> None:
    """The traitor tells each camp its own vote: each sees 5 to 4 for itself."""
    run = naive_vote(VOTES, ["g9"], "split", random.Random(0))
    loyal = run.loyal_decisions()
    assert {g for g, d in loyal.items() if d == ATTACK} == {"g1", "g2", "g3", "g4"}
    assert {g for g, d in loyal.items() if d == RETREAT} == {"g5", "g6", "g7", "g8"}
    assert run.messages == 9 * 8


@pytest.mark.parametrize("mode", ["oral", "signed"])
@pytest.mark.parametrize("strategy", ["split", "random", "per-recipient", "counterexample", "silent"])
def test_interactive_consistency_agrees(mode: str, strategy: str) -> None:
    run = interactive_vote(VOTES, 1, ["g9"], strategy, mode, random.Random(3), scheme="token")
    loyal = run.loyal_decisions()
    assert len(set(loyal.values())) == 1
    # Every loyal general holds the loyal generals' true votes (IC2 of each run).
    assert all(run.held[g][h] == VOTES[h] for g in loyal for h in loyal)
    if mode == "oral" and strategy != "silent":
        assert run.messages == 9 * message_count(9, 1)


def test_a_vote_needs_an_rng_when_there_are_traitors() -> None:
    with pytest.raises(ValueError, match="rng"):
        naive_vote(VOTES, ["g9"], "random")
