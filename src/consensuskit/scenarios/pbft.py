"""PBFT seed scenarios (seeds 002 and 004: the Byzantine generals' n > 3f bound made
practical), each asserting its outcome on n = 4 replicas, f = 1.

Scripts count messages with a pass-through filter, make a replica Byzantine with the
``byzantine`` option (protocols/pbft/byzantine.py) and read the replicas' public state
(view, executed number, low watermark) through ``replica_of``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from consensuskit.core.client import Op
from consensuskit.protocols.pbft import replica_of
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import Simulation

FOUR = ("n1", "n2", "n3", "n4")
PHASES = ("ClientRequest", "PrePrepare", "Prepare", "Commit", "ClientResponse")


def put(key: str, value: Any) -> Op:
    return Op(kind="put", key=key, value=value)


def replicas(sim: Simulation, ids: tuple[str, ...] = FOUR) -> list[Any]:
    return [r for r in (replica_of(sim.nodes.get(i)) for i in ids) if r is not None]


def count_messages(sim: Simulation) -> Counter[str]:
    counts: Counter[str] = Counter()

    def note(src: str, dst: str, msg: Any) -> None:
        counts[type(msg).__name__] += 1

    sim.add_filter(note)  # returns None: every message passes unchanged
    return counts


def write(sim: Simulation, key: str, value: Any, timeout: float = 5.0, node: str | None = None) -> Any:
    op = sim.submit(put(key, value), node=node)
    sim.run_until_true(lambda: op.done, timeout)
    return op


# ---------------------------------------------------------------------- scenarios
def pbft_normal(run: ScenarioRun) -> None:
    sim = run.simulation(FOUR, clients=0, options={"batch_size": 1})
    counts = count_messages(sim)
    op = write(sim, "x", 1, node="n1")  # straight to the primary: no relay
    sim.run_for(0.5)
    run.expect(op.status == "ok" and op.result is not None, "the write is answered", str(op.status))
    n = len(FOUR)
    for phase, expected in zip(PHASES, (1, n - 1, (n - 1) ** 2, n * (n - 1), n), strict=True):
        run.expect(counts[phase] == expected, f"{phase}: {expected} messages", str(counts[phase]))
    total = sum(counts.values())
    run.expect(total == 2 * n * n - n + 1, "2n^2 - n + 1 = 29 messages per request", str(total))
    run.expect(all(r.executed == 1 for r in replicas(sim)), "every replica executed it")
    run.note(f"messages: {dict(counts)}")


def pbft_view_change(run: ScenarioRun) -> None:
    sim = run.simulation(FOUR, clients=0, options={"byzantine": "n1:silent"})
    first = write(sim, "x", 1, timeout=10.0)
    run.expect(first.status == "ok", "a write commits although the primary n1 is silent", str(first.status))
    correct = replicas(sim, FOUR[1:])
    run.expect(all(r.view >= 1 and r.active for r in correct), "the correct replicas moved to view 1")
    run.expect(all(r.primary() != "n1" for r in correct), "n1 is no longer the primary")
    second = write(sim, "y", 2)
    run.expect(second.status == "ok", "writes keep committing in the new view", str(second.status))
    run.note(f"view {correct[0].view}, first write answered after {first.record.complete:.3f}s")


def pbft_equivocating_primary(run: ScenarioRun) -> None:
    sim = run.simulation(FOUR, clients=0, options={"byzantine": "n1:equivocate", "batch_size": 1})
    first = write(sim, "x", 1, timeout=10.0)
    run.expect(first.status == "ok", "the write commits despite conflicting pre-prepares", str(first.status))
    correct = replicas(sim, FOUR[1:])
    run.expect(all(r.view >= 1 for r in correct), "a view change replaced the equivocating primary")
    lies = getattr(sim.nodes["n1"], "lies", 0)
    run.expect(lies > 0, "n1 sent conflicting pre-prepares", str(lies))
    dropped = sum(r.dropped for r in correct)
    run.note(f"n1 lied {lies} times; correct replicas dropped {dropped} messages")
    sim.run_for(1.0)
    digests = {r.sm.digest() for r in correct if r.executed == max(c.executed for c in correct)}
    run.expect(len(digests) == 1, "the correct replicas hold the same state")


def pbft_checkpoint(run: ScenarioRun) -> None:
    options = {"checkpoint_interval": 4, "watermark_window": 8, "batch_size": 1}
    sim = run.simulation(FOUR, clients=0, options=options)
    sim.partition([["n1", "n2", "n3"], ["n4"]])
    for i in range(12):
        op = write(sim, f"k{i % 3}", i)
        run.expect(op.status == "ok", f"write {i} commits without n4", str(op.status))
    sim.run_for(0.2)
    up = replicas(sim, ("n1", "n2", "n3"))
    run.expect(
        all(r.low == 12 for r in up), "checkpoint 12 is stable (2f+1 matching)", str([r.low for r in up])
    )
    run.expect(all(min(r.log, default=13) > 12 for r in up), "the log at or below it is discarded")
    lagging = replica_of(sim.nodes["n4"])
    run.expect(lagging is not None and lagging.executed == 0, "n4 missed everything")
    sim.heal()
    for i in range(4):
        write(sim, f"k{i % 3}", 100 + i)
    sim.run_for(1.0)
    lagging = replica_of(sim.nodes["n4"])
    assert lagging is not None
    run.expect(lagging.low >= 12, "n4 caught up by state transfer", f"low={lagging.low}")
    others = {r.sm.digest() for r in replicas(sim) if r.executed == lagging.executed}
    run.expect(len(others) == 1, "n4's state equals the others'")


SCENARIOS = [
    Scenario(
        "pbft-normal",
        "Normal case: pre-prepare, prepare, commit",
        "pbft",
        "n = 4, f = 1, no batching: one write costs 1 request + 3 pre-prepares + 9 prepares + "
        "12 commits + 4 replies = 2n^2 - n + 1 = 29 messages, and every replica executes it.",
        pbft_normal,
    ),
    Scenario(
        "pbft-view-change",
        "A silent primary is replaced",
        "pbft",
        "n1, the primary of view 0, stays silent: the backups' request timers expire, 2f+1 "
        "view changes elect n2 (view 1), whose new view re-issues what was prepared, and the "
        "write commits.",
        pbft_view_change,
    ),
    Scenario(
        "pbft-equivocating-primary",
        "An equivocating primary",
        "pbft",
        "n1 sends a different pre-prepare for one sequence number to each of n2 and n4 and the "
        "true one to n3: no batch gathers 2f prepares, nothing is prepared at two values, the "
        "request timers expire and a view change replaces n1; the write then commits.",
        pbft_equivocating_primary,
    ),
    Scenario(
        "pbft-checkpoint",
        "Checkpoints, garbage collection and state transfer",
        "pbft",
        "K = 4: while n4 is cut off, 12 writes commit; 2f+1 matching checkpoints make 12 "
        "stable and the log below it is discarded; after the heal n4 sees a later stable "
        "checkpoint and fetches the state instead of replaying the log.",
        pbft_checkpoint,
    ),
]

__all__ = ["SCENARIOS"]
