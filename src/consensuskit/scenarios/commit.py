"""Atomic-commit seed scenarios (seed 004; Gray and Lamport 2006), each asserting its
outcome.

Four nodes: participants P1, P2, P3 (``participants=3``: each owns a key range) and C,
which only coordinates (the client asks C).  A transaction puts one key of each
participant.  Scripts aim faults with pass-through filters (a filter that drops one kind
of message and crashes or cuts off its sender at that instant), so each story happens
exactly as narrated, whatever the seed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.protocols.commit import owner
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import Simulation

PARTICIPANTS = ("P1", "P2", "P3")
NODES = (*PARTICIPANTS, "C")


# ---------------------------------------------------------------------- helpers
def key_of(participant: str, skip: int = 0) -> str:
    """A key ``participant`` owns (the ``skip``-th one of k0, k1, ...)."""
    found = [f"k{i}" for i in range(200) if owner(f"k{i}", PARTICIPANTS) == participant]
    return found[skip]


def puts(*pairs: tuple[str, Any]) -> ServiceOp:
    return ServiceOp(
        kind="txn", key=",".join(k for k, _ in pairs), value={"success": [("put", k, v) for k, v in pairs]}
    )


def once(sim: Simulation, op: ServiceOp, at: str, client: str) -> Any:
    """Send ``op`` to ``at`` once, no retries (a retry elsewhere would be another
    transaction); the answer, or None."""
    sim.send_request(at, ClientRequest(client_id=client, seq=1, op=op))
    sim.run_until_true(lambda: any(r.client_id == client for _, _, r in sim.responses), 2.0)
    return next((r for _, _, r in sim.responses if r.client_id == client), None)


def simulation(run: ScenarioRun, **options: Any) -> Simulation:
    sim = run.simulation(NODES, clients=0, options={"participants": 3, **options})
    return sim


def node(sim: Simulation, node_id: str) -> Any:
    n = sim.nodes.get(node_id)
    assert n is not None, f"{node_id} is down"
    return n


def states(sim: Simulation, txn: str) -> dict[str, str]:
    """Each live participant's state of ``txn``."""
    out = {}
    for p in PARTICIPANTS:
        n = sim.nodes.get(p)
        if n is not None and txn in n.ptx:
            out[p] = n.ptx[txn].state
    return out


def value_at(sim: Simulation, participant: str, key: str) -> Any:
    return node(sim, participant).store.data.get(key, (None, 0))[0]


def count_messages(sim: Simulation) -> Counter[str]:
    seen: Counter[str] = Counter()

    def see(src: str, dst: str, msg: Any) -> None:
        seen[type(msg).__name__] += 1

    sim.add_filter(see)
    return seen


def crash_when(sim: Simulation, kind: str, src: str, then: Any = None) -> dict[str, float]:
    """Drop the first ``kind`` message ``src`` sends and every later one until the crash,
    crashing ``src`` at that instant (as if it died right after the decision was
    durable, before the message left).  Returns {"at": time} once it happened."""
    happened: dict[str, float] = {}

    def fault(s: str, d: str, msg: Any) -> str | None:
        if s == src and type(msg).__name__ == kind:
            if not happened:
                happened["at"] = sim.now
                sim.schedule(sim.now, lambda: sim.crash(src), f"crash {src}")
                if then is not None:
                    sim.schedule(sim.now, then, "then")
            return "drop"
        return None

    sim.add_filter(fault)
    return happened


# --------------------------------------------------------------------- scenarios
def two_pc_commit(run: ScenarioRun) -> None:
    sim = simulation(run)
    seen = count_messages(sim)
    keys = [key_of(p) for p in PARTICIPANTS]
    op = sim.submit(puts(*((k, f"v{i}") for i, k in enumerate(keys))), node="C")
    sim.run_until_true(lambda: op.done, 2.0)
    sim.run_for(0.2)
    run.expect(op.status == "ok" and op.result["succeeded"], "the transaction commits", str(op.result))
    txn = op.result["txn"] if op.result else ""
    run.expect(states(sim, txn) == dict.fromkeys(PARTICIPANTS, "committed"), "every participant committed")
    run.expect(
        [value_at(sim, p, k) for p, k in zip(PARTICIPANTS, keys, strict=True)] == ["v0", "v1", "v2"],
        "each participant applied its put",
    )
    counts = {k: seen[k] for k in ("Prepare", "Vote", "Commit", "Ack")}
    run.expect(counts == dict.fromkeys(counts, 3), "3N messages on the commit path, N acks", str(counts))
    run.expect(
        sim.learned_delays.get(txn) == 3, "participants learn at 3 message delays (4 with the request)"
    )
    run.expect(all(not node(sim, p).store.locks for p in PARTICIPANTS), "every lock released")


