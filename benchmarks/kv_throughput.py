"""Throughput and latency of the replicated key-value server, side by side with etcd.

Starts a local 3-node (and 5-node) cluster of real processes (fsync on) and drives its
leader with wrk (``benchmarks/ck_kv.lua``) at concurrency 1, 16, 64, 256: puts of
16-byte values over 1000 keys, then linearizable gets (and, with ``--ops``, lease
gets).  When ``etcd`` is on PATH it starts an etcd cluster of the same size with
../shared/bench/start_etcd_cluster.sh and runs the same load against its v3 JSON
gateway (../shared/bench/etcd_kv.lua), and prints our ops/s divided by etcd's.
Prints ops/s and p50/p99 latency, the CPU each node spent per request, and writes JSON
to benchmarks/results/kv_throughput.json.

    python benchmarks/kv_throughput.py            # 3 and 5 nodes, 10 s per point
    python benchmarks/kv_throughput.py --quick    # 3 nodes, 2 s per point
    python benchmarks/kv_throughput.py --nodes 3 --concurrency 64 --ops put,get-lease --duration 20
    python benchmarks/kv_throughput.py --load python   # the asyncio generator instead of wrk
    python benchmarks/kv_throughput.py --protocol multipaxos   # one protocol (default: raft, multipaxos, zab)
    python benchmarks/kv_throughput.py --protocol pbft,raft --nodes 4 --ops put,get --no-etcd
    python benchmarks/kv_throughput.py --protocol zab   # ZooKeeper's ZAB on the same server
    python benchmarks/kv_throughput.py --protocol zab --zookeeper   # ... and ZooKeeper 3.8 itself
    python benchmarks/kv_throughput.py --nodes 3 --concurrency 64,256 --ops put --rounds 3

Every consensuskit point runs once per protocol of ``--protocol`` (default raft,
multipaxos and zab, the protocols the server runs), each on a fresh cluster.

The load generator runs in its own process(es) (wrk: -t1 for c=1, else -t2; the Python
one: a uvloop subprocess) and shares this 2-core machine with the nodes, as wrk does in
the etcd figures of ../shared/bench/README.md; both systems meet the same generator.
With ``--zookeeper`` (needs Debian's ``zookeeper`` and the ``bench`` extra's kazoo) it
also measures a ZooKeeper ensemble of each size with ../shared/bench/zk_bench.py
(``benchmarks/zookeeper_anchor.py``: kazoo from 4 processes, 512 sets in flight each) and
prints its sets/s beside our ZAB's puts: a different load generator, so an indication.

Before each system's points the script waits (up to 120 s) for the machine to be idle
(../shared/bench/quiet.sh) and records the outcome and the load average per point.

``--rounds N`` measures every system N times, alternating (all of round 1, then round 2,
...), and pairs each of our points with etcd's of the same round: etcd's own figures move
by up to 2x between quiet runs on this machine, so a target stated "in every run" is
checked round by round.  A last table gives each ratio per round, its minimum and median,
and in how many rounds our p99 was no worse than etcd's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from results_file import write_json

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "kv_throughput.json"
SHARED_BENCH = ROOT.parent.parent / "shared" / "bench"
CK_LUA = ROOT / "ck_kv.lua"
OPS = ("put", "get", "get-lease")  # get = linearizable (ReadIndex); get-lease = lease read
PROTOCOLS = ("raft", "multipaxos", "pbft", "zab")  # what the server runs (docs/server.md)
# Node options a protocol needs on real processes (none so far: PBFT signs with Ed25519 on
# a server by default).  PBFT wants n >= 4 (f = 1); --nodes 4 compares it with Raft.
PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {}


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
    load: str = ""  # wrk or python
    loadavg_before: str = ""  # /proc/loadavg (1, 5, 15 min) when the point started
    # Node CPU (user + system) per answered request, microseconds; "*" marks the leader.
    cpu_us_per_op: dict[str, float] = field(default_factory=dict)
    protocol: str = ""  # consensuskit's protocol (raft / multipaxos / zab); "" for etcd
    # consensuskit: the node the point drove (the leader when it started) and how many
    # elections (term / ballot changes) happened during it.
    leader: str = ""
    elections: int = 0
    # consensuskit: per node, what its /metrics say about the point (see ``health``):
    # the worst loop lag and peer silence (upper bucket bound, s), fsyncs over 100 ms.
    health: dict[str, dict[str, float]] = field(default_factory=dict)
    round: int = 1  # --rounds: which round measured it (ratios pair points of one round)
    # The whole machine during the point (/proc/stat), percent of its CPU time: "steal" is
    # time the hypervisor gave another guest while ours wanted to run, "idle" what nobody
    # used.  A round slower than its neighbours with steal up was the machine, not us.
    machine: dict[str, float] = field(default_factory=dict)


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
        consistency = "lease" if op == "get-lease" else "linearizable"
        return "GET", f"{self.url}/v1/kv/{key}?consistency={consistency}", {}, None


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


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3) if match else float("nan")


def run_wrk(target: Target, op: str, concurrency: int, seconds: float) -> Point:
    """One wrk run (its own process, -t1 for c=1 else -t2) against ``target``."""
    threads = 1 if concurrency == 1 else 2
    if isinstance(target, EtcdTarget):
        script, env = SHARED_BENCH / "etcd_kv.lua", {"KV_OP": "put" if op == "put" else "range"}
    else:
        consistency = "lease" if op == "get-lease" else "linearizable"
        script, env = CK_LUA, {"KV_OP": "put" if op == "put" else "get", "KV_CONSISTENCY": consistency}
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    done = subprocess.run(
        [*command, target.url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=seconds + 60,
    )
    out = done.stdout
    total = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if total is None or rps is None:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or out.strip()}")
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    requests = int(total.group(1))
    elapsed = float(total.group(2)) * (60.0 if total.group(3) == "m" else 1.0)
    ok = requests - (int(non2xx.group(1)) if non2xx else 0)
    first_error = None
    if non2xx:
        first_error = f"{non2xx.group(1)} non-2xx answers"
    elif sock:
        first_error = f"socket errors {sock.group(0)}"
    return Point(
        system=target.name,
        nodes=0,
        op=op,
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        ok=ok,
        errors=errors,
        ops_per_s=round(ok / elapsed, 1) if elapsed else 0.0,
        p50_ms=_ms(pct.get("50", "")),
        p99_ms=_ms(pct.get("99", "")),
        first_error=first_error,
        load="wrk",
    )


def run_python(target: Target, op: str, concurrency: int, seconds: float) -> Point:
    """The asyncio generator in a process of its own (uvloop), so it does not share an
    interpreter with anything else."""
    spec = {
        "system": target.name,
        "url": target.url,
        "op": op,
        "concurrency": concurrency,
        "seconds": seconds,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--drive", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-2000:]}")
    point = Point(**json.loads(done.stdout.strip().splitlines()[-1]))
    point.load = "python"
    return point


def drive_in_this_process(spec_json: str) -> int:
    spec = json.loads(spec_json)
    kind = EtcdTarget if spec["system"] == "etcd" else ConsensuskitTarget
    target = kind(spec["url"], 1000, 16)
    coro = drive(target, spec["op"], spec["concurrency"], spec["seconds"])
    try:
        import uvloop

        point = uvloop.run(coro)
    except ImportError:  # pragma: no cover
        point = asyncio.run(coro)
    print(json.dumps(asdict(point)))
    return 0


_SAMPLE = re.compile(r'^consensuskit_(loop_lag|peer_gap|fsync)_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)
_GC = re.compile(r'^consensuskit_gc_(seconds_total|max_seconds)\{generation="2"\} (\S+)$', re.M)
Samples = dict[tuple[str, str], float]  # (histogram, le) -> cumulative count; ("gc", ...)


def scrape(url: str) -> Samples:
    """The loop-lag, peer-gap and fsync histogram buckets of one node's /metrics."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    samples = {(name, le): float(value) for name, le, value in _SAMPLE.findall(text)}
    samples.update((("gc", name), float(value)) for name, value in _GC.findall(text))
    return samples


