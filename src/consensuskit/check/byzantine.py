"""IC1 and IC2 for the Byzantine generals (Lamport, Shostak, Pease 1982, §1).

Rules this module owns:
  * IC1: all loyal lieutenants obey the same order;
  * IC2: if the commander is loyal, every loyal lieutenant obeys the order it sends;
    with a traitor commander IC2 holds vacuously;
  * ``agreement`` is both; a lieutenant that decided nothing breaks both (a loyal
    lieutenant must decide);
  * ``GeneralsChecker`` checks the same in the simulator, on every step, from the
    decisions the nodes report (``decisions()``) — a decision, once made, is final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Verdict:
    ic1: bool
    ic2: bool
    detail: str = ""

    @property
    def agreement(self) -> bool:
        return self.ic1 and self.ic2


def check_orders(
    commander: str, order: str, traitors: frozenset[str] | set[str], decisions: Mapping[str, str | None]
) -> Verdict:
    """IC1/IC2 over ``decisions`` (lieutenant -> order obeyed, None if none)."""
    loyal = {g: d for g, d in sorted(decisions.items()) if g not in traitors and g != commander}
    undecided = sorted(g for g, d in loyal.items() if d is None)
    distinct = sorted({d for d in loyal.values() if d is not None})
    ic1 = not undecided and len(distinct) <= 1
    commander_loyal = commander not in traitors
    disobey = sorted(g for g, d in loyal.items() if d != order) if commander_loyal else []
    ic2 = not disobey
    parts = []
    if undecided:
        parts.append(f"undecided: {', '.join(undecided)}")
    if len(distinct) > 1:
        parts.append("loyal lieutenants split: " + "; ".join(
            f"{v}: {', '.join(g for g, d in loyal.items() if d == v)}" for v in distinct))
    if disobey:
        parts.append(f"loyal commander {commander} ordered {order}; disobeyed by {', '.join(disobey)}")
    return Verdict(ic1=ic1, ic2=ic2, detail="; ".join(parts))


def check_run(run: Any) -> Verdict:
    """The verdict on a ``rounds.GeneralsRun``."""
    return check_orders(run.commander, run.order, run.traitors, run.decisions)
