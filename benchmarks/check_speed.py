"""Linearizability checker speed: every supplied Porcupine history, then synthetic kv
histories, then the simulator's histories of long faulty runs.

Porcupine's files (tests/data/porcupine, listed with their expected verdicts in
verdicts.tsv) are read and checked one by one, and each verdict is asserted.  The
synthetic histories (check/linearizability/synthetic.py) have 1k, 10k and 100k
operations over 100 keys from 16 concurrent clients and are linearizable by
construction; they are checked with the kv model.  The simulated ones are 5-node runs
of 30 virtual seconds with every fault: three ZAB runs with 6 clients (``consensuskit sim
zab --duration 30 --clients 6 --nemesis all --seed S``), a Multi-Paxos run with 16 and
three Raft runs with 32: few keys and dozens of unanswered operations per key, the
histories whose search is exponential without the reductions for unanswered operations
(search.py); before them, these took minutes each.  Goals from the issue: every etcd
history decided in under 5 s, the 100k-operation history in under 30 s.

    python benchmarks/check_speed.py [--quick] [--workers N] [--timeout S] [--json-out PATH] [--profile]

``--quick`` skips the 100k history.  Times include reading the history (the file, or
the records for synthetic ones); generating a synthetic history is timed apart.  The
exit status is 1 if any verdict is wrong, whatever the times.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import io
import json
import os
import platform
import pstats
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensuskit.check.linearizability import check_history, check_operations, model_for, read_history
from consensuskit.check.linearizability.synthetic import generate_kv_history
from results_file import write_json

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "porcupine"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "check_speed.json"
GOAL_ETCD_SECONDS = 5.0
GOAL_100K_SECONDS = 30.0
SYNTHETIC_SIZES = (1_000, 10_000, 100_000)
SYNTHETIC_KEYS = 100
SYNTHETIC_CLIENTS = 16
# (protocol, seed, clients) of the simulated runs, all linearizable: the three ZAB seeds
# of 150 whose histories the checker could not decide in 60 s before the first three
# reductions for unanswered operations (docs/linearizability.md); a Multi-Paxos seed of
# a 16-client sweep that took 325 s and a Raft seed of a 32-client one that got no
# verdict in 60 s before the second search order; a 32-client Raft seed whose long
# keys only the first order decides in seconds; and a 32-client Raft seed none of whose
# three keys got a verdict in 60 s before forced moves and the memo by dominance.
SIMULATED = (
    ("zab", 30006, 6),
    ("zab", 30029, 6),
    ("zab", 30104, 6),
    ("multipaxos", 261054, 16),
    ("raft", 240010, 32),
    ("raft", 240005, 32),
    ("raft", 240042, 32),
)
# verdicts.tsv's model column -> (reader format, checker model)
PORCUPINE_KINDS = {
    "etcd-register": ("porcupine-etcd", "cas-register"),
    "kv-get-put-append": ("porcupine-kv", "kv"),
}
EXPECTED = {"linearizable": "ok", "NOT-linearizable": "illegal"}


@dataclass(slots=True)
class Case:
    name: str
    kind: str  # porcupine-etcd / porcupine-kv / synthetic
    expected: str | None  # ok / illegal, None: no verdict to assert
    goal: float | None  # seconds
    path: Path | None = None
    model: str = "kv"
    ops: int = 0  # synthetic only: how many to generate
    protocol: str = ""  # simulated only: the run's protocol and seed
    seed: int = 0
    clients: int = 6


def porcupine_cases() -> list[Case]:
    cases = []
    lines = (DATA / "verdicts.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        name, kind, expected = line.split("\t")
        fmt, model = PORCUPINE_KINDS[kind]
        goal = GOAL_ETCD_SECONDS if fmt == "porcupine-etcd" else None
        cases.append(Case(name, fmt, EXPECTED.get(expected), goal, DATA / name, model))
    return cases


def synthetic_cases(quick: bool) -> list[Case]:
    sizes = [n for n in SYNTHETIC_SIZES if not (quick and n >= 100_000)]
    return [
        Case(f"synthetic {n // 1000}k", "synthetic", "ok", GOAL_100K_SECONDS if n == 100_000 else None, ops=n)
        for n in sizes
    ]


def simulated_cases() -> list[Case]:
    return [
        Case(
            f"sim {protocol} 30 s seed {seed}" + (f" {clients} clients" if clients != 6 else ""),
            "simulated",
            "ok",
            None,
            protocol=protocol,
            seed=seed,
            clients=clients,
        )
        for protocol, seed, clients in SIMULATED
    ]


def simulated_history(case: Case) -> list[dict[str, Any]]:
    from consensuskit.cli import build_config
    from consensuskit.sim import Simulation

    config = build_config(case.protocol, 5, case.seed, 30.0, case.clients, "all", None)
    config = dataclasses.replace(config, check_linearizability=False)
    return [record.to_dict() for record in Simulation(config).run().history]


def run_case(case: Case, workers: int | None, timeout: float | None) -> dict[str, Any]:
    made = None
    if case.kind == "simulated":
        t0 = time.perf_counter()
        records = simulated_history(case)
        made = time.perf_counter() - t0
        size = sum(len(json.dumps(r)) + 1 for r in records)
        t0 = time.perf_counter()
        result = check_history(records, model="kv", workers=workers, timeout=timeout)
    elif case.kind == "synthetic":
        t0 = time.perf_counter()
        records = generate_kv_history(case.ops, SYNTHETIC_KEYS, SYNTHETIC_CLIENTS, seed=0)
        made = time.perf_counter() - t0
        size = sum(len(json.dumps(r)) + 1 for r in records)  # as JSON lines
        t0 = time.perf_counter()
        result = check_history(records, model="kv", workers=workers, timeout=timeout)
    else:
        assert case.path is not None
        size = case.path.stat().st_size
        t0 = time.perf_counter()
        ops = read_history(case.path, case.kind)
        result = check_operations(ops, model_for(case.model, case.kind), workers=workers, timeout=timeout)
    seconds = time.perf_counter() - t0
    return {
        "name": case.name,
        "kind": case.kind,
        "model": result.model,
        "bytes": size,
        "ops": result.ops,
        "parts": len(result.partitions),
        "expected": case.expected,
        "verdict": result.verdict,
        "verdict_ok": case.expected is None or result.verdict == case.expected,
        "seconds": round(seconds, 4),
        "check_seconds": round(result.seconds, 4),
        "generate_seconds": round(made, 4) if made is not None else None,
        "goal_seconds": case.goal,
        "meets_goal": None if case.goal is None else seconds < case.goal,
    }


def profile(ops: int, top: int) -> str:
    """cProfile of one synthetic check in this process (workers=1), own time first."""
    records = generate_kv_history(ops, SYNTHETIC_KEYS, SYNTHETIC_CLIENTS, seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        check_history(records, model="kv", workers=1)
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    per_file: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = filename.split("/src/")[-1] if "/src/" in filename else filename
        per_file[key] = per_file.get(key, 0.0) + tottime
    total = sum(per_file.values()) or 1.0
    out.write(f"own time per file (synthetic {ops} operations, one process):\n")
    for name, secs in sorted(per_file.items(), key=lambda kv: -kv[1])[:12]:
        out.write(f"  {100 * secs / total:5.1f}%  {secs:7.3f} s  {name}\n")
    out.write("\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100k-operation history")
    parser.add_argument("--workers", type=int, default=None, help="process pool cap (default: all cores)")
    parser.add_argument("--timeout", type=float, default=120.0, help="budget per history, seconds")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--profile", action="store_true", help="profile the largest synthetic check too")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    # A table too wide for a pipe's 80 columns would wrap every row.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    cases = porcupine_cases() + synthetic_cases(args.quick) + simulated_cases()
    rows: list[dict[str, Any]] = []
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("checking", total=len(cases))
        for case in cases:
            progress.update(task, description=case.name)
            rows.append(run_case(case, args.workers, args.timeout))
            progress.advance(task)

    table = Table(title=f"Linearizability checker, {os.cpu_count()} cores, workers={args.workers or 'all'}")
    for col in ("history", "size", "ops", "parts", "verdict", "seconds", "goal"):
        table.add_column(col, justify="left" if col in ("history", "verdict") else "right", no_wrap=True)
    for row in rows:
        verdict = {"ok": "linearizable", "illegal": "NOT linearizable"}.get(row["verdict"], row["verdict"])
        if not row["verdict_ok"]:
            verdict = f"[red]{verdict} (expected {row['expected']})[/]"
        elif row["expected"] is None:
            verdict = f"{verdict} [dim](no expected verdict)[/]"
        goal = ""
        if row["goal_seconds"] is not None:
            mark = "[green]met[/]" if row["meets_goal"] else "[red]MISSED[/]"
            goal = f"< {row['goal_seconds']:g} s {mark}"
        table.add_row(
            row["name"],
            _size(row["bytes"]),
            f"{row['ops']:,}",
            str(row["parts"]),
            verdict,
            f"{row['seconds']:.3f}",
            goal,
        )
    console.print(table)

    etcd = [r for r in rows if r["kind"] == "porcupine-etcd"]
    wrong = [r for r in rows if not r["verdict_ok"]]
    if etcd:
        slowest = max(etcd, key=lambda r: r["seconds"])
        missed = sum(1 for r in etcd if not r["meets_goal"])
        console.print(
            f"etcd histories: {len(etcd)}, slowest {slowest['name']} {slowest['seconds']:.3f} s, "
            f"total {sum(r['seconds'] for r in etcd):.2f} s — goal < {GOAL_ETCD_SECONDS:g} s each: "
            + ("[green]met[/]" if not missed else f"[red]missed by {missed}[/]")
        )
    for r in rows:
        if r["kind"] == "synthetic" and r["goal_seconds"] is not None:
            state = "[green]met[/]" if r["meets_goal"] else "[red]MISSED[/]"
            console.print(f"{r['name']}: {r['seconds']:.2f} s — goal < {r['goal_seconds']:g} s: {state}")
    made = [f"{r['name']} {r['generate_seconds']:.2f} s" for r in rows if r["generate_seconds"] is not None]
    if made:
        console.print(f"[dim]histories generated in (not counted): {', '.join(made)}[/]")
    if args.quick:
        console.print("[dim]--quick: the 100k-operation history was skipped[/]")
    console.print(
        f"verdicts: {len(rows) - len(wrong)} of {len(rows)} as expected"
        + ("" if not wrong else f", [red]WRONG: {', '.join(r['name'] for r in wrong)}[/]")
    )

    doc = {
        "benchmark": "check_speed",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "timeout": args.timeout,
        "quick": args.quick,
        "goals": {"etcd_each_seconds": GOAL_ETCD_SECONDS, "synthetic_100k_seconds": GOAL_100K_SECONDS},
        "synthetic": {"keys": SYNTHETIC_KEYS, "clients": SYNTHETIC_CLIENTS, "seed": 0},
        "results": rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    if args.profile:
        print(profile(max(n for n in SYNTHETIC_SIZES if not (args.quick and n >= 100_000)), 25))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