def _worst(before: Samples, after: Samples, name: str) -> float:
    """The smallest bucket bound that holds every observation of ``name`` made between
    the two scrapes (0: none; inf: beyond the last bound)."""
    total = after.get((name, "+Inf"), 0.0) - before.get((name, "+Inf"), 0.0)
    if not total:
        return 0.0
    bounds = sorted((le for (n, le) in after if n == name and le != "+Inf"), key=float)
    for le in bounds:
        if after[(name, le)] - before.get((name, le), 0.0) >= total:
            return float(le)
    return float("inf")


def health(before: dict[str, Samples], after: dict[str, Samples]) -> dict[str, dict[str, float]]:
    """Per node, during a point: the worst loop lag and peer silence (bucket upper bounds,
    seconds), how many fsyncs took over 100 ms, the seconds spent in full garbage
    collections and the longest one so far (since the node started)."""
    out = {}
    for node, now in after.items():
        was = before.get(node, {})
        slow = (now.get(("fsync", "+Inf"), 0.0) - was.get(("fsync", "+Inf"), 0.0)) - (
            now.get(("fsync", "0.1"), 0.0) - was.get(("fsync", "0.1"), 0.0)
        )
        out[node] = {
            "lag": _worst(was, now, "loop_lag"),
            "gap": _worst(was, now, "peer_gap"),
            "slow_fsync": slow,
            "gc_s": round(now.get(("gc", "seconds_total"), 0.0) - was.get(("gc", "seconds_total"), 0.0), 3),
            "gc_max_s": round(now.get(("gc", "max_seconds"), 0.0), 3),
        }
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


