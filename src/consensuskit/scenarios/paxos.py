"""Basic Paxos seed scenarios (seeds 003, 004), each asserting its outcome.

Scripts start proposals with ``BasicPaxosNode.propose(value, slot=, round=)`` so the
ballots are the seeds' literal ones (S1's 3.1, S5's 4.5), and steer message order with
filters: "drop", or "hold" and release later.  What was chosen is read from the Paxos
checker, which computes it from the acceptors' durable votes, not from what nodes say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensuskit.core.client import Op
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic_messages import Accept, Accepted, Nack, Prepare, Promise
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import NetworkConfig, Simulation

FIVE = ("S1", "S2", "S3", "S4", "S5")
QUIET = {"catchup_interval": 0}  # no catch-up chatter in scripted message orders
# Equal fixed latencies: every copy of a broadcast arrives before any answer to it, so a
# learner that is also an acceptor cannot complete a quorum early with its own vote.
EVEN = NetworkConfig(latency_min=0.002, latency_max=0.002)

Filter = Callable[[str, str, Any], str | None]


# ---------------------------------------------------------------------- helpers
def node(sim: Simulation, node_id: str) -> Any:
    n = sim.nodes.get(node_id)
    assert n is not None, f"{node_id} is down"
    return n


def spy(sim: Simulation) -> list[tuple[str, str, Any]]:
    """Every message released from now on, as (src, dst, msg)."""
    seen: list[tuple[str, str, Any]] = []

    def watch(src: str, dst: str, msg: Any) -> None:
        seen.append((src, dst, msg))

    sim.add_filter(watch)
    return seen


def when(verdict: str, pred: Callable[[str, str, Any], bool]) -> Filter:
    return lambda src, dst, msg: verdict if pred(src, dst, msg) else None


def chosen(sim: Simulation, slot: int) -> Any:
    """The value chosen in ``slot`` according to the acceptors' durable votes."""
    entry = sim.checker.chosen.get(slot)
    return entry[0] if entry is not None else None


def learned(sim: Simulation, node_id: str, slot: int) -> Any:
    return node(sim, node_id).chosen.get(slot)


def propose(
    sim: Simulation, node_id: str, value: Any, slot: int | None = None, round: int | None = None
) -> None:
    where = f" in slot {slot}" if slot is not None else ""
    with_round = f" with round {round}" if round is not None else ""
    sim.invoke(
        node_id,
        lambda n: n.propose(value, slot=slot, round=round),
        f"{node_id} proposes {value!r}{where}{with_round}",
    )


def accepted(sim: Simulation, node_id: str, slot: int) -> tuple[str, Any] | None:
    rec = node(sim, node_id).acceptor_state(slot)
    if rec.accepted_value is None:
        return None
    return str(rec.accepted_ballot), rec.accepted_value


def sent(log: list[tuple[str, str, Any]], kind: type, src: str | None = None) -> list[tuple[str, str, Any]]:
    return [(s, d, m) for s, d, m in log if isinstance(m, kind) and (src is None or s == src)]


def expect_delays(run: ScenarioRun, sim: Simulation, slot: int, delays: int, what: str) -> None:
    got = sim.learned_delays.get(slot)
    run.expect(got == delays, f"{what}: learned after {delays} message delays", f"delays={got}")


def expect_everyone_learned(
    run: ScenarioRun, sim: Simulation, slot: int, value: Any, nodes: tuple[str, ...]
) -> None:
    values = {i: learned(sim, i, slot) for i in nodes}
    run.expect(
        all(v == value for v in values.values()),
        f"every learner learns slot {slot} = {value!r}",
        f"{values}",
    )


