"""The opt-in mypyc build (setup_mypyc.py, ``make compiled``): its module list stays true."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def listed_modules() -> tuple[str, ...]:
    """setup_mypyc.MODULES, read from the source (importing it needs no mypy, but keep
    the test independent of how the script imports)."""
    tree = ast.parse((ROOT / "setup_mypyc.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup_mypyc.py defines no MODULES")


def test_every_listed_module_exists_as_python_source():
    modules = listed_modules()
    assert modules, "an empty list builds nothing"
    assert len(set(modules)) == len(modules), "a module is listed twice"
    for name in modules:
        assert name.startswith("consensuskit."), name
        path = ROOT / "src" / Path(*name.split(".")).with_suffix(".py")
        assert path.is_file(), f"{name}: no {path.relative_to(ROOT)}"
        assert importlib.util.find_spec(name) is not None, name


def test_make_compiled_runs_the_script_and_uncompiled_removes_its_outputs():
    makefile = (ROOT / "Makefile").read_text()
    compiled = re.search(r"^compiled:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    uncompiled = re.search(r"^uncompiled:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert compiled and "setup_mypyc.py build_ext --inplace" in compiled.group(1)
    assert uncompiled and "-name '*.so' -delete" in uncompiled.group(1)
    assert "src/**/*.so" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_build_is_opt_in():
    """mypy is an extra, never a dependency; make test does not build."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert deps and "mypy" not in deps.group(1)
    assert re.search(r'^fast = \["mypy', pyproject, re.MULTILINE)
    test_target = re.search(r"^test:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert test_target and "mypyc" not in test_target.group(1)
