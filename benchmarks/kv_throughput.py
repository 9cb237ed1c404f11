"""Throughput and latency of the replicated key-value server, side by side with etcd.

Starts a local 3-node (and 5-node) cluster of real processes (fsync on), drives its
leader with an asyncio load generator (aiohttp, keep-alive, one connection per worker)
at concurrency 1, 16, 64, 256: puts of 16-byte values over 1000 keys, then
linearizable gets.  Prints ops/s and p50/p99 latency, writes JSON to
benchmarks/results/kv_throughput.json.  When ``etcd`` is on PATH it starts an etcd
cluster of the same size with ../shared/bench/start_etcd_cluster.sh and runs the same
load against its v3 JSON gateway, and prints our ops/s divided by etcd's.

    python benchmarks/kv_throughput.py            # 3 and 5 nodes, 10 s per point
    python benchmarks/kv_throughput.py --quick    # 3 nodes, 2 s per point
    python benchmarks/kv_throughput.py --nodes 3 --concurrency 64 --ops put --duration 20

The load generator shares this 2-core machine with the nodes (as wrk does in the etcd
figures of ../shared/bench/README.md); both systems meet the same generator.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "kv_throughput.json"
SHARED_BENCH = ROOT.parent.parent / "shared" / "bench"


@dataclass
class Point:
    system: str  # consensuskit / etcd
    nodes: int
    op: str  # put / get
    concurrency: int
    seconds: float
    ok: int
    errors: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    first_error: str | None = None


# ---------------------------------------------------------------------- load
class Target:
    """How one system spells a put and a linearizable get of key i."""

    name = ""

    def __init__(self, url: str, keys: int, value_size: int) -> None:
        self.url = url.rstrip("/")
        self.keys = [f"key{i:06d}" for i in range(keys)]
        self.value = b"v" * value_size

    def request(
        self, op: str, key: str, worker: str, seq: int
    ) -> tuple[str, str, dict[str, str], bytes | None]:
        raise NotImplementedError


class ConsensuskitTarget(Target):
    name = "consensuskit"

    def __init__(self, url: str, keys: int, value_size: int) -> None:
        super().__init__(url, keys, value_size)
        self.run_id = os.urandom(4).hex()

    def request(
        self, op: str, key: str, worker: str, seq: int
    ) -> tuple[str, str, dict[str, str], bytes | None]:
        if op == "put":
            # One session per worker: its writes are sequential, as the session rule wants.
            headers = {"X-Request-Id": f"bench-{self.run_id}-{worker}:{seq}"}
            return "PUT", f"{self.url}/v1/kv/{key}", headers, self.value
        return "GET", f"{self.url}/v1/kv/{key}?consistency=linearizable", {}, None


class EtcdTarget(Target):
    name = "etcd"

    def __init__(self, url: str, keys: int, value_size: int) -> None:
        super().__init__(url, keys, value_size)
        value = base64.b64encode(self.value).decode()
        self.bodies = {
            "put": {
                k: json.dumps({"key": base64.b64encode(k.encode()).decode(), "value": value}).encode()
                for k in self.keys
            },
            "get": {
                k: json.dumps({"key": base64.b64encode(k.encode()).decode()}).encode() for k in self.keys
            },
        }

    def request(
        self, op: str, key: str, worker: str, seq: int
    ) -> tuple[str, str, dict[str, str], bytes | None]:
        path = "/v3/kv/put" if op == "put" else "/v3/kv/range"
        return "POST", self.url + path, {"Content-Type": "application/json"}, self.bodies[op][key]


async def drive(target: Target, op: str, concurrency: int, seconds: float, seed: int = 0) -> Point:
    """``concurrency`` workers, each one request at a time on its own keep-alive connection."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        end = start + seconds
        phase = os.urandom(3).hex()  # a fresh session per worker and run: seqs start again at 1

        async def worker(w: int) -> None:
            nonlocal errors, first_error
            rng = random.Random(seed * 100_000 + w)
            seq = 0
            while True:
                now = time.perf_counter()
                if now >= end:
                    return
                seq += 1
                method, url, headers, body = target.request(op, rng.choice(target.keys), f"{phase}-{w}", seq)
                try:
                    async with http.request(method, url, headers=headers, data=body) as resp:
                        await resp.read()
                        good = resp.status == 200
                        why = f"HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    good, why = False, f"{type(exc).__name__}: {exc}"
                if good:
                    latencies.append(time.perf_counter() - now)
                else:
                    errors += 1
                    first_error = first_error or why

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return (
            1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
        )

    return Point(
        system=target.name,
        nodes=0,
        op=op,
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        ok=len(latencies),
        errors=errors,
        ops_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(pct(0.50), 3),
        p99_ms=round(pct(0.99), 3),
        first_error=first_error,
    )


