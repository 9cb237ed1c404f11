"""Opt-in mypyc build of the simulator's hot path (``make compiled``; ``make uncompiled`` undoes it).

mypyc (from mypy, the ``fast`` extra) compiles the modules listed in ``MODULES`` to C
extensions and leaves them next to their ``.py`` files in ``src/``: Python imports the
``.so`` instead of the source while it is there.  The package's behaviour must not depend
on which one it gets: the same seed gives the same trace either way.

    python setup_mypyc.py build_ext --inplace      # what `make compiled` runs

Left interpreted on purpose: the message
modules (``@message`` builds classes mypyc cannot compile natively), core/capabilities.py
(runtime-checkable protocols).

Rules this file owns:
  * only modules listed here are compiled; the rest of the package (and every module a
    test subclasses or monkeypatches without ``allow_interpreted_subclasses``) stays
    interpreted.  tests/test_mypyc_build.py checks the list names modules that exist;
  * the build never runs by default: ``pip install -e .`` and ``make test`` leave ``src/``
    pure Python.  tests/test_mypyc_build.py builds a copy of ``src/`` in a temporary
    directory and checks that every listed module builds, imports compiled, and gives the
    interpreted build's events, trace digests and verdicts.
"""

from __future__ import annotations

import os
import sys

# Dotted module names, hottest first (see README "Compiled simulator (mypyc)").
MODULES = (
    "consensuskit.protocols.raft.node",
    "consensuskit.sim.simulation",
    "consensuskit.sim.events",
    "consensuskit.sim.env",
    "consensuskit.protocols.raft.log",
    "consensuskit.core.driver",
    "consensuskit.check.raft",
    "consensuskit.sim.workload",
    "consensuskit.sim.trace",
    "consensuskit.sim.storage",
    "consensuskit.protocols.raft.progress",
    "consensuskit.protocols.common.heartbeat_rounds",
    "consensuskit.core.quorum",
    "consensuskit.sim.nemesis",
    "consensuskit.protocols.common.read_index",
    "consensuskit.protocols.common.snapshot_policy",
    "consensuskit.protocols.common.batching",
    "consensuskit.protocols.common.replies",
    "consensuskit.statemachines.sessions",
    "consensuskit.statemachines.kv",
    "consensuskit.statemachines.store",
    "consensuskit.statemachines.sessioned",
    "consensuskit.core.storage",
    "consensuskit.services.kv",
)

ROOT = os.path.dirname(os.path.abspath(__file__))
# One shared library for every compiled module (mypyc's runtime and the modules' code).
GROUP = "consensuskit_mypyc"


def module_path(name: str) -> str:
    """``src/`` path of a dotted module name (relative to the repository)."""
    return os.path.join("src", *name.split(".")) + ".py"


def main() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    os.chdir(ROOT)
    setup(
        name="consensuskit-mypyc",
        package_dir={"": "src"},
        ext_modules=mypycify(
            [module_path(m) for m in MODULES],
            opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
            target_dir=os.path.join("build", "mypyc"),
            group_name=GROUP,
        ),
        script_args=sys.argv[1:] or ["build_ext", "--inplace"],
    )


if __name__ == "__main__":
    main()
