"""PBFT's messages per request in the simulator, against the textbook 2n^2 - n + 1, and
what batching buys; Raft on the same load for comparison.

Counts every message a run sends (client requests, replica-to-replica messages, replies)
with a pass-through filter and divides by the operations that completed.  Without
batching (``batch_size=1``) and with one sequential client the count is the formula's:
1 request + (n-1) pre-prepares + (n-1)^2 prepares + n(n-1) commits + n replies.

    python benchmarks/pbft_messages.py                       # n = 4, 7; 1 and 8 clients
    python benchmarks/pbft_messages.py --json-out /tmp/pbft_messages.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.sim import SimConfig, Simulation


def measure(
    protocol: str, nodes: int, clients: int, options: dict[str, Any], seconds: float
) -> dict[str, Any]:
    config = SimConfig(
        protocol=protocol,
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        clients=clients,
        duration=seconds,
        settle=1.0,
        seed=1,
        options=options,
        runtime="unbatched",
        check_linearizability=False,
    )
    sim = Simulation(config)
    counts: Counter[str] = Counter()

    def note(src: str, dst: str, msg: Any) -> None:
        counts[type(msg).__name__] += 1

    sim.add_filter(note)
    result = sim.run()
    ok = result.ops.get("ok", 0)
    total = sum(counts.values())
    return {
        "protocol": protocol,
        "nodes": nodes,
        "clients": clients,
        "options": options,
        "ops": ok,
        "messages": total,
        "per_request": round(total / ok, 2) if ok else None,
        "formula": 2 * nodes * nodes - nodes + 1 if protocol == "pbft" else None,
        "by_type": dict(sorted(counts.items())),
        "virtual_ops_per_second": round(ok / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="virtual seconds of load per point")
    parser.add_argument("--json-out", default=None, help="write the points here as JSON")
    args = parser.parse_args()
    console = Console()
    points = []
    for nodes in (4, 7):
        for clients in (1, 8):
            points.append(measure("pbft", nodes, clients, {"batch_size": 1}, args.seconds))
            points.append(measure("pbft", nodes, clients, {"batch_size": 16}, args.seconds))
            points.append(measure("raft", nodes, clients, {}, args.seconds))
    table = Table(title="messages per request (simulator, seed 1, unbatched runtime)")
    for col in ("protocol", "n", "clients", "batching", "ops", "msgs/request", "2n²-n+1", "ops/s (virtual)"):
        table.add_column(col, justify="left" if col in ("protocol", "batching") else "right")
    for p in points:
        batching = "" if p["protocol"] != "pbft" else ("off" if p["options"]["batch_size"] == 1 else "16")
        table.add_row(
            p["protocol"],
            str(p["nodes"]),
            str(p["clients"]),
            batching,
            str(p["ops"]),
            str(p["per_request"]),
            str(p["formula"] or ""),
            str(p["virtual_ops_per_second"]),
        )
    console.print(table)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(points, fh, indent=2)
        console.print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
