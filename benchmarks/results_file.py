"""How a benchmark writes its results: one JSON document, indented, UTF-8, ending in a
newline, its directory created if missing (``benchmarks/results/`` by default).

Every benchmark that writes JSON calls ``write_json``; each prints its own line saying
where the file went.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` to ``path`` (parents created) and return the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out
