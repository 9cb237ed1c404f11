"""The gossip kv's scenario (SCENARIOS.md): CAP, shown side by side.

  * cap-partition: the same five nodes, the same partition ({n1, n2} | {n3, n4, n5}) and
    the same client workload against the Raft kv and the gossip kv. A client on each side
    can reach only its side's nodes; every 0.1 s each side writes one of three shared keys
    (a unique value), trying its side's nodes (following a leader hint that stays on its
    side) for up to a second. Then the partition heals and the clients stop.
    Raft (consistent, not available): the minority side gets no write acknowledged (each
    is refused or times out); after the heal the last acknowledged write of every key is
    what a read returns: none was lost.
    Gossip kv (available, not consistent): both sides get every write acknowledged;
    after the heal the replicas converge, and N acknowledged writes are gone, each
    overwritten by a write from the other side that never saw it (check/gossip_kv.py's
    "lost" class; last-writer-wins by hybrid logical clock decides which).
The two runs are printed as one table; the script asserts each outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.check.gossip import replica_states
from consensuskit.check.gossip_kv import (
    causality_breaks,
    classify_writes,
    final_versions,
    versions_known,
)
from consensuskit.core.client import ClientRequest, Op
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import SimConfig, Simulation

NODES = ("n1", "n2", "n3", "n4", "n5")
MINORITY = ("n1", "n2")
MAJORITY = ("n3", "n4", "n5")
KEYS = ("x", "y", "z")
WRITE_EVERY = 0.1
OP_DEADLINE = 1.0
PARTITION_SECONDS = 3.0
SETTLE_SECONDS = 5.0


@dataclass(slots=True)
class SideOp:
    """One write of a side's client: tried on its side's nodes until ok or the deadline."""

    request: ClientRequest
    started: float
    target: str
    outcome: str = ""  # "ok", "refused" (no node said yes, one said no), "timeout" (none answered)
    refusals: int = 0
    result: Any = None
    done_at: float = 0.0


@dataclass(slots=True)
class Side:
    name: str
    nodes: tuple[str, ...]
    ops: list[SideOp] = field(default_factory=list)
    turn: int = 0

    def next_node(self, avoid: str | None = None) -> str:
        self.turn += 1
        choices = [n for n in self.nodes if n != avoid] or list(self.nodes)
        return choices[self.turn % len(choices)]


class SideClients:
    """A client per side that reaches only its side's nodes (sim.send_request: no
    retries by the simulator, so no attempt crosses the partition)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.sides = (Side("minority", MINORITY), Side("majority", MAJORITY))
        self.by_id: dict[tuple[str, int], tuple[Side, SideOp]] = {}
        self.seen = len(sim.responses)
        self.seq = 0

    def write(self, side: Side, key: str, value: Any) -> None:
        self.seq += 1
        # One client id per write (seq 1): retries of one write never meet a session that
        # already moved on to the next (Raft's exactly-once sessions would refuse them).
        request = ClientRequest(
            client_id=f"{side.name}-{self.seq}", seq=1, op=Op(kind="put", key=key, value=value)
        )
        op = SideOp(request=request, started=self.sim.now, target=side.next_node())
        side.ops.append(op)
        self.by_id[(request.client_id, request.seq)] = (side, op)
        self.sim.send_request(op.target, request)

    def poll(self) -> None:
        sim = self.sim
        for _, node, response in sim.responses[self.seen :]:
            found = self.by_id.get((response.client_id, response.seq))
            if found is None:
                continue
            side, op = found
            if op.outcome:
                continue
            if response.ok:
                op.outcome, op.result, op.done_at = "ok", response.result, sim.now
                continue
            op.refusals += 1
            hint = response.leader_hint
            op.target = hint if hint in side.nodes and hint != node else side.next_node(avoid=node)
            sim.send_request(op.target, op.request)
        self.seen = len(sim.responses)
        for side in self.sides:
            for op in side.ops:
                if not op.outcome and sim.now - op.started >= OP_DEADLINE:
                    # No node said yes: "refused" if one said no, "timeout" if none answered.
                    op.outcome = "refused" if op.refusals else "timeout"
                    op.done_at = sim.now

    def run(self, seconds: float) -> None:
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.run_for(0.01)
            self.poll()


def _workload(sim: Simulation) -> SideClients:
    """The partition and the writes: identical for both protocols."""
    clients = SideClients(sim)
    sim.partition([list(MINORITY), list(MAJORITY)])
    steps = int(PARTITION_SECONDS / WRITE_EVERY)
    for step in range(steps):
        key = KEYS[step % len(KEYS)]
        for index, side in enumerate(clients.sides):
            clients.write(side, key, (index + 1) * 1000 + step)
        clients.run(WRITE_EVERY)
    clients.run(OP_DEADLINE)  # every write decided
    return clients


def _acked(side: Side) -> list[SideOp]:
    return [op for op in side.ops if op.outcome == "ok"]


def _counts(side: Side) -> str:
    outcomes = [op.outcome for op in side.ops]
    text = f"{outcomes.count('ok')}/{len(outcomes)} acked"
    extra = [f"{outcomes.count(o)} {o}" for o in ("refused", "timeout") if outcomes.count(o)]
    return ", ".join([text, *extra])


