"""Traitor strategies: what a traitor sends where a loyal general would send ``honest``.

Rules this module owns:
  * a strategy sees one message at a time (``Lie``: who sends to whom, along which
    path, what a loyal general would send, every general's own vote when the run is a
    vote) and answers the value to send, or None to stay silent; it draws randomness
    only from the ``rng`` it is handed (one per traitor, seeded by the run);
  * strategies are the same for oral and signed messages: in SM(m) a lie the traitors
    cannot sign (a changed value under a loyal general's signature) goes out forged,
    and loyal receivers drop it (signed.py);
  * traitors may collude: a strategy knows who the traitors are and treats fellow
    traitors as accomplices (they get the honest value, which changes nothing);
  * ``STRATEGIES`` lists them by name, in the order the CLI shows them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from consensuskit.protocols.byzantine.orders import ATTACK, ORDERS, RETREAT, opposite


@dataclass(frozen=True, slots=True, kw_only=True)
class Lie:
    """What a traitor knows when it sends one message."""

    sender: str
    recipient: str
    path: tuple[str, ...]  # path[0] the commander ... path[-1] == sender
    honest: str  # what a loyal general would send here
    generals: tuple[str, ...]  # every general, the commander first
    traitors: frozenset[str]
    rng: random.Random
    votes: Mapping[str, str] = field(default_factory=dict)  # own votes (interactive consistency)

    @property
    def as_commander(self) -> bool:
        return len(self.path) == 1

    def loyal(self) -> list[str]:
        return [g for g in self.generals if g not in self.traitors]


Strategy = Callable[[Lie], str | None]


def loyal(lie: Lie) -> str | None:
    """No lie at all: the traitor behaves (a baseline)."""
    return lie.honest


def random_lies(lie: Lie) -> str | None:
    """Each message carries a random order."""
    return lie.rng.choice(ORDERS)


def split(lie: Lie) -> str | None:
    """Split the loyal camp: tell each loyal general its own vote when it has one
    (seed 004's traitor among 9 voters), else tell the first half of the loyal
    generals ATTACK and the rest RETREAT."""
    if lie.recipient in lie.traitors:
        return lie.honest
    if lie.recipient in lie.votes:
        return lie.votes[lie.recipient]
    camp = [g for g in lie.loyal() if g != lie.path[0]]
    half = (len(camp) + 1) // 2
    return ATTACK if lie.recipient in camp[:half] else RETREAT


def silent(lie: Lie) -> str | None:
    """Send nothing: receivers fall back to the default order."""
    return None


def per_recipient(lie: Lie) -> str | None:
    """A different value for every recipient (outside the attack/retreat domain)."""
    return f"order-for-{lie.recipient}"


def counterexample(lie: Lie) -> str | None:
    """LSP82 Fig. 1 and 2, the three-general impossibility, made a strategy.

    As a lieutenant the traitor says the commander ordered the opposite of what it
    did (Fig. 1: "he said retreat"); as the commander it orders the first loyal
    lieutenant to ATTACK and every other to RETREAT (Fig. 2).  The one loyal
    lieutenant of Fig. 1 sees exactly what the first lieutenant sees in Fig. 2.
    """
    if lie.recipient in lie.traitors:
        return lie.honest
    if lie.as_commander:
        first = next(g for g in lie.generals[1:] if g not in lie.traitors)
        return ATTACK if lie.recipient == first else RETREAT
    return opposite(lie.honest)


STRATEGIES: dict[str, Strategy] = {
    "random": random_lies,
    "split": split,
    "silent": silent,
    "per-recipient": per_recipient,
    "counterexample": counterexample,
    "loyal": loyal,
}


def strategy(name: str) -> Strategy:
    """The strategy ``name``; ValueError (one line) naming the valid ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown traitor strategy {name!r}; valid: {', '.join(STRATEGIES)}") from None