def two_pc_abort(run: ScenarioRun) -> None:
    sim = simulation(run)
    k1, k2 = key_of("P1"), key_of("P2")
    # A first transaction holds P2's key: its Commit to P2 is held back for a while.
    sim.add_filter(lambda s, d, m: "hold" if d == "P2" and type(m).__name__ == "Commit" else None)
    first = sim.submit(puts((key_of("P2"), "first")), node="C")
    sim.run_until_true(lambda: first.done, 2.0)
    second = once(sim, puts((k1, "second"), (k2, "second")), "C", "second")
    refused = second is not None and not second.ok
    run.expect(refused, "the transaction is refused", str(second))
    error = second.error if second is not None else ""
    sim.run_for(0.05)  # C's Abort reaches P1
    run.expect("P2 voted no" in (error or ""), "because P2 voted no (its key is locked)", str(error))
    (txn,) = node(sim, "P1").ptx
    run.expect(node(sim, "P1").ptx[txn].state == "aborted", "P1, which voted yes, rolled back")
    run.expect(value_at(sim, "P1", k1) is None, "P1 applied nothing")
    run.expect(k1 not in node(sim, "P1").store.locks, "P1 released its lock")
    sim.release_held()
    sim.run_for(0.5)
    run.expect(value_at(sim, "P2", k2) == "first", "the first transaction commits at P2 when released")


def two_pc_coordinator_crash(run: ScenarioRun) -> None:
    sim = simulation(run)
    keys = [key_of(p) for p in PARTICIPANTS]
    crash = crash_when(sim, "Commit", "C")
    sim.submit(puts(*((k, "x") for k in keys)), node="C")
    sim.run_for(2.0)
    run.expect(bool(crash), "C logged its commit decision and crashed before sending it")
    txns = {t for p in PARTICIPANTS for t in node(sim, p).ptx}
    txn = min(txns)
    run.expect(states(sim, txn) == dict.fromkeys(PARTICIPANTS, "uncertain"), "every participant is uncertain")
    blocked = {p: node(sim, p).status()["blocked"] for p in PARTICIPANTS}
    run.expect(
        all(
            b and b[0]["txn"] == txn and b[0]["locks"] == [k]
            for (p, b), k in zip(blocked.items(), keys, strict=True)
        ),
        "status lists the blocked transaction and the lock each participant holds",
        str(blocked),
    )
    # The locks block other work: a transaction on P1's key is refused.
    other = once(sim, puts((keys[0], "y")), "P3", "other")
    error = other.error if other is not None else None
    run.expect(
        "P1 voted no" in (error or ""), "another transaction on a locked key is refused meanwhile", str(error)
    )
    sim.clear_filters()
    sim.restart("C")
    sim.run_for(0.5)
    run.expect(
        states(sim, txn) == dict.fromkeys(PARTICIPANTS, "committed"), "C recovers from its log: all commit"
    )
    run.expect(
        all(value_at(sim, p, k) == "x" for p, k in zip(PARTICIPANTS, keys, strict=True)), "the writes applied"
    )
    blocked_for = sim.checker.report()["blocked"]["seconds_max"] if sim.checker else 0.0
    run.expect(
        blocked_for > 0.5, "participants were blocked for as long as C was down", f"{blocked_for:.3f}s"
    )


def three_pc_coordinator_crash(run: ScenarioRun) -> None:
    sim = simulation(run)
    keys = [key_of(p) for p in PARTICIPANTS]
    crash = crash_when(sim, "Commit", "C")
    sim.submit(puts(*((k, "x") for k in keys)), node="C")
    sim.run_for(2.0)
    run.expect(bool(crash), "C crashed after every participant pre-committed")
    txn = min(t for p in PARTICIPANTS for t in node(sim, p).ptx)
    run.expect(
        states(sim, txn) == dict.fromkeys(PARTICIPANTS, "committed"),
        "the participants' termination protocol commits without C (decided by timeout)",
        str(states(sim, txn)),
    )
    run.expect(sim.nodes["C"] is None, "while C is still down")
    run.expect(all(not node(sim, p).status()["blocked"] for p in PARTICIPANTS), "nobody is blocked")


