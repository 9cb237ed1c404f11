"""The etcd v3 API of consensuskit (``--service etcd``) beside etcd's, on the same paths in
the same run: puts and linearizable ranges through the JSON gateway (wrk with etcd's own
script, ../shared/bench/etcd_kv.lua) and through gRPC (one Python load generator, grpcio's
asyncio client in a process of its own, driving both systems alike).

    python benchmarks/etcd_api.py                       # 3 nodes, c=64, 10 s per point
    python benchmarks/etcd_api.py --duration 5 --grpc-empty --json-out /tmp/etcd_api.json
    python benchmarks/etcd_api.py --protocol multipaxos --paths grpc --ops put

etcd is started with ../shared/bench/start_etcd_cluster.sh when ``etcd`` is on PATH (on
ETCD_BASE_PORT, default here 33000, so it does not meet other runs on 23000); without it
only consensuskit's rows are printed.  Each row gives ops/s, p50/p99 latency and the CPU
each server process spent per answered request (consensuskit's leader marked *, etcd's
members m1..m3), summed in the table.  ``--grpc-empty`` adds rows for grpcio's asyncio
server alone: a KV service answering every call at once, no store, no consensus, driven
by the same generator: the most any grpcio asyncio server gets here.

What bounds each path (measured on a shared 2-core machine, README "etcd v3 API vs
etcd"): the gateway's hot calls are served by the server's lean HTTP front
(server/fast_http.py), and the leader's CPU per put (0.17-0.25 ms, less than etcd's
leader spends on its own gateway) goes mostly to the platform's per-batch and per-socket
work (WAL sync hand-offs, peer and client writes); the etcd-specific work is about 15%
of it.  gRPC is bounded by the leader's CPU per call, most of it grpcio's: the empty
server costs 0.31-0.55 ms of CPU per put here (etcd's whole leader 0.11-0.21 ms per gRPC
request), and the node's own work adds about 0.22 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from etcd_anchor import etcd_cluster
from kv_throughput import EtcdTarget, Point, cpu_ticks, machine_load, preload, run_wrk

ROOT = Path(__file__).resolve().parent
KEYS = [f"key{i:06d}".encode() for i in range(1000)]
VALUE = b"v" * 16


async def drive_grpc(address: str, op: str, concurrency: int, seconds: float) -> Point:
    """``concurrency`` callers over 4 channels, each one call at a time."""
    import grpc

    from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
    from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc

    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    stubs = [pb_grpc.KVStub(c) for c in channels]
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    start = time.perf_counter()
    end = start + seconds

    async def worker(w: int) -> None:
        nonlocal errors, first_error
        rng = random.Random(w)
        stub = stubs[w % len(stubs)]
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            key = rng.choice(KEYS)
            try:
                if op == "put":
                    await stub.Put(pb.PutRequest(key=key, value=VALUE), timeout=10)
                else:
                    await stub.Range(pb.RangeRequest(key=key), timeout=10)
                latencies.append(time.perf_counter() - now)
            except grpc.aio.AioRpcError as exc:
                errors += 1
                first_error = first_error or f"{exc.code().name}: {exc.details()}"

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    for c in channels:
        await c.close()
    latencies.sort()

    def pct(q: float) -> float:
        return (
            1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
        )

    return Point(
        system="",
        nodes=0,
        op=op,
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        ok=len(latencies),
        errors=errors,
        ops_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(pct(0.5), 3),
        p99_ms=round(pct(0.99), 3),
        first_error=first_error,
        load="python-grpc",
    )


class _EmptyKV:
    """A KV service that answers at once, with no store and no consensus: what grpcio's
    asyncio server costs by itself (the ``grpc-empty`` path)."""

    async def Put(self, request: Any, context: Any) -> Any:
        from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb

        return pb.PutResponse(header=pb.ResponseHeader(cluster_id=1, member_id=1, revision=2, raft_term=1))

    async def Range(self, request: Any, context: Any) -> Any:
        from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb

        return pb.RangeResponse(header=pb.ResponseHeader(cluster_id=1, member_id=1, revision=2, raft_term=1))


async def serve_empty_grpc(port: int) -> None:
    import grpc

    from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc

    server = grpc.aio.server()
    servicer = type("EmptyKV", (_EmptyKV, pb_grpc.KVServicer), {})()
    pb_grpc.add_KVServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def bench_empty_grpc(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    """grpcio's asyncio server alone (see ``_EmptyKV``), driven by the same generator."""
    from consensuskit.server.cluster import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-empty-grpc", str(port)])
    try:
        time.sleep(2.0)
        console.print("[bold]grpcio-empty[/]: grpcio's asyncio server answering at once (no store)")
        ops = [op for op in args.ops if op in ("put", "get")]
        return measure(
            "grpcio-empty",
            "",
            f"127.0.0.1:{port}",
            ["grpc"],
            ops,
            args.concurrency,
            args.duration,
            console,
            {"server": server.pid},
            preloaded=True,
        )
    finally:
        server.terminate()
        server.wait(10)