async def preload(target: Target, concurrency: int = 32) -> None:
    """Write every key once, so that gets read real values."""
    queue = list(target.keys)
    async with aiohttp.ClientSession() as http:

        async def worker(w: int) -> None:
            seq = 0
            while queue:
                key = queue.pop()
                seq += 1
                method, url, headers, body = target.request("put", key, f"preload-{w}", seq)
                for _ in range(20):
                    try:
                        async with http.request(method, url, headers=headers, data=body) as resp:
                            await resp.read()
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))


def run_matrix(
    target: Target, nodes: int, ops: list[str], levels: list[int], seconds: float, console: Console
) -> list[Point]:
    asyncio.run(preload(target))
    points = []
    for op in ops:
        for c in levels:
            point = asyncio.run(drive(target, op, c, seconds))
            point.nodes = nodes
            points.append(point)
            note = f" ({point.errors} errors, first: {point.first_error})" if point.errors else ""
            console.print(
                f"  {target.name} n={nodes} {op} c={c}: {point.ops_per_s:,.0f}/s "
                f"p50 {point.p50_ms:.2f} ms p99 {point.p99_ms:.2f} ms{note}"
            )
    return points


# ---------------------------------------------------------------------- systems
def bench_consensuskit(
    nodes: int, ops: list[str], levels: list[int], seconds: float, console: Console, options: dict[str, Any]
) -> list[Point]:
    with tempfile.TemporaryDirectory(prefix="ck-bench-") as tmp:
        layout = ClusterLayout.prepare(
            Path(tmp), nodes, free_base_port(2 * nodes), node_options={"log_level": "warning", **options}
        )
        with LocalCluster(layout) as cluster:
            cluster.start()
            leader = cluster.wait_for_leader(30)
            console.print(f"[bold]consensuskit[/] {nodes} nodes, leader {leader} ({cluster.url(leader)})")
            return run_matrix(
                ConsensuskitTarget(cluster.url(leader), 1000, 16), nodes, ops, levels, seconds, console
            )


def etcd_script() -> Path | None:
    script = SHARED_BENCH / "start_etcd_cluster.sh"
    return script if shutil.which("etcd") and script.exists() else None


def bench_etcd(
    nodes: int, ops: list[str], levels: list[int], seconds: float, console: Console
) -> list[Point]:
    script = etcd_script()
    assert script is not None
    subprocess.run([str(script), "stop"], capture_output=True)
    started = subprocess.run([str(script), str(nodes)], capture_output=True, text=True)
    if started.returncode != 0:
        console.print(f"[red]etcd did not start:[/] {started.stderr.strip() or started.stdout.strip()}")
        return []
    try:
        leader = subprocess.run([str(script), "leader"], capture_output=True, text=True).stdout.strip()
        leader = leader.splitlines()[0] if leader else "http://127.0.0.1:23010"
        console.print(f"[bold]etcd[/] {nodes} members, leader {leader}")
        return run_matrix(EtcdTarget(leader, 1000, 16), nodes, ops, levels, seconds, console)
    finally:
        subprocess.run([str(script), "stop"], capture_output=True)


def machine_load() -> str | None:
    quiet = SHARED_BENCH / "quiet.sh"
    if not quiet.exists():
        return None
    done = subprocess.run([str(quiet)], capture_output=True, text=True)
    return done.stdout.strip() or None


