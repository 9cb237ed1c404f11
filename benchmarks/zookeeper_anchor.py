"""ZooKeeper itself, measured in the same run as our ZAB: the anchor for issue 12's figures.

Starts a ZooKeeper 3.8 ensemble on loopback (Debian's ``zookeeper`` package, forceSync on,
through ../shared/bench/start_zk_ensemble.sh), drives it with ../shared/bench/zk_bench.py
(kazoo, a pure-Python client, from ``--procs`` processes with ``--window`` sets in flight
each: 1000 znodes, 16-byte values) and stops it.  ``kv_throughput.py --zookeeper`` calls
``measure`` between its own points so both systems meet the same machine state; this
script alone prints one figure:

    python benchmarks/zookeeper_anchor.py --nodes 3 --duration 10 [--to follower] [--json-out F]

Needs: ``apt-get install zookeeper default-jre-headless`` and ``pip install kazoo`` (the
``bench`` extra).  ``unavailable()`` names what is missing instead of failing a run.
The load generator differs from our wrk load (kazoo's per-request Python cost can bound
it: the per-process client CPU is reported), so the ratio is indicative, as the shared
bench README says.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SHARED_BENCH = ROOT.parent.parent / "shared" / "bench"
ENSEMBLE = SHARED_BENCH / "start_zk_ensemble.sh"
ZK_BENCH = SHARED_BENCH / "zk_bench.py"
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


def unavailable() -> str | None:
    """Why ZooKeeper cannot be measured here, or None when it can."""
    if not ENSEMBLE.exists() or not ZK_BENCH.exists():
        return f"the shared bench scripts are missing ({SHARED_BENCH})"
    if not ZK_JAR.exists():
        return "ZooKeeper is not installed (apt-get install zookeeper default-jre-headless)"
    if shutil.which("java") is None:
        return "no java on PATH (apt-get install default-jre-headless)"
    if importlib.util.find_spec("kazoo") is None:
        return "kazoo is not installed (pip install -e '.[bench]')"
    return None


def _script(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["bash", str(ENSEMBLE), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"start_zk_ensemble.sh {' '.join(args)}: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def measure(
    nodes: int = 3,
    duration: float = 10.0,
    procs: int = 4,
    window: int = 512,
    to: str = "leader",
    base_port: int = 25000,
) -> dict[str, Any]:
    """Start an ensemble, run the kazoo load against its leader (or a follower), stop it.

    Returns zk_bench.py's RESULT record (``ops_per_s``, ``errors``, ``lat_median_ms``,
    ``lat_p99_ms``, ``client_cpu``) plus ``nodes`` and ``to``."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if to not in ("leader", "follower"):
        raise ValueError(f"to must be leader or follower, not {to!r}")
    with tempfile.TemporaryDirectory(prefix="zk-anchor-") as data:
        env = {**os.environ, "ZK_DATA_ROOT": data, "ZK_BASE_PORT": str(base_port)}
        _script(env, str(nodes), timeout=180)
        try:
            leader = _script(env, "leader").splitlines()[0]
            hosts = _script(env, "hosts").split(",")
            target = leader if to == "leader" or nodes == 1 else next(h for h in hosts if h != leader)
            done = subprocess.run(
                [
                    sys.executable, str(ZK_BENCH), "--hosts", target, "--procs", str(procs),
                    "--window", str(window), "--duration", str(duration),
                ],
                capture_output=True, text=True, timeout=duration + 300,
            )  # fmt: skip
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                raise RuntimeError(f"zk_bench.py failed: {done.stderr.strip()[-400:]}")
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
        finally:
            _script(env, "stop")
    result.update(nodes=nodes, to=to)
    return result


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--to", choices=("leader", "follower"), default="leader")
    ap.add_argument("--json-out", help="write the result here as JSON")
    args = ap.parse_args(argv)
    if args.nodes < 1 or args.duration <= 0 or args.procs < 1 or args.window < 1:
        ap.error("--nodes, --procs and --window must be positive, --duration above 0")
    reason = unavailable()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    result = measure(args.nodes, args.duration, args.procs, args.window, args.to)
    table = Table(title=f"ZooKeeper {args.nodes} servers, kazoo from {args.procs} processes")
    for col in ("to", "sets/s", "errors", "p50 ms (1 in flight)", "p99 ms", "client CPU"):
        table.add_column(col)
    table.add_row(
        result["to"], f"{result['ops_per_s']:,.0f}", str(result["errors"]), f"{result['lat_median_ms']:.2f}",
        f"{result['lat_p99_ms']:.2f}", " ".join(result["client_cpu"]),
    )  # fmt: skip
    Console().print(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
