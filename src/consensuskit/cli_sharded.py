"""``consensuskit serializable HISTORY``: the serializability checker on a history file.

A history written by ``consensuskit sim sharded-raft --history FILE`` (JSON lines, one op
each; docs/history.md): its committed transactions' dependency graph is searched for
cycles (check/serializability.py).  Exit 0 serializable, 1 not, 2 unreadable.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def serializable(
    history: Annotated[str, typer.Argument(help="History file (JSON lines) of a sharded-raft run.")],
) -> None:
    """Check a sharded-raft history for serializability (Elle-style cycle search)."""
    from consensuskit.check.serializability import check_transactions
    from consensuskit.check.sharded import committed_transactions
    from consensuskit.sim.history import History

    console = Console()
    try:
        records = History.from_jsonl(history)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot read {history}: {exc}[/]")
        raise typer.Exit(2) from None
    verdict = check_transactions(committed_transactions(records))
    if verdict.ok:
        console.print(f"[green]{verdict.describe()}[/]")
        return
    for anomaly in verdict.anomalies:
        console.print(f"[red]{anomaly['type']}[/]: {anomaly['text']}")
    raise typer.Exit(1)
