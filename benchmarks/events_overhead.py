"""What the node event feed (server/events.py) costs: put throughput of a 3-node Raft
cluster of real processes on loopback, with the feed off (``events_ring = 0``), on with
nobody listening (the default), and on with the browser view's live source listening
to every node (every message sampled).

Rounds alternate the three modes (a fresh cluster each time, fsync on), so a noisy
machine's drift falls on all three alike; the table shows the median of each mode, and
the CPU the three node processes spent per put (from /proc: less sensitive than
throughput to a machine shared with other work).

    python benchmarks/events_overhead.py                       # 3 rounds of 5 s
    python benchmarks/events_overhead.py --rounds 5 --duration 10 --json-out /tmp/events.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.client import AsyncClient
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.view.live import LiveCluster

MODES = ("off", "on, nobody listening", "on, live source listening")


async def _load(endpoints: list[str], seconds: float, concurrency: int) -> int:
    done = 0
    end = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        async with AsyncClient(endpoints, timeout=2.0, deadline=10.0) as kv:
            n = 0
            while time.monotonic() < end:
                await kv.put(f"k{i}-{n % 100}", "0123456789abcdef")
                n += 1
                done += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have spent (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def _point(cluster: LocalCluster, mode: str, seconds: float, concurrency: int) -> dict[str, Any]:
    source = None
    received = 0
    reader = None
    if mode == MODES[2]:
        urls = {spec.node_id: spec.client_url for spec in cluster.layout.nodes}
        source = LiveCluster(urls, cluster.layout.admin_token)

        async def read() -> None:
            nonlocal received
            async for _ in source.records():
                received += 1

        reader = asyncio.get_running_loop().create_task(read())
        await source.wait_connected()
    await _load(cluster.endpoints, 1.0, concurrency)  # warm up: connections, sessions
    pids = [p.pid for p in cluster.nodes.values() if p.pid is not None]
    cpu = _cpu_seconds(pids)
    started = time.monotonic()
    ops = await _load(cluster.endpoints, seconds, concurrency)
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(pids) - cpu
    if source is not None:
        await source.close()
        assert reader is not None
        await reader
    return {
        "mode": mode,
        "ops": ops,
        "seconds": elapsed,
        "ops_per_s": ops / elapsed,
        "cpu_us_per_op": cpu / max(ops, 1) * 1e6,
        "events": received,
    }


def run(rounds: int, seconds: float, concurrency: int, console: Console) -> list[dict[str, Any]]:
    points = []
    for r in range(rounds):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="events-overhead-") as root:
                settings: dict[str, Any] = {"events_ring": 0} if mode == MODES[0] else {}
                layout = ClusterLayout.prepare(Path(root), 3, free_base_port(6), node_options=settings)
                with LocalCluster(layout) as cluster:
                    cluster.start()
                    cluster.wait_for_leader(30)
                    point = asyncio.run(_point(cluster, mode, seconds, concurrency))
            point["round"] = r + 1
            points.append(point)
            console.print(f"round {r + 1} {mode}: {point['ops_per_s']:,.0f} puts/s")
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per point")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json-out", help="write the points and medians as JSON here")
    args = parser.parse_args(argv)
    console = Console()
    points = run(args.rounds, args.duration, args.concurrency, console)
    title = f"put throughput, 3 raft nodes, concurrency {args.concurrency} (median of {args.rounds})"
    table = Table(title=title)
    table.add_column("event feed")
    table.add_column("puts/s", justify="right")
    table.add_column("vs off", justify="right")
    table.add_column("node CPU µs/put", justify="right")
    table.add_column("events streamed/s", justify="right")
    medians = {m: statistics.median(p["ops_per_s"] for p in points if p["mode"] == m) for m in MODES}
    for mode in MODES:
        mine = [p for p in points if p["mode"] == mode]
        events = statistics.median(p["events"] / p["seconds"] for p in mine)
        cpu = statistics.median(p["cpu_us_per_op"] for p in mine)
        table.add_row(
            mode,
            f"{medians[mode]:,.0f}",
            f"{medians[mode] / medians[MODES[0]]:.1%}",
            f"{cpu:,.0f}",
            f"{events:,.0f}",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"points": points, "medians": medians}, indent=2) + "\n")
        console.print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
