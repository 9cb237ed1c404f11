"""The README's state diagrams, generated from the transition tables (``tables.py``).

Rules this module owns:
  * one Mermaid ``stateDiagram-v2`` per table, one arrow per (state, event) pair in the
    table's order, labelled ``event / action, action``; a pair that keeps its state is
    drawn as a self-loop, so every rule of the table is in the picture;
  * the README holds the diagrams between ``<!-- commit:tables -->`` and
    ``<!-- /commit:tables -->``; ``render()`` is a pure function of the tables, and
    tests/protocols/commit/test_diagrams.py fails when the README differs (rewrite it
    with ``pytest tests/protocols/commit --rewrite``).
"""

from __future__ import annotations

import re

from consensuskit.protocols.commit.tables import TABLES, Table

OPEN = "<!-- commit:tables -->"
CLOSE = "<!-- /commit:tables -->"
BLOCK = re.compile(re.escape(OPEN) + r"\n.*?" + re.escape(CLOSE), re.DOTALL)

# Where each table's diagram starts.
INITIAL = {
    "2PC coordinator": "start",
    "2PC participant": "unknown",
    "3PC coordinator": "start",
    "3PC participant": "unknown",
    "3PC termination": "idle",
}


def _name(state: str) -> str:
    return state.replace("-", "_")


def diagram(title: str, table: Table) -> str:
    lines = [f"### {title}", "", "```mermaid", "stateDiagram-v2", f"    [*] --> {_name(INITIAL[title])}"]
    for (state, event), tr in table.items():
        label = event + (f" / {', '.join(tr.actions)}" if tr.actions else "")
        lines.append(f"    {_name(state)} --> {_name(tr.next)}: {label}")
    lines.append("```")
    return "\n".join(lines)


def render() -> str:
    """Everything between the README's markers, markers included."""
    body = "\n\n".join(diagram(title, table) for title, table in TABLES.items())
    return f"{OPEN}\n{body}\n{CLOSE}"


def updated(readme: str) -> str:
    """``readme`` with its diagrams block regenerated (ValueError without markers)."""
    if not BLOCK.search(readme):
        raise ValueError(f"no {OPEN} ... {CLOSE} block to fill")
    return BLOCK.sub(lambda _: render(), readme, count=1)
