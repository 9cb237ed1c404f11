"""Seed 004's vote: every general has a vote and all must act alike.

Rules this module owns:
  * ``naive_vote``: each general sends its vote to every other once and acts on the
    majority of the votes it holds (its own included), ties to RETREAT; a traitor
    sends what its strategy says.  Seed 004: 9 generals, 4 loyal for attack, 4 for
    retreat, one traitor telling each its own vote: each camp sees 5 to 4 for itself;
  * ``interactive_vote``: interactive consistency (LSP82 §1) — every general in turn
    is the commander of one OM(m) (or SM(m)) run sending its vote; each loyal general
    then holds the same vector of values and acts on its majority.  With n > 3m the
    loyal generals agree, and each loyal general's entry is its true vote;
  * the decision of a general is over all n entries (its own vote for itself).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensuskit.protocols.byzantine.orders import DEFAULT, majority
from consensuskit.protocols.byzantine.rounds import run_generals
from consensuskit.protocols.byzantine.signing import make_keys
from consensuskit.protocols.byzantine.strategies import Lie, strategy


@dataclass(slots=True, kw_only=True)
class VoteRun:
    method: str
    votes: dict[str, str]
    traitors: frozenset[str]
    held: dict[str, dict[str, str]]  # general -> (whose vote -> value it holds)
    decisions: dict[str, str]
    messages: int

    def loyal_decisions(self) -> dict[str, str]:
        return {g: d for g, d in self.decisions.items() if g not in self.traitors}

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "votes": self.votes,
            "traitors": sorted(self.traitors),
            "decisions": self.decisions,
            "messages": self.messages,
        }


def naive_vote(
    votes: Mapping[str, str],
    traitors: Sequence[str] = (),
    strategy_name: str = "split",
    rng: random.Random | None = None,
) -> VoteRun:
    generals = tuple(votes)
    traitor_set = frozenset(traitors)
    lie = strategy(strategy_name)
    if traitor_set and rng is None:
        raise ValueError("traitors need an rng to draw their lies from")
    held: dict[str, dict[str, str]] = {g: {g: votes[g]} for g in generals}
    messages = 0
    for sender in generals:
        for dst in generals:
            if dst == sender:
                continue
            value: str | None = votes[sender]
            if sender in traitor_set:
                value = lie(
                    Lie(
                        sender=sender,
                        recipient=dst,
                        path=(sender,),
                        honest=votes[sender],
                        generals=generals,
                        traitors=traitor_set,
                        rng=rng,  # type: ignore[arg-type]  # checked above
                        votes=votes,
                    )
                )
            if value is not None:
                held[dst][sender] = value
                messages += 1
    decisions = {g: majority(held[g].get(s, DEFAULT) for s in generals) for g in generals}
    return VoteRun(
        method="naive",
        votes=dict(votes),
        traitors=traitor_set,
        held=held,
        decisions=decisions,
        messages=messages,
    )


def interactive_vote(
    votes: Mapping[str, str],
    m: int,
    traitors: Sequence[str] = (),
    strategy_name: str = "split",
    mode: str = "oral",
    rng: random.Random | None = None,
    seed: int = 0,
    scheme: str = "ed25519",
) -> VoteRun:
    generals = tuple(votes)
    traitor_set = frozenset(traitors)
    held: dict[str, dict[str, str]] = {g: {g: votes[g]} for g in generals}
    messages = 0
    keys = make_keys(scheme, generals, seed) if mode == "signed" else None
    for index, commander in enumerate(generals):
        order = (commander, *(g for g in generals if g != commander))
        run = run_generals(
            order,
            m,
            traitors=traitor_set,
            strategy_name=strategy_name,
            mode=mode,
            order=votes[commander],
            rng=rng,
            seed=seed,
            keys=keys,
            votes=votes,
            instance=index,
        )
        messages += run.messages
        for g, value in run.decisions.items():
            held[g][commander] = value
    decisions = {g: majority(held[g][s] for s in generals) for g in generals}
    return VoteRun(
        method=f"{'OM' if mode == 'oral' else 'SM'}({m})",
        votes=dict(votes),
        traitors=traitor_set,
        held=held,
        decisions=decisions,
        messages=messages,
    )
