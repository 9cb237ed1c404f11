"""The opt-in mypyc build (setup_mypyc.py, ``make compiled``): its module list stays true."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

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


# The child both builds run: every catalog protocol on 5 nodes (Raft in both runtimes,
# serving kv and etcd; PBFT with a twin replica too), every fault, checks on every step.
TRACE_SCRIPT = """
import importlib, json, sys
from consensuskit.catalog import default_catalog
from consensuskit.core.compiled import is_compiled
from consensuskit.sim import NEMESIS_KINDS, SimConfig, Simulation
modules = json.loads(sys.argv[1])
compiled = [m for m in modules if is_compiled(importlib.import_module(m))]
cases = [(e.name, {}) for e in default_catalog().protocols()] + [
    ("raft", {"runtime": "batched"}), ("raft", {"runtime": "unbatched"}),
    ("raft", {"service": "etcd"}), ("pbft", {"options": {"byzantine": "n2:twin"}}),
]
runs = []
for protocol, extra in cases:
    for seed in range(2):
        config = SimConfig(protocol=protocol, node_ids=("n1", "n2", "n3", "n4", "n5"), seed=seed,
                           duration=6, clients=3, nemesis=NEMESIS_KINDS, check_every_step=True,
                           **extra)
        r = Simulation(config).run()
        runs.append([protocol, repr(extra), seed, r.events, r.trace_sha256,
                     [v.name for v in r.invariant_violations]])
print(json.dumps({"compiled": compiled, "runs": runs}))
"""


def _toolchain_missing() -> str | None:
    """Why mypyc cannot build here (no C compiler, no Python headers, no mypy), or None."""
    import shutil
    import sysconfig

    if importlib.util.find_spec("mypyc") is None:
        return "mypy is not installed (the dev and fast extras install it)"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers"
    return None


TOOLCHAIN_MISSING = _toolchain_missing()


@pytest.mark.skipif(TOOLCHAIN_MISSING is not None, reason=str(TOOLCHAIN_MISSING))
@pytest.mark.timeout(900)  # the build alone takes about a minute on one core
def test_the_compiled_build_builds_and_gives_the_interpreted_traces(tmp_path):
    """`make compiled` on a copy of the sources: every listed module builds, imports as an
    extension, and the simulator's runs give the interpreted build's events, trace digests
    and verdicts: the speed the README reports for it is the same simulation's."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    )
    for name in ("setup_mypyc.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, copy / name)
    modules = json.dumps(listed_modules())

    def traces() -> dict[str, object]:
        env = {**os.environ, "PYTHONPATH": str(copy / "src")}
        proc = subprocess.run(
            [sys.executable, "-c", TRACE_SCRIPT, modules],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    interpreted = traces()
    assert interpreted["compiled"] == []
    build = subprocess.run(
        [sys.executable, "setup_mypyc.py", "build_ext", "--inplace", "--build-temp", str(tmp_path / "temp")],
        capture_output=True, text=True, cwd=copy, timeout=800, check=False,
    )  # fmt: skip
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    compiled = traces()
    assert compiled["compiled"] == list(listed_modules()), "a listed module was not built or not imported"
    assert compiled["runs"] == interpreted["runs"]
    assert all(run[3] > 0 and not run[5] for run in interpreted["runs"]), interpreted["runs"]
