"""The Byzantine generals' verbs: ``consensuskit byzantine generals|boundary|vote``.

Registered in the catalog (``Catalog.add_command("byzantine", ...)``); cli.py mounts it.

Rules this module owns:
  * exit codes as everywhere in the CLI: 0 = the loyal generals agreed (IC1 and IC2
    held; for ``boundary``: agreement held exactly where n > 3m), 1 = they did not,
    2 = bad input (one line naming what is wrong and the valid choices);
  * generals are g1..gN, g1 the commander; ``--traitors`` takes ids (g3) or numbers (3);
  * ``--json`` prints one JSON document with ``ic1``, ``ic2``, ``agreement``,
    ``messages`` and the run's details.
"""

from __future__ import annotations

import json
import random
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="The Byzantine generals: OM(m) and SM(m) (Lamport, Shostak, Pease 1982).", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the traitors' random choices.")]
SignedOpt = Annotated[bool, typer.Option("--signed/--oral", help="Signed messages SM(m) or oral OM(m).")]


def parse_traitors(raw: str, n: int) -> list[str]:
    """``g3,5`` -> [g3, g5]; BadParameter (one line) for an id outside g1..gN."""
    chosen: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name = f"g{part}" if part.isdigit() else part
        if not (name.startswith("g") and name[1:].isdigit() and 1 <= int(name[1:]) <= n):
            raise typer.BadParameter(f"unknown general {part!r} in --traitors; valid: g1..g{n} (g1 commands)")
        if name not in chosen:
            chosen.append(name)
    return chosen


