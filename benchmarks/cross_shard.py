"""Cross-shard transactions per second, and the single-shard throughput of S Raft groups
against one group (sharded-raft).

Two modes:

* simulator (default): closed-loop clients in virtual time, no faults.  Cross-shard
  transfers (accounts on two different shards: prepare, record, answer) against
  single-shard writes (one ``one-phase`` command), for S = 1, 2, 4 groups.  The simulator
  models network and fsync latency but not CPU, so its figures show what 2PC costs in
  latency (and so, for a fixed number of closed-loop clients, in throughput); they
  cannot show S groups adding capacity, which is a matter of CPU and disks.
* ``--real``: node processes on this machine (``LocalCluster``): kv puts from
  ``--clients`` threads for ``--seconds`` against S = 1 and 2 groups, and two-key
  transactions across shards through ``/v1/txn``.  Every node hosts every group in one
  Python process, so on one machine S groups share the same cores.

    python benchmarks/cross_shard.py                                 # simulator
    python benchmarks/cross_shard.py --real --seconds 5 --clients 8  # real processes
    python benchmarks/cross_shard.py --json-out /tmp/cross_shard.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consensuskit.core.client import Op, ServiceOp
from consensuskit.protocols.sharded import shard_of
from consensuskit.sim import SimConfig, Simulation

NODES = ("n1", "n2", "n3")


def keys_on(shard: int, shards: int, count: int, prefix: str = "a") -> list[str]:
    return [k for k in (f"{prefix}{i}" for i in range(10_000)) if shard_of(k, shards) == shard][:count]


def sim_run(shards: int, kind: str, clients: int, seconds: float, seed: int = 1) -> dict[str, Any]:
    """Closed loop: each client has one op outstanding; a new one starts when it ends."""
    config = SimConfig(
        protocol="sharded-raft", service="shard-kv", node_ids=NODES, clients=0, duration=seconds, settle=0.5,
        seed=seed, options={"shards": shards}, check_linearizability=False, runtime="batched",
    )  # fmt: skip
    sim = Simulation(config)
    sim.run_for(1.5)  # every group elects a leader
    start = sim.now
    counter = [0]

    def next_op(client: int) -> Any:
        counter[0] += 1
        n = counter[0]
        if kind == "cross":
            a = keys_on(0, shards, 50)[n % 50]
            b = keys_on(1, shards, 50)[(n * 7 + client) % 50]
            return ServiceOp(kind="transfer", key=f"{a}->{b}", value={"from": a, "to": b, "amount": 1})
        return Op(kind="put", key=f"k{client}-{n % 50}", value=n)

    runs = {c: sim.submit(next_op(c), client_id=f"b{c}") for c in range(clients)}
    latencies: list[float] = []
    done = 0
    while sim.now < start + seconds:
        sim.run_for(0.005)
        for c, run in list(runs.items()):
            if run.done:
                record = run.record
                if record.status == "ok" and record.complete is not None:
                    done += 1
                    latencies.append(record.complete - record.invoke)
                runs[c] = sim.submit(next_op(c), client_id=f"b{c}")
    return {
        "mode": "simulator",
        "shards": shards,
        "kind": kind,
        "clients": clients,
        "ops": done,
        "ops_per_second": done / seconds,
        "mean_latency_ms": 1000 * statistics.fmean(latencies) if latencies else None,
    }


def real_run(shards: int, kind: str, clients: int, seconds: float) -> dict[str, Any]:
    from consensuskit.client import Client
    from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port

    service = "txn" if kind == "cross" else "kv"
    with tempfile.TemporaryDirectory() as tmp:
        layout = ClusterLayout.prepare(
            Path(tmp), 3, free_base_port(6), protocol="sharded-raft",
            node_options={"service": service, "options": {"shards": shards}},
        )  # fmt: skip
        with LocalCluster(layout) as cluster:
            cluster.start()
            cluster.wait_ready(30.0)
            time.sleep(2.0)  # every group elects a leader
            stop = threading.Event()
            done: list[int] = [0] * clients
            a_keys, b_keys = keys_on(0, max(shards, 2), 50, "k"), keys_on(1, max(shards, 2), 50, "k")

            def work(index: int) -> None:
                endpoint = cluster.url(NODES[index % 3])
                with Client(endpoint) as client:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        try:
                            if kind == "cross":
                                pair = {a_keys[n % 50]: n, b_keys[(n * 7 + index) % 50]: n}
                                client.service("txn").put(pair)
                            else:
                                client.put(f"k{index}-{n % 50}", str(n))
                            done[index] += 1
                        except Exception:
                            pass

            threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
            for t in threads:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join(10.0)
    total = sum(done)
    return {"mode": "real", "shards": shards, "kind": kind, "clients": clients, "ops": total,
            "ops_per_second": total / seconds, "mean_latency_ms": None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="node processes instead of the simulator")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json-out", default="", help="write the rows as JSON here")
    args = parser.parse_args()
    if args.real:
        plan = [(1, "single"), (2, "single"), (2, "cross")]
    else:
        plan = [(1, "single"), (2, "single"), (4, "single"), (2, "cross"), (4, "cross")]
    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("measuring", total=len(plan))
        for shards, kind in plan:
            run = real_run if args.real else sim_run
            rows.append(run(shards, kind, args.clients, args.seconds))
            progress.advance(task)
    mode = "real processes, this machine" if args.real else "simulator, virtual time, seed 1"
    table = Table(title=f"sharded-raft throughput ({mode}, {args.clients} closed-loop clients, 3 nodes)")
    for column in ("shards", "operation", "ops", "ops/s", "mean latency"):
        table.add_column(column, justify="right")
    for row in rows:
        latency = row["mean_latency_ms"]
        table.add_row(
            str(row["shards"]),
            "cross-shard transfer/txn" if row["kind"] == "cross" else "single-shard put",
            str(row["ops"]),
            f"{row['ops_per_second']:.0f}",
            f"{latency:.1f} ms" if latency is not None else "-",
        )
    Console().print(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2), encoding="utf-8")
        Console().print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
