"""IC1 and IC2 for the Byzantine generals (Lamport, Shostak, Pease 1982, §1).

Rules this module owns:
  * IC1: all loyal lieutenants obey the same order;
  * IC2: if the commander is loyal, every loyal lieutenant obeys the order it sends;
    with a traitor commander IC2 holds vacuously;
  * ``agreement`` is both; a loyal lieutenant that decided nothing breaks IC1 (and
    IC2 under a loyal commander): a loyal lieutenant must decide;
  * ``find_violation`` is the boundary search: m traitors placed four ways, every
    strategy, both orders, seeds of the random one; the first run that breaks
    agreement, or None (deterministic);
  * ``GeneralsChecker`` checks the same in the simulator, on every step, from the
    decisions the nodes report (``decisions()``) — a decision, once made, is final;
    ``GeneralsMonitor`` reports instances, messages per instance against OM(m)'s
    formula, and drops, and fails a run in which no instance ended.
"""

from __future__ import annotations

import random
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
        parts.append(
            "loyal lieutenants split: "
            + "; ".join(f"{v}: {', '.join(g for g, d in loyal.items() if d == v)}" for v in distinct)
        )
    if disobey:
        parts.append(f"loyal commander {commander} ordered {order}; disobeyed by {', '.join(disobey)}")
    return Verdict(ic1=ic1, ic2=ic2, detail="; ".join(parts))


def check_run(run: Any) -> Verdict:
    """The verdict on a ``rounds.GeneralsRun``."""
    return check_orders(run.commander, run.order, run.traitors, run.decisions)


# ---------------------------------------------------------------------- the boundary
@dataclass(frozen=True, slots=True)
class Case:
    """One run the boundary search tries."""

    traitors: tuple[str, ...]
    strategy: str
    order: str
    seed: int


def placements(generals: tuple[str, ...], m: int) -> list[tuple[str, ...]]:
    """Where the m traitors sit: m lieutenants (the last, then the first), or the
    commander with m-1 lieutenants (the last, then the first)."""
    lieutenants = generals[1:]
    found: list[tuple[str, ...]] = []
    for chosen in (
        lieutenants[len(lieutenants) - m :],
        lieutenants[:m],
        (generals[0], *lieutenants[len(lieutenants) - (m - 1) :]) if m > 1 else (generals[0],),
        (generals[0], *lieutenants[: m - 1]),
    ):
        if m and chosen not in found:
            found.append(tuple(chosen))
    return found


SEARCH_ORDER = ("counterexample", "split", "per-recipient", "silent", "random")


def find_violation(n: int, m: int, mode: str = "oral", seeds: int = 20) -> tuple[Case, Verdict] | None:
    """The first case (m traitors, any strategy, either order, ``seeds`` seeds of the
    random strategies) where OM(m)/SM(m) among n generals breaks IC1 or IC2; None when
    every case agrees.  Deterministic: the same arguments try the same cases."""
    from consensuskit.protocols.byzantine import ORDERS, STRATEGIES, general_ids, make_keys, run_generals

    generals = general_ids(n)
    keys = make_keys("token", generals) if mode == "signed" else None
    # The constructed strategies first, random lies last (they need the seeds).
    names = [s for s in SEARCH_ORDER if s in STRATEGIES] + [s for s in STRATEGIES if s not in SEARCH_ORDER]
    for traitors in placements(generals, m):
        for name in names:
            if name == "loyal":
                continue
            for order in ORDERS:
                for seed in range(seeds if name == "random" else 1):
                    run = run_generals(
                        generals,
                        m,
                        rng=random.Random(seed),
                        traitors=traitors,
                        strategy_name=name,
                        mode=mode,
                        order=order,
                        seed=seed,
                        keys=keys,
                    )
                    verdict = check_run(run)
                    if not verdict.agreement:
                        return Case(traitors, name, order, seed), verdict
    return None


# ---------------------------------------------------------------------- the simulator
class GeneralsChecker:
    """IC1 and IC2 per instance, after every step, from the nodes' ``decisions()``.

    Judged as the algorithm promises: the lieutenants are compared whatever the
    network did, so a run whose faults break the synchronous model (lost or late
    messages, crashes, skewed clocks) or with more traitors than OM(m) tolerates is
    expected to be caught — that is the point of ``--bug`` and of the 3-general case.
    """

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.opts: Any = None
        self.seen: dict[str, int] = {}  # node -> decisions already judged
        self.loyal: dict[int, dict[str, str]] = {}  # instance -> loyal lieutenant -> order
        self.instances = 0

    def after_step(self, sim: Any, node_id: str) -> None:
        from consensuskit.check import InvariantViolation
        from consensuskit.protocols.byzantine import parse_options as parse

        node = sim.nodes.get(node_id)
        if node is None or node_id == sim.node_ids[0]:
            return
        if self.opts is None:
            self.opts = parse({k: v for k, v in sim.options.items() if k != "bugs"})
        decisions = node.decisions()
        if len(decisions) == self.seen.get(node_id, 0) or node_id in self.opts.traitors:
            self.seen[node_id] = len(decisions)
            return
        self.seen[node_id] = len(decisions)
        commander = sim.node_ids[0]
        for k in sorted(decisions):
            got = self.loyal.setdefault(k, {})
            if node_id in got:
                continue
            got[node_id] = decisions[k]
            self.instances = max(self.instances, k + 1)
            verdict = check_orders(commander, self.opts.order_of(k), self.opts.traitors, got)
            if not verdict.ic1:
                raise InvariantViolation("ic1", f"instance {k}: {verdict.detail}")
            if not verdict.ic2:
                raise InvariantViolation("ic2", f"instance {k}: {verdict.detail}")


class GeneralsMonitor:
    """What a simulated run of the generals measured: instances decided, messages per
    instance against OM(m)'s formula, drops; fails a run in which no instance ended."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def start(self, sim: Any) -> None:
        pass

    def report(self, sim: Any) -> dict[str, Any]:
        from consensuskit.protocols.byzantine import message_count
        from consensuskit.protocols.byzantine import parse_options as parse

        opts = parse({k: v for k, v in sim.options.items() if k != "bugs"})
        nodes = [n for n in sim.nodes.values() if n is not None]
        instances = min((len(n.decisions()) for n in nodes), default=0)
        sent = sum(n.sent for n in nodes)
        per_instance = [sum(n.sent_by_instance.get(k, 0) for n in nodes) for k in range(instances)]
        return {
            "mode": opts.mode,
            "m": opts.m,
            "instances_decided": instances,
            "messages": sent,
            "messages_per_instance": sorted(set(per_instance)),
            "messages_per_instance_formula": (
                message_count(len(sim.node_ids), opts.m) if opts.mode == "oral" else None
            ),
            "dropped": sum(n.dropped for n in nodes),
        }

    def failures(self, sim: Any) -> list[str]:
        nodes = [n for n in sim.nodes.values() if n is not None]
        if nodes and not any(n.decisions() for n in nodes):
            return ["no instance of the generals ended"]
        return []
