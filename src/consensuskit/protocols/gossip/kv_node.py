"""The gossip kv: an eventually consistent key-value store (AP in CAP terms) on the gossip
node's rumor mongering and Merkle anti-entropy (node.py), as a sans-I/O state machine.

Rules this node owns (the gossip node owns dissemination, peers and bad input):
  * any node accepts ``put`` and ``delete``; each write is stamped with the node's hybrid
    logical clock (hlc.py) read from ``env.now()``, packed into the entry's ``counter``,
    so versions merge last-writer-wins by ``(hlc, node id)`` with the gossip replica's
    merge (commutative, associative, idempotent);
  * every stamp this node receives advances its clock (the HLC receive rule), so a write
    made after a node saw a version is stamped above it: an overwrite that saw what it
    overwrote always wins, and only a write concurrent with it (written where it was not
    yet known) can make an acknowledged write disappear;
  * a write is acknowledged once applied locally and durable: the entry is appended to
    storage before the answer, and the durability driver releases the answer only after
    that append is synced (persist, then answer);
  * a delete writes a tombstone (``deleted``), a version like any other, so an older put
    arriving later cannot bring the key back. Collection rule: a tombstone whose HLC time
    is more than ``tombstone_ttl`` seconds behind the node's clock is dropped (checked at
    each anti-entropy period; 0 keeps tombstones forever). As with Cassandra's
    gc_grace_seconds, a replica cut off for longer than the ttl that still holds an older
    put may bring the key back after the heal: choose the ttl above the longest partition;
  * reads (``get``, ``list``) are served from the local replica: possibly stale, never
    linearizable. A read asking for ``linearizable`` or ``lease`` consistency is refused
    rather than served weaker than asked; ``cas`` is refused (it needs consensus);
  * writes are at least once: there are no client sessions (a retry may reach another
    node, and no node could know what the others applied), so a retried write is a new
    version with a new stamp; for last-writer-wins that repeats the value, and the retry
    may win over a write made since, as any later write would;
  * status: no leader; every node is a ``replica``; its generation is its clock's ``l``.
Bug knobs: ``missing-keys-only``: anti-entropy repairs only keys a replica lacks, never an
older version of a key it holds, so once the rumors of two concurrent versions have gone
cold (say on the two sides of a partition) the replicas never converge
(check/gossip_kv.py catches it); ``physical-clock-only``: stamps come from the local
physical clock alone (no receive rule, Cassandra's client timestamps), so under clock skew
an overwrite that saw the old version can be stamped below it and lose (the monitor's
causality check catches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import LEASE, LINEARIZABLE, ClientRequest, unsupported
from consensuskit.core.env import Env
from consensuskit.protocols.common.replies import ok, refused
from consensuskit.protocols.gossip.hlc import HybridClock, pack, physical, unpack
from consensuskit.protocols.gossip.messages import Entry, KVEntry
from consensuskit.protocols.gossip.node import ANTI_ENTROPY_TIMER, GossipNode
from consensuskit.protocols.gossip.node import DEFAULTS as GOSSIP_DEFAULTS
from consensuskit.protocols.gossip.node import validate_options as validate_gossip_options

KV_BUGS = ("missing-keys-only", "physical-clock-only")
KV_DEFAULTS: dict[str, Any] = {"tombstone_ttl": 60.0}
DEFAULTS: dict[str, Any] = {**GOSSIP_DEFAULTS, **KV_DEFAULTS}
CAS_REFUSED = unsupported("gossip-kv is eventually consistent; compare-and-swap needs consensus")
READ_REFUSED = unsupported("gossip-kv serves reads from the local replica only: ask for consistency=stale")


def validate_options(options: dict[str, Any]) -> None:
    """ValueError (one line) for an option value the node cannot run with."""
    ttl = options.get("tombstone_ttl", KV_DEFAULTS["tombstone_ttl"])
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
        raise ValueError(f"tombstone_ttl must be a number >= 0, got {ttl!r}")
    rest = {k: v for k, v in options.items() if k not in KV_DEFAULTS}
    try:
        validate_gossip_options(rest)
    except ValueError as exc:
        if str(exc).startswith("unknown gossip option"):
            unknown = sorted(set(rest) - set(GOSSIP_DEFAULTS) - {"bugs"})
            raise ValueError(
                f"unknown gossip-kv option(s) {', '.join(unknown)}; valid: {', '.join(sorted(DEFAULTS))}"
            ) from None
        raise


class GossipKVNode(GossipNode):
    # Its counters are packed clock readings (hlc.py), whose milliseconds differ between
    # hosts by far more than any step: the ceiling alone bounds them.
    COUNTER_STEP = None

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        validate_options({k: v for k, v in options.items() if k != "bugs"})
        self.tombstone_ttl = float(options.get("tombstone_ttl", KV_DEFAULTS["tombstone_ttl"]))
        self.kv_bugs = frozenset(options.get("bugs", ())) & frozenset(KV_BUGS)
        # Set before the gossip node replays storage through _merge.
        self.clock = HybridClock()
        self.applied = 0  # versions this replica took (its answers' local "index")
        self.collected = 0  # tombstones dropped by the collection rule
        gossip_options = {k: v for k, v in options.items() if k not in KV_DEFAULTS}
        gossip_options["bugs"] = tuple(b for b in options.get("bugs", ()) if b not in KV_BUGS)
        super().__init__(node_id, env, members, gossip_options)

    role_name = "replica"

    # ------------------------------------------------------------------ inputs
    def on_timer(self, key: str) -> None:
        if key == ANTI_ENTROPY_TIMER:
            self._collect_tombstones()
        super().on_timer(key)

    def on_request(self, request: ClientRequest) -> None:
        op = request.op
        kind = op.kind
        if kind in ("get", "list"):
            if request.consistency in (LINEARIZABLE, LEASE):
                self.env.deliver(refused(request, READ_REFUSED, None))
                return
            result = self._get(op.key) if kind == "get" else self._list(op.key, op.value)
            self.env.deliver(ok(request, result, None, self.applied))
            return
        if kind == "cas":
            self.env.deliver(refused(request, CAS_REFUSED, None))
            return
        if kind not in ("put", "delete"):
            valid = "get, put, delete, list"
            self.env.deliver(refused(request, f"unknown gossip-kv operation {kind!r}; valid: {valid}", None))
            return
        before = self.replica.get(op.key)
        stamp = self._stamp()
        entry = KVEntry(
            key=op.key,
            counter=stamp,
            origin=self.id,
            value=None if kind == "delete" else op.value,
            deleted=kind == "delete",
            prev_counter=None if before is None else before.counter,
            prev_origin="" if before is None else before.origin,
        )
        # _learn appends it to storage: the driver holds the answer until that is durable.
        self._learn([entry], source=None)
        result: dict[str, Any] = {
            "version": stamp,
            "origin": self.id,
            "prev": None if before is None else [before.counter, before.origin],
        }
        if kind == "delete":
            result["deleted"] = _live(before)
        self.env.deliver(ok(request, result, None, self.applied))

    # ------------------------------------------------------------------ reads
    def _get(self, key: str) -> dict[str, Any]:
        entry = self.replica.get(key)
        if not _live(entry):
            return {"value": None, "version": 0}
        assert entry is not None
        return {"value": entry.value, "version": entry.counter, "origin": entry.origin}

    def _list(self, prefix: str, limit: Any) -> dict[str, Any]:
        keys = [
            k for k in sorted(self.replica.entries) if k.startswith(prefix) and _live(self.replica.get(k))
        ]
        cap = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else None
        shown = keys if cap is None else keys[:cap]
        entries = self.replica.entries
        return {
            "items": tuple((k, entries[k].value, entries[k].counter) for k in shown),
            "truncated": len(shown) < len(keys),
        }

    # ------------------------------------------------------------------ clock and merge
    def _stamp(self) -> int:
        """The next write's packed HLC stamp (hlc.py: above everything seen)."""
        pt = physical(self.env.now())
        if "physical-clock-only" in self.kv_bugs:
            # The bug: a physical timestamp, ordered only among this node's own writes.
            own = self.clock
            own.l, own.c = (pt, 0) if pt > own.l else (own.l, own.c + 1)
            return pack(own.l, own.c)
        return pack(*self.clock.tick(pt))

    def _merge(self, entry: Entry) -> bool:
        if "physical-clock-only" not in self.kv_bugs:
            self.clock.observe(physical(self.env.now()), *unpack(entry.counter))
        changed = super()._merge(entry)
        if changed:
            self.applied += 1
        return changed

    def _supersedes(self, stamp: tuple[int, str], other: tuple[int, str]) -> bool:
        if "missing-keys-only" in self.kv_bugs:
            return False  # the bug: only keys the other side lacks are exchanged
        return stamp > other

    def _collect_tombstones(self) -> None:
        """Drop tombstones older than the ttl by this node's clock (the module rules)."""
        if self.tombstone_ttl <= 0:
            return
        horizon = self.clock.l - physical(self.tombstone_ttl)
        old = [
            key
            for key, entry in sorted(self.replica.entries.items())
            if getattr(entry, "deleted", False) and unpack(entry.counter)[0] < horizon
        ]
        for key in old:
            self.replica.drop(key)
            self.hot.pop(key, None)
            self.heard_from.pop(key, None)
        self.collected += len(old)

    # ------------------------------------------------------------------ inspection
    def values(self) -> dict[str, Any]:
        """The live keys and their values (tombstones left out)."""
        return {k: e.value for k, e in sorted(self.replica.entries.items()) if _live(e)}

    def node_status(self) -> NodeStatus:
        entries = self.replica.entries.values()
        tombstones = sum(1 for e in entries if getattr(e, "deleted", False))
        return NodeStatus(
            id=self.id,
            role="replica",
            leader=None,
            generation_name="hlc",
            generation=self.clock.l,
            details={
                "keys": len(self.replica) - tombstones,
                "tombstones": tombstones,
                "tombstones_collected": self.collected,
                "hot_rumors": len(self.hot),
                "root": self.replica.root().hex(),
                "peer_count": len(self.peers),
                "dropped": self.dropped,
                "hlc": [self.clock.l, self.clock.c],
            },
        )


def _live(entry: Entry | None) -> bool:
    return entry is not None and not getattr(entry, "deleted", False)
