"""core/compiled.py: the mypyc marker is harmless when interpreted; is_compiled tells sources
from extensions."""

from __future__ import annotations

import types

from consensuskit.core import compiled
from consensuskit.core.compiled import is_compiled, mypyc_attr


def test_the_marker_leaves_an_interpreted_class_as_it_was():
    @mypyc_attr(allow_interpreted_subclasses=True)
    class Base:
        def hello(self) -> str:
            return "base"

    class Sub(Base):
        def hello(self) -> str:
            return "sub"

    assert Base().hello() == "base" and Sub().hello() == "sub"


def test_is_compiled_reads_the_module_file():
    assert not is_compiled(compiled)  # this helper is never on the compiled list
    ext = types.ModuleType("fake")
    ext.__file__ = "/x/consensuskit/sim/env.cpython-311-x86_64-linux-gnu.so"
    assert is_compiled(ext)
    src = types.ModuleType("fake")
    src.__file__ = "/x/consensuskit/sim/env.py"
    assert not is_compiled(src)
