"""Sharded Raft scenarios: a transfer across shards, a gateway that dies holding locks,
a host cut off from everything.

Three hosts, two shards (every host runs one replica of each shard's Raft group).  The
client asks one host, which acts as the transaction's gateway; the accounts are chosen
on different shards, so every transfer is a cross-shard transaction.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.protocols.sharded import COMMIT, ShardedNode, shard_of
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import Simulation

HOSTS = ("n1", "n2", "n3")
SHARDS = 2


def account_on(shard: int, skip: int = 0) -> str:
    return [f"a{i}" for i in range(100) if shard_of(f"a{i}", SHARDS) == shard][skip]


A, B = account_on(0), account_on(1)


def transfer(src: str, dst: str, amount: int) -> ServiceOp:
    return ServiceOp(kind="transfer", key=f"{src}->{dst}", value={"from": src, "to": dst, "amount": amount})


def ask(sim: Simulation, at: str, op: ServiceOp, client: str, wait: float = 3.0) -> Any:
    """Send ``op`` to ``at`` once; its answer (None if none came within ``wait``)."""
    sim.send_request(at, ClientRequest(client_id=client, seq=1, op=op))
    sim.run_until_true(lambda: any(r.client_id == client for _, _, r in sim.responses), wait)
    return next((r for _, _, r in sim.responses if r.client_id == client), None)


def host(sim: Simulation, node_id: str) -> ShardedNode:
    node = sim.nodes.get(node_id)
    assert isinstance(node, ShardedNode), f"{node_id} is down"
    return node


def balances(sim: Simulation, node_id: str) -> dict[str, Any]:
    node = host(sim, node_id)
    return {k: node.machine(shard_of(k, SHARDS)).data.get(k, [0])[0] for k in (A, B)}


def start(run: ScenarioRun) -> Simulation:
    sim = run.simulation(HOSTS, clients=0, service="shard-kv", options={"shards": SHARDS})
    sim.run_for(2.0)  # every group elects a leader
    return sim


def cross_shard_transfer(run: ScenarioRun) -> None:
    sim = start(run)
    answer = ask(sim, "n1", transfer(A, B, 5), "c1")
    run.expect(answer is not None and answer.ok, f"the transfer {A}->{B} (shards 0 and 1) commits")
    sim.run_for(1.0)
    for n in HOSTS:
        run.expect(balances(sim, n) == {A: -5, B: 5}, f"{n} applied it on both shards", str(balances(sim, n)))
    read = ask(sim, "n2", ServiceOp(kind="balances", key="*", value=[A, B], read=True), "c2")
    run.expect(read is not None and read.ok and read.result["balances"] == {A: -5, B: 5}, "a read sees both")


def carries(msg: Any, kind: str) -> bool:
    """``msg`` carries a shard command ``kind`` (a Raft entry or a forwarded request)."""
    inner = getattr(msg, "msg", None)
    requests = [getattr(inner, "request", None)]
    requests += [getattr(e, "data", None) for e in getattr(inner, "entries", None) or ()]
    return any(getattr(getattr(r, "op", None), "kind", None) == kind for r in requests)


def crash_before(sim: Simulation, src: str, kind: str) -> dict[str, float]:
    """Crash ``src`` the instant it first sends a ``kind`` command anywhere (dropped)."""
    happened: dict[str, float] = {}

    def fault(s: str, d: str, msg: Any) -> str | None:
        if s == src and (happened or carries(msg, kind)):
            if not happened:
                happened["at"] = sim.now
                sim.schedule(sim.now, lambda: sim.crash(src), f"crash {src}")
            return "drop"
        return None

    sim.add_filter(fault)
    return happened


def gateway_crash(run: ScenarioRun) -> None:
    sim = start(run)
    # The gateway dies as it asks the coordinator shard to record commit: both shards
    # hold the transfer prepared (locks), and no host but the dead one knows more.
    crashed = crash_before(sim, "n1", "decide")
    sim.send_request("n1", ClientRequest(client_id="c1", seq=1, op=transfer(A, B, 5)))
    run.expect(sim.run_until_true(lambda: bool(crashed), 2.0), "n1 crashed as it sent the commit record")

    def prepared_everywhere() -> bool:
        return all(host(sim, "n2").machine(g).prepared for g in range(SHARDS))

    run.expect(sim.run_until_true(prepared_everywhere, 1.0), "both shards hold the transfer prepared (locks)")
    txn = next(iter(host(sim, "n2").machine(0).prepared), "")
    run.note(f"crashed the gateway n1 holding {txn}")
    sim.run_for(3.0)  # the shards' leaders find it prepared too long and push its coordinator
    for g in range(SHARDS):
        run.expect(not host(sim, "n2").machine(g).prepared, f"shard {g} released the locks without n1")
    record = host(sim, "n2").machine(0).decisions.get(txn) or host(sim, "n2").machine(1).decisions.get(txn)
    run.expect(record is not None and record["outcome"] != COMMIT, "the coordinator shard recorded abort")
    answer = ask(sim, "n2", transfer(A, B, 3), "c2")
    run.expect(answer is not None and answer.ok, "a new transfer on the same accounts commits")
    sim.run_for(1.0)
    run.expect(
        balances(sim, "n3") == {A: -3, B: 3}, "only the second transfer took effect", str(balances(sim, "n3"))
    )


def minority_cut_off(run: ScenarioRun) -> None:
    sim = start(run)
    sim.partition([["n3"], ["n1", "n2"]])  # n3: a minority of every group
    answers = [ask(sim, "n1", transfer(A, B, 1), f"c{i}") for i in range(1, 4)]
    run.expect(all(a is not None and a.ok for a in answers), "transfers commit while n3 is cut off")
    sim.heal()
    sim.run_for(2.0)
    run.expect(balances(sim, "n3") == {A: -3, B: 3}, "n3 catches up on both shards", str(balances(sim, "n3")))


SCENARIOS = [
    Scenario(
        "sharded-cross-shard-transfer",
        "A transfer across two shards",
        "sharded-raft",
        "A transfer between accounts on different shards commits by 2PC over the two groups' logs; "
        "every replica of both shards applies it and a read sees both sides.",
        cross_shard_transfer,
    ),
    Scenario(
        "sharded-gateway-crash",
        "The gateway dies holding locks",
        "sharded-raft",
        "Both shards prepared a transfer, then its gateway crashed before the commit record: the "
        "shards' leaders push the coordinator shard, which records abort, and release the locks; "
        "nothing blocks and the next transfer commits.",
        gateway_crash,
    ),
    Scenario(
        "sharded-minority-cut-off",
        "A minority host cut off",
        "sharded-raft",
        "One host of three (a minority of every group) is partitioned away; cross-shard transfers "
        "keep committing, and it catches up once healed.",
        minority_cut_off,
    ),
]
