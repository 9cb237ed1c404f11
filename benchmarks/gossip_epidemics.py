"""Rumor mongering as Demers et al. (PODC 1987) measure it, our cycle model beside the
paper's Tables 1-3 (n = 1000), and a scale run.

  * tables: for every tabulated variant, the paper's residue s, traffic m, t_ave, t_last
    and ours (mean ± standard error over --runs epidemics); then push-pull and
    connection-limit variants the paper discusses in prose only (no paper column);
  * scale: one rumor through --scale-nodes sites (default 100,000), push with fan-out 3,
    sites never lose interest; wall time and the process's peak memory (ru_maxrss);
  * anti-entropy bytes: one push-pull exchange between two gossip nodes of the simulator
    sharing 1,000 / 10,000 / 100,000 entries and differing in 10 keys each way, by full
    state and by Merkle digests;
  * rounds vs n: cycles until every site knows, n = 10^2 ... 10^5 (fan-out 3), against
    log4(n) + ln(n)/3 (Pittel's estimate for push with fan-out 3: log base 1+f plus ln n / f);
    a matplotlib PNG (default docs/img/gossip_rounds_vs_n.png).

Prints rich tables and writes JSON (default benchmarks/results/gossip_epidemics.json).

    python benchmarks/gossip_epidemics.py [--runs 100] [--seed 1] [--json-out FILE]
                                          [--plot FILE] [--scale-nodes 100000]
                                          [--skip-tables] [--skip-scale]
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consensuskit.cli_gossip import run_rngs
from consensuskit.protocols.gossip import TABLES, PaperRow, RumorConfig, measure, run_rumor
from consensuskit.protocols.gossip.demers_tables import T_AVE_UNMATCHED, t_ave_ceiling
from results_file import write_json

ROOT = Path(__file__).resolve().parent.parent
EXTRA = [
    *(RumorConfig(mode="push-pull", k=k) for k in (1, 2, 3)),
    *(RumorConfig(k=k, connection_limit=1) for k in (1, 2, 3)),
    *(RumorConfig(mode="pull", k=k, connection_limit=1) for k in (1, 2, 3)),
    *(RumorConfig(mode=mode, k=1, connection_limit=1, hunt=100) for mode in ("push", "pull")),
]
SIZES = (100, 316, 1000, 3162, 10_000, 31_623, 100_000)
STATES = (1_000, 10_000, 100_000)


def exchange_bytes(state: int, differ: int, exchange: str) -> int:
    """Bytes of one push-pull anti-entropy exchange between two gossip nodes of the
    simulator that share ``state`` entries and differ in ``differ`` keys each way."""
    from consensuskit.check.gossip import GOSSIP_TYPES
    from consensuskit.core.messages import encode
    from consensuskit.protocols.gossip.messages import Entry
    from consensuskit.sim import SimConfig, Simulation

    options = {"rumor": False, "anti_entropy_period": 0, "exchange": exchange, "mode": "push-pull"}
    sim = Simulation(SimConfig(protocol="gossip", node_ids=("a", "b"), seed=1, options=options))
    shared = [Entry(key=f"key-{i}", counter=1, origin="x", value=i) for i in range(state)]
    sim.nodes["a"].replica.merge_all(
        [*shared, *(Entry(key=f"a-{i}", counter=1, origin="a") for i in range(differ))]
    )
    sim.nodes["b"].replica.merge_all(
        [*shared, *(Entry(key=f"b-{i}", counter=1, origin="b") for i in range(differ))]
    )
    sent = [0]

    def count(src: str, dst: str, msg: object) -> None:
        if isinstance(msg, GOSSIP_TYPES):
            sent[0] += len(encode(msg))

    sim.add_filter(count)
    sim.invoke("a", lambda node: node.anti_entropy_now(), "anti-entropy now")
    sim.run_for(1.0)
    assert sim.nodes["a"].digest() == sim.nodes["b"].digest()
    sim.close()
    return sent[0]


def exchanges(console: Console) -> list[dict[str, Any]]:
    table = Table(title="One push-pull anti-entropy exchange, 10 differing keys each way (bytes)")
    for column in ("shared entries", "full state", "Merkle digests", "full / digests"):
        table.add_column(column, justify="right")
    out = []
    for state in STATES:
        full, digest = exchange_bytes(state, 10, "full"), exchange_bytes(state, 10, "digest")
        table.add_row(f"{state:,}", f"{full:,}", f"{digest:,}", f"{full / digest:,.0f}x")
        out.append({"shared": state, "differ": 10, "full_bytes": full, "digest_bytes": digest})
    console.print(table)
    return out


def _fmt(value: float) -> str:
    return f"{value:.2e}" if 0 < abs(value) < 0.01 else f"{value:.3g}"


def _ours(figures: dict[str, Any], name: str, runs: int) -> str:
    spread = figures[name]
    return f"{_fmt(spread.mean)} ± {spread.stdev / math.sqrt(runs):.1g}"


def tables(runs: int, seed: int, console: Console) -> list[dict[str, Any]]:
    rows: list[tuple[PaperRow | None, RumorConfig]] = [(row, row.config) for table in TABLES for row in table]
    rows += [(None, cfg) for cfg in EXTRA]
    out: list[dict[str, Any]] = []
    table = Table(title=f"Rumor mongering, n = 1000: the paper vs ours (mean ± s.e., {runs} runs)")
    for column in (
        "source",
        "variant",
        "s paper",
        "s ours",
        "m paper",
        "m ours",
        "t_ave paper",
        "t_ave ours",
        "t_last paper",
        "t_last ours",
    ):
        text = column in ("source", "variant")
        table.add_column(column, justify="left" if text else "right", no_wrap=text)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("variants", total=len(rows))
        for paper, cfg in rows:
            figures = measure(cfg, run_rngs(seed, runs))
            source = paper.table.split(":")[0] if paper else "prose only"
            dagger = " †" if paper and source in T_AVE_UNMATCHED else ""
            table.add_row(
                source,
                cfg.label,
                _fmt(paper.residue) if paper else "—",
                _ours(figures, "residue", runs),
                _fmt(paper.traffic) if paper else "—",
                _ours(figures, "traffic", runs),
                (_fmt(paper.t_ave) + dagger) if paper else "—",
                _ours(figures, "t_ave", runs),
                _fmt(paper.t_last) if paper else "—",
                _ours(figures, "t_last", runs),
            )
            out.append(
                {
                    "source": source,
                    "variant": cfg.label,
                    "paper": None
                    if paper is None
                    else {
                        "residue": paper.residue,
                        "traffic": paper.traffic,
                        "t_ave": paper.t_ave,
                        "t_last": paper.t_last,
                    },
                    "ours": {name: value.as_dict() for name, value in figures.items()},
                }
            )
            progress.advance(task)
    console.print(table)
    first = TABLES[0][0]
    allowed = " / ".join(f"{t_ave_ceiling(first, row):.2f}" for row in TABLES[0][1:])
    console.print(
        "† the paper's t_ave for Tables 1-2 runs 1-2.7 cycles above ours; s, m and t_last agree. "
        f"Table 1's own k=1 row, s and t_last allow it at most {allowed} for k = 2..5 "
        "(protocols/gossip/demers_tables.py)."
    )
    return out


def scale(nodes: int, seed: int, console: Console) -> dict[str, Any]:
    cfg = RumorConfig(n=nodes, mode="push", interest="forever", fanout=3)
    start = time.perf_counter()
    run = run_rumor(cfg, run_rngs(seed, 1)[0])
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    doc = {
        "nodes": nodes,
        "fanout": 3,
        "rounds": run.t_last,
        "reached": run.reached,
        "messages": run.messages,
        "wall_seconds": round(wall, 3),
        "peak_rss_mb": round(peak_mb, 1),
    }
    console.print(
        f"scale: a rumor through {nodes:,} sites (push, fan-out 3): {run.reached:,} reached in "
        f"{run.t_last} rounds, {run.messages:,} messages, {wall:.2f} s wall, peak RSS {peak_mb:.0f} MB"
    )
    return doc


def rounds_vs_n(seed: int, console: Console) -> list[dict[str, Any]]:
    out = []
    table = Table(title="Rounds until every site knows (push, fan-out 3, never lose interest)")
    for column in ("n", "runs", "rounds mean", "stdev", "log4(n) + ln(n)/3", "seconds/run"):
        table.add_column(column, justify="right")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sizes", total=len(SIZES))
        for n in SIZES:
            runs = 20 if n <= 10_000 else 5
            cfg = RumorConfig(n=n, mode="push", interest="forever", fanout=3)
            start = time.perf_counter()
            rounds = [run_rumor(cfg, rng).t_last for rng in run_rngs(seed, runs)]
            per_run = (time.perf_counter() - start) / runs
            estimate = math.log(n, 4) + math.log(n) / 3
            mean = statistics.fmean(rounds)
            stdev = statistics.stdev(rounds)
            table.add_row(
                f"{n:,}", str(runs), f"{mean:.2f}", f"{stdev:.2f}", f"{estimate:.2f}", f"{per_run:.2f}"
            )
            out.append(
                {"n": n, "runs": runs, "rounds_mean": mean, "rounds_stdev": stdev, "estimate": estimate}
            )
            progress.advance(task)
    console.print(table)
    return out


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [p["n"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(
        ns,
        [p["rounds_mean"] for p in points],
        yerr=[p["rounds_stdev"] for p in points],
        fmt="o-",
        capsize=3,
        label="measured (cycle model)",
    )
    ax.plot(ns, [p["estimate"] for p in points], "--", label="log4(n) + ln(n)/3")
    ax.set_xscale("log")
    ax.set_xlabel("sites n (log scale)")
    ax.set_ylabel("rounds until every site knows")
    ax.set_title("A rumor, push with fan-out 3: rounds grow as log n")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="epidemics per tabulated variant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/gossip_epidemics.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/gossip_rounds_vs_n.png")
    parser.add_argument("--scale-nodes", type=int, default=100_000)
    parser.add_argument("--skip-tables", action="store_true")
    parser.add_argument(
        "--skip-scale", action="store_true", help="skip the scale run and the rounds-vs-n plot"
    )
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2 (the spread needs two runs)")
    console = Console(width=max(Console().width, 170))  # the paper-vs-ours table is wide
    doc: dict[str, Any] = {"runs": args.runs, "seed": args.seed}
    if not args.skip_tables:
        doc["tables"] = tables(args.runs, args.seed, console)
    if not args.skip_scale:
        # The scale run first: its peak RSS is the process's so far (tables only).
        doc["scale"] = scale(args.scale_nodes, args.seed, console)
        doc["rounds_vs_n"] = rounds_vs_n(args.seed, console)
        try:
            plot(doc["rounds_vs_n"], args.plot)
            console.print(f"plot: {args.plot}")
        except ImportError:  # matplotlib comes with the dev extras (make .venv/.installed-dev)
            console.print("plot skipped: matplotlib is not installed (make .venv/.installed-dev)")
        doc["anti_entropy_bytes"] = exchanges(console)
    write_json(args.json_out, doc)
    console.print(f"JSON: {args.json_out}")


if __name__ == "__main__":
    main()