# /proc/stat's "cpu" line, in order: user nice system idle iowait irq softirq steal (guest
# time is already counted in user and nice).
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> dict[str, int]:
    """The whole machine's CPU time by kind, in clock ticks (empty where /proc is not)."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return {}
    return dict(zip(_STAT_FIELDS, map(int, line[1 : 1 + len(_STAT_FIELDS)]), strict=False))


def machine_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Steal and idle (idle + iowait) over an interval, percent of all CPU time in it."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in _STAT_FIELDS}
    total = sum(delta.values())
    if not before or not after or total <= 0:
        return {}
    return {
        "steal_pct": round(100 * delta["steal"] / total, 1),
        "idle_pct": round(100 * (delta["idle"] + delta["iowait"]) / total, 1),
    }


def run_matrix(
    target: Target,
    nodes: int,
    ops: list[str],
    levels: list[int],
    seconds: float,
    console: Console,
    *,
    load: str,
    pids: dict[str, int] | None = None,
    protocol: str = "",
    locate: Any = None,
    probe: Any = None,
) -> list[Point]:
    """``locate()`` (consensuskit) -> (leader id, its URL, generation): called before each
    point so the load follows a leader change, and after it to count elections.
    ``probe()`` -> each node's /metrics samples, before and after the point (``health``)."""
    asyncio.run(preload(target))
    points = []
    tick = os.sysconf("SC_CLK_TCK")
    for op in ops:
        if op == "get-lease" and isinstance(target, EtcdTarget):
            continue  # etcd's gateway has no lease read
        for c in levels:
            loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            leader, generation = "", 0
            if locate is not None:
                leader, target.url, generation = locate()
            before = {name: cpu_ticks(pid) for name, pid in (pids or {}).items()}
            scraped = probe() if probe is not None else {}
            machine = machine_ticks()
            point = (run_wrk if load == "wrk" else run_python)(target, op, c, seconds)
            point.machine = machine_shares(machine, machine_ticks())
            if probe is not None:
                point.health = health(scraped, probe())
            if locate is not None:
                point.leader = leader
                point.elections = max(0, locate()[2] - generation)
            if point.ok:
                point.cpu_us_per_op = {
                    name: round((cpu_ticks(pid) - before[name]) / tick * 1e6 / point.ok, 1)
                    for name, pid in (pids or {}).items()
                }
            point.nodes = nodes
            point.protocol = protocol
            point.loadavg_before = loadavg
            points.append(point)
            note = f" ({point.errors} errors, first: {point.first_error})" if point.errors else ""
            if point.elections:
                note += f" [{point.elections} election(s) during the point; drove {point.leader}]"
            cpu = "  cpu/op " + ", ".join(f"{k} {v:.0f}us" for k, v in point.cpu_us_per_op.items())
            if point.machine.get("steal_pct", 0) >= 1:
                note += f" [steal {point.machine['steal_pct']:g}% of the machine's CPU]"
            console.print(
                f"  {target.name}{'/' + protocol if protocol else ''} n={nodes} {op} c={c}: "
                f"{point.ops_per_s:,.0f}/s "
                f"p50 {point.p50_ms:.2f} ms p99 {point.p99_ms:.2f} ms{note}"
                + (cpu if point.cpu_us_per_op else "")
            )
            if point.health:
                console.print(
                    "    health (worst loop lag / peer silence, upper bound s; fsyncs > 100 ms; "
                    "full GC s, longest): "
                    + "; ".join(
                        f"{n} lag<={h['lag']:g} gap<={h['gap']:g} slow-fsync {h['slow_fsync']:g}"
                        f" gc {h['gc_s']:g}/{h['gc_max_s']:g}"
                        for n, h in sorted(point.health.items())
                    )
                )
    return points


