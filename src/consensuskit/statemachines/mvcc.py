"""The MVCC key-value store behind the etcd v3 API (services/etcd.py): revisions, ranges at a
past revision, compaction, transactions and leases, deterministic and snapshot-able.

Operations are ``ServiceOp``s whose ``value`` is a dict shaped like etcd's request
messages (keys and values are bytes): ``range``, ``watch`` (events since a revision),
``lease_ttl``, ``lease_leases`` and ``hash_kv`` (etcd's HashKV) read; ``put``,
``delete_range``, ``txn``, ``compact``, ``lease_grant``, ``lease_revoke``,
``lease_keepalive`` and ``lease_expire`` write.
``MVCCStateMachine`` adds exactly-once client sessions (statemachines/sessioned.py).

Rules this module owns (etcd's mvcc and lessor, server/mvcc and server/lease):
  * the store revision starts at 1 and grows by exactly one per write *transaction*
    that changes something: a put always does; a delete or a revoke only when it
    removes a key; a txn whose chosen branch writes nothing keeps it.  Every change of
    one transaction carries the same main revision and a sub-revision in execution order;
  * per key: ``create_revision`` (the revision that created the current generation),
    ``mod_revision`` (its last change), ``version`` (1 at creation, +1 per put; a delete
    ends the generation: the next put starts at version 1 with a new create revision)
    and ``lease`` (0: none);
  * history: every change of a key is kept (a put as its key-value, a delete as a
    tombstone) until compaction, so a range at revision R sees each key's last change
    at or before R.  Compacting at R forgets every change older than R except, per key,
    the last one at or before R when it is a put (so reads at R still work); ranges and
    watches below R fail ``compacted``, above the current revision ``future-revision``.
    Compacting at or below R again fails ``compacted``, except at 0 before any
    compaction: nothing to do, no error (etcd's store starts compacted at -1);
  * a transaction (txn) evaluates every compare on the state before it, runs the
    success or the failure branch, and its ranges see its own earlier writes.  A
    request that fails (lease not found, ignore_value on an absent key, ...) undoes the
    whole transaction: nothing changes, the revision included;
  * a txn with ``precheck`` (every txn the service's edge makes since it was added)
    runs as etcd's applier does (apply.go Txn): the compares of nested txns are judged
    on the state before the txn too, not after the ops ahead of them; then every put
    it will run is checked (ignore_value/ignore_lease on an absent key, then an unknown
    lease), then every range's revision (future; below etcd's first revision, the
    compact revision or -1 before any: compacted), and only then does anything run.
    Its ranges take a negative limit as none and a negative revision as the current
    one, as a plain range does.  A txn without it (a log an earlier release wrote)
    runs as it did: ops in order, each checked as it runs, a negative limit or
    revision malformed, so replaying that log gives the state it gave;
  * a plain put looks its lease up before its key (etcd: "requested lease not found"
    before "key not found"); compacting at a negative revision is ``compacted``;
  * leases: a lease is (id, granted TTL, attached keys, refresh stamp).  The TTL is in
    the grant command (the leader's front decides it, enforcing its minimum).  Time never
    enters this module: a keep-alive is a log command that bumps the lease's stamp, and
    expiry is a ``lease_expire`` command written by the leader's lessor
    (services/etcd_lessor.py) naming the stamp it saw expire: a keep-alive applied in
    between makes it a no-op, so a refreshed lease is never expired.  Revoking or
    expiring deletes the attached keys in one transaction.  A lease id is the client's
    (non-zero) or the next of a counter kept in the state, so replicas agree;
  * bug knobs (``bugs``, for the simulator's lease checks, check/etcd_leases.py):
    ``expire-ignores-keepalive`` honours an expiry whatever its stamp, and
    ``lease-keys-survive`` expires a lease without deleting its keys;
  * errors are results ``{"error": CODE, "message": TEXT}`` with etcd's texts; they
    change nothing and are cached by sessions like any result.  A malformed op is
    ``bad-request`` and changes nothing: no op raises;
  * results are plain msgpack values; a key-value is the tuple
    ``(key, create_revision, mod_revision, version, value, lease)``;
  * a key's history is a tuple while it holds at most ``SHORT_HISTORY`` changes, a list
    beyond: the garbage collector stops tracking a tuple of untracked items (a change
    is ints and a key-value of bytes and ints), and a million one-change keys kept as
    lists made every full collection walk a million lists (pauses of up to a second on
    the event loop, against an election timeout of one);
  * a watch finds the keys its range changed since its start revision from the recent
    changes, ``(revision, key)`` in revision order since the store was built or
    restored (``_recent``, pruned by compaction), when they are fewer than the keys in
    its range; else by looking at every key of the range.  So a watch over a prefix of
    100,000 keys wakes to one write by looking at one key, not 100,000 histories.  Both
    ways give the same events; ``_recent`` is derived, never in a snapshot or a digest,
    and holds at most about 2 x RECENT_KEPT changes (the newest, whole revisions), so its
    memory is bounded where the history's grows until compaction;
  * a snapshot is a value taken in two C-speed copies (it is taken on the event loop,
    where a Python loop over a million keys costs half a second): the keys and their
    histories, in the store's own order (its insertion order: the same on every replica
    at one revision, and ``restore`` keeps it), flattened into (key, changes) pairs only
    when encoded (``core.messages.LazyArray``).  So a history list is only ever changed
    at its end (a change appended, an undone one popped; a tuple is replaced), and the
    changes a snapshot at revision R saw are its history's prefix up to R; compaction
    gives a key a new, shorter history instead of cutting the old one, which snapshots
    may still hold.
"""

from __future__ import annotations

import bisect
import operator
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import chain, compress
from typing import Any

