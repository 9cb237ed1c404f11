"""The opt-in mypyc build (setup_mypyc.py, ``make compiled``) as the code sees it.

Rules this module owns:
  * ``mypyc_attr`` is mypy_extensions' class marker when that package is installed (it
    comes with mypy, the ``fast`` extra) and a no-op otherwise, so a module may mark a
    class ``allow_interpreted_subclasses`` without making mypy a dependency.  mypyc reads
    the marker from the source (it resolves to ``mypy_extensions.mypyc_attr`` under
    TYPE_CHECKING) and never calls it; interpreted, it changes nothing;
  * ``is_compiled(module)`` says whether a module was imported from a compiled
    extension rather than its ``.py`` source (benchmarks report it beside their figures).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # the pure-Python install: nothing reads the marker

        def mypyc_attr(*_args: Any, **_kwargs: Any) -> Any:
            return lambda cls: cls


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` is a compiled extension (its file is not Python source)."""
    path = getattr(module, "__file__", None) or ""
    return not path.endswith((".py", ".pyc"))