def run_grpc(address: str, op: str, concurrency: int, seconds: float) -> Point:
    spec = json.dumps({"address": address, "op": op, "concurrency": concurrency, "seconds": seconds})
    done = subprocess.run(
        [sys.executable, __file__, "--drive-grpc", spec],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gRPC load generator failed: {done.stderr.strip()[-2000:]}")
    return Point(**json.loads(done.stdout.strip().splitlines()[-1]))


def measure(
    system: str,
    http_url: str,
    grpc_address: str,
    paths: list[str],
    ops: list[str],
    concurrency: int,
    seconds: float,
    console: Console,
    pids: dict[str, int] | None = None,
    protocol: str = "",
    preloaded: bool = False,
) -> list[dict[str, Any]]:
    if not preloaded:
        asyncio.run(preload(EtcdTarget(http_url, 1000, 16)))
    rows = []
    tick = os.sysconf("SC_CLK_TCK")
    for path in paths:
        for op in ops:
            loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            before = {name: cpu_ticks(pid) for name, pid in (pids or {}).items()}
            if path == "gateway":
                point = run_wrk(EtcdTarget(http_url, 1000, 16), op, concurrency, seconds)
            else:
                point = run_grpc(grpc_address, op, concurrency, seconds)
            cpu = {
                name: round((cpu_ticks(pid) - before[name]) / tick * 1e6 / max(point.ok, 1), 1)
                for name, pid in (pids or {}).items()
            }
            row = {
                **asdict(point),
                "system": system,
                "protocol": protocol,
                "path": path,
                "cpu_us_per_op": cpu,
                "loadavg_before": loadavg,
            }
            rows.append(row)
            note = f" ({point.errors} errors: {point.first_error})" if point.errors else ""
            cpu_text = ("  cpu/op " + ", ".join(f"{k} {v:.0f}us" for k, v in cpu.items())) if cpu else ""
            console.print(
                f"  {system}{'/' + protocol if protocol else ''} {path} {op} c={concurrency}: "
                f"{point.ops_per_s:,.0f}/s p50 {point.p50_ms:.2f} ms p99 {point.p99_ms:.2f} ms"
                f"{note}{cpu_text}"
            )
    return rows


def bench_consensuskit(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ck-etcd-bench-") as tmp:
        layout = ClusterLayout.prepare(
            Path(tmp),
            args.nodes,
            free_base_port(3 * args.nodes),
            node_options={"log_level": "warning", "service": "etcd"},
            protocol=args.protocol,
        )
        with LocalCluster(layout) as cluster:
            cluster.start()
            leader = cluster.wait_for_leader(30)
            spec = layout.node(leader)
            grpc_address = f"127.0.0.1:{layout.listen_ports(spec)['grpc']}"
            console.print(f"[bold]consensuskit[/] {args.protocol}, {args.nodes} nodes, leader {leader}")
            pids = {
                (f"{node_id}*" if node_id == leader else node_id): proc.pid
                for node_id, proc in sorted(cluster.nodes.items())
                if proc.pid is not None
            }
            return measure(
                "consensuskit",
                cluster.url(leader),
                grpc_address,
                args.paths,
                args.ops,
                args.concurrency,
                args.duration,
                console,
                pids,
                args.protocol,
            )


def bench_etcd(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    with etcd_cluster(args.nodes, 33000, console) as etcd:
        if etcd is None:
            return []
        console.print(f"[bold]etcd[/] {args.nodes} members, leader {etcd.leader_url}")
        return measure(
            "etcd",
            etcd.leader_url,
            etcd.leader_address,
            args.paths,
            args.ops,
            args.concurrency,
            args.duration,
            console,
            etcd.pids,
        )


def report(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="etcd v3 API: consensuskit vs etcd (same load generators, same run)")
    columns = (
        "system",
        "path",
        "op",
        "c",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs etcd",
        "server cpu us/op",
    )
    for column in columns:
        table.add_column(column, justify="right" if column not in ("system", "path", "op") else "left")
    etcd = {(r["path"], r["op"]): r["ops_per_s"] for r in rows if r["system"] == "etcd"}
    for r in rows:
        base = etcd.get((r["path"], r["op"]))
        ratio = f"{r['ops_per_s'] / base:.2f}x" if base and r["system"] != "etcd" else ""
        name = r["system"] + (f"/{r['protocol']}" if r["protocol"] else "")
        table.add_row(
            name,
            r["path"],
            r["op"],
            str(r["concurrency"]),
            f"{r['ops_per_s']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["errors"]),
            ratio,
            f"{sum(r['cpu_us_per_op'].values()):,.0f}" if r["cpu_us_per_op"] else "",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--protocol", default="raft")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--paths", default="gateway,grpc")
    parser.add_argument("--ops", default="put,get")
    parser.add_argument("--no-etcd", action="store_true", help="consensuskit's rows only")
    parser.add_argument("--json-out", default=None, help="write the rows here as JSON")
    parser.add_argument(
        "--grpc-empty", action="store_true", help="also measure grpcio's asyncio server answering at once"
    )
    parser.add_argument("--drive-grpc", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-empty-grpc", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive_grpc:
        spec = json.loads(args.drive_grpc)
        point = asyncio.run(drive_grpc(spec["address"], spec["op"], spec["concurrency"], spec["seconds"]))
        print(json.dumps(asdict(point)))
        return 0
    if args.serve_empty_grpc:
        asyncio.run(serve_empty_grpc(args.serve_empty_grpc))
        return 0
    args.paths = [p for p in args.paths.split(",") if p]
    args.ops = [o for o in args.ops.split(",") if o]
    console = Console()
    console.print(f"machine: {machine_load() or ''}")
    rows = bench_consensuskit(args, console)
    if not args.no_etcd:
        rows += bench_etcd(args, console)
    if args.grpc_empty:
        rows += bench_empty_grpc(args, console)
    report(rows, console)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=2) + "\n")
        console.print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