import msgpack

from consensuskit.core.client import ClientRequest
from consensuskit.core.messages import LazyArray
from consensuskit.statemachines.auth import AUTH, AUTH_KINDS, AUTH_READ, AuthState
from consensuskit.statemachines.mvcc_auth import ROOT_ONLY, needs
from consensuskit.statemachines.sessioned import Sessioned

# Operation kinds (ServiceOp.kind) and which of them read.
READ_KINDS = ("range", "watch", "lease_ttl", "lease_leases", "hash_kv")
WRITE_KINDS = (
    "put",
    "delete_range",
    "txn",
    "compact",
    "lease_grant",
    "lease_revoke",
    "lease_keepalive",
    "lease_expire",
)
KINDS = READ_KINDS + WRITE_KINDS

KV = tuple[bytes, int, int, int, bytes, int]  # key, create, mod, version, value, lease
# A precheck txn's plan: (succeeded, its branch's ops as (kind, body, a nested txn's plan)).
Plan = tuple[bool, list[tuple[str, dict[str, Any], "Plan | None"]]]
# One change of a key: (main revision, sub revision, the key-value or None for a delete).
Change = tuple[int, int, "KV | None"]
# A key's changes, oldest first: a tuple while short, a list beyond (module rules).
History = tuple[Change, ...] | list[Change]

# Bug knobs of the store (module rules); the service lists them (services/etcd.py).
BUGS = ("expire-ignores-keepalive", "lease-keys-survive")
MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL (seconds)
WATCH_BATCH = 1000  # events one watch read returns at most
SHORT_HISTORY = 8  # changes a key's history holds as a tuple (module rules)
SNAPSHOT_FORMAT = 1
HASH_CHUNK = 10_000  # keys packed at once by hash_kv (a bounded buffer, whatever the size)

# etcd's error texts (api/v3rpc/rpctypes, server/mvcc); the code is ours, for the fronts.
ERRORS = {
    "empty-key": "etcdserver: key is not provided",
    "key-not-found": "etcdserver: key not found",
    "value-provided": "etcdserver: value is provided",
    "lease-provided": "etcdserver: lease is provided",
    "lease-not-found": "etcdserver: requested lease not found",
    "lease-exists": "etcdserver: lease already exists",
    "lease-ttl-too-large": "etcdserver: too large lease TTL",
    "compacted": "etcdserver: mvcc: required revision has been compacted",
    "future-revision": "etcdserver: mvcc: required revision is a future revision",
    "duplicate-key": "etcdserver: duplicate key given in txn request",
    "bad-request": "etcdserver: malformed request",
}

# Compare targets and results, sort orders and targets: etcd's enum numbers.
VERSION, CREATE, MOD, VALUE, LEASE = range(5)
EQUAL, GREATER, LESS, NOT_EQUAL = range(4)
_FIELD_NAMES = {VERSION: "version", CREATE: "create_revision", MOD: "mod_revision", LEASE: "lease"}
SORT_NONE, SORT_ASCEND, SORT_DESCEND = range(3)
SORT_KEY, SORT_VERSION, SORT_CREATE, SORT_MOD, SORT_VALUE = range(5)
PUT_EVENT, DELETE_EVENT = 0, 1