# ---------------------------------------------------------------------- systems
def bench_consensuskit(
    nodes: int,
    ops: list[str],
    levels: list[int],
    seconds: float,
    console: Console,
    options: dict[str, Any],
    load: str,
    protocol: str = "raft",
) -> list[Point]:
    with tempfile.TemporaryDirectory(prefix="ck-bench-") as tmp:
        layout = ClusterLayout.prepare(
            Path(tmp),
            nodes,
            free_base_port(2 * nodes),
            node_options={"log_level": "warning", **options},
            protocol=protocol,
        )
        with LocalCluster(layout) as cluster:
            cluster.start()
            leader = cluster.wait_for_leader(30)
            console.print(
                f"[bold]consensuskit[/] {protocol}, {nodes} nodes, leader {leader} ({cluster.url(leader)})"
            )
            pids = {
                (f"{node_id}*" if node_id == leader else node_id): proc.pid
                for node_id, proc in sorted(cluster.nodes.items())
                if proc.pid is not None
            }

            def locate() -> tuple[str, str, int]:
                now = cluster.wait_for_leader(30)
                status = cluster.statuses().get(now)
                generation = status.get("generation", 0) if isinstance(status, dict) else 0
                return now, cluster.url(now), int(generation or 0)

            def probe() -> dict[str, Samples]:
                return {node_id: scrape(cluster.url(node_id)) for node_id in sorted(cluster.nodes)}

            return run_matrix(
                ConsensuskitTarget(cluster.url(leader), 1000, 16),
                nodes,
                ops,
                levels,
                seconds,
                console,
                load=load,
                pids=pids,
                protocol=protocol,
                locate=locate,
                probe=probe,
            )


def etcd_script() -> Path | None:
    script = SHARED_BENCH / "start_etcd_cluster.sh"
    return script if shutil.which("etcd") and script.exists() else None


