"""core/ is the bottom layer: it imports nothing else of consensuskit, so every protocol,
the simulator and the server can build on it (the list of shipped protocols lives above,
in ``consensuskit.catalog``)."""

from __future__ import annotations

import ast
from pathlib import Path

import consensuskit.core

CORE = Path(consensuskit.core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_nothing_above_it() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(CORE.glob("*.py"))
        for name in imported_modules(path)
        if name.startswith("consensuskit.") and not name.startswith("consensuskit.core")
    }
    assert not offenders, sorted(offenders)