class MVCCError(Exception):
    def __init__(self, code: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or ERRORS.get(code, code))
        self.code = code
        self.message = message or ERRORS.get(code, code)
        self.extra = extra

    def result(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def _bad(message: str) -> MVCCError:
    return MVCCError("bad-request", f"etcdserver: malformed request: {message}")


def as_bytes(value: Any, name: str, *, default: bytes = b"") -> bytes:
    """A key or value as the store keeps it (a str is UTF-8); ``bad-request`` otherwise.
    The service's edge uses it too (services/etcd.py)."""
    if value is None:
        return default
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8")
    raise _bad(f"{name} must be bytes")


def _int(value: Any, name: str, *, default: int = 0, least: int | None = None) -> int:
    if value is None:
        return default
    if type(value) is not int:
        raise _bad(f"{name} must be an integer")
    if least is not None and value < least:
        raise _bad(f"{name} must be >= {least}")
    return value


def _flag(value: Any) -> bool:
    return bool(value) if value is not None else False


def _dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{name} must be a map")
    return value


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """etcd's range rule: no end -> the key itself; end ``\\0`` -> every key >= start
    (start ``\\0`` too: every key); else [start, end)."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


def conflicts(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether a put of ``key`` and a delete of [start, end) in one txn are refused as
    "duplicate key" (etcd's checkIntervals): as ``in_range``, except that a delete to
    ``\\0`` (every key from start on) conflicts with none, for etcd's interval tree
    reads that range as [start, "\\0"), which holds no key (etcd 3.4 to 3.6 alike)."""
    return end != b"\0" and in_range(key, start, end)


def prefix_end(prefix: bytes) -> bytes:
    """The range end of every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # all 0xff (or empty): every key from the prefix on


class Lease:
    __slots__ = ("id", "keys", "stamp", "ttl")

    def __init__(self, lease_id: int, ttl: int, stamp: int = 0) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.stamp = stamp  # bumped by each keep-alive (module rules)
        self.keys: set[bytes] = set()


# The recent changes a store keeps for its watches (module rules): past twice this, the
# newest this many, whole revisions.  Watches wake to the newest revisions.
RECENT_KEPT = 65_536


class MVCCStore:
    """The executor (statemachines/sessioned.py's ``Executor``): see the module rules."""

    __slots__ = (
        "_changes",
        "_hist",
        "_journal",
        "_keys",
        "_live",
        "_recent",
        "_recent_from",
        "bugs",
        "compact_revision",
        "leases",
        "next_lease",
        "revision",
    )

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.bugs = bugs
        self.revision = 1
        self.compact_revision = 0  # 0: never compacted
        # key -> its changes, oldest first (Invariant: (main, sub) strictly increase).
        self._hist: dict[bytes, History] = {}
        self._keys: list[bytes] = []  # every key in _hist, sorted
        self._changes = 0  # the changes in _hist, counted (len() is asked after every batch)
        self._live: dict[bytes, KV] = {}  # the current key-values
        # (main revision, key) of every change from revision _recent_from on, in order
        # (module rules: the watches' index; rebuilt empty by restore).
        self._recent: list[tuple[int, bytes]] = []
        self._recent_from = self.revision + 1
        self.leases: dict[int, Lease] = {}
        self.next_lease = 1
        # While a write transaction runs: how to undo each change (None: not in one).
        self._journal: list[Callable[[], None]] | None = None

    # ------------------------------------------------------------------ dispatch
    def execute(self, op: Any) -> Any:
        handler = _HANDLERS.get(op.kind)
        if handler is None:
            return MVCCError("bad-request", f"etcdserver: unknown operation {op.kind!r}").result()
        try:
            args = _dict(op.value if op.value is not None else {}, "the request")
            return handler(self, args)
        except MVCCError as exc:
            return exc.result()

    # ------------------------------------------------------------------ reads
    def _range(self, req: dict[str, Any], *, strict: bool = False) -> dict[str, Any]:
        """A range; as etcd, a negative limit is no limit and a negative revision the
        current one.  ``strict``: refused as malformed, as a txn without ``precheck``
        always was (module rules: the meaning of a log an earlier release wrote)."""
        key = as_bytes(req.get("key"), "key")
        end = as_bytes(req.get("range_end"), "range_end")
        least = 0 if strict else None
        rev = max(_int(req.get("revision"), "revision", least=least), 0)
        limit = max(_int(req.get("limit"), "limit", least=least), 0)
        order = _int(req.get("sort_order"), "sort_order")
        target = _int(req.get("sort_target"), "sort_target")
        self._check_revision(rev)
        kvs = list(self._kvs_at(key, end, rev))
        # etcd's count is of the range's keys, before the revision bounds filter them
        # (apply.go Range: pruneKVs leaves the store's count alone); "more" is after.
        count = len(kvs)
        for name, field, cmp in (
            ("min_mod_revision", 2, 1),
            ("max_mod_revision", 2, -1),
            ("min_create_revision", 1, 1),
            ("max_create_revision", 1, -1),
        ):
            bound = _int(req.get(name), name)
            if bound:
                kvs = [kv for kv in kvs if (kv[field] - bound) * cmp >= 0]
        if order == SORT_NONE and target != SORT_KEY:
            order = SORT_ASCEND  # etcd: a sort target without an order sorts ascending
        if order != SORT_NONE:
            field = {SORT_KEY: 0, SORT_VERSION: 3, SORT_CREATE: 1, SORT_MOD: 2, SORT_VALUE: 4}.get(target)
            if field is None:
                raise _bad(f"unknown sort_target {target}")
            kvs.sort(key=lambda kv: kv[field], reverse=order == SORT_DESCEND)
        more = bool(limit) and len(kvs) > limit
        if more:
            kvs = kvs[:limit]
        result: dict[str, Any] = {"revision": self._seen_revision(), "count": count, "more": more}
        if _flag(req.get("count_only")):
            result["kvs"], result["more"] = (), False
        elif _flag(req.get("keys_only")):
            result["kvs"] = tuple((kv[0], kv[1], kv[2], kv[3], b"", kv[5]) for kv in kvs)
        else:
            result["kvs"] = tuple(kvs)
        return result

    def _seen_revision(self) -> int:
        """The revision a read or delete inside the running transaction answers with: the
        transaction's own once it has changed something, as etcd's write txn answers
        (so a range after a put in one txn says the put's revision)."""
        return self.revision + 1 if self._journal else self.revision

    def _check_revision(self, rev: int) -> None:
        if rev > self.revision:
            raise MVCCError("future-revision", revision=self.revision)
        if rev and rev < self.compact_revision:
            raise MVCCError("compacted", compact_revision=self.compact_revision)

    def _key_span(self, key: bytes, end: bytes) -> Iterator[bytes]:
        keys = self._keys
        if not end:
            if key in self._hist:
                yield key
            return
        i = bisect.bisect_left(keys, key)
        while i < len(keys):
            k = keys[i]
            if end != b"\0" and k >= end:
                return
            yield k
            i += 1

    def _kvs_at(self, key: bytes, end: bytes, rev: int) -> Iterator[KV]:
        if not rev or rev == self.revision:
            live = self._live
            if not end:
                kv = live.get(key)
                if kv is not None:
                    yield kv
                return
            for k in self._key_span(key, end):
                kv = live.get(k)
                if kv is not None:
                    yield kv
            return
        for k in self._key_span(key, end):
            kv = self._at(k, rev)
            if kv is not None:
                yield kv

    def _at(self, key: bytes, rev: int) -> KV | None:
        """``key`` as of revision ``rev``: its last change at or before it."""
        changes = self._hist.get(key, ())
        i = bisect.bisect_right(changes, (rev, float("inf")), key=lambda c: (c[0], c[1]))
        return changes[i - 1][2] if i else None

    def _watch(self, req: dict[str, Any]) -> dict[str, Any]:
        """Events of keys in [key, range_end) from ``start_revision`` on, in revision order:
        whole revisions, as many as fit in WATCH_BATCH events, and the first one whole
        however many it holds (a delete of many keys, a lease's keys); ``next`` is where
        to continue."""
        key = as_bytes(req.get("key"), "key")
        end = as_bytes(req.get("range_end"), "range_end")
        start = _int(req.get("start_revision"), "start_revision", least=0) or self.revision + 1
        with_prev = _flag(req.get("prev_kv"))
        if start and start < self.compact_revision:
            raise MVCCError("compacted", compact_revision=self.compact_revision)
        events: list[tuple[int, int, int, KV, KV | None]] = []
        for k in self._changed_keys(key, end, start):
            changes = self._hist[k]
            lo = bisect.bisect_left(changes, (start,), key=lambda c: (c[0],))
            for i in range(lo, len(changes)):
                main, sub, kv = changes[i]
                prev = changes[i - 1][2] if with_prev and i > 0 else None
                if kv is None:
                    # etcd's delete event: the key with the deletion's mod revision, no value
                    events.append((main, sub, DELETE_EVENT, (k, 0, main, 0, b"", 0), prev))
                else:
                    events.append((main, sub, PUT_EVENT, kv, prev))
        events.sort(key=lambda e: (e[0], e[1]))
        nxt = self.revision + 1
        if len(events) > WATCH_BATCH:
            cut = events[WATCH_BATCH][0]  # stop before a revision that does not fit whole,
            if cut == events[0][0]:  # unless it is the first: it goes whole (a big delete)
                cut += 1
            events = [e for e in events if e[0] < cut]
            nxt = cut
        return {
            "revision": self.revision,
            "compact_revision": self.compact_revision,
            "events": tuple((e[2], e[3], e[4]) for e in events),
            "next": nxt,
        }

    def _changed_keys(self, key: bytes, end: bytes, start: int) -> Iterable[bytes]:
        """Keys of [key, range_end) that may have changed at ``start`` or later: from the
        recent changes when they are fewer than the range's keys (module rules)."""
        if not end or start < self._recent_from:
            return self._key_span(key, end)
        recent, keys = self._recent, self._keys
        first = bisect.bisect_left(recent, (start,))
        lo = bisect.bisect_left(keys, key)
        hi = len(keys) if end == b"\0" else bisect.bisect_left(keys, end, lo)
        if len(recent) - first >= hi - lo:  # counted without copying the tail
            return self._key_span(key, end)
        return sorted({k for _, k in recent[first:] if in_range(k, key, end)})

    # ------------------------------------------------------------------ writes
    def _write(self, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``body`` as one transaction: undone whole if it raises (module rules)."""
        self._journal = []
        revision = self.revision
        try:
            result = body()
        except MVCCError:
            for undo in reversed(self._journal):
                undo()
            self.revision = revision
            raise
        finally:
            journal, self._journal = self._journal, None
        if journal:
            self.revision = revision + 1
            result["revision"] = self.revision
            if len(self._recent) > 2 * RECENT_KEPT:
                self._trim_recent()
        return result

    def _trim_recent(self) -> None:
        """Keep the newest RECENT_KEPT recent changes, and only whole revisions of them
        (a watch starting before what is kept looks at every key, as before)."""
        kept = self._recent[-RECENT_KEPT:]
        self._recent_from = kept[0][0] + 1  # that revision may have lost changes to the cut
        self._recent = kept[bisect.bisect_left(kept, (self._recent_from,)) :]

    def _change(self, key: bytes, kv: KV | None) -> None:
        """Record one change at the running transaction's revision."""
        assert self._journal is not None
        main = self.revision + 1
        hist = self._hist
        changes = hist.get(key)
        new_key = changes is None
        if new_key:
            bisect.insort(self._keys, key)
        change = (main, len(self._journal), kv)
        grown: History
        if changes is None:
            grown = hist[key] = (change,)
        elif type(changes) is tuple:
            grown = hist[key] = _history((*changes, change))
        else:
            changes.append(change)  # type: ignore[union-attr]
            grown = changes
        self._changes += 1
        self._recent.append((main, key))
        before = self._live.get(key)
        if kv is None:
            self._live.pop(key, None)
        else:
            self._live[key] = kv
        old_lease = before[5] if before is not None else 0
        new_lease = kv[5] if kv is not None else 0
        if old_lease != new_lease or kv is None:
            if old_lease and old_lease in self.leases:
                self.leases[old_lease].keys.discard(key)
            if new_lease:
                self.leases[new_lease].keys.add(key)

        def undo() -> None:
            self._changes -= 1
            self._recent.pop()
            if new_key:
                del hist[key]
                self._keys.remove(key)
            elif grown is changes:
                grown.pop()  # type: ignore[union-attr]  # a list grown in place
            else:
                hist[key] = changes  # type: ignore[assignment]  # the history it replaced
            if kv is not None and new_lease and new_lease in self.leases:
                self.leases[new_lease].keys.discard(key)
            if before is None:
                self._live.pop(key, None)
            else:
                self._live[key] = before
                if old_lease and old_lease in self.leases:
                    self.leases[old_lease].keys.add(key)

        self._journal.append(undo)

    def _do_put(self, req: dict[str, Any], *, alone: bool = False) -> dict[str, Any]:
        """A put; ``alone``: not in a txn, where etcd looks its lease up before its key
        (apply.go's Put; in a txn, checkRequestPut looks at the key first)."""
        key = as_bytes(req.get("key"), "key")
        if not key:
            raise MVCCError("empty-key")
        value = as_bytes(req.get("value"), "value")
        lease = _int(req.get("lease"), "lease", least=0)
        ignore_value = _flag(req.get("ignore_value"))
        ignore_lease = _flag(req.get("ignore_lease"))
        if ignore_value and value:
            raise MVCCError("value-provided")
        if ignore_lease and lease:
            raise MVCCError("lease-provided")
        if alone and lease and lease not in self.leases:
            raise MVCCError("lease-not-found")
        prev = self._live.get(key)
        if (ignore_value or ignore_lease) and prev is None:
            raise MVCCError("key-not-found")
        if ignore_value:
            value = prev[4]  # type: ignore[index]
        if ignore_lease:
            lease = prev[5]  # type: ignore[index]
        if lease and lease not in self.leases:
            raise MVCCError("lease-not-found")
        main = self.revision + 1
        if prev is None:
            kv = (key, main, main, 1, value, lease)
        else:
            kv = (key, prev[1], main, prev[3] + 1, value, lease)
        self._change(key, kv)
        result: dict[str, Any] = {"revision": main}
        if _flag(req.get("prev_kv")) and prev is not None:
            result["prev_kv"] = prev
        return result

    def _do_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        key = as_bytes(req.get("key"), "key")
        end = as_bytes(req.get("range_end"), "range_end")
        doomed = list(self._kvs_at(key, end, 0))
        for kv in doomed:
            self._change(kv[0], None)
        result: dict[str, Any] = {"deleted": len(doomed), "revision": self._seen_revision()}
        if _flag(req.get("prev_kv")):
            result["prev_kvs"] = tuple(doomed)
        return result

    def _put(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._write(lambda: self._do_put(req, alone=True))

    def _delete_range(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._write(lambda: self._do_delete(req))

    def _txn(self, req: dict[str, Any]) -> dict[str, Any]:
        if _flag(req.get("precheck")):
            return self._write(lambda: self._run_plan(self._plan(req)))
        return self._write(lambda: self._do_txn(req))

    def _compare(self, cmp: Any) -> bool:
        cmp = _dict(cmp, "a compare")
        key = as_bytes(cmp.get("key"), "compare key")
        end = as_bytes(cmp.get("range_end"), "compare range_end")
        target = _int(cmp.get("target"), "compare target")
        result = _int(cmp.get("result"), "compare result")
        if (target not in _FIELD_NAMES and target != VALUE) or result not in range(4):
            raise _bad("unknown compare target or result")
        kvs = list(self._kvs_at(key, end, 0))
        if not kvs:
            if target == VALUE:
                return False  # etcd: a value compare on an absent key fails
            kvs = [(key, 0, 0, 0, b"", 0)]
        if target == VALUE:
            want: Any = as_bytes(cmp.get("value"), "compare value")
        else:
            name = _FIELD_NAMES[target]
            want = _int(cmp.get(name), f"compare {name}")
        field = {VERSION: 3, CREATE: 1, MOD: 2, VALUE: 4, LEASE: 5}[target]
        for kv in kvs:
            have = kv[field]
            ok = (
                have == want
                if result == EQUAL
                else have > want
                if result == GREATER
                else have < want
                if result == LESS
                else have != want
            )
            if not ok:
                return False
        return True

    def _branch(self, req: dict[str, Any]) -> tuple[bool, list[tuple[str, dict[str, Any]]]]:
        """A txn's compares judged on the store as it stands, and the ops of the branch
        they pick, as (kind, body), checked for shape and duplicate keys."""
        compares = req.get("compare") or ()
        if not isinstance(compares, (list, tuple)):
            raise _bad("compare must be a list")
        succeeded = all(self._compare(c) for c in compares)
        branch = req.get("success" if succeeded else "failure") or ()
        if not isinstance(branch, (list, tuple)):
            raise _bad("success and failure must be lists")
        self._check_duplicates(branch)
        ops: list[tuple[str, dict[str, Any]]] = []
        for item in branch:
            item = _dict(item, "a request op")
            if len(item) != 1:
                raise _bad("a request op holds exactly one of range, put, delete_range, txn")
            ((kind, body),) = item.items()
            if kind not in ("range", "put", "delete_range", "txn"):
                raise _bad(f"unknown request op {kind!r}")
            ops.append((kind, _dict(body, kind)))
        return succeeded, ops

    def _do_txn(self, req: dict[str, Any]) -> dict[str, Any]:
        """A txn without ``precheck`` (module rules): its ops in order, a nested txn's
        compares judged when it is reached."""
        succeeded, ops = self._branch(req)
        responses = []
        for kind, body in ops:
            if kind == "range":
                responses.append({"range": self._range(body, strict=True)})
            elif kind == "put":
                responses.append({"put": self._do_put(body)})
            elif kind == "delete_range":
                responses.append({"delete_range": self._do_delete(body)})
            else:
                responses.append({"txn": self._do_txn(body)})
        return {"succeeded": succeeded, "responses": tuple(responses), "revision": self.revision}

    def _plan(self, req: dict[str, Any]) -> Plan:
        """What a ``precheck`` txn will run: whether it succeeded and its branch's ops,
        a nested txn with its own plan.  Every compare, nested ones included, is judged
        here on the state before the txn (etcd's compareToPath)."""
        succeeded, ops = self._branch(req)
        return succeeded, [(kind, body, self._plan(body) if kind == "txn" else None) for kind, body in ops]

    def _check_plan(self, plan: Plan, kind: str) -> None:
        """etcd's checkRequests over the ops a plan runs, nested ones in place, on the
        state before the txn: each put (``kind`` "put") or each range's revision."""
        for op_kind, body, nested in plan[1]:
            if nested is not None:
                self._check_plan(nested, kind)
            elif op_kind == kind == "put":
                ignores = _flag(body.get("ignore_value")) or _flag(body.get("ignore_lease"))
                if ignores and as_bytes(body.get("key"), "key") not in self._live:
                    raise MVCCError("key-not-found")
                lease = _int(body.get("lease"), "lease", least=0)
                if lease and lease not in self.leases:
                    raise MVCCError("lease-not-found")
            elif op_kind == kind == "range":
                rev = _int(body.get("revision"), "revision")
                if rev > self.revision:
                    raise MVCCError("future-revision", revision=self.revision)
                # Below etcd's first revision: its compact revision, -1 before any.
                if rev and rev < (self.compact_revision or -1):
                    raise MVCCError("compacted", compact_revision=self.compact_revision)

    def _run_plan(self, plan: Plan, top: bool = True) -> dict[str, Any]:
        """Run a ``precheck`` txn as etcd's applier does: every put checked, then every
        range's revision, before anything runs (module rules)."""
        if top:
            self._check_plan(plan, "put")
            self._check_plan(plan, "range")
        succeeded, ops = plan
        responses: list[dict[str, Any]] = []
        for kind, body, nested in ops:
            if nested is not None:
                responses.append({"txn": self._run_plan(nested, top=False)})
            elif kind == "range":
                responses.append({"range": self._range(body)})
            elif kind == "put":
                responses.append({"put": self._do_put(body)})
            else:
                responses.append({"delete_range": self._do_delete(body)})
        return {"succeeded": succeeded, "responses": tuple(responses), "revision": self.revision}

    def _check_duplicates(self, branch: Any) -> None:
        """etcd refuses a txn branch that puts one key twice, or puts a key it also deletes."""
        puts: set[bytes] = set()
        for item in branch:
            if isinstance(item, dict) and isinstance(item.get("put"), dict):
                key = as_bytes(item["put"].get("key"), "key")
                if key in puts:
                    raise MVCCError("duplicate-key")
                puts.add(key)
        for item in branch:
            if isinstance(item, dict) and isinstance(item.get("delete_range"), dict):
                d = item["delete_range"]
                start, end = as_bytes(d.get("key"), "key"), as_bytes(d.get("range_end"), "range_end")
                if any(conflicts(k, start, end) for k in puts):
                    raise MVCCError("duplicate-key")

    def _compact(self, req: dict[str, Any]) -> dict[str, Any]:
        rev = _int(req.get("revision"), "revision")
        if rev < 0:  # etcd's store starts compacted at -1: a negative revision is below it
            raise MVCCError("compacted", compact_revision=self.compact_revision)
        if rev > self.revision:
            raise MVCCError("future-revision", revision=self.revision)
        if rev == 0 and self.compact_revision == 0:
            # As etcd (whose never-compacted store is at -1): nothing to compact, no error.
            return {"revision": self.revision, "compact_revision": 0}
        if rev <= self.compact_revision:
            raise MVCCError("compacted", compact_revision=self.compact_revision)
        self.compact_revision = rev
        emptied = []
        for key, changes in self._hist.items():
            i = bisect.bisect_right(changes, (rev, float("inf")), key=lambda c: (c[0], c[1]))
            if i == 0:
                continue
            keep_from = i - 1 if changes[i - 1][2] is not None else i
            if keep_from:
                # A new history, not a cut of this one: a snapshot may hold it.
                changes = self._hist[key] = _history(changes[keep_from:])
                self._changes -= keep_from
            if not changes:
                emptied.append(key)
        for key in emptied:
            del self._hist[key]
        # A new list, not a cut of this one, as for the histories.
        self._recent = self._recent[bisect.bisect_left(self._recent, (rev,)) :]
        if emptied:
            gone = set(emptied)
            self._keys = [k for k in self._keys if k not in gone]
            # A deletion at the compact revision went with its key's history: its recent
            # change goes too (a watch from that revision would look the key up).
            self._recent = [change for change in self._recent if change[1] not in gone]
        self._recent_from = max(self._recent_from, rev)
        return {"revision": self.revision, "compact_revision": rev}

    # ------------------------------------------------------------------ leases
    def _lease_grant(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(req.get("id"), "id", least=0)
        ttl = _int(req.get("ttl"), "ttl", least=1, default=1)
        if ttl > MAX_LEASE_TTL:
            raise MVCCError("lease-ttl-too-large")
        if lease_id == 0:
            while self.next_lease in self.leases:
                self.next_lease += 1
            lease_id = self.next_lease
            self.next_lease += 1
        elif lease_id in self.leases:
            raise MVCCError("lease-exists")
        self.leases[lease_id] = Lease(lease_id, ttl)
        return {"id": lease_id, "ttl": ttl, "revision": self.revision}

    def _lease_revoke(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(req.get("id"), "id")
        if lease_id not in self.leases:
            raise MVCCError("lease-not-found")
        return self._end_lease(lease_id)

    def _end_lease(self, lease_id: int, keep_keys: bool = False) -> dict[str, Any]:
        lease = self.leases[lease_id]

        def body() -> dict[str, Any]:
            doomed = [] if keep_keys else sorted(lease.keys)
            for key in doomed:
                self._change(key, None)
            return {"deleted": len(doomed)}

        result = self._write(body)
        del self.leases[lease_id]
        result.setdefault("revision", self.revision)
        return result

    def _lease_keepalive(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(req.get("id"), "id")
        lease = self.leases.get(lease_id)
        if lease is None:  # etcd answers a keep-alive of an unknown lease with TTL 0
            return {"id": lease_id, "ttl": 0, "revision": self.revision}
        lease.stamp += 1
        return {"id": lease_id, "ttl": lease.ttl, "stamp": lease.stamp, "revision": self.revision}

    def _lease_expire(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(req.get("id"), "id")
        stamp = _int(req.get("stamp"), "stamp")
        lease = self.leases.get(lease_id)
        stale = lease is not None and lease.stamp != stamp and "expire-ignores-keepalive" not in self.bugs
        if lease is None or stale:
            return {"expired": False, "revision": self.revision}
        result = self._end_lease(lease_id, keep_keys="lease-keys-survive" in self.bugs)
        result["expired"] = True
        return result

    def _lease_ttl(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(req.get("id"), "id")
        lease = self.leases.get(lease_id)
        if lease is None:
            return {"id": lease_id, "ttl": -1, "granted_ttl": 0, "keys": (), "revision": self.revision}
        keys = tuple(sorted(lease.keys)) if _flag(req.get("keys")) else ()
        return {
            "id": lease_id,
            "ttl": lease.ttl,
            "granted_ttl": lease.ttl,
            "stamp": lease.stamp,
            "keys": keys,
            "revision": self.revision,
        }

    def _hash_kv(self, req: dict[str, Any]) -> dict[str, Any]:
        """etcd's HashKV: a CRC-32 of every change kept up to ``revision`` (0: now), keys
        in order, so replicas that applied as far agree (a ``compacted`` error below the
        compaction, as etcd).  Packed in chunks of ``HASH_CHUNK`` keys at C speed: it runs
        on the node's event loop, like any read."""
        rev = _int(req.get("revision"), "revision", least=0) or self.revision
        self._check_revision(rev)
        keys = tuple(self._keys)
        histories = tuple(map(self._hist.__getitem__, keys))
        crc = 0
        for start in range(0, len(keys), HASH_CHUNK):
            pairs = _history_chunk(keys, histories, rev, start, start + HASH_CHUNK)
            # A key first written after ``rev`` has no change up to it: not hashed.
            crc = zlib.crc32(_pack_for_hash(tuple(filter(_second, pairs))), crc)
        return {
            "revision": self.revision,
            "hash": crc,
            "compact_revision": self.compact_revision,
            "hash_revision": rev,
        }

    def _lease_leases(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "leases": tuple((i, self.leases[i].ttl, self.leases[i].stamp) for i in sorted(self.leases)),
            "revision": self.revision,
        }

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> Any:
        """Per key its changes, in the store's order; leases in id order (attached keys
        are rebuilt from the live key-values).  The history is flattened when encoded."""
        hist = self._hist
        keys, histories = tuple(hist), tuple(hist.values())
        history = LazyArray(
            len(keys), 1, partial(_history_chunk, keys, histories, self.revision), small_items=True
        )
        leases = tuple((i, self.leases[i].ttl, self.leases[i].stamp) for i in sorted(self.leases))
        return {
            "format": SNAPSHOT_FORMAT,
            "revision": self.revision,
            "compact_revision": self.compact_revision,
            "next_lease": self.next_lease,
            "history": history,
            "leases": leases,
        }

    def restore(self, snapshot: Any) -> None:
        """The state a ``snapshot()`` held; ValueError, and nothing changed, on anything
        else.  Checked and built in passes over all keys or changes at once (C loops over
        the decoded tuples, which it keeps), not in a Python loop per key: a follower
        restores on its event loop, and a million keys took seconds that way."""
        try:
            if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"expected an MVCC snapshot of format {SNAPSHOT_FORMAT}")
            pairs = tuple(snapshot["history"])  # decoded: a tuple; in-process: a LazyArray
            _tuples_of(2, pairs, "a key's entry is (key, changes)")
            keys = tuple(map(_first, pairs))
            histories = tuple(map(_second, pairs))
            _only(bytes, keys, "keys must be bytes")
            _only(tuple, histories, "a key's changes are an array")
            if 0 in map(len, histories):
                raise ValueError("a key without changes")
            changes = tuple(chain.from_iterable(histories))
            _tuples_of(3, changes, "a change is (revision, sub-revision, key-value)")
            _only(int, map(_first, changes), "revisions are integers")
            _only(int, map(_second, changes), "revisions are integers")
            kvs = tuple(filter(_is_not_none, map(_third, changes)))
            _tuples_of(6, kvs, "a key-value is (key, create, mod, version, value, lease)")
            for field, kind in enumerate((bytes, int, int, int, bytes, int)):
                _only(kind, map(operator.itemgetter(field), kvs), "a key-value holds bytes and integers")
            lasts = tuple(map(_third, map(_last_change, histories)))
            leases = {int(i): Lease(int(i), int(ttl), int(stamp)) for i, ttl, stamp in snapshot["leases"]}
            revision = int(snapshot["revision"])
            compact = int(snapshot["compact_revision"])
            next_lease = int(snapshot["next_lease"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an MVCC snapshot: {exc}") from exc
        hist: dict[bytes, History] = dict(zip(keys, histories, strict=True))
        for key in compress(keys, map(SHORT_HISTORY.__lt__, map(len, histories))):
            hist[key] = list(hist[key])  # a long history is kept as a list (module rules)
        live: dict[bytes, KV] = dict(compress(zip(keys, lasts, strict=True), map(_is_not_none, lasts)))
        if leases:
            # A key naming a lease the snapshot lacks (only the lease-keys-survive knob
            # leaves one) stays as it is, attached to nothing.
            holders = tuple(map(_lease_of, live.values()))
            attached = zip(live, holders, strict=True)
            for key, lease_id in compress(attached, map(leases.__contains__, holders)):
                leases[lease_id].keys.add(key)
        self._hist, self._live, self.leases = hist, live, leases
        self._keys = sorted(hist)
        self._changes = sum(map(len, hist.values()))
        self.revision, self.compact_revision, self.next_lease = revision, compact, next_lease
        self._recent, self._recent_from = [], revision + 1

    def digest(self) -> Any:
        return (
            self.revision,
            self.compact_revision,
            tuple(self._live[k] for k in sorted(self._live)),
            tuple((i, self.leases[i].ttl, self.leases[i].stamp) for i in sorted(self.leases)),
        )

    def __len__(self) -> int:
        return self._changes + len(self.leases)

    # ------------------------------------------------------------------ inspection
    def live(self) -> dict[bytes, KV]:
        return dict(self._live)


def _history(changes: Sequence[Change]) -> History:
    """A key's history as it is kept: a tuple while short, a list beyond (``changes``
    itself when it already is the right kind)."""
    if len(changes) <= SHORT_HISTORY:
        return tuple(changes)
    return changes if type(changes) is list else list(changes)


_first, _second, _third = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
_main_revision = _first  # of a change
_last_change = operator.itemgetter(-1)
_lease_of = operator.itemgetter(5)  # of a key-value
_is_not_none = partial(operator.is_not, None)


def _only(kind: type, values: Iterable[Any], what: str) -> None:
    """ValueError(what) unless every value is exactly of ``kind`` (bool is not an int)."""
    if not set(map(type, values)) <= {kind}:
        raise ValueError(what)


def _tuples_of(length: int, values: tuple[Any, ...], what: str) -> None:
    """ValueError(what) unless every value is a tuple of ``length`` items."""
    _only(tuple, values, what)
    if set(map(len, values)) - {length}:
        raise ValueError(what)


def _history_chunk(
    keys: tuple[bytes, ...], histories: tuple[History, ...], revision: int, start: int, stop: int
) -> tuple[tuple[bytes, tuple[Change, ...]], ...]:
    """Keys [start, stop) of a snapshot taken at ``revision``, as (key, its changes)
    pairs: the changes up to ``revision``, a prefix of the key's history (module rules).
    A snapshot's histories are never empty (an emptied key leaves the store)."""
    lists = histories[start:stop]  # tuples and lists
    pairs = tuple(zip(keys[start:stop], map(tuple, lists), strict=True))
    # In C: whether any of these keys changed since (then cut those back).
    if max(map(_main_revision, map(_last_change, lists)), default=0) > revision:
        pairs = tuple(
            (key, changes[: bisect.bisect_right(changes, revision, key=_main_revision)])
            if changes[-1][0] > revision
            else (key, changes)
            for key, changes in pairs
        )
    return pairs


_pack_for_hash = msgpack.Packer(use_bin_type=True).pack

_HANDLERS: dict[str, Callable[[MVCCStore, dict[str, Any]], dict[str, Any]]] = {
    "range": MVCCStore._range,
    "hash_kv": MVCCStore._hash_kv,
    "watch": MVCCStore._watch,
    "lease_ttl": MVCCStore._lease_ttl,
    "lease_leases": MVCCStore._lease_leases,
    "put": MVCCStore._put,
    "delete_range": MVCCStore._delete_range,
    "txn": MVCCStore._txn,
    "compact": MVCCStore._compact,
    "lease_grant": MVCCStore._lease_grant,
    "lease_revoke": MVCCStore._lease_revoke,
    "lease_keepalive": MVCCStore._lease_keepalive,
    "lease_expire": MVCCStore._lease_expire,
}


_WRITE_KINDS = frozenset(WRITE_KINDS)


class MVCCStateMachine(Sessioned):
    """The etcd service's state machine: the store with exactly-once client sessions, and
    etcd's users and roles (statemachines/auth.py, judged by statemachines/mvcc_auth.py).

    ``auth``/``auth-read`` ops reach the ``AuthState``; while auth is enabled every write
    is judged with the command's principal where it is applied, after the session's
    dedup (a retry of an applied write still gets its first answer), as the kv state
    machine does.  A snapshot carries the auth part under "auth" once it was used; one
    without it restores the empty state."""

    __slots__ = ("_auth",)

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        super().__init__(MVCCStore(bugs), KINDS + AUTH_KINDS, (*READ_KINDS, AUTH_READ))
        self._auth = AuthState()

    @property
    def store(self) -> MVCCStore:
        return self.inner  # type: ignore[return-value]

    @property
    def auth(self) -> AuthState:
        """Users, roles, permissions (read by the fronts to authorize requests)."""
        return self._auth

    def apply(self, command: ClientRequest) -> Any:
        # Overridden here rather than through a hook of Sessioned: its compiled build
        # (setup_mypyc.py) calls its own methods without looking them up.
        op, auth, store, principal = command.op, self._auth, self.store, command.principal
        if op.kind == AUTH or (op.kind == AUTH_READ and op.is_read()):

            def administer(op: Any) -> Any:
                if not op.is_read():
                    refused = auth.check_spans(principal, ROOT_ONLY)
                    if refused is not None:
                        return refused
                return auth.execute(op)

            return self.sessions.apply(command, administer)
        if auth.enabled and op.kind in _WRITE_KINDS and not op.is_read():
            # Reads are judged by the front, once served (services/etcd_auth.py).

            def judged(op: Any) -> Any:
                refused = auth.check_spans(principal, needs(op.kind, op.value, store.leases))
                return store.execute(op) if refused is None else refused

            return self.sessions.apply(command, judged)
        return super().apply(command)  # and what Sessioned refuses or answers itself

    def read(self, request: ClientRequest) -> Any:
        if request.op.kind == AUTH_READ:
            return self._auth.execute(request.op)
        return super().read(request)

    def snapshot(self) -> Any:
        snap = super().snapshot()
        if self._auth:
            snap["auth"] = self._auth.snapshot()
        return snap

    def restore(self, snapshot: Any) -> None:
        try:
            auth = AuthState.restored(snapshot.get("auth") if isinstance(snapshot, dict) else None)
        except ValueError as exc:
            raise ValueError(f"not a snapshot of this service: {exc}") from exc
        super().restore(snapshot)
        self._auth = auth
