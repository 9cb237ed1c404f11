"""A replica of the gossiped map: versioned entries merged last-writer-wins, indexed by a
sparse Merkle tree so two replicas find their differences in a few round trips.

Rules this module owns:
  * merge keeps, per key, the entry with the greatest stamp ``(counter, origin)``; it is
    commutative, associative and idempotent, so replicas that saw the same entries in any
    order hold the same map;
  * the tree has ``DEPTH`` levels of 16 children; a key lives in the leaf named by the
    first ``DEPTH`` hex digits of its hash; a leaf's hash covers its entries' keys and
    stamps, an inner node's hash its non-empty children's digits and hashes; the empty
    subtree's hash is b"" (and is not stored). Equal hashes at a prefix mean (up to hash
    collisions) equal entries under it.
  * hashing is keyed BLAKE2b, 8 bytes: deterministic, no I/O;
  * ``drop`` forgets a key outright (the gossip kv's tombstone collection): the tree is
    rehashed as if the key had never been merged;
  * ``ReplicaMachine`` is the state-machine face of one replica (snapshot, restore,
    digest, size) that the gossip services' machines build on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from consensuskit.protocols.gossip.messages import Entry

DEPTH = 4
DIGITS = "0123456789abcdef"
EMPTY = b""


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8, person=b"ck-gossip").digest()


def leaf_of(key: str) -> str:
    """The leaf prefix a key lives in."""
    return hashlib.blake2b(key.encode(), digest_size=4).hexdigest()[:DEPTH]


def newer(entry: Entry, than: Entry | None) -> bool:
    return than is None or entry.stamp > than.stamp


class Replica:
    """The map and its Merkle tree. Invariant: ``hashes`` holds exactly the non-empty
    prefixes, each with the hash of what lies under it."""

    __slots__ = ("entries", "hashes", "kids", "leaves", "max_counter", "sizes")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.leaves: dict[str, dict[str, Entry]] = {}
        self.kids: dict[str, set[str]] = {}
        # Entries under each non-empty prefix: a digest exchange stops descending where a
        # subtree is small enough to list.
        self.sizes: dict[str, int] = {}
        self.hashes: dict[str, bytes] = {}
        self.max_counter = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def merge(self, entry: Entry) -> bool:
        """Keep ``entry`` if it is newer than what the key holds; True if it changed."""
        return bool(self.merge_all((entry,)))

    def merge_all(self, entries: Iterable[Entry]) -> list[Entry]:
        """Merge each; return those that changed the map. The tree is rehashed once per
        touched prefix, however many entries land under it."""
        changed: list[Entry] = []
        touched: set[str] = set()
        held = self.entries
        for entry in entries:
            if entry.counter > self.max_counter:
                self.max_counter = entry.counter
            before = held.get(entry.key)
            if not newer(entry, before):
                continue
            held[entry.key] = entry
            leaf = leaf_of(entry.key)
            if before is None:
                for depth in range(DEPTH + 1):
                    self.sizes[leaf[:depth]] = self.sizes.get(leaf[:depth], 0) + 1
            self.leaves.setdefault(leaf, {})[entry.key] = entry
            touched.add(leaf)
            changed.append(entry)
        if touched:
            self._rehash(touched)
        return changed

    def drop(self, key: str) -> bool:
        """Forget ``key`` (see the module rules); True if it was held."""
        if self.entries.pop(key, None) is None:
            return False
        leaf = leaf_of(key)
        del self.leaves[leaf][key]
        for depth in range(DEPTH + 1):
            prefix = leaf[:depth]
            self.sizes[prefix] -= 1
            if not self.sizes[prefix]:
                del self.sizes[prefix]
        if not self.leaves[leaf]:
            del self.leaves[leaf]
        self._rehash({leaf})
        return True

    def _rehash(self, leaves: set[str]) -> None:
        hashes, kids = self.hashes, self.kids
        for leaf in leaves:
            bucket = self.leaves.get(leaf)
            if not bucket:
                hashes.pop(leaf, None)
                continue
            hashes[leaf] = _h(
                b"\x00".join(f"{k}\x01{e.counter}\x01{e.origin}".encode() for k, e in sorted(bucket.items()))
            )
        level = leaves
        for depth in range(DEPTH - 1, -1, -1):
            parents: set[str] = set()
            for child in level:
                parent = child[:depth]
                if child in hashes:
                    kids.setdefault(parent, set()).add(child[depth])
                elif parent in kids:
                    kids[parent].discard(child[depth])
                parents.add(parent)
            for parent in parents:
                present = sorted(kids.get(parent, ()))
                if present:
                    hashes[parent] = _h(b"".join(d.encode() + hashes[parent + d] for d in present))
                else:
                    hashes.pop(parent, None)
                    kids.pop(parent, None)
            level = parents

    def size_at(self, prefix: str) -> int:
        return self.sizes.get(prefix, 0)

    def hash_at(self, prefix: str) -> bytes:
        return self.hashes.get(prefix, EMPTY)

    def root(self) -> bytes:
        return self.hash_at("")

    def under(self, prefix: str) -> Iterator[Entry]:
        """Every entry whose leaf starts with ``prefix``, in key order per leaf."""
        if len(prefix) == DEPTH:
            bucket = self.leaves.get(prefix, {})
            yield from (bucket[k] for k in sorted(bucket))
            return
        for digit in sorted(self.kids.get(prefix, ())):
            yield from self.under(prefix + digit)

    def all_entries(self) -> tuple[Entry, ...]:
        return tuple(self.entries[k] for k in sorted(self.entries))

    def digest(self) -> tuple[tuple[str, int, str], ...]:
        """A comparable summary of the whole map (for convergence checks)."""
        return tuple((k, e.counter, e.origin) for k, e in sorted(self.entries.items()))


class ReplicaMachine:
    """One replica as a state machine's durable half: what the platform snapshots,
    restores and compares.  A service's machine adds ``apply`` and ``read``."""

    def __init__(self) -> None:
        self.replica = Replica()

    def snapshot(self) -> tuple[Entry, ...]:
        return self.replica.all_entries()

    def restore(self, snapshot: Iterable[Entry]) -> None:
        self.replica = Replica()
        self.replica.merge_all(snapshot)

    def digest(self) -> tuple[tuple[str, int, str], ...]:
        return self.replica.digest()

    def __len__(self) -> int:
        return len(self.replica)
