"""How the kv store holds a value past version 1: a ``Versioned`` pair.

Rules this module owns:
  * a ``Versioned`` is a frozen msgspec Struct the collector never tracks (``gc=False``):
    it holds a value from a command (str, bytes or plain msgpack data, never a cycle) and
    an int.  A dict none of whose keys and values is tracked is itself left untracked by
    CPython, so the kv store of str/bytes values, holding these instead of ``(value,
    version)`` tuples, is never walked by a collection: with tuples, every overwrite put a
    new tracked tuple in the store, the store was tracked again, and each full collection
    walked all its keys and values (about 70 ms at a million keys);
  * it is a storage detail of statemachines/kv.py, never a message: snapshots list keys,
    values and versions flat, as before;
  * it lives in its own module, out of kv.py, which the mypyc build compiles
    (setup_mypyc.py): like the message classes, a Struct stays in interpreted code.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Versioned(msgspec.Struct, frozen=True, gc=False):
    """A stored value and its version (> 1, or a value that is not str or bytes)."""

    value: Any
    version: int
