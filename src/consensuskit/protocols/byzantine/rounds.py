"""The generals as a direct, deterministic, round-based function (no simulator).

Rules this module owns:
  * the network of LSP82's assumptions A1-A3: every message sent in round r is
    delivered, unaltered, before round r+1 starts, and the receiver knows the sender;
    a missing message is detected (the receiver uses the default order);
  * generals are ``g1..gN`` unless named, the commander first; traitors are any subset;
  * the traitors draw their random choices from the one ``rng`` handed in, in the
    fixed order of the sends, so a run is a pure function of its arguments and the
    rng's state;
  * deliveries within a round go in a fixed order (senders in general order, each
    sender's messages in the order it produced them);
  * ``run_generals`` runs OM(m) (``mode="oral"``) or SM(m) (``mode="signed"``) once;
    votes.py builds the interactive-consistency vote on top of it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.protocols.byzantine.oral import OralGeneral, message_count
from consensuskit.protocols.byzantine.orders import ATTACK
from consensuskit.protocols.byzantine.signed import SignedGeneral
from consensuskit.protocols.byzantine.signing import Keys, make_keys
from consensuskit.protocols.byzantine.strategies import Strategy, strategy

MODES = ("oral", "signed")
# OM(m) sends O(n^(m+1)) messages (SM(m) as many when the commander lies to everyone):
# a run is refused beyond this many rather than left to run for hours.
MAX_MESSAGES = 1_000_000


def general_ids(n: int) -> tuple[str, ...]:
    return tuple(f"g{i}" for i in range(1, n + 1))


@dataclass(slots=True, kw_only=True)
class GeneralsRun:
    """What one run of OM(m) or SM(m) did."""

    mode: str
    m: int
    generals: tuple[str, ...]
    commander: str
    order: str
    traitors: frozenset[str]
    strategy: str
    decisions: dict[str, str]  # every lieutenant's decision (traitors' too)
    messages: int
    rounds: int
    rejected: int = 0
    forged: int = 0
    cpu_seconds: float = 0.0  # simulated signing cost (token scheme)
    views: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.generals)

    def loyal_decisions(self) -> dict[str, str]:
        return {g: d for g, d in self.decisions.items() if g not in self.traitors}

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "m": self.m,
            "commander": self.commander,
            "order": self.order,
            "traitors": sorted(self.traitors, key=self.generals.index),
            "strategy": self.strategy,
            "decisions": self.decisions,
            "messages": self.messages,
            "rounds": self.rounds,
            "rejected": self.rejected,
            "forged": self.forged,
        }


def validate(generals: Sequence[str], m: int, traitors: frozenset[str], mode: str) -> None:
    """ValueError (one line) for a case the algorithms cannot run."""
    n = len(generals)
    if len(set(generals)) != n:
        raise ValueError("general ids must be distinct")
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if n < m + 2:
        raise ValueError(f"{mode} messages with m={m} need at least m+2={m + 2} generals, got {n}")
    count = message_count(n, m)
    if count > MAX_MESSAGES:
        cap = f"{MAX_MESSAGES:,}"
        raise ValueError(f"OM({m}) among {n} generals sends {count:,} messages; at most {cap} are run")
    unknown = sorted(traitors - set(generals))
    if unknown:
        raise ValueError(f"unknown traitor(s) {', '.join(unknown)}; generals are {', '.join(generals)}")


def run_generals(
    n: int | Sequence[str],
    m: int,
    *,
    traitors: frozenset[str] | set[str] | Sequence[str] = (),
    strategy_name: str | Strategy = "random",
    mode: str = "oral",
    order: str = ATTACK,
    rng: random.Random | None = None,
    seed: int = 0,
    scheme: str = "ed25519",
    keys: Keys | None = None,
    votes: Mapping[str, str] | None = None,
    instance: int = 0,
    bugs: frozenset[str] = frozenset(),
    tie: str = "retreat",
) -> GeneralsRun:
    """One run of OM(m) or SM(m); the commander is the first general.  ``seed`` derives
    the signing keys (when ``keys`` is not given); ``rng`` feeds the traitors' lies."""
    generals = general_ids(n) if isinstance(n, int) else tuple(n)
    traitor_set = frozenset(traitors)
    validate(generals, m, traitor_set, mode)
    if traitor_set and rng is None:
        raise ValueError("traitors need an rng to draw their lies from")
    chosen = strategy(strategy_name) if isinstance(strategy_name, str) else strategy_name
    name = strategy_name if isinstance(strategy_name, str) else getattr(chosen, "__name__", "custom")

    people: dict[str, OralGeneral | SignedGeneral] = {}
    if mode == "oral":
        for g in generals:
            people[g] = OralGeneral(
                g,
                generals,
                m,
                order=order,
                strategy=chosen if g in traitor_set else None,
                traitors=traitor_set,
                rng=rng,
                votes=votes,
                bugs=bugs,
                tie=tie,
            )
    else:
        keys = keys or make_keys(scheme, generals, seed)
        for g in generals:
            holders = traitor_set if g in traitor_set else {g}
            people[g] = SignedGeneral(
                g,
                generals,
                m,
                keys.signer(holders),
                instance=instance,
                order=order,
                strategy=chosen if g in traitor_set else None,
                traitors=traitor_set,
                rng=rng,
                votes=votes,
                bugs=bugs,
            )
    rounds = m + 1
    for r in range(1, rounds + 1):
        outgoing = [(g, people[g].sends(r)) for g in generals]
        for src, sends in outgoing:
            for dst, *msg in sends:
                if mode == "oral":
                    people[dst].receive(src, msg[0], msg[1], r)  # type: ignore[call-arg]
                else:
                    people[dst].receive(src, msg[0], r)  # type: ignore[call-arg, arg-type]
    lieutenants = generals[1:]
    return GeneralsRun(
        mode=mode,
        m=m,
        generals=generals,
        commander=generals[0],
        order=order,
        traitors=traitor_set,
        strategy=name,
        decisions={g: people[g].decide() for g in lieutenants},
        messages=sum(p.sent for p in people.values()),
        rounds=rounds,
        rejected=sum(p.rejected for p in people.values()),
        forged=sum(getattr(p, "forged", 0) for p in people.values()),
        cpu_seconds=sum(getattr(getattr(p, "signer", None), "cpu_seconds", 0.0) for p in people.values()),
        views={g: people[g].view() for g in lieutenants},
    )
