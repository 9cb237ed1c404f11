"""SWIM membership scenarios (seeds 000 and 003: gossip; SCENARIOS.md's memberlist
regressions), each a self-checking script over the simulator.

  * ``swim-detect``: a crashed member is suspected within a few probe periods and dead in
    every other member's view before the suspicion bound;
  * ``swim-refute``: a member paused for less than the suspicion timeout is suspected,
    refutes on resuming with a higher incarnation, and is never declared dead;
  * ``swim-join``: members that know only a seed join through it and learn everyone;
  * ``swim-leave``: a member that leaves is ``left`` everywhere, never ``dead``;
  * ``swim-no-resurrection`` (memberlist #312): a push-pull that left before a crash was
    noticed, delivered after everyone marked the member dead, does not bring it back;
  * ``swim-restart-low-incarnation`` (memberlist #311 / PR #345): a member declared dead
    at incarnation 1 restarts at 0 (no stable storage); its stale alive is answered with
    the accusation, it refutes and is alive everywhere again.
"""

from __future__ import annotations

from typing import Any

from consensuskit.protocols.swim import ALIVE, DEAD, LEFT, SUSPECT
from consensuskit.scenarios.base import Scenario, ScenarioRun

NODES = tuple(f"n{i}" for i in range(1, 9))


def _states(sim: Any, member: str, observers: tuple[str, ...] | None = None) -> dict[str, str]:
    """How each running observer sees ``member`` (its state name)."""
    out = {}
    for observer in observers or sim.node_ids:
        node = sim.nodes.get(observer)
        if node is None or observer == member:
            continue
        rec = node.members.get(member)
        out[observer] = rec.state if rec is not None else "unknown"
    return out


def _all(sim: Any, member: str, states: tuple[str, ...]) -> bool:
    return all(s in states for s in _states(sim, member).values())


def _detail(sim: Any, member: str) -> str:
    return " ".join(f"{o}:{s}" for o, s in sorted(_states(sim, member).items()))


def swim_detect(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0)
    sim.run_until(5.0)
    sim.crash("n3")
    crashed = sim.now
    suspected = sim.run_until_true(
        lambda: any(s in (SUSPECT, DEAD) for s in _states(sim, "n3").values()), 10.0
    )
    run.expect(
        suspected,
        "some member suspects the crashed n3 within 10 probe periods",
        f"after {sim.now - crashed:.2f}s",
    )
    # Lifeguard's largest suspicion timeout for 8 members is 6 x 4 x log10(8) s ~ 21.7 s.
    dead = sim.run_until_true(lambda: _all(sim, "n3", (DEAD,)), 40.0)
    run.expect(dead, "every other member marks n3 dead (strong completeness)", _detail(sim, "n3"))
    run.expect(
        all(_all(sim, m, (ALIVE,)) for m in NODES if m != "n3"),
        "no live member is suspect or dead anywhere (accuracy)",
    )


def swim_refute(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0)
    sim.run_until(3.0)
    sim.pause("n4")
    suspected = sim.run_until_true(lambda: any(s == SUSPECT for s in _states(sim, "n4").values()), 10.0)
    run.expect(suspected, "the paused n4 is suspected", _detail(sim, "n4"))
    sim.run_for(1.0)  # well inside the smallest suspicion timeout (~3.6 s for 8 members)
    sim.resume("n4")
    back = sim.run_until_true(lambda: _all(sim, "n4", (ALIVE,)), 15.0)
    run.expect(back, "after resuming, n4 refutes and is alive everywhere", _detail(sim, "n4"))
    node = sim.nodes["n4"]
    run.expect(
        node.incarnation >= 1 and node.refutations >= 1,
        "n4 refuted with a higher incarnation",
        f"incarnation={node.incarnation}",
    )
    declared = [(o, m) for o in NODES if sim.nodes[o] is not None for m, _i, _t in sim.nodes[o].dead_log]
    run.expect(not declared, "nobody ever declared a member dead", str(declared))


def swim_join(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0, options={"join": ("n1",)})
    everyone = sim.run_until_true(
        lambda: all(
            sorted(m for m, r in sim.nodes[o].members.items() if r.state == ALIVE) == sorted(NODES)
            for o in NODES
        ),
        30.0,
    )
    run.expect(
        everyone,
        "every member, knowing only the seed n1, learns all 8 members as alive",
        f"after {sim.now:.1f}s",
    )


def swim_leave(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0)
    sim.run_until(3.0)
    sim.invoke("n5", lambda node: node.leave(), "n5 leaves")
    left = sim.run_until_true(lambda: _all(sim, "n5", (LEFT,)), 10.0)
    run.expect(left, "every member marks n5 left", _detail(sim, "n5"))
    sim.crash("n5")  # a left member shuts down: nobody may turn it into a failure
    sim.run_for(30.0)
    run.expect(_all(sim, "n5", (LEFT,)), "n5 stays left, never dead", _detail(sim, "n5"))


