"""Safety of sharded Raft (protocols/sharded/), checked on every step and at the end.

* election-safety  - per group: at most one leader per term (Raft §3.4), across hosts;
* conservation     - every balances read answered ok sums to 0 (the bank's accounts
                     start at 0 and transfers move money): checked when the answer
                     reaches the client;
* serializability  - the committed transactions of the history form an acyclic
                     dependency graph (check/serializability.py: ww, wr and rw edges from
                     the versions' writers, Elle's cycle search): at the end of the run;
* blocked          - after the settle period (every fault repaired), no group's leader
                     still holds a prepared transaction: while a majority of every group
                     lives, no lock is held forever (recovery pushes the coordinator).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.check.serializability import SerializabilityResult, check_transactions
from consensuskit.core.capabilities import LEADER
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.protocols.sharded import ShardedNode

TXN_KINDS = ("transfer", "balances", "txn")


def committed_transactions(history: Any) -> list[dict[str, Any]]:
    """The ok transactions of a history that say what they read and wrote."""
    found = []
    for record in history:
        result = record.result
        if record.status == "ok" and record.op in TXN_KINDS and isinstance(result, dict) and "txn" in result:
            found.append(result)
    return found


def serializability(history: Any) -> SerializabilityResult:
    return check_transactions(committed_transactions(history))


class ShardedChecker:
    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.bugs = bugs
        self.leaders: dict[tuple[int, int], str] = {}
        self.reads = 0

    def after_step(self, sim: Any, node_id: str) -> None:
        node = sim.nodes.get(node_id)
        if not isinstance(node, ShardedNode):
            return
        for g in range(node.shards):
            status = node.group_status(g)
            if status.role != LEADER:
                continue
            first = self.leaders.setdefault((g, status.generation), node_id)
            if first != node_id:
                raise InvariantViolation(
                    "election-safety",
                    f"group {g} {status.generation_name} {status.generation}: leaders {first} and {node_id}",
                )

    def on_client_response(
        self, sim: Any, invoke_time: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        if not response.ok or request.op.kind != "balances" or not isinstance(response.result, dict):
            return
        self.reads += 1
        balances = response.result.get("balances") or {}
        total = sum(v for v in balances.values() if isinstance(v, int))
        if total != 0:
            raise InvariantViolation(
                "conservation",
                f"{request.client_id}#{request.seq} read balances summing to {total}: {balances}",
            )

    def final(self, sim: Any) -> None:
        for node_id in sim.node_ids:
            node = sim.nodes.get(node_id)
            if node is None or not sim.alive(node_id):
                continue
            for g in range(node.shards):
                prepared = node.machine(g).prepared
                if node.group_status(g).role == LEADER and prepared:
                    held = sorted(prepared)[:3]
                    raise InvariantViolation(
                        "blocked",
                        f"group {g} (leader {node_id}) still holds {len(prepared)} prepared "
                        f"transaction(s) after the settle period: {', '.join(held)}",
                    )
        verdict = serializability(sim.history)
        if not verdict.ok:
            raise InvariantViolation("serializability", verdict.describe())


class ShardedMonitor:
    """Measurements of a run (``SimResult.metrics``)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def report(self, sim: Any) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for record in sim.history:
            counts[f"{record.op}:{record.status}"] += 1
        verdict = serializability(sim.history)
        shards = int(sim.options.get("shards", 2))
        return {
            "shards": shards,
            "ops": dict(sorted(counts.items())),
            "serializability": {
                "ok": verdict.ok,
                "transactions": verdict.transactions,
                "edges": verdict.edges,
            },
        }