# ---------------------------------------------------------------------- seed 003
def paxos_x_wins(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE, options=QUIET, network=EVEN)
    log = spy(sim)
    # S1's Accept reaches S1,S2,S3; S4 and S5 hear of no vote yet.
    first = sim.add_filter(
        when("drop", lambda s, d, m: d in ("S4", "S5") and isinstance(m, Accept | Accepted))
    )
    propose(sim, "S1", "X", slot=1, round=3)
    sim.run_for(0.1)
    ballots = {str(m.ballot) for _, _, m in sent(log, Prepare, "S1")}
    run.expect(ballots == {"3.1"}, "S1 prepares with ballot 3.1 (round 3, node 1)", f"{ballots}")
    voters = [i for i in FIVE if accepted(sim, i, 1) == ("3.1", "X")]
    run.expect(voters == ["S1", "S2", "S3"], "S1,S2,S3 accept (3.1, X)", f"voters={voters}")
    run.expect(chosen(sim, 1) == "X", "X is chosen: a majority accepted it")
    expect_delays(run, sim, 1, 4, "X")
    sim.remove_filter(first)
    # S5 prepares 4.5; its promise quorum is S3,S4,S5.
    sim.add_filter(when("drop", lambda s, d, m: s == "S5" and d in ("S1", "S2") and isinstance(m, Prepare)))
    mark = len(log)
    propose(sim, "S5", "Y", slot=1, round=4)
    sim.run_for(0.1)
    promise = [m for s, d, m in sent(log[mark:], Promise, "S3") if d == "S5"]
    run.expect(
        bool(promise) and promise[0].accepted_ballot == Ballot(3, 1) and promise[0].accepted_value == "X",
        "S3's promise for 4.5 reports (3.1, X)",
        f"{[p.summary() for p in promise]}",
    )
    values = {m.value for _, _, m in sent(log[mark:], Accept, "S5") if m.slot == 1}
    run.expect(values == {"X"}, "S5 must propose X, not its own Y", f"S5 proposed {values}")
    run.expect(chosen(sim, 1) == "X", "X stays chosen")
    sim.clear_filters()
    sim.run_for(0.3)
    expect_everyone_learned(run, sim, 1, "X", FIVE)
    run.expect(chosen(sim, 2) == "Y", "S5 retries Y in the next slot, where it is chosen")


def paxos_y_wins(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE, options=QUIET)
    log = spy(sim)
    # S1's Accept reaches only S1: it is held on the way to S2,S3 and lost to S4,S5.
    sim.add_filter(when("hold", lambda s, d, m: s == "S1" and d in ("S2", "S3") and isinstance(m, Accept)))
    sim.add_filter(when("drop", lambda s, d, m: s == "S1" and d in ("S4", "S5") and isinstance(m, Accept)))
    propose(sim, "S1", "X", slot=1, round=3)
    sim.run_for(0.1)
    voters = [i for i in FIVE if accepted(sim, i, 1) is not None]
    run.expect(voters == ["S1"], "S1's accept (3.1, X) reached only S1; S2,S3 promised", f"{voters}")
    # S5 prepares 4.5 and gets promises from S3,S4,S5, none of which accepted anything.
    sim.add_filter(when("drop", lambda s, d, m: s == "S5" and d in ("S1", "S2") and isinstance(m, Prepare)))
    mark = len(log)
    propose(sim, "S5", "Y", slot=1, round=4)
    sim.run_for(0.1)
    # S5's own acceptor answers locally (no message): the quorum is S5 + the promises it got.
    promises = {s: m for s, d, m in sent(log[mark:], Promise) if d == "S5" and m.slot == 1}
    run.expect(
        sorted([*promises, "S5"]) == ["S3", "S4", "S5"]
        and all(p.accepted_value is None for p in promises.values()),
        "S3,S4,S5 promise 4.5 with nothing accepted",
        f"{ {s: p.summary() for s, p in promises.items()} }",
    )
    values = {m.value for _, _, m in sent(log[mark:], Accept, "S5")}
    run.expect(values == {"Y"}, "S5 proposes its own Y", f"{values}")
    run.expect(chosen(sim, 1) == "Y", "Y is chosen by S3,S4,S5")
    # S1's late accept now reaches S2 (which promised only 3.1) and S3 (which promised 4.5).
    mark = len(log)
    sim.release_held()
    sim.run_for(0.01)
    nacks = [s for s, d, m in sent(log[mark:], Nack) if d == "S1" and m.ballot == Ballot(3, 1)]
    run.expect("S3" in nacks, "S3 rejects S1's late accept (it promised 4.5)", f"nacks from {nacks}")
    sim.clear_filters()
    sim.run_for(0.5)
    run.expect(chosen(sim, 1) == "Y", "Y is chosen, never X, in slot 1")
    expect_everyone_learned(run, sim, 1, "Y", FIVE)
    run.expect(chosen(sim, 2) == "X", "S1 retries X in the next slot")


# ---------------------------------------------------------------------- seed 004
THREE_ACCEPTORS = ("A", "B", "X", "Y", "Z")
THREE_ROLES = {**QUIET, "proposers": ["A", "B"], "acceptors": ["X", "Y", "Z"], "learners": ["A", "B"]}


