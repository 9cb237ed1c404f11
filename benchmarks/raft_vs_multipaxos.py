"""Raft vs Multi-Paxos vs ZAB as built here, measured by the simulator (virtual time, no
faults except the leader crash of the failover measurement and the partition of the
catch-up measurement).

For each protocol and cluster size:
  * writes: messages between nodes per command (replication only and all, heartbeats
    included), message delays until the first node learns the command, client latency;
  * reads: messages per read and latency, per read path (Raft: ReadIndex, lease;
    Multi-Paxos: lease, quorum round);
  * failover: after the leader crashes, time until a new leader exists (for ZAB: is
    established) and until the first write succeeds again, and the election messages
    exchanged, ZAB's discovery and synchronisation included (mean over seeds);
  * catch-up: a follower cut off while 300 commands commit (past the snapshot threshold),
    then healed: time until it applied them all, and the messages spent.

Prints a rich table and writes JSON (default benchmarks/results/raft_vs_multipaxos.json).

    python benchmarks/raft_vs_multipaxos.py [--commands 200] [--seeds 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.catalog import default_registry
from consensuskit.core.client import Op
from consensuskit.core.registry import Registry
from consensuskit.sim import SimConfig, Simulation

CLIENT_TYPES = ("ClientRequest", "ClientResponse")
REPLICATION = {
    "raft": ("AppendEntries", "AppendEntriesResponse"),
    "multipaxos": ("Accept", "Accepted"),
    "zab": ("Proposal", "Ack", "Commit"),
}
HEARTBEATS = ("Heartbeat", "HeartbeatResponse", "HeartbeatAck", "Ping", "PingAck")
ELECTION = (
    "RequestVote",
    "RequestVoteResponse",
    "Prepare",
    "Promise",
    "Nack",
    # ZAB: FLE, discovery and synchronisation
    "Notification",
    "FollowerInfo",
    "LeaderInfo",
    "AckEpoch",
    "NewLeader",
    "UpToDate",
)
READ_PATHS = {
    "raft": ("read-index", "lease"),
    "multipaxos": ("lease", "quorum"),
    "zab": ("linearizable", "sync", "local"),
}
PROTOCOLS = ("raft", "multipaxos", "zab")


def registry() -> Registry:
    """The catalog's (every spec with its invariant checker wired)."""
    return default_registry()