# ---------------------------------------------------------------------- report
def report(points: list[Point], console: Console) -> Table:
    etcd = {(p.nodes, p.op, p.concurrency): p for p in points if p.system == "etcd"}
    table = Table(title="key-value throughput (loopback, fsync on, 16-byte values, 1000 keys)")
    for col in ("system", "nodes", "op", "conc.", "ops/s", "p50 ms", "p99 ms", "errors", "vs etcd"):
        table.add_column(col, justify="left" if col in ("system", "op") else "right")
    for p in points:
        other = etcd.get((p.nodes, p.op, p.concurrency))
        ratio = (
            f"{p.ops_per_s / other.ops_per_s:.2f}" if p.system != "etcd" and other and other.ops_per_s else ""
        )
        table.add_row(
            p.system,
            str(p.nodes),
            p.op if p.op == "put" else "get (lin.)",
            str(p.concurrency),
            f"{p.ops_per_s:,.0f}",
            f"{p.p50_ms:.2f}",
            f"{p.p99_ms:.2f}",
            str(p.errors),
            ratio,
        )
    console.print(table)
    return table


def ratios(points: list[Point]) -> list[dict[str, Any]]:
    etcd = {(p.nodes, p.op, p.concurrency): p for p in points if p.system == "etcd"}
    out = []
    for p in points:
        other = etcd.get((p.nodes, p.op, p.concurrency))
        if p.system == "consensuskit" and other and other.ops_per_s:
            out.append(
                {
                    "nodes": p.nodes,
                    "op": p.op,
                    "concurrency": p.concurrency,
                    "throughput_ratio": round(p.ops_per_s / other.ops_per_s, 3),
                    "p50_ratio": round(p.p50_ms / other.p50_ms, 3) if other.p50_ms else None,
                }
            )
    return out


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default=None, help="cluster sizes, comma list (default 3,5; --quick: 3)")
    parser.add_argument("--concurrency", default="1,16,64,256", help="comma list (default 1,16,64,256)")
    parser.add_argument("--ops", default="put,get", help="put, get or both (default put,get)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (default 10; --quick: 2)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run: 3 nodes, 2 s per point")
    parser.add_argument("--no-etcd", action="store_true", help="skip etcd even when it is installed")
    parser.add_argument(
        "--option", action="append", default=[], help="node setting KEY=JSON, e.g. fsync=false"
    )
    parser.add_argument("--json", default=str(RESULTS), help=f"where to write results (default {RESULTS})")
    args = parser.parse_args(argv)

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    nodes = parse_list(args.nodes or ("3" if args.quick else "3,5"))
    levels = parse_list(args.concurrency)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in ops if o not in ("put", "get")]
    if bad or not ops or not levels or not nodes:
        parser.error(f"bad --ops/--concurrency/--nodes (ops must be put and/or get, got {args.ops!r})")
    seconds = args.duration or (2.0 if args.quick else 10.0)
    options: dict[str, Any] = {}
    for pair in args.option:
        key, _, raw = pair.partition("=")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw

    load_before = machine_load()
    if load_before:
        console.print(f"machine before the run: {load_before}")
    with_etcd = not args.no_etcd and etcd_script() is not None
    if not with_etcd and not args.no_etcd:
        console.print(
            "etcd is not on PATH: measuring consensuskit only (apt-get install etcd-server etcd-client)"
        )
    points: list[Point] = []
    for n in nodes:
        points += bench_consensuskit(n, ops, levels, seconds, console, options)
        if with_etcd:
            points += bench_etcd(n, ops, levels, seconds, console)
    report(points, console)
    doc = {
        "benchmark": "kv_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "machine_load_before": load_before,
        "settings": {
            "nodes": nodes,
            "concurrency": levels,
            "ops": ops,
            "seconds_per_point": seconds,
            "keys": 1000,
            "value_bytes": 16,
            "node_options": options,
            "etcd": with_etcd,
        },
        "points": [asdict(p) for p in points],
        "ratios_vs_etcd": ratios(points),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    console.print(f"results written to {out}")
    return 0 if all(p.ok > 0 for p in points) else 1


if __name__ == "__main__":
    sys.exit(main())