def three_acceptors(accept_reaches_x_first: bool) -> Callable[[ScenarioRun], None]:
    def script(run: ScenarioRun) -> None:
        sim = run.simulation(THREE_ACCEPTORS, options=THREE_ROLES)
        log = spy(sim)
        # A's later prepares (after its rejection) wait too, so B's accept lands first.
        sim.add_filter(
            when(
                "hold",
                lambda s, d, m: (
                    isinstance(m, Prepare)
                    and ((s, d) in {("A", "Z"), ("B", "X"), ("B", "Y")} or (s == "A" and m.ballot.round > 2))
                ),
            )
        )
        sim.add_filter(when("hold", lambda s, d, m: isinstance(m, Accept)))
        propose(sim, "A", 8, slot=1, round=2)
        propose(sim, "B", 5, slot=1, round=4)
        sim.run_for(0.05)
        run.expect(
            [str(m.ballot) for _, d, m in sent(log, Prepare, "A") if d == "X"] == ["2.1"]
            and [str(m.ballot) for _, d, m in sent(log, Prepare, "B") if d == "Z"] == ["4.2"],
            "A prepares n=2 (ballot 2.1) with 8, B prepares n=4 (ballot 4.2) with 5",
        )
        run.expect(
            node(sim, "Z").acceptor_state(1).promised == Ballot(4, 2),
            "B's prepare reaches Z before A's: Z promised 4.2",
        )
        if accept_reaches_x_first:
            # B has not heard of the votes: it must find 8 through its promises.
            sim.add_filter(when("hold", lambda s, d, m: d == "B" and isinstance(m, Accepted)))
            sim.release_held(lambda s, d, m: s == "A" and d in ("X", "Y") and isinstance(m, Accept))
            sim.run_for(0.01)
            run.expect(
                accepted(sim, "X", 1) == ("2.1", 8) and accepted(sim, "Y", 1) == ("2.1", 8),
                "A's accept (2, 8) reaches X and Y before B's prepare: 8 is chosen",
            )
            sim.release_held(lambda s, d, m: s == "B" and d == "X" and isinstance(m, Prepare))
        else:
            sim.release_held(lambda s, d, m: s == "B" and isinstance(m, Prepare))
        sim.run_for(0.05)
        b_values = {m.value for _, _, m in sent(log, Accept, "B") if m.slot == 1}
        if accept_reaches_x_first:
            run.expect(
                b_values == {8}, "X's promise reports (2.1, 8): B must adopt 8", f"B proposes {b_values}"
            )
        else:
            run.expect(
                b_values == {5},
                "no promise reports a vote, so B proposes its own 5 (seed 004's '(4,8)' treats a "
                "promise as an acceptance)",
                f"B proposes {b_values}",
            )
            mark = len(log)
            sim.release_held(lambda s, d, m: s == "A")
            sim.run_for(0.02)
            nacks = sorted({s for s, d, m in sent(log[mark:], Nack) if d == "A" and m.ballot == Ballot(2, 1)})
            run.expect(
                nacks == ["X", "Y", "Z"], "A's accept (2, 8) is rejected everywhere", f"nacks: {nacks}"
            )
        sim.release_held(lambda s, d, m: s == "B")
        sim.run_for(0.05)
        want = 8 if accept_reaches_x_first else 5
        run.expect(chosen(sim, 1) == want, f"{want} is chosen")
        sim.clear_filters()
        sim.release_held()
        sim.run_for(0.5)
        expect_everyone_learned(run, sim, 1, want, ("A", "B"))
        other = 5 if accept_reaches_x_first else 8
        run.expect(chosen(sim, 2) == other, f"the loser's value {other} is chosen in slot 2")

    return script


FAILURE_NODES = ("P", "A1", "A2", "A3", "L1", "L2")
FAILURE_ROLES = {"proposers": ["P"], "acceptors": ["A1", "A2", "A3"], "learners": ["L1", "L2"]}


def failure_case(crashed: str) -> Callable[[ScenarioRun], None]:
    def script(run: ScenarioRun) -> None:
        sim = run.simulation(FAILURE_NODES, options=FAILURE_ROLES)
        sim.crash(crashed)
        write = sim.submit(Op(kind="put", key="x", value="V"), node="P", client_id="client")
        sim.run_until_true(lambda: write.done, timeout=1.0)
        run.expect(
            write.status == "ok", f"with {crashed} down the client's write is answered", f"{write.status}"
        )
        expect_delays(run, sim, 1, 4, "the write")
        sim.run_for(0.05)  # the other learners' Accepted messages are still in flight
        learners = tuple(i for i in ("P", "L1", "L2") if i != crashed)
        values = {i: learned(sim, i, 1) for i in learners}
        run.expect(
            all(v is not None and v.op.value == "V" for v in values.values()),
            f"{', '.join(learners)} learn the value",
            f"{values}",
        )
        if crashed.startswith("A"):
            voters = [a for a in ("A1", "A2", "A3") if a != crashed and accepted(sim, a, 1) is not None]
            run.expect(len(voters) == 2, "two of three acceptors are a quorum", f"voters={voters}")
        sim.restart(crashed)
        sim.run_for(0.5)
        if crashed.startswith("L"):
            run.expect(learned(sim, crashed, 1) is not None, f"{crashed} catches up after it restarts")
        run.expect(
            all(node(sim, i).sm.get("x") == "V" for i in ("P", "L1", "L2")),
            "x=V on every learner",
        )

    return script


