"""The Byzantine generals' seed scenario (seeds 002, 004), asserting its outcome.

``byzantine-generals`` runs no catalog protocol: OM(m)/SM(m) are computed by the
generals' direct round-based function (registered with ``Catalog.add_scenarios``), and
its last part runs the same generals as nodes in the simulator, on a registry of its own
holding the generals' spec with the IC1/IC2 checker.
"""

from __future__ import annotations

import dataclasses
import random

from consensuskit.check.byzantine import GeneralsChecker, GeneralsMonitor, check_run
from consensuskit.core.registry import Registry
from consensuskit.protocols.byzantine import (
    ATTACK,
    RETREAT,
    generals_spec,
    interactive_vote,
    naive_vote,
    run_generals,
)
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import SimConfig, Simulation

NINE = tuple(f"g{i}" for i in range(1, 10))


def _camps(decisions: dict[str, str]) -> str:
    by: dict[str, list[str]] = {}
    for g, d in decisions.items():
        by.setdefault(d, []).append(g)
    return "; ".join(f"{d}: {','.join(gs)}" for d, gs in sorted(by.items()))


def seed_004_vote(run: ScenarioRun) -> None:
    """9 generals, g9 a traitor telling each loyal general its own vote; 4 vs 4."""
    votes = {g: ATTACK if i < 4 else RETREAT for i, g in enumerate(NINE[:8])} | {"g9": ATTACK}
    naive = naive_vote(votes, ["g9"], "split", random.Random(run.seed))
    loyal = naive.loyal_decisions()
    run.note(f"naive majority (each counts 9 votes, the traitor's as told): {_camps(loyal)}")
    run.expect(len(set(loyal.values())) == 2, "naive majority splits the loyal generals 4/4", _camps(loyal))
    om = interactive_vote(votes, 1, ["g9"], "split", "oral", random.Random(run.seed))
    loyal = om.loyal_decisions()
    run.note(f"OM(1) per general (9 runs, {om.messages} messages): {_camps(loyal)}")
    run.expect(
        len(set(loyal.values())) == 1, "OM(1) gives every loyal general the same decision", _camps(loyal)
    )
    same_vectors = len({tuple(sorted(om.held[g].items())) for g in loyal}) == 1
    true_votes = all(om.held[g][h] == votes[h] for g in loyal for h in loyal)
    run.expect(
        same_vectors and true_votes,
        "every loyal general holds the same 9 values, the loyal ones' true votes",
    )


def three_generals(run: ScenarioRun) -> None:
    """LSP82 Fig. 1 and 2: one traitor among 3; oral messages cannot agree, signed can."""
    worlds = {"Fig. 1 (traitor g3)": ["g3"], "Fig. 2 (traitor g1)": ["g1"]}
    views = {}
    for title, traitors in worlds.items():
        om = run_generals(
            3, 1, traitors=traitors, strategy_name="counterexample", rng=random.Random(run.seed)
        )
        verdict = check_run(om)
        views[title] = om.views["g2"]
        run.note(
            f"OM(1) {title}: g2 hears {om.views['g2']} -> {om.decisions['g2']}; "
            f"g3 -> {om.decisions['g3']}; IC1 {verdict.ic1}, IC2 {verdict.ic2}"
        )
        if traitors == ["g3"]:
            run.expect(
                not verdict.agreement, "OM(1), 3 generals, traitor g3: the loyal lieutenant disobeys g1"
            )
    first, second = views.values()
    run.expect(
        first == second,
        "g2 cannot tell Fig. 1 from Fig. 2 (same messages): obeying g1 in one means attacking in the other",
        str(first),
    )
    # The other horn: a lieutenant that obeys the commander when the values tie repairs
    # Fig. 1 and so attacks in Fig. 2, where g3 (symmetric) retreats.
    repaired = {}
    for title, traitors in worlds.items():
        variant = run_generals(
            3,
            1,
            traitors=traitors,
            strategy_name="counterexample",
            rng=random.Random(run.seed),
            tie="commander",
        )
        repaired[title] = check_run(variant)
        run.note(f"OM(1) obeying the commander on a tie, {title}: {variant.decisions}")
    fig1, fig2 = repaired.values()
    run.expect(
        fig1.agreement and not fig2.ic1,
        "obeying the commander on a tie repairs Fig. 1 (IC2) and breaks IC1 in Fig. 2",
        fig2.detail,
    )
    for title, traitors in worlds.items():
        sm = run_generals(
            3,
            1,
            traitors=traitors,
            strategy_name="counterexample",
            mode="signed",
            rng=random.Random(run.seed),
        )
        verdict = check_run(sm)
        run.note(
            f"SM(1) {title}: decisions {sm.decisions}, {sm.forged} forged message(s) dropped as "
            f"{sm.rejected} bad signature(s)"
        )
        run.expect(verdict.agreement, f"SM(1), 3 generals, {title}: IC1 and IC2 hold (Ed25519)")


def in_the_simulator(run: ScenarioRun) -> None:
    """The same generals as simulated nodes: 5 instances each, checked on every step."""
    spec = dataclasses.replace(generals_spec(), make_checker=GeneralsChecker, make_monitor=GeneralsMonitor)
    registry = Registry()
    registry.add(spec)
    cases = (
        ("OM(1), 4 generals, traitor n4 (counterexample)", ("n1", "n2", "n3", "n4"),
         {"m": 1, "traitors": ["n4"], "strategy": "counterexample", "instances": 5}),
        ("SM(1), 3 generals, traitor n3 (counterexample)", ("n1", "n2", "n3"),
         {"m": 1, "mode": "signed", "traitors": ["n3"], "strategy": "counterexample", "instances": 5}),
        ("SM(1), 3 generals, traitor n1 (split)", ("n1", "n2", "n3"),
         {"m": 1, "mode": "signed", "traitors": ["n1"], "strategy": "split", "instances": 5}),
    )  # fmt: skip
    for i, (title, nodes, options) in enumerate(cases):
        last = i == len(cases) - 1
        config = SimConfig(
            protocol=spec.name,
            node_ids=nodes,
            seed=run.seed,
            duration=1.0,
            settle=0.2,
            options=options,
            trace_path=run.trace_path if last else None,
        )
        sim = Simulation(config, registry)
        if last:
            run.sim = sim  # its trace is the one `scenario run --timeline` draws
        result = sim.run()
        decided = result.metrics.get("instances_decided", 0)
        run.note(f"simulator, {title}: {decided} instances, {result.metrics.get('messages')} messages")
        run.expect(result.ok and decided == 5, f"simulator: {title}: IC1 and IC2 hold in every instance")


def byzantine_generals(run: ScenarioRun) -> None:
    seed_004_vote(run)
    three_generals(run)
    in_the_simulator(run)


SCENARIOS = [
    Scenario(
        id="byzantine-generals",
        title="Byzantine generals: naive majority vs OM(1); three generals, oral vs signed",
        protocol="byzantine",
        description=(
            "9 generals, 1 traitor, loyal votes split 4/4: naive majority splits the loyal generals, "
            "OM(1) agrees. 3 generals with 1 traitor: OM(1) cannot agree, SM(1) can."
        ),
        script=byzantine_generals,
    )
]
