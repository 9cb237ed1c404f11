"""Memory of the key-value server: a million keys, and a follower that stops answering.

Part 1 (``load``): a local cluster of real processes (3 nodes, fsync on) takes
``--keys`` distinct keys (default 1,000,000) with ``--value-bytes`` values (default 100),
written by wrk at concurrency 64, each key once, in order.  Reports every node's
resident memory (VmRSS from /proc/PID/status; psutil is not needed) after the load and
its peak (VmHWM), and the highest VmRSS sampled during the load.  Target: < 500 MB.

Part 2 (``stopped-follower``): a fresh cluster under a steady put load; after a
warm-up one follower is frozen (SIGSTOP) for ``--stop-seconds`` while the load goes
on, then resumed.  The leader's VmRSS is sampled throughout: what bounds it is Raft's
in-flight window per follower (max_inflight_msgs), the transport's bounded queue per
peer, and snapshots compacting the log whatever the frozen follower holds (it catches
up from a snapshot).  Reports the growth while the follower was frozen and whether the
follower caught up after.

    python benchmarks/kv_memory.py                       # both parts, 1M keys, 30 s stop
    python benchmarks/kv_memory.py --keys 200000 --stop-seconds 10 --part load

Part 1 also reports what a large state costs the service while it grows: the worst
write latency (wrk's p99 and maximum, per run), every node's worst event-loop lag, its
garbage collections (full ones, seconds in all, the longest pause) from its /metrics,
and the elections.  Nodes run with the server's defaults (a 1 s election timeout,
heartbeats every 0.1 s).  This benchmark used to raise the timeout to 2 s: a snapshot of
a million keys held a node's loop for one to two seconds (docs/server.md, "Timers on a
real machine").  The load passes when no leader changed.  etcd takes the same load in the
same run (the anchor; ``--no-etcd`` skips it): its members' memory, the writes' worst
p99 and maximum, its leader changes.

``--service etcd`` runs part 1 on the etcd v3 API service instead (MVCC: revisions and
per-key histories), written through its JSON gateway with the same requests etcd takes;
its memory is reported, but the 500 MB target is the kv service's.
Writes JSON to benchmarks/results/kv_memory.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kv_throughput import _ms  # wrk's durations, read one way
from results_file import write_json

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "kv_memory.json"
SHARED_BENCH = ROOT.parent.parent / "shared" / "bench"
TARGET_MB = 500.0
NODE_OPTIONS: dict[str, Any] = {}  # the server's defaults

# Sequential keys: each request takes the next index (wrap-around after KV_KEYS),
# starting at KV_START; both loaders below build on it.
_NEXT_KEY_LUA = """
local nkeys = tonumber(os.getenv("KV_KEYS"))
local start = tonumber(os.getenv("KV_START") or "0")
local counter = 0
local function next_key()
  local i = (start + counter) % nkeys
  counter = counter + 1
  return string.format("key%07d", i)
end
"""

LOADER_LUA = (
    _NEXT_KEY_LUA
    + """
local value = string.rep("v", tonumber(os.getenv("KV_VSIZE")))
local headers = { ["Content-Type"] = "application/octet-stream" }
function request()
  return wrk.format("PUT", "/v1/kv/" .. next_key(), headers, value)
end
"""
)


# The same keys and values through etcd's v3 JSON gateway (base64 key and value).
ETCD_LOADER_LUA = (
    _NEXT_KEY_LUA
    + """
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64chars:sub(math.floor(n / 262144) % 64 + 1, math.floor(n / 262144) % 64 + 1)
      .. b64chars:sub(math.floor(n / 4096) % 64 + 1, math.floor(n / 4096) % 64 + 1)
      .. (b and b64chars:sub(math.floor(n / 64) % 64 + 1, math.floor(n / 64) % 64 + 1) or "=")
      .. (c and b64chars:sub(n % 64 + 1, n % 64 + 1) or "=")
  end
  return table.concat(out)
end
local value = b64(string.rep("v", tonumber(os.getenv("KV_VSIZE"))))
local headers = { ["Content-Type"] = "application/json" }
function request()
  local body = '{"key":"' .. b64(next_key()) .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
