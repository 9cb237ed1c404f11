"""Puts while many watches wait, on consensuskit's etcd service and on etcd in the same run:
the cost of idle watches (each on a key nobody writes) to the writes of a one-node cluster.

For each count of idle watches, the run opens them on one gRPC Watch stream, plus one
watch on the written keys whose events are counted (every put must reach it), then drives
puts for ``--duration`` seconds with ``--concurrency`` callers and reports puts/s, p99,
the server's CPU per put, and puts/s against the same system with no idle watch; then
makes ``LATENCY_PUTS`` puts one at a time and reports how long after each put's answer
its event reached the counted watch (median and 90th percentile; negative: before).  A node
that reads the store once per watch per write (consensuskit before its watch hub,
services/etcd_watch_hub.py) loses most of its puts to 1,000 idle watches; etcd's
watchableStore reads once per write.

    python benchmarks/etcd_watchers.py                       # 0, 100, 1,000 watches, 5 s each
    python benchmarks/etcd_watchers.py --watches 0,5000 --json-out /tmp/etcd_watchers.json
    python benchmarks/etcd_watchers.py --no-etcd --duration 2

etcd is started with ../shared/bench/start_etcd_cluster.sh when ``etcd`` is on PATH (on
ETCD_BASE_PORT, default here 33100); without it only consensuskit's rows are printed.
The load generator runs in this process (grpcio's asyncio client), alike for both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.statemachines.mvcc import prefix_end
from etcd_anchor import etcd_cluster
from kv_throughput import cpu_ticks
from results_file import write_json

TICKS = os.sysconf("SC_CLK_TCK")
WRITTEN = b"bench/"  # the keys the puts write; the counted watch covers them
LATENCY_PUTS = 50  # puts made one at a time after each point, to time their events


async def measure(address: str, pid: int, watches: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """One point: ``watches`` idle watches and the counted one open, then puts."""
    import grpc

    from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
    from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(address)
    opened = asyncio.Event()
    created = events = 0

    async def requests() -> Any:
        on_written = pb.WatchCreateRequest(key=WRITTEN, range_end=prefix_end(WRITTEN))
        yield pb.WatchRequest(create_request=on_written)
        for i in range(watches):
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"idle/%06d" % i))
        await asyncio.Event().wait()  # the stream stays open

    stream = pb_grpc.WatchStub(channel).Watch(requests())

    arrived = asyncio.Event()
    heard_at = 0.0  # when the last events arrived

    async def read() -> None:
        nonlocal created, events, heard_at
        async for response in stream:
            if response.created:
                created += 1
                if created == watches + 1:
                    opened.set()
            if response.events:
                events += len(response.events)
                heard_at = time.perf_counter()
                arrived.set()

    reader = asyncio.ensure_future(read())
    async with asyncio.timeout(120):
        await opened.wait()
    kv = pb_grpc.KVStub(channel)
    latencies: list[float] = []
    errors = 0

    async def caller(c: int) -> None:
        nonlocal errors
        n = 0
        while (now := time.perf_counter()) < end:
            try:
                await kv.Put(pb.PutRequest(key=WRITTEN + b"%d/%d" % (c, n), value=b"v" * 16), timeout=10)
                latencies.append(time.perf_counter() - now)
            except grpc.aio.AioRpcError:
                errors += 1
            n += 1

    cpu0, t0 = cpu_ticks(pid), time.perf_counter()
    end = t0 + seconds
    await asyncio.gather(*(caller(c) for c in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, cpu_ticks(pid) - cpu0
    async with asyncio.timeout(30):  # every put reaches the counted watch
        while events < len(latencies):
            await asyncio.sleep(0.05)
    counted = events
    # then one put at a time: from its answer to its event on the counted watch (negative
    # when the event came first)
    delays: list[float] = []
    for n in range(LATENCY_PUTS):
        expected = events + 1
        await kv.Put(pb.PutRequest(key=WRITTEN + b"one", value=b"%d" % n), timeout=10)
        answered = time.perf_counter()
        async with asyncio.timeout(10):
            while events < expected:
                arrived.clear()
                await arrived.wait()
        delays.append(heard_at - answered)
        await asyncio.sleep(0.005)
    delays.sort()
    reader.cancel()
    stream.cancel()
    await channel.close()
    latencies.sort()
    puts = len(latencies)
    return {
        "watches": watches,
        "puts": puts,
        "errors": errors,
        "puts_per_s": round(puts / elapsed, 1),
        "p99_ms": round(1000 * latencies[min(puts - 1, int(0.99 * puts))], 2) if puts else None,
        "server_cpu_us_per_put": round(1e6 * cpu / TICKS / max(puts, 1), 1),
        "watch_events": counted,
        "event_after_answer_ms_p50": round(1000 * delays[len(delays) // 2], 2),
        "event_after_answer_ms_p90": round(1000 * delays[int(0.9 * len(delays))], 2),
    }


def run_points(
    system: str, address: str, pid: int, args: argparse.Namespace, progress: Progress
) -> list[dict[str, Any]]:
    rows = []
    task = progress.add_task(system, total=len(args.watches))
    for watches in args.watches:
        row = asyncio.run(measure(address, pid, watches, args.concurrency, args.duration))
        rows.append({"system": system, **row})
        progress.advance(task)
    return rows


def bench_consensuskit(args: argparse.Namespace, progress: Progress) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ck-watchers-") as tmp:
        layout = ClusterLayout.prepare(
            Path(tmp), 1, free_base_port(3), node_options={"log_level": "warning", "service": "etcd"}
        )
        with LocalCluster(layout) as cluster:
            cluster.start()
            leader = cluster.wait_for_leader(30)
            address = f"127.0.0.1:{layout.listen_ports(layout.node(leader))['grpc']}"
            pid = cluster.nodes[leader].pid
            assert pid is not None
            return run_points("consensuskit", address, pid, args, progress)


def bench_etcd(args: argparse.Namespace, progress: Progress, console: Console) -> list[dict[str, Any]]:
    with etcd_cluster(1, 33100, console) as etcd:
        if etcd is None:
            return []
        return run_points("etcd", etcd.leader_address, etcd.pids["m1"], args, progress)


def report(rows: list[dict[str, Any]], args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"puts while idle watches wait: one node, c={args.concurrency}, {args.duration:g} s per row"
    )
    table.add_column("system", no_wrap=True)
    for column in ("idle watches", "puts/s", "p99 ms", "errors", "cpu us/put", "vs no watches"):
        table.add_column(column, justify="right")
    for column in ("event ms p50", "event ms p90"):
        table.add_column(column, justify="right")
    alone = {r["system"]: r["puts_per_s"] for r in rows if r["watches"] == 0}
    for r in rows:
        base = alone.get(r["system"])
        r["vs_no_watches"] = round(r["puts_per_s"] / base, 3) if base else None
        table.add_row(
            r["system"],
            f"{r['watches']:,}",
            f"{r['puts_per_s']:,.0f}",
            f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "",
            str(r["errors"]),
            f"{r['server_cpu_us_per_put']:,.0f}",
            f"{r['vs_no_watches']:.2f}x" if r["vs_no_watches"] is not None else "",
            f"{r['event_after_answer_ms_p50']:.2f}",
            f"{r['event_after_answer_ms_p90']:.2f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watches", default="0,100,1000", help="comma list of idle watch counts")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of puts per row")
    parser.add_argument("--no-etcd", action="store_true", help="consensuskit's rows only")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    try:
        args.watches = [int(w) for w in args.watches.split(",")]
    except ValueError:
        parser.error(f"--watches: a comma list of counts, not {args.watches!r}")
    console = Console()
    with Progress(console=console, transient=True) as progress:
        rows = bench_consensuskit(args, progress)
        if not args.no_etcd:
            rows += bench_etcd(args, progress, console)
    report(rows, args, console)
    if args.json_out:
        doc = {
            "benchmark": "etcd_watchers",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "concurrency": args.concurrency,
            "duration": args.duration,
            "rows": rows,
        }
        print(f"wrote {write_json(args.json_out, doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