def three_pc_partition(run: ScenarioRun) -> None:
    sim = simulation(run)
    keys = [key_of(p) for p in PARTICIPANTS]
    cut: dict[str, float] = {}

    def partition(s: str, d: str, msg: Any) -> str | None:
        if s == "C" and type(msg).__name__ == "PreCommit" and d in ("P2", "P3"):
            if not cut:
                cut["at"] = sim.now
                sim.schedule(sim.now, lambda: sim.partition([["C", "P1"], ["P2", "P3"]]), "partition")
            return "drop"
        return None

    sim.add_filter(partition)
    op = sim.submit(puts(*((k, "x") for k in keys)), node="C")
    sim.run_for(2.0)
    txn = min(t for t in node(sim, "P1").ptx)
    run.expect(bool(cut), "the partition C,P1 | P2,P3 falls during pre-commit")
    got = states(sim, txn)
    run.expect(got.get("P1") == "committed", "P1's side commits (C commits on the ack timeout)", str(got))
    run.expect(
        got.get("P2") == "aborted" and got.get("P3") == "aborted",
        "the other side's termination protocol, all uncertain, aborts",
        str(got),
    )
    run.expect(op.status == "ok", "and the client was told it committed")
    sim.heal()
    sim.run_for(2.0)
    got = states(sim, txn)
    run.expect(
        got == {"P1": "committed", "P2": "aborted", "P3": "aborted"}, "healing does not repair it", str(got)
    )
    anomalies = sim.checker.report()["partition_anomalies"] if sim.checker else 0
    run.expect(anomalies == 1, "the checker counts the anomaly (3PC under a partition) instead of failing")
    run.note("3PC is non-blocking only when failures are crashes; this is the seed's warning, not a bug")


def paxos_commit_coordinator_crash(run: ScenarioRun) -> None:
    sim = simulation(run)
    keys = [key_of(p) for p in PARTICIPANTS]
    crash: dict[str, float] = {}

    def fault(s: str, d: str, msg: Any) -> str | None:
        if d == "C" and type(msg).__name__ == "Phase2b":
            if not crash:
                crash["at"] = sim.now
                sim.schedule(sim.now, lambda: sim.crash("C"), "crash C")
            return "drop"
        return None

    sim.add_filter(fault)
    sim.submit(puts(*((k, "x") for k in keys)), node="C")
    sim.run_for(2.0)
    run.expect(bool(crash), "C crashed after the participants voted (their votes reached the acceptors)")
    txn = min(t for p in PARTICIPANTS for t in node(sim, p).ptx)
    run.expect(
        states(sim, txn) == dict.fromkeys(PARTICIPANTS, "committed"),
        "a participant takes over (phase 1 with a higher ballot) and the transaction commits anyway",
        str(states(sim, txn)),
    )
    run.expect(
        sim.nodes["C"] is None, "while C is still down: nobody blocks (2PC would, see 2pc-coordinator-crash)"
    )
    run.expect(
        all(value_at(sim, p, k) == "x" for p, k in zip(PARTICIPANTS, keys, strict=True)), "the writes applied"
    )


SCENARIOS = [
    Scenario(
        "2pc-commit",
        "2PC: every participant votes yes, all commit",
        "2pc",
        "Seed 004: C sends Prepare to P1..P3, each locks its key, logs its yes vote and votes; C logs "
        "the commit and sends Commit; each participant applies its put, releases its lock and acks. "
        "3N messages plus N acks, 4 message delays counting the request.",
        two_pc_commit,
    ),
    Scenario(
        "2pc-abort",
        "2PC: one participant votes no, all roll back",
        "2pc",
        "Seed 004: P2's key is locked by an undecided transaction, so P2 votes no; C aborts (presumed "
        "abort: no log) and P1, which had voted yes, rolls back and releases its lock.",
        two_pc_abort,
    ),
    Scenario(
        "2pc-coordinator-crash",
        "2PC: the coordinator dies after prepare; participants block",
        "2pc",
        "Seed 004: C crashes right after logging its commit. The participants, uncertain, ask C and each "
        "other (cooperative termination); all are uncertain, so they stay blocked holding their locks "
        "(status lists them) and refuse other transactions on those keys, until C restarts, reads its "
        "log and sends Commit again.",
        two_pc_coordinator_crash,
    ),
    Scenario(
        "3pc-coordinator-crash",
        "3PC: the same crash; participants decide by timeout",
        "3pc",
        "Seed 004: C crashes after every participant pre-committed. The participants time out, one "
        "coordinates a termination round, sees pre-committed states and commits: no blocking.",
        three_pc_coordinator_crash,
    ),
    Scenario(
        "3pc-partition",
        "3PC: a partition during pre-commit splits the decision",
        "3pc",
        "Seed 004's warning: C,P1 | P2,P3 falls while C pre-commits. P1 pre-commits, C commits on its "
        "ack timeout and P1 commits; P2 and P3, uncertain, run the termination protocol among "
        "themselves and abort. One side committed, the other aborted; the checker counts it.",
        three_pc_partition,
    ),
    Scenario(
        "paxoscommit-coordinator-crash",
        "Paxos Commit: the 2PC crash again, and it commits anyway",
        "paxos-commit",
        "Gray and Lamport: each participant's vote is decided by Paxos among 3 acceptors (F = 1). C "
        "crashes after the votes reached the acceptors; a participant times out, leads a higher "
        "ballot, learns every instance chose prepared and commits: what 2PC lacks, side by side.",
        paxos_commit_coordinator_crash,
    ),
]