"""
)
ETCD_SCRIPT = SHARED_BENCH / "start_etcd_cluster.sh"
ETCD_PIDS = Path(os.environ.get("ETCD_DATA_ROOT", f"{tempfile.gettempdir()}/anchors/etcd-data")) / "pids"


def vm(pid: int, field: str = "VmRSS") -> float:
    """A /proc/PID/status memory field in MB (0 when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


class Sampler(threading.Thread):
    """VmRSS of some processes every ``period`` seconds: the maximum and a time series."""

    def __init__(self, pids: dict[str, int], period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.period = period
        self.max_mb = dict.fromkeys(pids, 0.0)
        self.series: list[tuple[float, dict[str, float]]] = []
        self.marks: list[tuple[float, str]] = []
        self._stop_event = threading.Event()
        self._start = time.monotonic()

    def mark(self, what: str) -> None:
        self.marks.append((round(time.monotonic() - self._start, 2), what))

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = {name: round(vm(pid), 1) for name, pid in self.pids.items()}
            for name, mb in now.items():
                self.max_mb[name] = max(self.max_mb[name], mb)
            self.series.append((round(time.monotonic() - self._start, 2), now))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def max_between(self, name: str, t0: float, t1: float) -> float:
        return max((s[name] for t, s in self.series if t0 <= t <= t1), default=0.0)


def wrk_put(
    url: str, lua: Path, env: dict[str, str], seconds: float, concurrency: int = 64
) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", "-s", str(lua), url]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=seconds + 60
    )
    out = done.stdout
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if total is None:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or out.strip()}")
    bad = int(non2xx.group(1)) if non2xx else 0
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    latency = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.MULTILINE)
    return {
        "requests": int(total.group(1)),
        "errors": bad,
        "ops_per_s": float(rps.group(1)) if rps else 0.0,
        "p99_ms": _ms(p99.group(1)) if p99 else float("nan"),
        "max_ms": _ms(latency.group(1)) if latency else float("nan"),
    }


# name, its one label's value if any (generation="2", kind="snapshot"), value.
_METRIC = re.compile(r'^consensuskit_(\w+?)(?:\{\w+="([\w-]*)"\})? (\S+)$', re.MULTILINE)


def stalls(url: str) -> dict[str, Any]:
    """One node's stall figures from its /metrics: worst loop lag, elections it started,
    its term, its full collections, its seconds of collection and the longest pause, the
    snapshots it took and those it restored (installed from the leader)."""
    text = metrics_text(url)
    return parse_stalls(text) if text is not None else {"error": f"{url}/metrics unreadable"}


def metrics_text(url: str) -> str | None:
    """The /metrics page of the server at ``url`` (ours or etcd), or None."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return None


def parse_stalls(text: str) -> dict[str, Any]:
    """``stalls`` from the text of a /metrics page."""
    plain: dict[str, float] = {}
    labelled: dict[str, dict[str, float]] = {}  # by generation, by kind...
    for name, label, value in _METRIC.findall(text):
        if label:
            labelled.setdefault(name, {})[label] = float(value)
        else:
            plain[name] = float(value)
    events = labelled.get("events_total", {})
    return {
        "loop_lag_max_s": round(plain.get("loop_lag_max_seconds", float("nan")), 3),
        "elections": int(plain.get("elections_total", 0)),
        "term": int(plain.get("term", 0)),
        "full_gcs": int(labelled.get("gc_collections_total", {}).get("2", 0)),
        "gc_s": round(sum(labelled.get("gc_seconds_total", {}).values()), 2),
        "gc_max_s": round(max(labelled.get("gc_max_seconds", {}).values(), default=0.0), 3),
        "snapshots": int(events.get("snapshot", 0)),
        "restores": int(events.get("restore", 0)),
    }


def start_cluster(root: Path, nodes: int, console: Console, service: str = "kv") -> tuple[LocalCluster, str]:
    options: dict[str, Any] = {"log_level": "warning", "options": NODE_OPTIONS}
    if service != "kv":
        options["service"] = service
    # Client and peer ports, and one more listener per node for etcd's gRPC.
    layout = ClusterLayout.prepare(root, nodes, free_base_port(3 * nodes), node_options=options)
    cluster = LocalCluster(layout)
    cluster.start()
    leader = cluster.wait_for_leader(30)
    console.print(f"cluster of {nodes} in {root}, leader {leader}")
    return cluster, leader


def node_pids(cluster: LocalCluster, leader: str) -> dict[str, int]:
    return {
        (f"{node_id}*" if node_id == leader else node_id): proc.pid
        for node_id, proc in sorted(cluster.nodes.items())
        if proc.pid is not None
    }


def wait_applied(cluster: LocalCluster, timeout: float) -> dict[str, Any]:
    """Wait until every node applied what the leader committed; the statuses."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = cluster.statuses(timeout=5)
        good = {k: v for k, v in statuses.items() if isinstance(v, dict)}
        commits = [s["commit"] for s in good.values() if s.get("role") == "leader"]
        if commits and len(good) == len(statuses) and all(s["applied"] >= commits[0] for s in good.values()):
            return good
        if time.monotonic() > deadline:
            return good
        time.sleep(0.5)