def swim_no_resurrection(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0, options={"push_pull_interval": 2.0})
    sim.run_until(5.0)
    held: list[Any] = []

    def hold_stale(src: str, dst: str, msg: Any) -> str | None:
        # Push-pulls that still call n6 alive are held back (a slow TCP sync).
        states = getattr(msg, "states", None)
        if states and any(u.member == "n6" and u.kind == ALIVE for u in states):
            held.append(msg)
            return "hold"
        return None

    handle = sim.add_filter(hold_stale)
    sim.crash("n6")
    dead = sim.run_until_true(lambda: _all(sim, "n6", (DEAD,)), 40.0)
    run.expect(dead, "every member marks the crashed n6 dead", _detail(sim, "n6"))
    run.expect(bool(held), "push-pulls calling n6 alive were sent meanwhile", f"{len(held)} held")
    sim.remove_filter(handle)
    sim.release_held()
    sim.run_for(10.0)
    run.expect(_all(sim, "n6", (DEAD,)), "the stale push-pulls revive n6 nowhere", _detail(sim, "n6"))


def swim_restart_low_incarnation(run: ScenarioRun) -> None:
    sim = run.simulation(NODES, clients=0, options={"persist_incarnation": False, "push_pull_interval": 0})
    sim.run_until(2.0)
    sim.invoke("n2", lambda node: node.hear(SUSPECT, "n2", 0, "n3"), "n2 hears itself accused")
    sim.run_until(8.0)
    run.expect(_all(sim, "n2", (ALIVE,)), "n2 refuted at incarnation 1", _detail(sim, "n2"))
    sim.crash("n2")
    dead = sim.run_until_true(lambda: _all(sim, "n2", (DEAD,)), 40.0)
    run.expect(dead, "every member marks n2 dead at incarnation 1", _detail(sim, "n2"))
    sim.run_for(20.0)  # the accusation's retransmissions are spent
    sim.restart("n2")
    run.expect(sim.nodes["n2"].incarnation == 0, "n2 restarts at incarnation 0 (no stable storage)")
    back = sim.run_until_true(lambda: _all(sim, "n2", (ALIVE,)), 30.0)
    run.expect(back, "n2 learns the accusation, refutes above it and is alive everywhere", _detail(sim, "n2"))
    run.expect(
        sim.nodes["n2"].incarnation >= 2,
        "n2 came back above the accusation",
        f"incarnation={sim.nodes['n2'].incarnation}",
    )


SCENARIOS = [
    Scenario(
        "swim-detect",
        "Failure detection",
        "swim",
        "Eight members; n3 crashes. Some member suspects it within a few probe periods "
        "(SWIM expects e/(e-1) ~ 1.58 on average) and every other member marks it dead before "
        "the suspicion bound; no live member is ever suspected.",
        swim_detect,
    ),
    Scenario(
        "swim-refute",
        "Suspicion and refutation",
        "swim",
        "n4 is paused long enough to be suspected, not long enough to be declared dead; on "
        "resuming it learns of the suspicion (Lifeguard's buddy system puts it in the next ping), "
        "raises its incarnation, and alive at the higher incarnation wins everywhere.",
        swim_refute,
    ),
    Scenario(
        "swim-join",
        "Join through a seed",
        "swim",
        "Every member starts knowing only n1 and joins through it with a push-pull; gossip and "
        "push-pull spread the table until everybody knows all eight members.",
        swim_join,
    ),
    Scenario(
        "swim-leave",
        "Graceful leave",
        "swim",
        "n5 announces it leaves (a dead accusation by itself) and shuts down: everybody marks it "
        "left, and its silence afterwards never turns it into a failure.",
        swim_leave,
    ),
    Scenario(
        "swim-no-resurrection",
        "No resurrection by a stale push-pull (memberlist #312)",
        "swim",
        "n6 crashes; push-pulls sent while it still looked alive are held until everyone marks it "
        "dead, then delivered: alive at the same incarnation does not beat dead, so n6 stays dead "
        "(with the bug knob push-pull-resurrects it comes back, and the checker objects).",
        swim_no_resurrection,
    ),
    Scenario(
        "swim-restart-low-incarnation",
        "A restart below the accusation (memberlist #311, PR #345)",
        "swim",
        "n2, dead at incarnation 1, restarts at 0 without stable storage. Its alive(0) is stale "
        "everywhere; members answer it with the accusation, n2 refutes at 2 and is alive again "
        "(with drop-stale-alive, memberlist's behaviour before PR #345, it stays dead).",
        swim_restart_low_incarnation,
    ),
]
