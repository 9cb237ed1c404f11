"""The gossip family's verbs: ``consensuskit gossip epidemic ...`` (catalog.add_command).

Rules this module owns:
  * ``gossip epidemic`` runs the rumor-mongering cycle model (protocols/gossip/epidemic.py)
    R times and prints the paper's four figures, each a mean with its standard deviation:
    a table, or with ``--json`` one document whose keys ``residue``, ``traffic``,
    ``t_ave`` and ``t_last`` are ``{"mean": x, "stdev": y}``;
  * exit codes as everywhere in the CLI: 0 = done, 2 = bad input (one line on stderr).
"""

from __future__ import annotations

import json
import random
import sys
from typing import Annotated

import typer


def run_rngs(seed: int, runs: int) -> list[random.Random]:
    """One generator per run under ``seed``: runs are independent and each can be replayed
    alone (run i of seed s is ``random.Random(s * 1_000_003 + i)``)."""
    return [random.Random(seed * 1_000_003 + index) for index in range(runs)]


app = typer.Typer(help="Gossip: epidemic models (Demers et al.).", no_args_is_help=True)


@app.command("epidemic")
def epidemic(
    mode: Annotated[str, typer.Option(help="push, pull or push-pull.")] = "push",
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback/--blind", help="Lose interest on unnecessary contacts only, or on every send."
        ),
    ] = True,
    counter: Annotated[
        bool,
        typer.Option("--counter/--coin", help="Lose interest after k counts, or with probability 1/k each."),
    ] = True,
    k: Annotated[int, typer.Option("--k", help="The loss-of-interest parameter k.")] = 1,
    nodes: Annotated[int, typer.Option(help="Number of sites n.")] = 1000,
    runs: Annotated[int, typer.Option(help="Number of epidemics R to average.")] = 100,
    connection_limit: Annotated[
        int | None, typer.Option(help="Incoming connections a site accepts per cycle (default: no limit).")
    ] = None,
    hunt: Annotated[
        int, typer.Option(help="After a refused connection, try up to this many other partners.")
    ] = 0,
    fanout: Annotated[
        int, typer.Option(help="Partners each infective site pushes to per cycle (push only).")
    ] = 1,
    forever: Annotated[
        bool,
        typer.Option(
            "--forever", help="Never lose interest (the simple epidemic); runs until all sites know."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same figures.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Rumor mongering on n sites in synchronous cycles: residue, traffic, t_ave, t_last."""
    from consensuskit.protocols.gossip import RumorConfig, measure

    cfg = RumorConfig(
        n=nodes,
        mode=mode,
        feedback=feedback,
        interest="forever" if forever else ("counter" if counter else "coin"),
        k=k,
        fanout=fanout,
        connection_limit=connection_limit,
        hunt=hunt,
    )
    try:
        cfg.validate()
        if runs < 1:
            raise ValueError(f"runs must be at least 1, got {runs}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    figures = measure(cfg, run_rngs(seed, runs))
    doc = {
        "variant": cfg.label,
        "mode": mode,
        "feedback": feedback,
        "interest": cfg.interest,
        "k": k,
        "nodes": nodes,
        "runs": runs,
        "connection_limit": connection_limit,
        "hunt": hunt,
        "fanout": fanout,
        "seed": seed,
        **{name: value.as_dict() for name, value in figures.items()},
    }
    if as_json:
        print(json.dumps(doc))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{cfg.label}, n={nodes}, {runs} runs, seed {seed}")
    table.add_column("figure")
    table.add_column("mean", justify="right")
    table.add_column("stdev", justify="right")
    meaning = {
        "residue": "residue s (fraction never reached)",
        "traffic": "traffic m (updates sent per site)",
        "t_ave": "t_ave (mean arrival, cycles)",
        "t_last": "t_last (last arrival, cycles)",
    }
    for name, value in figures.items():
        table.add_row(meaning[name], f"{value.mean:.4g}", f"{value.stdev:.3g}")
    Console().print(table)
