"""Exports of a trace: one self-contained HTML page, and ShiViz's log format.

Rules this module owns:
  * ``render_html`` inlines everything the page needs (CSS, the page's ES modules
    joined into one inline module, the data as JSON): the file opens from disk with no
    server and fetches nothing (as check/linearizability/html.py does);
  * the page's modules are joined in ``MODULES`` order with their one-line ``import``
    statements dropped and ``export`` keywords removed, so the modules must keep their
    imports on one line and their top-level names distinct (tests hold this);
  * data reaches the page only as JSON in a ``<script type="application/json">`` tag
    with ``<``, ``>`` and ``&`` escaped;
  * ``shiviz_log`` writes GoVector's ShiViz format: the parsing regex on the first line,
    a blank line, then two lines per event (``host {clock}`` and the event's text);
    clocks are vector clocks over the trace's nodes: every event ticks its node, a
    delivery first takes the maximum with the clock its send carried.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from importlib import resources
from typing import Any

MODULES: tuple[str, ...] = ("state.js", "model.js", "draw.js", "panel.js", "main.js")

_IMPORT = re.compile(r"^import .* from \"\./[a-z]+\.js\";$", re.MULTILINE)
_EXPORT = re.compile(r"^export (?=(async )?function |const |let |class )", re.MULTILINE)

# ShiViz's parser: named groups host, clock and event (JavaScript syntax).
SHIVIZ_REGEX = r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)"


def static_text(name: str) -> str:
    """One file of the page (view/static/), as text."""
    return resources.files("consensuskit.view").joinpath("static", name).read_text(encoding="utf-8")


def bundle() -> str:
    """The page's modules as one module's source (see the module rules)."""
    parts = []
    for name in MODULES:
        source = _EXPORT.sub("", _IMPORT.sub("", static_text(name)))
        parts.append(f"// ---- {name}\n{source}")
    return "\n".join(parts)


def script_json(data: Any) -> str:
    """``data`` as JSON safe inside a ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(meta: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The whole page for ``records``, with data, script and style inlined."""
    page = static_text("index.html")
    page = page.replace('<link rel="stylesheet" href="style.css">\n', "")
    page = page.replace("<!--INLINE-CSS-->", f"<style>\n{static_text('style.css')}</style>")
    data = script_json({"meta": meta, "records": list(records)})
    page = page.replace(
        "<!--INLINE-DATA-->", f'<script type="application/json" id="view-data">{data}</script>'
    )
    return page.replace(
        '<script type="module" src="main.js"></script>', f'<script type="module">\n{bundle()}</script>'
    )


def shiviz_log(records: Sequence[dict[str, Any]], node_ids: Sequence[str]) -> str:
    """The trace in ShiViz's format (see the module rules); only the nodes' events."""
    nodes = set(node_ids)
    clocks: dict[str, dict[str, int]] = {n: {} for n in node_ids}
    in_flight: dict[tuple[Any, Any, Any], deque[dict[str, int]]] = {}
    lines = [SHIVIZ_REGEX, ""]

    def tick(node: str, text: str, merge: dict[str, int] | None = None) -> dict[str, int]:
        clock = clocks[node]
        if merge:
            for k, v in merge.items():
                if v > clock.get(k, 0):
                    clock[k] = v
        clock[node] = clock.get(node, 0) + 1
        lines.append(f"{node} {json.dumps(clock, sort_keys=True, separators=(',', ':'))}")
        lines.append(" ".join(text.split()))  # one line, whatever the summary held
        return dict(clock)

    for r in records:
        ev = r.get("ev")
        t = r.get("t", 0)
        if ev in ("send", "dup") and r.get("src") in nodes and r.get("dst") in nodes:
            sent = tick(r["src"], f"t={t} {ev} {r.get('msg') or r.get('type')} to {r['dst']}")
            in_flight.setdefault((r["src"], r["dst"], r.get("mid")), deque()).append(sent)
        elif ev in ("deliver", "drop") and r.get("src") in nodes and r.get("dst") in nodes:
            queue = in_flight.get((r["src"], r["dst"], r.get("mid")))
            sent = queue.popleft() if queue else None
            if ev == "deliver":
                tick(r["dst"], f"t={t} deliver {r.get('msg') or r.get('type')} from {r['src']}", sent)
        elif ev == "rec" and r.get("node") in nodes:
            fields = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("t", "ev", "node", "kind"))
            tick(r["node"], f"t={t} {r.get('kind')} {fields}")
        elif ev == "fault" and r.get("node") in nodes:
            tick(r["node"], f"t={t} fault {r.get('kind')}")
    return "\n".join(lines) + "\n"