def paxos_proposer_fails(run: ScenarioRun) -> None:
    ids = ("P1", "P2", "A1", "A2", "A3", "L1", "L2")
    roles = {"proposers": ["P1", "P2"], "acceptors": ["A1", "A2", "A3"], "learners": ["L1", "L2"]}
    sim = run.simulation(ids, options=roles)
    log = spy(sim)
    sim.add_filter(when("drop", lambda s, d, m: s == "P1" and d != "A1" and isinstance(m, Accept)))
    propose(sim, "P1", "V", slot=1, round=1)
    sim.run_until_true(lambda: accepted(sim, "A1", 1) is not None, timeout=1.0)
    run.expect(
        accepted(sim, "A1", 1) == ("1.1", "V") and accepted(sim, "A2", 1) is None,
        "P1's accept (1, V) reaches only A1",
    )
    sim.crash("P1")
    sim.clear_filters()
    log = spy(sim)
    # P2's promise quorum is A1,A2 (its prepare to A3 is late).
    sim.add_filter(when("drop", lambda s, d, m: s == "P2" and d == "A3" and isinstance(m, Prepare)))
    propose(sim, "P2", "W", slot=1, round=2)
    sim.run_for(0.1)
    promises = [m for s, d, m in sent(log, Promise) if d == "P2" and m.slot == 1]
    run.expect(
        any(p.accepted_value == "V" for p in promises) and {str(p.ballot) for p in promises} == {"2.2"},
        "the new proposer prepares with n=2 and learns V from A1's promise",
        f"{[p.summary() for p in promises]}",
    )
    values = {m.value for _, _, m in sent(log, Accept, "P2") if m.slot == 1}
    run.expect(values == {"V"}, "P2 proposes V, not its own W", f"{values}")
    run.expect(chosen(sim, 1) == "V", "V is chosen")
    sim.clear_filters()
    sim.restart("P1")
    sim.run_for(0.5)
    expect_everyone_learned(run, sim, 1, "V", ("P1", "P2", "L1", "L2"))
    run.expect(chosen(sim, 2) == "W", "W is chosen in slot 2")


# ---------------------------------------------------------------------- livelock
DUEL_NODES = ("P1", "P2", "A1", "A2", "A3")
DUEL_ROLES = {
    **QUIET,
    "proposers": ["P1", "P2"],
    "acceptors": ["A1", "A2", "A3"],
    "learners": ["P1", "P2"],
    "backoff": False,
}
LATENCY = 0.001
ACCEPT_DELAY = 0.005
DUEL_ROUNDS = 10


def paxos_dueling_proposers(run: ScenarioRun) -> None:
    """Every link takes 1 ms, an Accept 6 ms, fsync 0.5 ms: with P2 starting 5 ms after
    P1, each proposer's next Prepare lands between the other's Prepare and its Accept,
    so without backoff each Accept meets a higher promise forever."""
    net = NetworkConfig(latency_min=LATENCY, latency_max=LATENCY, fsync_latency=0.0005)
    # The duel is a lock-step race: it needs the unbatched runtime's fixed sync time.
    sim = run.simulation(DUEL_NODES, options=DUEL_ROLES, network=net, runtime="unbatched")
    log = spy(sim)

    def slow_accepts(src: str, dst: str, msg: Any) -> str | None:
        if not isinstance(msg, Accept):
            return None
        sim.schedule(
            sim.now + ACCEPT_DELAY,
            lambda: sim.release_held(lambda s, d, m: m is msg and d == dst),
            f"Accept {src}->{dst} arrives",
        )
        return "hold"

    sim.add_filter(slow_accepts)
    propose(sim, "P1", "a", slot=1)
    sim.run_for(0.005)
    propose(sim, "P2", "b", slot=1)

    def rejected(proposer: str) -> int:
        return len({m.ballot for s, d, m in sent(log, Nack) if d == proposer})

    sim.run_until_true(lambda: min(rejected("P1"), rejected("P2")) >= DUEL_ROUNDS, timeout=2.0)
    run.expect(
        min(rejected("P1"), rejected("P2")) >= DUEL_ROUNDS and chosen(sim, 1) is None,
        f"backoff off: both proposers are pre-empted {DUEL_ROUNDS} times in a row and nothing is chosen "
        "(livelock)",
        f"P1 rejected {rejected('P1')} ballots, P2 {rejected('P2')}; top ballot "
        f"{max((m.ballot for _, _, m in sent(log, Prepare)), default=None)}",
    )
    for proposer in ("P1", "P2"):
        sim.invoke(proposer, lambda n: n.set_backoff(True), f"{proposer} turns randomized backoff on")
    start = sim.now
    sim.run_until_true(lambda: chosen(sim, 1) is not None, timeout=2.0)
    run.expect(
        chosen(sim, 1) is not None,
        "randomized backoff breaks the livelock: a value is chosen",
        f"after {sim.now - start:.3f}s: {chosen(sim, 1)!r}",
    )
    sim.run_until_true(lambda: all(learned(sim, p, 1) is not None for p in ("P1", "P2")), timeout=1.0)
    expect_everyone_learned(run, sim, 1, chosen(sim, 1), ("P1", "P2"))