def _check_choice(value: str, valid: tuple[str, ...] | list[str], what: str) -> str:
    if value not in valid:
        raise typer.BadParameter(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


@app.command("generals")
def generals_cmd(
    n: Annotated[int, typer.Option("--n", help="How many generals (g1 commands).")] = 4,
    m: Annotated[int, typer.Option("--m", help="Rounds of relaying: OM(m) / SM(m).")] = 1,
    traitors: Annotated[str, typer.Option(help="Traitors, comma-separated: g3,g4 or 3,4.")] = "",
    strategy: Annotated[str, typer.Option(help="The traitors' strategy (README).")] = "random",
    signed: SignedOpt = False,
    order: Annotated[str, typer.Option(help="The commander's order: attack or retreat.")] = "attack",
    scheme: Annotated[str, typer.Option(help="Signatures: ed25519 (real) or token (simulated).")] = "ed25519",
    tie: Annotated[
        str, typer.Option(help="Oral, no majority: retreat (OM(m)) or commander (obey it; not OM).")
    ] = "retreat",
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run OM(m) or SM(m) once and check IC1 and IC2."""
    from consensuskit.check.byzantine import check_run
    from consensuskit.protocols.byzantine import ORDERS, STRATEGIES, message_count, run_generals

    if n < 2:
        raise typer.BadParameter(f"--n must be at least 2, got {n}")
    _check_choice(strategy, list(STRATEGIES), "strategy")
    _check_choice(order, ORDERS, "order")
    _check_choice(scheme, ("ed25519", "token"), "signature scheme")
    mode = "signed" if signed else "oral"
    try:
        run = run_generals(
            n,
            m,
            traitors=parse_traitors(traitors, n),
            strategy_name=strategy,
            mode=mode,
            order=order,
            rng=random.Random(seed),
            seed=seed,
            scheme=scheme,
            tie=tie,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    verdict = check_run(run)
    expected = message_count(n, m) if mode == "oral" else None
    doc: dict[str, Any] = {
        "ic1": verdict.ic1,
        "ic2": verdict.ic2,
        "agreement": verdict.agreement,
        "messages": run.messages,
        "expected_messages": expected,
        "detail": verdict.detail,
        **{k: v for k, v in run.to_json().items() if k != "messages"},
    }
    if signed:
        doc["scheme"] = scheme
        if scheme == "token":
            doc["simulated_cpu_seconds"] = round(run.cpu_seconds, 6)  # the tokens' charged cost
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        console = Console()
        algorithm = f"{'SM' if signed else 'OM'}({m})"
        table = Table(
            title=f"{algorithm}: {n} generals, g1 orders {order}, traitors: "
            f"{', '.join(doc['traitors']) or 'none'} ({strategy})"
        )
        table.add_column("lieutenant")
        table.add_column("loyal")
        table.add_column("obeys")
        for g, d in run.decisions.items():
            table.add_row(g, "no" if g in run.traitors else "yes", d)
        console.print(table)
        formula = f" (formula: {expected})" if expected is not None else ""
        console.print(
            f"messages: {run.messages}{formula}, rounds: {run.rounds}"
            + (f", forged: {run.forged}, dropped: {run.rejected}" if signed else "")
        )
        held = {True: "holds", False: "BROKEN"}
        console.print(
            f"IC1 {held[verdict.ic1]}, IC2 {held[verdict.ic2]}"
            + (f": {verdict.detail}" if verdict.detail else "")
        )
    raise typer.Exit(0 if verdict.agreement else 1)


@app.command("boundary")
def boundary_cmd(
    max_n: Annotated[int, typer.Option(help="Largest number of generals.")] = 8,
    max_m: Annotated[int, typer.Option(help="Largest m (and number of traitors).")] = 2,
    signed: SignedOpt = False,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds of the random strategy per case.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Search traitors' strategies for a run that breaks IC1 or IC2, for every n and m.

    For every m <= MAX_M and m+2 <= n <= MAX_N, m traitors.  Oral messages break exactly
    where n <= 3m."""
    from consensuskit.check.byzantine import find_violation
    from consensuskit.protocols.byzantine import MAX_MESSAGES, message_count

    if max_m < 1 or max_n < 3:
        raise typer.BadParameter(f"need --max-m >= 1 and --max-n >= 3, got {max_m} and {max_n}")
    mode = "signed" if signed else "oral"
    biggest = max(message_count(max_n, m) for m in range(1, max_m + 1))
    if biggest > MAX_MESSAGES:  # refused before the small cases run, not after
        cap = f"{MAX_MESSAGES:,}"
        raise typer.BadParameter(f"the largest case sends {biggest:,} messages; at most {cap} are run")
    rows: list[dict[str, Any]] = []
    for m in range(1, max_m + 1):
        for n in range(m + 2, max_n + 1):
            found = find_violation(n, m, mode, seeds)
            rows.append(
                {
                    "n": n,
                    "m": m,
                    "n_gt_3m": n > 3 * m,
                    "agreement": found is None,
                    "counterexample": None
                    if found is None
                    else {
                        "traitors": list(found[0].traitors),
                        "strategy": found[0].strategy,
                        "order": found[0].order,
                        "seed": found[0].seed,
                        "detail": found[1].detail,
                    },
                }
            )
    # Oral: the theorem says agreement iff n > 3m; signed: always.
    matches = all(r["agreement"] == (r["n_gt_3m"] or signed) for r in rows)
    if as_json:
        print(json.dumps({"mode": mode, "seeds": seeds, "rows": rows, "matches_theory": matches}, indent=2))
    else:
        console = Console()
        algorithm = "SM(m)" if signed else "OM(m)"
        table = Table(title=f"{algorithm} with m traitors: does every run agree? (n generals)")
        table.add_column("m \\ n")
        for n in range(3, max_n + 1):
            table.add_column(str(n), justify="center")
        for m in range(1, max_m + 1):
            cells = []
            for n in range(3, max_n + 1):
                row = next((r for r in rows if r["n"] == n and r["m"] == m), None)
                if row is None:
                    cells.append("")
                elif row["agreement"]:
                    cells.append("[green]agree[/]" + ("" if row["n_gt_3m"] else "*"))
                else:
                    cells.append(f"[red]broken[/] ({row['counterexample']['strategy']})")
            table.add_row(str(m), *cells)
        console.print(table)
        verdict = "matches" if matches else "does NOT match"
        theory = "agreement for every n >= m+2" if signed else "agreement exactly where n > 3m"
        console.print(f"{verdict} the theorem: {theory} (* would mark agreement where n <= 3m)")
    raise typer.Exit(0 if matches else 1)


@app.command("vote")
def vote_cmd(
    attack: Annotated[int, typer.Option(help="Loyal generals voting attack.")] = 4,
    retreat: Annotated[int, typer.Option(help="Loyal generals voting retreat.")] = 4,
    traitors: Annotated[int, typer.Option(help="Traitors (they come last).")] = 1,
    m: Annotated[int, typer.Option("--m", help="m of the OM(m)/SM(m) runs.")] = 1,
    strategy: Annotated[str, typer.Option(help="The traitors' strategy.")] = "split",
    signed: SignedOpt = False,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Seed 004's vote: naive majority against interactive consistency by OM(m)/SM(m)."""
    from consensuskit.protocols.byzantine import STRATEGIES, interactive_vote, naive_vote

    _check_choice(strategy, list(STRATEGIES), "strategy")
    if min(attack, retreat, traitors, m) < 0 or attack + retreat + traitors < m + 2:
        raise typer.BadParameter("need non-negative counts and at least m+2 generals")
    votes = {f"g{i}": "attack" for i in range(1, attack + 1)}
    votes.update({f"g{i}": "retreat" for i in range(attack + 1, attack + retreat + 1)})
    votes.update({f"g{i}": "attack" for i in range(attack + retreat + 1, attack + retreat + traitors + 1)})
    bad = [f"g{i}" for i in range(attack + retreat + 1, attack + retreat + traitors + 1)]
    try:
        naive = naive_vote(votes, bad, strategy, random.Random(seed))
        mode = "signed" if signed else "oral"
        ic = interactive_vote(votes, m, bad, strategy, mode, random.Random(seed), seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    results = []
    for run in (naive, ic):
        loyal = run.loyal_decisions()
        results.append({**run.to_json(), "loyal_agree": len(set(loyal.values())) == 1})
    if as_json:
        print(json.dumps({"naive": results[0], "interactive": results[1]}, indent=2))
    else:
        console = Console()
        table = Table(
            title=f"{len(votes)} generals: {attack} loyal attack, {retreat} loyal retreat, "
            f"{traitors} traitor(s) ({strategy})"
        )
        table.add_column("general")
        table.add_column("vote")
        table.add_column("naive majority")
        table.add_column(ic.method)
        for g in votes:
            vote = "traitor" if g in bad else votes[g]
            table.add_row(g, vote, naive.decisions[g], ic.decisions[g])
        console.print(table)
        for label, r in zip(("naive majority", ic.method), results, strict=True):
            console.print(
                f"{label}: loyal generals {'agree' if r['loyal_agree'] else 'SPLIT'}, "
                f"{r['messages']} messages"
            )
    raise typer.Exit(0 if results[1]["loyal_agree"] else 1)