def bench_etcd(
    nodes: int, ops: list[str], levels: list[int], seconds: float, console: Console, load: str
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
        return run_matrix(EtcdTarget(leader, 1000, 16), nodes, ops, levels, seconds, console, load=load)
    finally:
        subprocess.run([str(script), "stop"], capture_output=True)


def bench_zookeeper(nodes: int, seconds: float, console: Console) -> dict[str, Any] | None:
    """ZooKeeper itself (zookeeper_anchor.py), or None with the reason printed."""
    sys.path.insert(0, str(ROOT))
    import zookeeper_anchor

    reason = zookeeper_anchor.unavailable()
    if reason is not None:
        console.print(f"[yellow]ZooKeeper not measured:[/] {reason}")
        return None
    try:
        result = zookeeper_anchor.measure(nodes, seconds)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        console.print(f"[red]ZooKeeper run failed:[/] {exc}")
        return None
    console.print(
        f"[bold]ZooKeeper[/] {nodes} servers: {result['ops_per_s']:,.0f} sets/s, "
        f"{result['errors']} errors, kazoo client CPU {' '.join(result['client_cpu'])}"
    )
    return result


def zookeeper_table(points: list[Point], zookeeper: dict[int, dict[str, Any]], console: Console) -> None:
    table = Table(
        title="ZAB here vs ZooKeeper 3.8 (puts; ZooKeeper: kazoo sets, 4 processes x 512 in flight)"
    )
    for col in ("nodes", "ZooKeeper sets/s", "zab puts/s c=64", "zab puts/s c=256", "best zab / ZooKeeper"):
        table.add_column(col, justify="right")
    for n, zk in sorted(zookeeper.items()):
        ours = {
            p.concurrency: p.ops_per_s
            for p in points
            if p.protocol == "zab" and p.nodes == n and p.op == "put"
        }
        best = max(ours.values(), default=0.0)
        table.add_row(
            str(n),
            f"{zk['ops_per_s']:,.0f}",
            f"{ours[64]:,.0f}" if 64 in ours else "",
            f"{ours[256]:,.0f}" if 256 in ours else "",
            f"{best / zk['ops_per_s']:.2f}" if zk["ops_per_s"] else "",
        )
    console.print(table)


def machine_load(wait: float = 0) -> str | None:
    """quiet.sh's verdict (after waiting up to ``wait`` s for an idle machine) and the load average."""
    quiet = SHARED_BENCH / "quiet.sh"
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if not quiet.exists():
        return f"loadavg {loadavg}"
    command = [str(quiet), "wait", f"{wait:g}"] if wait else [str(quiet)]
    done = subprocess.run(command, capture_output=True, text=True)
    return f"{done.stdout.strip()}; loadavg before waiting {loadavg}"


# ---------------------------------------------------------------------- report
def _etcd_points(points: list[Point]) -> dict[tuple[int, int, str, int], Point]:
    """etcd's points by (round, nodes, op, concurrency): what ours are compared with."""
    return {(p.round, p.nodes, p.op, p.concurrency): p for p in points if p.system == "etcd"}


OP_NAMES = {"put": "put", "get": "get (lin.)", "get-lease": "get (lease)"}


def report(points: list[Point], console: Console) -> Table:
    etcd = _etcd_points(points)
    rounds = max((p.round for p in points), default=1)
    table = Table(title="key-value throughput (loopback, fsync on, 16-byte values, 1000 keys)")
    columns = ("system", "protocol", "nodes", "op", "conc.", "ops/s", "p50 ms", "p99 ms", "errors", "vs etcd")
    if rounds > 1:
        columns = ("round", *columns)
    for col in columns:
        table.add_column(col, justify="left" if col in ("system", "protocol", "op") else "right")
    for p in points:
        other = etcd.get((p.round, p.nodes, p.op, p.concurrency))
        ratio = (
            f"{p.ops_per_s / other.ops_per_s:.2f}" if p.system != "etcd" and other and other.ops_per_s else ""
        )
        row = (
            p.system,
            p.protocol,
            str(p.nodes),
            OP_NAMES[p.op],
            str(p.concurrency),
            f"{p.ops_per_s:,.0f}",
            f"{p.p50_ms:.2f}",
            f"{p.p99_ms:.2f}",
            str(p.errors),
            ratio,
        )
        table.add_row(*((str(p.round), *row) if rounds > 1 else row))
    console.print(table)
    return table


def ratios(points: list[Point]) -> list[dict[str, Any]]:
    etcd = _etcd_points(points)
    out = []
    for p in points:
        other = etcd.get((p.round, p.nodes, p.op, p.concurrency))
        if p.system == "consensuskit" and other and other.ops_per_s:
            out.append(
                {
                    "round": p.round,
                    "protocol": p.protocol,
                    "nodes": p.nodes,
                    "op": p.op,
                    "concurrency": p.concurrency,
                    "throughput_ratio": round(p.ops_per_s / other.ops_per_s, 3),
                    "p50_ratio": round(p.p50_ms / other.p50_ms, 3) if other.p50_ms else None,
                    "p99_ratio": round(p.p99_ms / other.p99_ms, 3) if other.p99_ms else None,
                    "errors": p.errors,
                    # The machine's steal during our point and during etcd's (percent).
                    "steal_pct": p.machine.get("steal_pct"),
                    "etcd_steal_pct": other.machine.get("steal_pct"),
                }
            )
    return out


def round_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ratios()`` rows grouped over rounds: per (protocol, nodes, op, concurrency) the
    throughput ratio of each round, its minimum and median, and the rounds in which our
    p99 was no worse than etcd's and nothing failed."""
    groups: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["protocol"], row["nodes"], row["op"], row["concurrency"]), []).append(row)
    out = []
    for (protocol, nodes, op, concurrency), group in groups.items():
        group.sort(key=lambda r: r["round"])
        values = [r["throughput_ratio"] for r in group]
        out.append(
            {
                "protocol": protocol,
                "nodes": nodes,
                "op": op,
                "concurrency": concurrency,
                "throughput_ratios": values,
                "min": min(values),
                "median": round(statistics.median(values), 3),
                "rounds": len(group),
                "p99_no_worse_rounds": sum(
                    1 for r in group if r["p99_ratio"] is not None and r["p99_ratio"] <= 1.0
                ),
                "error_free_rounds": sum(1 for r in group if r["errors"] == 0),
            }
        )
    return out