def _raft(run: ScenarioRun) -> dict[str, Any]:
    sim = Simulation(SimConfig(protocol="raft", node_ids=NODES, seed=run.seed, clients=0))
    try:
        from consensuskit.sim.nemesis import leaders

        elected = sim.run_until_true(lambda: bool(leaders(sim)), 10.0)
        run.expect(elected, "raft: a leader is elected before the partition")
        clients = _workload(sim)
        minority, majority = clients.sides
        sim.heal()
        sim.run_for(SETTLE_SECONDS)
        finals: dict[str, Any] = {}
        for key in KEYS:
            op = sim.submit(Op(kind="get", key=key))
            sim.run_until_true(lambda op=op: op.done, 10.0)
            finals[key] = (
                op.result.get("value") if op.status == "ok" and isinstance(op.result, dict) else None
            )
        last_acked: dict[str, Any] = {}
        for op in sorted(_acked(minority) + _acked(majority), key=lambda o: o.done_at):
            last_acked[op.request.op.key] = op.request.op.value
        lost = [k for k, v in last_acked.items() if finals.get(k) != v]
        return {
            "minority": minority,
            "majority": majority,
            "converged": all(finals.get(k) == last_acked.get(k) for k in last_acked),
            "converge_time": None,
            "lost": len(lost),
            "lost_keys": lost,
            "causality_breaks": 0,
        }
    finally:
        sim.close()


def _gossip(run: ScenarioRun) -> dict[str, Any]:
    sim = run.simulation(NODES, clients=0)
    sim.run_for(0.5)
    clients = _workload(sim)
    minority, majority = clients.sides
    before = len(set(replica_states(sim).values()))
    sim.heal()
    healed_at = sim.now
    converged = sim.run_until_true(lambda: len(set(replica_states(sim).values())) == 1, SETTLE_SECONDS)
    converge_time = sim.now - healed_at
    sim.run_for(max(0.0, SETTLE_SECONDS - converge_time))
    known = versions_known(sim)
    links = {stamp: prev for stamp, (_key, prev) in known.items()}
    writes = []
    for op in _acked(minority) + _acked(majority):
        result = op.result
        prev = result.get("prev")
        stamp = (int(result["version"]), str(result["origin"]))
        writes.append(
            (op.request.op.key, stamp, None if prev is None else (prev[0], prev[1]), op.request.op.value)
        )
    classes = classify_writes(writes, final_versions(replica_states(sim)), links)
    lost_by_side = {
        side.name: sum(1 for k, _s, v in classes["lost"] if v in {op.request.op.value for op in side.ops})
        for side in clients.sides
    }
    return {
        "minority": minority,
        "majority": majority,
        "diverged_before_heal": before > 1,
        "converged": converged and len(set(replica_states(sim).values())) == 1,
        "converge_time": converge_time,
        "lost": len(classes["lost"]),
        "lost_by_side": lost_by_side,
        "superseded": len(classes["superseded"]),
        "causality_breaks": len(causality_breaks(links)),
    }


def cap_partition(run: ScenarioRun) -> None:
    gossip = _gossip(run)
    raft = _raft(run)
    rmin, rmaj, gmin, gmaj = raft["minority"], raft["majority"], gossip["minority"], gossip["majority"]
    # Raft: consistent, not available on the minority side.
    run.expect(not _acked(rmin), "raft: the minority side gets no write acknowledged (refused or timed out)",
               _counts(rmin))  # fmt: skip
    run.expect(bool(_acked(rmaj)), "raft: the majority side keeps taking writes", _counts(rmaj))
    run.expect(raft["lost"] == 0, "raft: after the heal every key reads its last acknowledged write",
               ", ".join(raft["lost_keys"]))  # fmt: skip
    # Gossip kv: available on both sides, converges after the heal, loses concurrent writes.
    everything = len(_acked(gmin)) == len(gmin.ops) and len(_acked(gmaj)) == len(gmaj.ops)
    run.expect(everything, "gossip-kv: both sides get every write acknowledged",
               f"{_counts(gmin)}; {_counts(gmaj)}")  # fmt: skip
    run.expect(
        gossip["diverged_before_heal"], "gossip-kv: the two sides hold different values during the partition"
    )
    run.expect(gossip["converged"], "gossip-kv: every replica holds the same map after the heal",
               f"within {gossip['converge_time']:.2f} s")  # fmt: skip
    run.expect(gossip["lost"] > 0,
               "gossip-kv: acknowledged writes were overwritten by concurrent ones (measured)",
               f"{gossip['lost']} lost")  # fmt: skip
    run.expect(gossip["causality_breaks"] == 0, "gossip-kv: no write lost to one it happened before (HLC)")
    converge = f"yes, in {gossip['converge_time']:.2f} s" if gossip["converged"] else "NO"
    rows = [
        ("", "raft kv (CP)", "gossip-kv (AP)"),
        ("minority writes", _counts(rmin), _counts(gmin)),
        ("majority writes", _counts(rmaj), _counts(gmaj)),
        ("agree after heal", "yes" if raft["converged"] else "NO", converge),
        ("acked writes lost", str(raft["lost"]),
         f"{gossip['lost']} ({gossip['lost_by_side']['minority']} + {gossip['lost_by_side']['majority']})"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        run.note("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


SCENARIOS = [
    Scenario(
        id="cap-partition",
        title="CAP: the Raft kv and the gossip kv under the same partition",
        protocol="gossip-kv",
        description="{n1,n2}|{n3,n4,n5}, both sides write the same keys: Raft's minority refuses "
        "(consistent, not available); gossip-kv takes every write, converges after the heal and "
        "loses the acknowledged writes overwritten by concurrent ones (available, not consistent)",
        script=cap_partition,
    ),
]
