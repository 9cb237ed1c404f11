"""Fast Paxos scenarios (seed 004 "Fast-Paxos"), each asserting its message delays.

Five servers S1..S5 play every role; S1 is the coordinator and sends "any" at start.
A server that gets a client request acts as the client: it sends the proposal straight
to every acceptor.  Links have fixed latencies so the order in which acceptors receive
two concurrent proposals (and hence the collision) is the same in every seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensuskit.core.client import Op
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic_messages import Accept, Prepare
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.scenarios.paxos import EVEN, FIVE, QUIET, chosen, expect_delays, node, sent, spy
from consensuskit.sim import Simulation

# The collision: both requests reach S2 and S3 at the same instant; these links are
# quicker than the others (2 ms), so S4 gets S2's proposal first and S1,S5 get S3's.
# Only the proposals are raced: every vote still travels the usual 2 ms or less, so the
# last 2b message of round 1 comes from a non-proposing acceptor, as in the seed's figure.
QUICK = 0.0005
QUICK_LINKS = (("S2", "S4"), ("S3", "S1"), ("S3", "S5"))


def command_value(value: Any) -> Any:
    op = getattr(value, "op", None)
    return op.value if op is not None else None


def start(run: ScenarioRun, options: dict[str, Any]) -> Simulation:
    sim = run.simulation(FIVE, options={**QUIET, **options}, network=EVEN)
    sim.run_for(0.02)  # S1's "any" reaches every acceptor
    grants = [i for i in FIVE if node(sim, i).grant is not None]
    run.expect(
        grants == list(FIVE), "coordinator S1 sent any(1.1): every acceptor may vote in fast round 1.1"
    )
    return sim


def fastpaxos_no_collision(run: ScenarioRun) -> None:
    sim = start(run, {})
    log = spy(sim)
    write = sim.submit(Op(kind="put", key="x", value="W"), node="S2", client_id="client")
    sim.run_until_true(lambda: write.done, timeout=1.0)
    run.expect(write.status == "ok", "the client's write is answered", f"{write.status}")
    expect_delays(run, sim, 1, 2, "W (client -> acceptors -> learners)")
    votes = [i for i in FIVE if node(sim, i).acceptor_state(1).accepted_ballot == Ballot(1, 1)]
    run.expect(votes == list(FIVE), "every acceptor voted W in fast round 1.1", f"{votes}")
    classic = sent(log, Prepare) + sent(log, Accept)
    run.expect(not classic, "no Prepare and no Accept: the coordinator took no part", f"{len(classic)} sent")
    sim.run_for(0.05)
    run.expect(
        all(command_value(node(sim, i).chosen.get(1)) == "W" for i in FIVE), "every server learns W in slot 1"
    )


def fastpaxos_collision(default_recovery: str) -> Callable[[ScenarioRun], None]:
    def script(run: ScenarioRun) -> None:
        sim = start(run, {"recovery": default_recovery})
        recovery = node(sim, "S1").opts.recovery  # --option recovery=... wins
        log = spy(sim)
        for src, dst in QUICK_LINKS:
            sim.set_link(src, dst, latency_min=QUICK, latency_max=QUICK)
        v = sim.submit(Op(kind="put", key="x", value="V"), node="S2", client_id="client1")
        w = sim.submit(Op(kind="put", key="x", value="W"), node="S3", client_id="client2")
        sim.run_until_true(lambda: v.done and w.done, timeout=2.0)
        first = {i: command_value(node(sim, i).acceptor_state(1).accepted_value) for i in FIVE}
        round1 = {i: value for i, value in first.items() if node(sim, i).acceptor_state(1).accepted_ballot}
        run.note(f"final votes in slot 1: {round1}")
        fast_votes = sorted(
            (s, command_value(m.value))
            for s, d, m in log
            if type(m).__name__ == "Accepted" and m.slot == 1 and m.ballot == Ballot(1, 1) and d == "S1"
        )
        run.expect(
            fast_votes == [("S2", "V"), ("S3", "W"), ("S4", "V"), ("S5", "W")],
            "acceptors disagree: S2,S4 voted V and S1,S3,S5 voted W in fast round 1.1 (no fast quorum of 4)",
            f"2b messages to S1: {fast_votes}",
        )
        run.expect(
            chosen(sim, 1) is not None and command_value(chosen(sim, 1)) == "W", "W (3 votes) is recovered"
        )
        if recovery == "coordinated":
            recover = [
                (s, str(m.ballot), command_value(m.value)) for s, _, m in sent(log, Accept) if m.slot == 1
            ]
            run.expect(
                set(recover) == {("S1", "2.1", "W")},
                "coordinated recovery: coordinator S1 picks W from the 2b messages and sends Accept(2.1, W)",
                f"{sorted(set(recover))}",
            )
            expect_delays(run, sim, 1, 4, "W after coordinated recovery")
        else:
            run.expect(
                not sent(log, Accept) and not sent(log, Prepare),
                "uncoordinated recovery: no coordinator message, acceptors vote in fast round 2.1 themselves",
            )
            votes = {i: str(node(sim, i).acceptor_state(1).accepted_ballot) for i in FIVE}
            run.expect(set(votes.values()) == {"2.1"}, "every acceptor voted W in round 2.1", f"{votes}")
            expect_delays(run, sim, 1, 3, "W after uncoordinated recovery")
        run.expect(
            v.status == "ok" and w.status == "ok", "both clients are answered", f"{v.status} {w.status}"
        )
        run.expect(command_value(chosen(sim, 2)) == "V", "V is retried in slot 2 and chosen there")
        sim.run_for(0.1)
        run.expect(all(node(sim, i).sm.get("x") == "V" for i in FIVE), "x=V on every server (W then V)")

    return script


SCENARIOS = [
    Scenario(
        "fastpaxos-no-collision",
        "Fast round without collision",
        "fast-paxos",
        "Seed 004 'Fast-Paxos, 非冲突'. S1 sends any(1.1); the client's request at S2 goes straight to "
        "the five acceptors, all vote for it and the learners see a fast quorum (4 of 5): learned "
        "after 2 message delays, with no Prepare or Accept.",
        fastpaxos_no_collision,
    ),
    Scenario(
        "fastpaxos-collision",
        "Collision, coordinated recovery",
        "fast-paxos",
        "Seed 004 'proposals冲突'. Two clients propose V (at S2) and W (at S3) in slot 1; S2,S4 vote V "
        "and S1,S3,S5 vote W, so no value has a fast quorum. Coordinator S1 treats the 2b messages as "
        "phase 1 of classic round 2.1, picks W by rule O4 and gets it chosen: 4 message delays. V goes "
        'to slot 2. (Run with --option recovery="uncoordinated" for the other recovery.)',
        fastpaxos_collision("coordinated"),
    ),
    Scenario(
        "fastpaxos-collision-uncoordinated",
        "Collision, uncoordinated recovery",
        "fast-paxos",
        "Seed 004 'proposals冲突,不协调恢复'. Same collision; every acceptor treats the 2b messages of round "
        "1.1 as phase 1 of fast round 2.1, picks W by the same rule and votes for it: 3 message delays.",
        fastpaxos_collision("uncoordinated"),
    ),
]
