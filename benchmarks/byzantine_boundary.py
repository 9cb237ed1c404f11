"""The Byzantine generals: where oral messages stop agreeing, and what each run costs.

For every m <= --max-m and m+2 <= n <= --max-n the boundary search
(check/byzantine.py ``find_violation``: m traitors at the last or first lieutenants or at
the commander, every strategy, both orders, --seeds seeds of the random one) looks for a
run of OM(m) and of SM(m) that breaks IC1 or IC2.  The theorem (LSP82): oral messages
agree exactly where n > 3m, signed messages always.  Then the messages of one run per
(n, m) — OM(m) against its formula (n-1) + (n-1)(n-2) + ..., SM(m) as measured with a
loyal commander and with a traitor commander telling each lieutenant something else —
and the time of one SM(m) run with real Ed25519 and with the simulator's tokens.

    python benchmarks/byzantine_boundary.py [--max-n 10] [--max-m 3] [--seeds 5]
        [--json-out PATH] [--plot docs/img/byzantine_boundary.png]

Exit status 1 when the search disagrees with the theorem.  Message counts and verdicts
are deterministic; times are wall-clock on this machine (noisy when it is shared).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consensuskit.check.byzantine import find_violation
from consensuskit.protocols.byzantine import message_count, run_generals
from results_file import write_json


def boundary(max_n: int, max_m: int, seeds: int, progress: Progress) -> list[dict[str, Any]]:
    cases = [
        (n, m, mode)
        for m in range(1, max_m + 1)
        for n in range(m + 2, max_n + 1)
        for mode in ("oral", "signed")
    ]
    task = progress.add_task("boundary search", total=len(cases))
    rows = []
    for n, m, mode in cases:
        found = find_violation(n, m, mode, seeds)
        rows.append(
            {
                "n": n,
                "m": m,
                "mode": mode,
                "agreement": found is None,
                "expected": mode == "signed" or n > 3 * m,
                "counterexample": None
                if found is None
                else f"{found[0].strategy} {','.join(found[0].traitors)}",
            }
        )
        progress.advance(task)
    return rows


def costs(max_n: int, max_m: int, progress: Progress) -> list[dict[str, Any]]:
    cases = [(n, m) for m in range(1, max_m + 1) for n in range(m + 2, max_n + 1)]
    task = progress.add_task("message counts and times", total=len(cases))
    rows = []
    for n, m in cases:
        row: dict[str, Any] = {"n": n, "m": m, "om_formula": message_count(n, m)}
        row["om_measured"] = run_generals(
            n, m, traitors=[f"g{n}"], strategy_name="random", rng=random.Random(0)
        ).messages
        row["sm_loyal"] = run_generals(n, m, mode="signed", scheme="token").messages
        row["sm_traitor_commander"] = run_generals(
            n,
            m,
            traitors=["g1"],
            strategy_name="per-recipient",
            mode="signed",
            scheme="token",
            rng=random.Random(0),
        ).messages
        for scheme in ("ed25519", "token"):
            start = time.perf_counter()
            run_generals(n, m, mode="signed", scheme=scheme)
            row[f"sm_seconds_{scheme}"] = round(time.perf_counter() - start, 6)
        rows.append(row)
        progress.advance(task)
    return rows


def plot(
    path: Path, grid: list[dict[str, Any]], counts: list[dict[str, Any]], max_n: int, max_m: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for row in grid:
        if row["mode"] != "oral":
            continue
        color = "tab:green" if row["agreement"] else "tab:red"
        left.scatter(row["n"], row["m"], s=260, marker="s", color=color)
    ms = list(range(1, max_m + 1))
    left.plot([3 * m for m in ms], ms, "k--", label="n = 3m")
    left.set_xlabel("generals n")
    left.set_ylabel("traitors m (OM(m))")
    left.set_title("oral messages: green agree in every case tried, red broken")
    left.set_xticks(range(3, max_n + 1))
    left.set_yticks(ms)
    left.legend(loc="upper left")
    for m in ms:
        rows = [r for r in counts if r["m"] == m]
        ns = [r["n"] for r in rows]
        right.plot(ns, [r["om_formula"] for r in rows], marker="o", label=f"OM({m}) (formula = measured)")
        right.plot(
            ns,
            [r["sm_loyal"] for r in rows],
            marker="x",
            ls=":",
            label=f"SM({m}), loyal commander",
        )
    right.set_yscale("log")
    right.set_xlabel("generals n")
    right.set_ylabel("messages per run")
    right.set_title("messages per run")
    right.set_xticks(range(3, max_n + 1))
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=10)
    parser.add_argument("--max-m", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the random strategy per case")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    args = parser.parse_args(argv)
    if args.max_m < 1 or args.max_n < 3 or args.seeds < 1:
        parser.error("need --max-m >= 1, --max-n >= 3 and --seeds >= 1")
    console = Console()
    with Progress(console=console, transient=True) as progress:
        grid = boundary(args.max_n, args.max_m, args.seeds, progress)
        counts = costs(args.max_n, args.max_m, progress)

    table = Table(title="Does every run agree? (m traitors, n generals; oral / signed)")
    table.add_column("m \\ n")
    for n in range(3, args.max_n + 1):
        table.add_column(str(n), justify="center")
    for m in range(1, args.max_m + 1):
        cells = []
        for n in range(3, args.max_n + 1):
            got = {r["mode"]: r for r in grid if r["n"] == n and r["m"] == m}
            if not got:
                cells.append("")
                continue
            oral = "[green]yes[/]" if got["oral"]["agreement"] else "[red]no[/]"
            signed = "[green]yes[/]" if got["signed"]["agreement"] else "[red]no[/]"
            cells.append(f"{oral}/{signed}")
        table.add_row(str(m), *cells)
    console.print(table)

    msgs = Table(title="Messages per run, and one SM(m) run's time (loyal commander)")
    for col in (
        "n",
        "m",
        "OM formula",
        "OM measured",
        "SM loyal",
        "SM traitor cmdr",
        "SM Ed25519 s",
        "SM tokens s",
    ):
        msgs.add_column(col, justify="right")
    for r in counts:
        msgs.add_row(
            *(str(r[k]) for k in ("n", "m", "om_formula", "om_measured", "sm_loyal", "sm_traitor_commander")),
            f"{r['sm_seconds_ed25519']:.4f}",
            f"{r['sm_seconds_token']:.4f}",
        )
    console.print(msgs)

    matches = all(r["agreement"] == r["expected"] for r in grid)
    exact = all(r["om_formula"] == r["om_measured"] for r in counts)
    console.print(
        f"theorem {'holds' if matches else 'DOES NOT hold'} on every case; "
        f"OM message counts {'equal' if exact else 'DIFFER FROM'} the formula"
    )
    doc = {"max_n": args.max_n, "max_m": args.max_m, "seeds": args.seeds, "boundary": grid, "costs": counts,
           "matches_theorem": matches, "counts_equal_formula": exact}  # fmt: skip
    if args.json_out:
        write_json(args.json_out, doc)
        console.print(f"wrote {args.json_out}")
    if args.plot:
        plot(args.plot, grid, counts, args.max_n, args.max_m)
        console.print(f"wrote {args.plot}")
    return 0 if matches and exact else 1


if __name__ == "__main__":
    sys.exit(main())
