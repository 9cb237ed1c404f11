"""Which build of the simulator the tests run: interpreted (the default) or compiled with
mypyc (``make compiled``, setup_mypyc.py)."""

from __future__ import annotations

import pytest

from consensuskit.core.compiled import is_compiled
from consensuskit.sim import env as env_module
from consensuskit.sim import simulation as simulation_module

# A test that replaces a simulator method (on an instance, a class, or an env's __class__)
# needs the interpreted build: compiled classes take no new attributes and their compiled
# callers do not look methods up, so the patch would be refused or never called.
interpreted_only = pytest.mark.skipif(
    is_compiled(simulation_module) or is_compiled(env_module),
    reason="patches a simulator method: needs the interpreted build (make uncompiled)",
)