def summary_table(summary: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="ours / etcd, round by round (each ratio pairs points of one round)")
    columns = ("protocol", "nodes", "op", "conc.", "ratio per round", "min", "median")
    columns += ("p99 <= etcd", "no errors")
    for col in columns:
        table.add_column(col, justify="left" if col in ("protocol", "op", "ratio per round") else "right")
    for s in summary:
        table.add_row(
            s["protocol"],
            str(s["nodes"]),
            OP_NAMES[s["op"]],
            str(s["concurrency"]),
            " / ".join(f"{v:.2f}" for v in s["throughput_ratios"]),
            f"{s['min']:.2f}",
            f"{s['median']:.2f}",
            f"{s['p99_no_worse_rounds']}/{s['rounds']}",
            f"{s['error_free_rounds']}/{s['rounds']}",
        )
    console.print(table)


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def bench_etcd_api(
    nodes: int, protocol: str, concurrency: int, seconds: float, with_etcd: bool, console: Console
) -> list[dict[str, Any]]:
    """The etcd v3 API rows (issue 15): ``benchmarks/etcd_api.py``'s measurement of the
    JSON gateway (wrk, etcd's own script) and gRPC (one Python generator for both), for
    consensuskit (``--service etcd``) and, when installed, etcd, in this run."""
    import etcd_api  # beside this script (run as one, its directory is on sys.path)

    api_args = argparse.Namespace(
        nodes=nodes,
        protocol=protocol,
        concurrency=concurrency,
        duration=seconds,
        paths=["gateway", "grpc"],
        ops=["put", "get"],
    )
    waited = machine_load(0)
    console.print(f"machine before the etcd API rows: {waited}")
    rows = etcd_api.bench_consensuskit(api_args, console)
    if with_etcd:
        rows += etcd_api.bench_etcd(api_args, console)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default=None, help="cluster sizes, comma list (default 3,5; --quick: 3)")
    parser.add_argument("--concurrency", default="1,16,64,256", help="comma list (default 1,16,64,256)")
    parser.add_argument(
        "--ops", default="put,get", help="comma list of put, get (linearizable), get-lease (default put,get)"
    )
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default=None,
        help="load generator (default: wrk when installed, else the asyncio one)",
    )
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for an idle machine")
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # internal: one point of the asyncio generator
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (default 10; --quick: 2)"
    )
    parser.add_argument(
        "--protocol",
        default="raft,multipaxos,zab",
        help="consensuskit protocols, comma list (default all three)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run: 3 nodes, 2 s per point")
    parser.add_argument("--no-etcd", action="store_true", help="skip etcd even when it is installed")
    parser.add_argument(
        "--zookeeper", action="store_true", help="also measure ZooKeeper 3.8 itself (needs zab in --protocol)"
    )
    parser.add_argument(
        "--option", action="append", default=[], help="node setting KEY=JSON, e.g. fsync=false"
    )
    parser.add_argument(
        "--etcd-api",
        action="store_true",
        help="also the etcd v3 API's paths (JSON gateway and gRPC, puts and linearizable ranges at "
        "concurrency 64), consensuskit on the first --protocol beside etcd (benchmarks/etcd_api.py)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every system this many times, alternating; ratios pair points of one round",
    )
    parser.add_argument("--json", default=str(RESULTS), help=f"where to write results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.drive:
        return drive_in_this_process(args.drive)

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    nodes = parse_list(args.nodes or ("3" if args.quick else "3,5"))
    levels = parse_list(args.concurrency)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in ops if o not in OPS]
    if bad or not ops or not levels or not nodes:
        parser.error(f"bad --ops/--concurrency/--nodes (ops: {', '.join(OPS)}; got {args.ops!r})")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    if not protocols or any(p not in PROTOCOLS for p in protocols):
        parser.error(f"bad --protocol {args.protocol!r}; valid: {', '.join(PROTOCOLS)}")
    load = args.load or ("wrk" if shutil.which("wrk") else "python")
    if load == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), use --load python")
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
    zookeeper: dict[int, dict[str, Any]] = {}
    machine_before: list[str] = []
    for n, round_ in itertools.product(nodes, range(1, args.rounds + 1)):
        tag = f" round {round_}" if args.rounds > 1 else ""
        measured: list[Point] = []
        for protocol in protocols:
            waited = machine_load(args.quiet_wait)
            console.print(f"machine before consensuskit/{protocol} n={n}{tag}: {waited}")
            machine_before.append(f"consensuskit/{protocol} n={n}{tag}: {waited}")
            own = {**PROTOCOL_OPTIONS.get(protocol, {}), **options}
            measured += bench_consensuskit(n, ops, levels, seconds, console, own, load, protocol)
        if with_etcd:
            waited = machine_load(args.quiet_wait)
            console.print(f"machine before etcd n={n}{tag}: {waited}")
            machine_before.append(f"etcd n={n}{tag}: {waited}")
            measured += bench_etcd(n, ops, levels, seconds, console, load)
        for point in measured:
            point.round = round_
        points += measured
        if args.zookeeper and "zab" in protocols and round_ == 1:
            waited = machine_load(args.quiet_wait)
            console.print(f"machine before zookeeper n={n}: {waited}")
            machine_before.append(f"zookeeper n={n}: {waited}")
            result = bench_zookeeper(n, seconds, console)
            if result is not None:
                zookeeper[n] = result
    etcd_api_rows: list[dict[str, Any]] = []
    if args.etcd_api:
        etcd_api_rows = bench_etcd_api(nodes[0], protocols[0], 64, seconds, with_etcd, console)
    report(points, console)
    ratio_rows = ratios(points)
    summary = round_summary(ratio_rows) if args.rounds > 1 else []
    if summary:
        summary_table(summary, console)
    if zookeeper:
        zookeeper_table(points, zookeeper, console)
    if etcd_api_rows:
        import etcd_api

        etcd_api.report(etcd_api_rows, console)
    doc = {
        "benchmark": "kv_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "machine_load_before": load_before,
        "machine_before_each_system": machine_before,
        "load_generator": load,
        "settings": {
            "nodes": nodes,
            "protocols": protocols,
            "concurrency": levels,
            "ops": ops,
            "seconds_per_point": seconds,
            "rounds": args.rounds,
            "keys": 1000,
            "value_bytes": 16,
            "node_options": options,
            "etcd": with_etcd,
        },
        "points": [asdict(p) for p in points],
        "ratios_vs_etcd": ratio_rows,
        "ratios_over_rounds": summary,
        "zookeeper": {str(n): r for n, r in zookeeper.items()},
        "etcd_api": etcd_api_rows,
    }
    out = Path(args.json)
    write_json(out, doc)
    console.print(f"results written to {out}")
    return 0 if all(p.ok > 0 for p in points) else 1


if __name__ == "__main__":
    sys.exit(main())
