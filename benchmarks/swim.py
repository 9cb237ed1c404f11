"""SWIM with Lifeguard in the simulator: detection time and load against group size, and
false positives with Lifeguard on and off.

Two sweeps, each a set of ``consensuskit sim swim`` runs (the membership monitor,
check/swim_monitor.py, measures them):

  * size: n = 10 .. 1000 (``--sizes``), one member in ten crashed per run (at most
    ``--crashes``), no loss:
    periods to first and to full detection (mean and p99 over the crashes of all seeds)
    and messages per member per period.  SWIM's claims: first detection about
    e/(e-1) ~ 1.58 periods and a constant per-member load, whatever n;
  * accuracy: n = ``--accuracy-nodes`` with ``--slow`` CPU-starved members and ``--loss``,
    Lifeguard on and off: false positives (live members declared dead), those of healthy
    members, and per member-hour.  Lifeguard's claim: far fewer (">50x" in its tests).

    python benchmarks/swim.py [--quick] [--sizes 10,30,100,300,1000] [--seeds 2]
        [--json-out PATH] [--plot docs/img/swim.png]

``--quick`` runs n = 10, 30, 100 and one accuracy seed.  n = 10,000 does not fit on a
2-core, 24 GB machine: every member's view holds all n members (n^2 records, about 11 GB),
and building them alone takes about 15 minutes (README, SWIM section).  Results depend on the machine
only through wall time; the figures are deterministic per seed.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consensuskit.check.swim_monitor import summary
from consensuskit.sim import SimConfig, Simulation
from results_file import write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "swim.json"
E_OVER_E_MINUS_1 = 1.582


def run_once(nodes: int, seed: int, duration: float, **flags: Any) -> dict[str, Any]:
    config = SimConfig(
        protocol="swim",
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        seed=seed,
        duration=duration,
        settle=0.0,
        clients=0,
        flags=flags,
    )
    sim = Simulation(config)
    start = time.perf_counter()
    result = sim.run()
    wall = time.perf_counter() - start
    detections = [
        ((c.first - c.at) / sim.monitor.period, (c.full - c.at) / sim.monitor.period if c.full else None)
        for c in sim.monitor.crashes
        if c.first is not None
    ]
    return {
        "nodes": nodes,
        "seed": seed,
        "ok": result.ok,
        "violations": result.invariant_violations,
        "wall_seconds": round(wall, 2),
        "events": result.events,
        "metrics": result.metrics,
        "detections": detections,
    }


def size_sweep(
    sizes: list[int], seeds: int, crashes: int, duration: float, progress: Progress
) -> list[dict[str, Any]]:
    rows = []
    task = progress.add_task("size sweep", total=len(sizes) * seeds)
    for n in sizes:
        runs = []
        for seed in range(seeds):
            progress.update(task, description=f"n={n} seed={seed}")
            # About one member in ten crashes (at most --crashes): samples where they are cheap.
            runs.append(run_once(n, seed, duration, crashes=max(1, min(crashes, n // 10))))
            progress.advance(task)
        first = [d[0] for r in runs for d in r["detections"]]
        full = [d[1] for r in runs for d in r["detections"] if d[1] is not None]
        msgs = [r["metrics"]["messages_per_member_per_period"] for r in runs]
        rows.append(
            {
                "nodes": n,
                "runs": len(runs),
                "crashes": sum(r["metrics"]["crashes"] for r in runs),
                "first_detection_periods": summary(first),
                "full_detection_periods": summary(full),
                "messages_per_member_per_period": round(sum(msgs) / len(msgs), 3),
                "false_positives": sum(r["metrics"]["false_positives"] for r in runs),
                "ok": all(r["ok"] for r in runs),
                "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
            }
        )
    return rows


def accuracy_sweep(
    nodes: int, seeds: int, slow: int, loss: float, duration: float, progress: Progress
) -> list[dict[str, Any]]:
    rows = []
    task = progress.add_task("accuracy", total=2 * seeds)
    for lifeguard in (False, True):
        runs = []
        for seed in range(seeds):
            progress.update(task, description=f"lifeguard={'on' if lifeguard else 'off'} seed={seed}")
            runs.append(run_once(nodes, seed, duration, slow_members=slow, loss=loss, lifeguard=lifeguard))
            progress.advance(task)
        fp = sum(r["metrics"]["false_positives"] for r in runs)
        healthy = sum(r["metrics"]["false_positives_healthy"] for r in runs)
        hours = nodes * duration * len(runs) / 3600
        rows.append(
            {
                "lifeguard": lifeguard,
                "nodes": nodes,
                "slow_members": slow,
                "loss": loss,
                "runs": len(runs),
                "false_positives": fp,
                "false_positives_healthy": healthy,
                "false_positives_per_member_hour": round(fp / hours, 3),
                "healthy_per_member_hour": round(healthy / hours, 3),
                "messages_per_member_per_period": round(
                    sum(r["metrics"]["messages_per_member_per_period"] for r in runs) / len(runs), 3
                ),
                "ok": all(r["ok"] for r in runs),
            }
        )
    return rows


def plot(sizes: list[dict[str, Any]], accuracy: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    ns = [r["nodes"] for r in sizes]
    ax1.plot(ns, [r["first_detection_periods"]["mean"] for r in sizes], "o-", label="first (mean)")
    ax1.plot(ns, [r["full_detection_periods"]["mean"] for r in sizes], "s-", label="every member (mean)")
    ax1.axhline(E_OVER_E_MINUS_1, ls="--", c="gray", label="e/(e-1): SWIM, synchronous rounds")
    ax1.axhline(2.0, ls=":", c="black", label="2: unsynchronised members")
    ax1.set_xscale("log")
    ax1.set_xlabel("members")
    ax1.set_ylabel("probe periods to suspicion")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [r["messages_per_member_per_period"] for r in sizes], "o-")
    ax2.set_xscale("log")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("members")
    ax2.set_ylabel("messages / member / period")
    labels = ["off", "on"]
    ax3.bar([0, 1], [r["false_positives_healthy"] for r in accuracy], color=["tab:red", "tab:green"])
    ax3.set_xticks([0, 1], [f"Lifeguard {x}" for x in labels])
    n = accuracy[0]["nodes"] if accuracy else 0
    ax3.set_ylabel(f"healthy members declared dead (n={n})")
    fig.suptitle("SWIM in the consensuskit simulator")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="10,30,100,300,1000")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--accuracy-nodes", type=int, default=50)
    parser.add_argument("--slow", type=int, default=5)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--accuracy-duration", type=float, default=300.0)
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, default=None, help="Write the figure here (PNG).")
    args = parser.parse_args()
    sizes = [10, 30, 100] if args.quick else [int(s) for s in args.sizes.split(",")]
    seeds = 1 if args.quick else args.seeds
    console = Console()
    with Progress(console=console, transient=True) as progress:
        size_rows = size_sweep(sizes, seeds, args.crashes, args.duration, progress)
        accuracy_rows = accuracy_sweep(
            args.accuracy_nodes, seeds, args.slow, args.loss, args.accuracy_duration, progress
        )

    table = Table(title=f"SWIM + Lifeguard: detection and load ({seeds} seed(s) per size, no loss)")
    for col in (
        "n",
        "crashes",
        "first mean",
        "first p99",
        "full mean",
        "full p99",
        "msgs/member/period",
        "ok",
        "wall s",
    ):
        table.add_column(col, justify="right")
    for r in size_rows:
        table.add_row(
            str(r["nodes"]),
            str(r["crashes"]),
            f"{r['first_detection_periods']['mean']}",
            f"{r['first_detection_periods']['p99']}",
            f"{r['full_detection_periods']['mean']}",
            f"{r['full_detection_periods']['p99']}",
            f"{r['messages_per_member_per_period']}",
            "yes" if r["ok"] else "NO",
            f"{r['wall_seconds']}",
        )
    console.print(table)
    acc = Table(
        title=f"False positives, n={args.accuracy_nodes}, {args.slow} slow members, loss {args.loss}, "
        f"{args.accuracy_duration:g} s x {seeds} seed(s)"
    )
    for col in (
        "Lifeguard",
        "declared dead",
        "healthy ones",
        "per member-hour",
        "healthy per member-hour",
        "msgs/member/period",
    ):
        acc.add_column(col, justify="right")
    for r in accuracy_rows:
        acc.add_row(
            "on" if r["lifeguard"] else "off",
            str(r["false_positives"]),
            str(r["false_positives_healthy"]),
            str(r["false_positives_per_member_hour"]),
            str(r["healthy_per_member_hour"]),
            str(r["messages_per_member_per_period"]),
        )
    console.print(acc)
    doc = {
        "benchmark": "swim",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": size_rows,
        "accuracy": accuracy_rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    if args.plot is not None:
        plot(size_rows, accuracy_rows, args.plot)
        console.print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
