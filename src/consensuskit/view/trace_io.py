"""Load a JSON-lines trace (the rendered records of sim/trace.py) for the view.

Rules this module owns:
  * a trace is one JSON object per line, each with at least ``"t"`` (a number) and
    ``"ev"`` (a string); blank lines are skipped;
  * a malformed file is refused with one line naming the file and the line number
    (``TraceError``), never a traceback;
  * the node ids are the trace's own: every ``start`` record's node, in order of first
    appearance, then any other node named by a record (``rec`` / message ends that
    are not clients), so a trace needs no side file to be drawn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class TraceError(ValueError):
    """A trace file that cannot be read; the message is one line."""


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    """Every record of the JSON-lines trace at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc})") from None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("ev"), str):
            raise TraceError(f"{path}:{number}: a trace record is an object with an 'ev' string")
        if not isinstance(record.get("t"), (int, float)) or isinstance(record.get("t"), bool):
            raise TraceError(f"{path}:{number}: a trace record has a numeric 't'")
        records.append(record)
    return records


def node_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    """The nodes of a trace: started ones first, then nodes that only record."""
    started: dict[str, None] = {}
    others: dict[str, None] = {}
    for r in records:
        ev = r.get("ev")
        if ev == "start" and isinstance(r.get("node"), str):
            started.setdefault(r["node"], None)
        elif ev == "rec" and isinstance(r.get("node"), str):
            others.setdefault(r["node"], None)
    return list(started) + [n for n in others if n not in started]