def load_keys(
    url: str,
    lua: Path,
    args: argparse.Namespace,
    pids: dict[str, int],
    console: Console,
    died: Any = lambda: [],
) -> dict[str, Any]:
    """Write ``args.keys`` keys through ``url`` with wrk runs of ``lua``: the errors and
    the worst p99 and maximum latency of any run."""
    done = errors = 0
    worst_p99 = worst_max = 0.0
    # Each wrk run continues where the last one's answered requests ended; a run's
    # unanswered tail (at most `concurrency` requests) is written again by the next.
    while done < args.keys:
        env = {"KV_KEYS": str(args.keys), "KV_VSIZE": str(args.value_bytes), "KV_START": str(done)}
        left = args.keys - done
        seconds = max(3, min(60, left // 3000))  # wrk takes whole seconds
        result = wrk_put(url, lua, env, seconds, args.concurrency)
        done += max(0, result["requests"] - args.concurrency)
        errors += result["errors"]
        worst_p99 = max(worst_p99, result["p99_ms"])
        worst_max = max(worst_max, result["max_ms"])
        console.print(
            f"  loaded {min(done, args.keys):,}/{args.keys:,} keys ({result['ops_per_s']:,.0f}/s, "
            f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms, "
            f"{result['errors']} errors); VmRSS now "
            + ", ".join(f"{k} {vm(p):.0f} MB" for k, p in pids.items())
        )
        dead = died()
        if dead:
            raise RuntimeError(f"a node died: {dead}")
    return {"errors": errors, "worst_p99_ms": worst_p99, "worst_max_ms": worst_max}


# ---------------------------------------------------------------------- part 1
def part_load(args: argparse.Namespace, work: Path, console: Console) -> dict[str, Any]:
    cluster, leader = start_cluster(work / "load", args.nodes, console, args.service)
    with cluster:
        pids = node_pids(cluster, leader)
        start_term = stalls(cluster.url(leader)).get("term", 0)
        lua = work / "loader.lua"
        lua.write_text(ETCD_LOADER_LUA if args.service == "etcd" else LOADER_LUA)
        sampler = Sampler(pids, period=1.0)
        sampler.start()
        started = time.monotonic()
        loaded = load_keys(
            cluster.url(leader),
            lua,
            args,
            pids,
            console,
            died=lambda: [n.node_id for n in cluster.dead_nodes()],
        )
        load_seconds = time.monotonic() - started
        statuses = wait_applied(cluster, 120)
        health = {node_id: stalls(cluster.url(node_id)) for node_id in sorted(cluster.nodes)}
        time.sleep(2)
        sampler.stop()
        probes_ok = True
        for key in ("key0000000", f"key{args.keys - 1:07d}"):
            try:
                probes_ok = probes_ok and read_value(cluster, key, args.service) == "v" * args.value_bytes
            except Exception as exc:  # a missing key or an unreachable leader: reported, not fatal
                console.print(f"  probe {key}: {exc}")
                probes_ok = False
        nodes = {
            name: {
                "rss_mb": round(vm(pid), 1),
                "peak_rss_mb": round(vm(pid, "VmHWM"), 1),
                "max_sampled_rss_mb": sampler.max_mb[name],
                "applied": statuses.get(name.rstrip("*"), {}).get("applied"),
                "snapshot_index": statuses.get(name.rstrip("*"), {}).get("snapshot_index"),
                **health[name.rstrip("*")],
            }
            for name, pid in pids.items()
        }
        end_term = max((n.get("term", 0) for n in nodes.values()), default=0)
        return {
            "service": args.service,
            "keys": args.keys,
            "value_bytes": args.value_bytes,
            "load_seconds": round(load_seconds, 1),
            "load_errors": loaded["errors"],
            "worst_p99_ms": loaded["worst_p99_ms"],
            "worst_max_ms": loaded["worst_max_ms"],
            # A term that moved during the load is a leader that fell over.
            "terms": [start_term, end_term],
            "leader_kept": end_term == start_term,
            "probe_values_ok": probes_ok,
            "nodes": nodes,
            "under_target": all(n["rss_mb"] < TARGET_MB for n in nodes.values()),
            "peak_under_target": all(n["peak_rss_mb"] < TARGET_MB for n in nodes.values()),
        }


def read_value(cluster: LocalCluster, key: str, service: str) -> str | None:
    """A key's value read back, linearizably: the kv client, or etcd's JSON gateway."""
    if service != "etcd":
        check = cluster.client()
        try:
            return check.get(key).value  # type: ignore[no-any-return]
        finally:
            check.close()
    leader = cluster.wait_for_leader(10)
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(
        f"{cluster.url(leader)}/v3/kv/range", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        kvs = json.loads(resp.read()).get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def part_load_etcd(args: argparse.Namespace, work: Path, console: Console) -> dict[str, Any] | None:
    """Part 1's load on etcd (the anchor, same machine, same run), or None with the reason
    printed: its members' memory, the writes' worst p99 and maximum, its leader changes."""
    if not (shutil.which("etcd") and ETCD_SCRIPT.exists()):
        console.print(
            "[yellow]etcd not measured:[/] needs etcd (apt-get install etcd-server) and ../shared/bench"
        )
        return None
    subprocess.run([str(ETCD_SCRIPT), "stop"], capture_output=True)
    started = subprocess.run([str(ETCD_SCRIPT), str(args.nodes)], capture_output=True, text=True)
    if started.returncode != 0:
        console.print(f"[red]etcd did not start:[/] {started.stderr.strip() or started.stdout.strip()}")
        return None
    try:
        leader = subprocess.run([str(ETCD_SCRIPT), "leader"], capture_output=True, text=True).stdout.strip()
        leader = leader.splitlines()[0] if leader else "http://127.0.0.1:23010"
        members = [int(line) for line in ETCD_PIDS.read_text().split()]
        pids = {f"m{i}": pid for i, pid in enumerate(members, 1)}
        console.print(f"etcd: {len(members)} members, leader {leader}")
        lua = work / "etcd_loader.lua"
        lua.write_text(ETCD_LOADER_LUA)
        changes_before = _etcd_leader_changes(leader)
        t0 = time.monotonic()
        loaded = load_keys(leader, lua, args, pids, console)
        load_seconds = time.monotonic() - t0
        time.sleep(2)
        return {
            "keys": args.keys,
            "load_seconds": round(load_seconds, 1),
            "load_errors": loaded["errors"],
            "worst_p99_ms": loaded["worst_p99_ms"],
            "worst_max_ms": loaded["worst_max_ms"],
            "leader_changes": _etcd_leader_changes(leader) - changes_before,
            "members": {
                name: {"rss_mb": round(vm(pid), 1), "peak_rss_mb": round(vm(pid, "VmHWM"), 1)}
                for name, pid in pids.items()
            },
        }
    finally:
        subprocess.run([str(ETCD_SCRIPT), "stop"], capture_output=True)


def _etcd_leader_changes(url: str) -> int:
    """etcd_server_leader_changes_seen_total of the member at ``url`` (-1: unreadable)."""
    text = metrics_text(url)
    if text is None:
        return -1
    match = re.search(r"^etcd_server_leader_changes_seen_total (\S+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else -1


# ---------------------------------------------------------------------- part 2
def part_stopped_follower(args: argparse.Namespace, work: Path, console: Console) -> dict[str, Any]:
    cluster, leader = start_cluster(work / "stop", args.nodes, console)
    with cluster:
        pids = node_pids(cluster, leader)
        victim = next(n for n in sorted(cluster.nodes) if n != leader)
        lua = ROOT / "ck_kv.lua"
        env = {"KV_OP": "put", "KV_KEYS": str(args.stop_keys), "KV_VSIZE": str(args.value_bytes)}
        url = cluster.url(leader)
        sampler = Sampler({"leader": pids[f"{leader}*"]}, period=0.25)
        sampler.start()
        sampler.mark("warm-up")
        warm = wrk_put(url, lua, env, args.warmup_seconds)
        baseline = vm(pids[f"{leader}*"])
        t_stop = time.monotonic() - sampler._start
        sampler.mark(f"SIGSTOP {victim}")
        cluster.nodes[victim].signal(signal.SIGSTOP)
        try:
            during = wrk_put(url, lua, env, args.stop_seconds)
        finally:
            t_cont = time.monotonic() - sampler._start
            cluster.nodes[victim].signal(signal.SIGCONT)
            sampler.mark(f"SIGCONT {victim}")
        at_resume = vm(pids[f"{leader}*"])
        after = wrk_put(url, lua, env, args.warmup_seconds)
        caught_up = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = cluster.statuses(timeout=5).get(leader)
            peer = status.get("peers", {}).get(victim, {}) if isinstance(status, dict) else {}
            if peer.get("match") is not None and peer["match"] >= status["commit"] - 1:
                caught_up = True
                break
            time.sleep(0.5)
        sampler.mark("follower caught up" if caught_up else "follower did not catch up")
        time.sleep(1)
        sampler.stop()
        max_during = sampler.max_between("leader", t_stop, t_cont)
        growth = max_during - baseline
        return {
            "stopped": victim,
            "stop_seconds": args.stop_seconds,
            "keys": args.stop_keys,
            "value_bytes": args.value_bytes,
            "load_ops_per_s": {
                "warm_up": warm["ops_per_s"],
                "stopped": during["ops_per_s"],
                "after": after["ops_per_s"],
            },
            "writes_while_stopped": during["requests"],
            "errors": warm["errors"] + during["errors"] + after["errors"],
            "leader_rss_mb": {
                "before_stop": round(baseline, 1),
                "max_while_stopped": max_during,
                "at_resume": round(at_resume, 1),
                "max_overall": sampler.max_mb["leader"],
                "end": round(vm(pids[f"{leader}*"]), 1),
            },
            "growth_while_stopped_mb": round(growth, 1),
            "bound_mb": args.bound_mb,
            "bounded": growth <= args.bound_mb,
            "follower_caught_up": caught_up,
            "marks": sampler.marks,
            "leader_rss_series": [
                (t, s["leader"]) for t, s in sampler.series[:: max(1, len(sampler.series) // 200)]
            ],
        }


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--part", choices=("both", "load", "stopped-follower"), default="both")
    parser.add_argument("--stop-seconds", type=float, default=30.0)
    parser.add_argument("--stop-keys", type=int, default=1000, help="keyspace of the part-2 load")
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--bound-mb", type=float, default=64.0, help="allowed leader growth in part 2")
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    parser.add_argument("--no-etcd", action="store_true", help="skip etcd's run of part 1 (the anchor)")
    parser.add_argument(
        "--service", choices=("kv", "etcd"), default="kv", help="the service part 1 loads (etcd: --part load)"
    )
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--workdir", help="keep the clusters (data, node logs) here instead of a temp dir")
    args = parser.parse_args(argv)
    if args.service != "kv" and args.part != "load":
        parser.error(f"--service {args.service} runs part 1 only: add --part load")
    console = Console(highlight=False, width=120)
    if not shutil.which("wrk"):
        console.print("wrk is not installed (apt-get install wrk)")
        return 2
    quiet = SHARED_BENCH / "quiet.sh"
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    waited = (
        subprocess.run(
            [str(quiet), "wait", f"{args.quiet_wait:g}"], capture_output=True, text=True
        ).stdout.strip()
        if quiet.exists()
        else ""
    )
    console.print(f"machine: {waited}; loadavg {loadavg}")
    doc: dict[str, Any] = {
        "benchmark": "kv_memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "machine_before": waited,
        "loadavg_before": loadavg,
        "settings": {**{k: v for k, v in vars(args).items() if k != "json"}, "node_options": NODE_OPTIONS},
        "target_mb": TARGET_MB,
    }
    with tempfile.TemporaryDirectory(prefix="ck-mem-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.part in ("both", "load"):
            doc["load"] = part_load(args, work, console)
            if not args.no_etcd:
                doc["load_etcd"] = part_load_etcd(args, work, console)
        if args.part in ("both", "stopped-follower"):
            doc["stopped_follower"] = part_stopped_follower(args, work, console)
    table = Table(title="memory (VmRSS, MB)")
    for col in ("measurement", "node", "MB", "note"):
        table.add_column(col)
    if "load" in doc:
        for name, n in doc["load"]["nodes"].items():
            note = f"peak {n['peak_rss_mb']:.0f}, max sampled {n['max_sampled_rss_mb']:.0f}"
            table.add_row(
                f"{doc['load']['keys']:,} keys x {args.value_bytes} B", name, f"{n['rss_mb']:.0f}", note
            )
    if "load" in doc:
        load = doc["load"]
        stall_table = Table(
            title=f"while {load['keys']:,} keys were written ({load['service']} service): writes p99 <= "
            f"{load['worst_p99_ms']:.0f} ms, max {load['worst_max_ms']:.0f} ms (worst wrk run); "
            f"term {load['terms'][0]} -> {load['terms'][1]}"
        )
        columns = ("node", "loop lag max s", "full GCs", "GC s", "longest GC s", "elections started")
        for col in (*columns, "snapshots taken / installed"):
            stall_table.add_column(col)
        for name, n in load["nodes"].items():
            stall_table.add_row(
                name,
                f"{n.get('loop_lag_max_s', float('nan')):.3f}",
                str(n.get("full_gcs", "?")),
                f"{n.get('gc_s', float('nan')):.1f}",
                f"{n.get('gc_max_s', float('nan')):.3f}",
                str(n.get("elections", "?")),
                f"{n.get('snapshots', '?')} / {n.get('restores', '?')}",
            )
        console.print(stall_table)
    etcd = doc.get("load_etcd")
    if etcd:
        console.print(
            f"etcd, the same {etcd['keys']:,} keys: writes p99 <= {etcd['worst_p99_ms']:.0f} ms, "
            f"max {etcd['worst_max_ms']:.0f} ms (worst wrk run), {etcd['load_errors']} errors, "
            f"{etcd['leader_changes']} leader changes, "
            + ", ".join(f"{k} {m['rss_mb']:.0f} MB" for k, m in etcd["members"].items())
        )
    if "stopped_follower" in doc:
        s = doc["stopped_follower"]
        rss = s["leader_rss_mb"]
        table.add_row(
            f"follower {s['stopped']} stopped {s['stop_seconds']:g} s",
            "leader",
            f"{rss['before_stop']:.0f} -> {rss['max_while_stopped']:.0f}",
            f"growth {s['growth_while_stopped_mb']:.1f} MB (bound {s['bound_mb']:g}); "
            f"caught up: {s['follower_caught_up']}",
        )
    console.print(table)
    out = Path(args.json)
    write_json(out, doc)
    console.print(f"results written to {out}")
    load = doc.get("load", {})
    ok = (
        (load.get("under_target", True) or load.get("service") != "kv")  # the target is kv's
        and load.get("leader_kept", True)
        and doc.get("stopped_follower", {}).get("bounded", True)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
