"""Which shard owns a key.

Rule this module owns: shard ``i`` of ``S`` owns the keys whose CRC-32 falls in the
``i``-th of ``S`` equal ranges of the 32-bit hash space (hash-range partitioning, as the
commit family's participants: protocols/commit/txn.py).  The split points are fixed when
the cluster starts (``--shards S``) and are the same on every node and client; a key never
moves.  Hashing rather than sorted split keys spreads sequential names (``a0``, ``a1``,
...) over the shards, which the bank test wants.
"""

from __future__ import annotations

import zlib


def shard_of(key: str, shards: int) -> int:
    """The shard owning ``key`` among ``shards`` (see the module rule)."""
    return (zlib.crc32(key.encode()) * shards) >> 32