class Counting:
    """Pass-through message filter counting peer messages by type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, src: str, dst: str, msg: Any) -> None:
        name = type(msg).__name__
        if name not in CLIENT_TYPES:
            self.counts[name] += 1

    def take(self) -> Counter[str]:
        out, self.counts = self.counts, Counter()
        return out


def leader_of(sim: Simulation) -> str | None:
    for node_id in sim.node_ids:
        node = sim.nodes.get(node_id)
        # A ZAB leader serves once established (a quorum ACKed NEWLEADER).
        if node is not None and node.is_leader() and getattr(node, "established", True):
            return node_id
    return None


def started(protocol: str, nodes: int, seed: int, options: dict[str, Any] | None = None) -> Simulation:
    cfg = SimConfig(
        protocol=protocol,
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        seed=seed,
        options=options or {},
        op_timeout=1.0,
        op_deadline=10.0,
    )
    sim = Simulation(cfg, registry=registry())
    sim.run_until_true(lambda: leader_of(sim) is not None, timeout=5.0)
    sim.run_for(0.5)  # past the new leader's start-up (no-op, lease wait)
    return sim


def sequential(sim: Simulation, leader: str, ops: list[Op]) -> list[Any]:
    runs = []
    for op in ops:
        run = sim.submit(op, node=leader, client_id="bench")
        sim.run_until_true(lambda run=run: run.done, timeout=5.0)
        runs.append(run)
    return runs


def latency_ms(runs: list[Any]) -> float:
    return round(1000 * statistics.mean(r.record.complete - r.record.invoke for r in runs), 3)


def measure_writes(protocol: str, nodes: int, commands: int) -> dict[str, Any]:
    sim = started(protocol, nodes, seed=1)
    leader = leader_of(sim)
    assert leader is not None
    counter = Counting()
    sim.add_filter(counter)
    before = set(sim.learned_delays)
    runs = sequential(sim, leader, [Op(kind="put", key=f"k{i % 5}", value=i) for i in range(commands)])
    counts = counter.take()
    delays = [d for slot, d in sim.learned_delays.items() if slot not in before]
    replication = sum(counts[t] for t in REPLICATION[protocol])
    return {
        "ok": sum(1 for r in runs if r.status == "ok"),
        "replication_messages_per_command": round(replication / commands, 3),
        "all_messages_per_command": round(sum(counts.values()) / commands, 3),
        "heartbeat_messages_per_command": round(sum(counts[t] for t in HEARTBEATS) / commands, 3),
        "message_delays_mean": round(statistics.mean(delays), 3) if delays else None,
        "message_delays_histogram": {str(k): v for k, v in sorted(Counter(delays).items())},
        "latency_ms": latency_ms(runs),
    }


def measure_reads(protocol: str, nodes: int, commands: int, mode: str) -> dict[str, Any]:
    sim = started(protocol, nodes, seed=2, options={"read_mode": mode})
    leader = leader_of(sim)
    assert leader is not None
    sequential(sim, leader, [Op(kind="put", key="x", value=1)])
    counter = Counting()
    sim.add_filter(counter)
    runs = sequential(sim, leader, [Op(kind="get", key="x") for _ in range(commands)])
    counts = counter.take()
    non_heartbeat_rounds = sum(v for k, v in counts.items() if k not in HEARTBEATS)
    return {
        "ok": sum(1 for r in runs if r.status == "ok"),
        "messages_per_read": round(sum(counts.values()) / commands, 3),
        "non_heartbeat_messages_per_read": round(non_heartbeat_rounds / commands, 3),
        "latency_ms": latency_ms(runs),
    }


def measure_failover(protocol: str, nodes: int, seeds: int) -> dict[str, Any]:
    to_leader, to_write, election_msgs = [], [], []
    for seed in range(seeds):
        sim = started(protocol, nodes, seed=100 + seed)
        old = leader_of(sim)
        assert old is not None
        counter = Counting()
        sim.add_filter(counter)
        crash_at = sim.now
        sim.crash(old)
        writes: list[Any] = []

        def probe(sim: Simulation = sim, writes: list[Any] = writes, crash_at: float = crash_at) -> None:
            if any(w.status == "ok" for w in writes) or sim.now - crash_at > 10:
                return
            writes.append(sim.submit(Op(kind="put", key="x", value=len(writes))))
            sim.schedule(sim.now + 0.01, probe, "probe write")

        probe()
        sim.run_until_true(lambda sim=sim: leader_of(sim) is not None, timeout=10.0)
        to_leader.append(sim.now - crash_at)
        sim.run_until_true(lambda writes=writes: any(w.status == "ok" for w in writes), timeout=10.0)
        first_ok = min(w.record.complete for w in writes if w.status == "ok")
        to_write.append(first_ok - crash_at)
        election_msgs.append(sum(counter.counts[t] for t in ELECTION))
    return {
        "seeds": seeds,
        "new_leader_ms": round(1000 * statistics.mean(to_leader), 1),
        "first_write_ms": round(1000 * statistics.mean(to_write), 1),
        "election_messages": round(statistics.mean(election_msgs), 1),
    }


def measure_catchup(protocol: str, nodes: int, commands: int = 300) -> dict[str, Any]:
    sim = started(protocol, nodes, seed=3)
    leader = leader_of(sim)
    assert leader is not None
    lagging = next(i for i in sim.node_ids if i != leader)
    sim.partition([[lagging], [i for i in sim.node_ids if i != lagging]])
    sequential(sim, leader, [Op(kind="put", key=f"k{i % 5}", value=i) for i in range(commands)])
    counter = Counting()
    sim.add_filter(counter)
    healed = sim.now
    sim.heal()

    def caught_up() -> bool:
        a, b = sim.nodes[lagging], sim.nodes[leader]
        return a is not None and b is not None and a.log_position().applied >= b.log_position().applied

    sim.run_until_true(caught_up, timeout=10.0)
    counts = counter.take()
    return {
        "catchup_ms": round(1000 * (sim.now - healed), 1),
        "messages": sum(v for k, v in counts.items() if k not in HEARTBEATS),
        "by_type": dict(sorted((k, v) for k, v in counts.items() if k not in HEARTBEATS)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/raft_vs_multipaxos.json")
    args = parser.parse_args()

    results: dict[str, Any] = {"commands": args.commands, "seeds": args.seeds, "rows": []}
    for nodes in (3, 5):
        for protocol in PROTOCOLS:
            row: dict[str, Any] = {"protocol": protocol, "nodes": nodes}
            row["writes"] = measure_writes(protocol, nodes, args.commands)
            row["reads"] = {m: measure_reads(protocol, nodes, args.commands, m) for m in READ_PATHS[protocol]}
            row["failover"] = measure_failover(protocol, nodes, args.seeds)
            row["catchup"] = measure_catchup(protocol, nodes)
            results["rows"].append(row)

    table = Table(title="Raft vs Multi-Paxos vs ZAB (simulated; latency 1-5 ms per hop, fsync 0.5 ms)")
    for col in (
        "protocol",
        "n",
        "repl msgs/cmd",
        "all msgs/cmd",
        "delays",
        "write ms",
        "read path: msgs/read, ms",
        "new leader ms",
        "first write ms",
        "election msgs",
        "catch-up ms, msgs",
    ):
        table.add_column(
            col, justify="right" if col not in ("protocol", "read path: msgs/read, ms") else "left"
        )
    for row in results["rows"]:
        w, f = row["writes"], row["failover"]
        reads = "; ".join(
            f"{m}: {r['messages_per_read']}, {r['latency_ms']}" for m, r in row["reads"].items()
        )
        table.add_row(
            row["protocol"],
            str(row["nodes"]),
            str(w["replication_messages_per_command"]),
            str(w["all_messages_per_command"]),
            str(w["message_delays_mean"]),
            str(w["latency_ms"]),
            reads,
            str(f["new_leader_ms"]),
            str(f["first_write_ms"]),
            str(f["election_messages"]),
            f"{row['catchup']['catchup_ms']}, {row['catchup']['messages']}",
        )
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