SCENARIOS = [
    Scenario(
        "paxos-x-wins",
        "X wins: a later proposer adopts the accepted value",
        "basic-paxos",
        "Seed 003, case 1. Five nodes, each proposer and acceptor. S1 proposes X with ballot 3.1 and "
        "S1,S2,S3 accept it. S5 prepares 4.5 with promise quorum S3,S4,S5; S3 reports (3.1, X), so S5 "
        "proposes X. X is chosen; S5's own Y goes to the next slot.",
        paxos_x_wins,
    ),
    Scenario(
        "paxos-y-wins",
        "Y wins: an accept that reached one acceptor is overtaken",
        "basic-paxos",
        "Seed 003, case 2. S1's accept (3.1, X) reaches only S1; S2,S3 promised but did not accept. "
        "S5 prepares 4.5, gets promises from S3,S4,S5 with nothing accepted and proposes Y; S3 rejects "
        "S1's late accept. Y is chosen, never X (with --bug accept-lower-ballot S3 accepts it and X "
        "is chosen too).",
        paxos_y_wins,
    ),
    Scenario(
        "paxos-three-acceptors",
        "Two proposers, three acceptors",
        "basic-paxos",
        "Seed 004. Acceptors X,Y,Z; A prepares n=2 with 8, B prepares n=4 with 5 and reaches Z first. "
        "A's accept (2,8) is rejected everywhere. The seed says B then sends (4,8), which treats a "
        "promise as an acceptance; correct Paxos: no promise reports a vote, so 5 is chosen.",
        three_acceptors(accept_reaches_x_first=False),
    ),
    Scenario(
        "paxos-three-acceptors-accepted",
        "Two proposers, three acceptors, one vote already cast",
        "basic-paxos",
        "Variant of paxos-three-acceptors: A's accept (2,8) reaches X and Y before B's prepare, so "
        "X's promise reports (2, 8) and B must propose 8 (with --bug ignore-promise B proposes 5 and two "
        "values are chosen).",
        three_acceptors(accept_reaches_x_first=True),
    ),
    Scenario(
        "paxos-acceptor-fails",
        "One of three acceptors fails",
        "basic-paxos",
        "Seed 004: proposer P, acceptors A1..A3, learners L1,L2; A3 is down. Two acceptors are a "
        "majority: the client's write is chosen in 4 message delays and answered.",
        failure_case("A3"),
    ),
    Scenario(
        "paxos-learner-fails",
        "One of two learners fails",
        "basic-paxos",
        "Seed 004: learner L1 is down; L2 (and the proposer) learn the value and the client is "
        "answered; L1 catches up when it comes back.",
        failure_case("L1"),
    ),
    Scenario(
        "paxos-proposer-fails",
        "The proposer fails during its accept",
        "basic-paxos",
        "Seed 004: P1's accept (1, V) reaches only A1, then P1 crashes. P2 prepares with n=2, learns "
        "V from A1's promise and gets V chosen; its own W goes to the next slot.",
        paxos_proposer_fails,
    ),
    Scenario(
        "paxos-dueling-proposers",
        "Dueling proposers: livelock and randomized backoff",
        "basic-paxos",
        "Seed 004 'Proposers竞争'. With backoff off and a fixed schedule (1 ms links, Accepts take "
        "6 ms, P2 starts 5 ms after P1) each proposer's Prepare pre-empts the other's Accept: "
        f"nothing is chosen in {DUEL_ROUNDS} rounds. Turning randomized backoff on gets a value "
        "chosen (in every seed).",
        paxos_dueling_proposers,
    ),
]
