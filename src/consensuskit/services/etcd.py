"""The etcd v3 service: etcd's key-value, lease and watch API over any log protocol.

Its ops are ``ServiceOp``s shaped like etcd's requests (statemachines/mvcc.py owns their
meaning); its state machine is ``MVCCStateMachine``; its checker model is
``EtcdModel`` (check/linearizability/etcd_model.py); its HTTP front is etcd's JSON gateway
(services/etcd_gateway.py).

Rules this module owns (the operations at the edge and the workload):
  * ``validate`` checks an op's shape before it is logged: a map of known fields with
    the right types (keys and values bytes or str); anything else is one line naming
    the problem.  The state machine refuses a malformed op anyway (a peer may send one);
  * it also makes etcd's own checks before the log, with etcd's texts: a range, put,
    delete or compare names a key ("key is not provided"); a txn holds at most
    ``MAX_TXN_OPS`` compares and ops per branch ("too many operations in txn request");
    no key is put twice, or put and deleted, in either branch, nested txns included
    ("duplicate key given in txn request"; the store checks the branch it runs, and
    only at the top level: a check moved into the store would change what a log
    written by an earlier release means on replay); a delete to "\\0" conflicts with no
    put (etcd's interval check reads it as empty: mvcc.conflicts); a put with
    ignore_value and a value, or ignore_lease and a lease, is refused ("value is
    provided", "lease is provided"), and an empty request op in a txn ("key not found"),
    each in etcd's order (api/v3rpc/key.go checkTxnRequest);
  * every txn op it makes carries ``precheck``: the store runs it in etcd's order
    (statemachines/mvcc.py); every txn and delete_range op, ``empty_ranges``: a range
    that ends at or before its key needs the permission etcd asks for it
    (statemachines/mvcc_auth.py).  Both are cluster level 2's rules
    (statemachines/levels.py): a node's edge adds them only once the cluster's level it
    applied is 2, so no replica of an earlier release applies such an op by its old rules;
  * an op's ``key`` (used by histories and the checker's partition) is the key it
    touches when it touches exactly one, else "";
  * the workload: keys ``k0 .. k{keys-1}``; 28% range, 20% put (prev_kv), 8% delete
    (prev_kv), 24% txn on one key: compare the version (or, a third of the time, the
    value) the client last saw, put on success, range on failure; values are unique
    (client index * 1_000_000 + counter) so a history says which write a read saw;
  * leases in the workload: a client grants leases of ``LEASE_TTLS`` seconds under ids
    of its own (unique like values, so an unanswered grant still names its lease), keeps
    about half of them alive and lets the others lapse (the leader's lessor expires
    them), revokes some; it holds at most ``MAX_LEASES`` and forgets a lease that a
    keep-alive finds gone.  It keeps a lease alive as etcd's client does, a third of the
    TTL after the last refresh it saw answered (the simulator's clock: ``now``), except
    that a ``LATE_SHARE`` of refreshes go out late on purpose, aimed up to ``RACE_AIM``
    before the leader's lessor looks (every ``LOOK`` from the run's start) and finds the
    lease a TTL old: then the keep-alive is in the log but not yet applied when the
    leader asks for the expiry, which the store must refuse (etcd's race of a keep-alive
    with an expiry); aimed a little off, it finds the lease gone or keeps it.  A client
    that close to an aimed refresh waits for it, idle.  Grants and revokes are 20% of the
    other ops (fewer while it holds as many kept leases as it may).  Half of its puts
    carry one of its leases and go to keys of their own, ``l0 .. l{keys-1}``, which only
    such puts write (a third of the ranges read them): written about once a second each,
    they often outlive a lapsed lease, so histories show keys vanishing by expiry mid-run.
"""

from __future__ import annotations

import math
import random
from typing import Any

from consensuskit.core.client import ServiceOp
from consensuskit.core.service import ServiceSpec
from consensuskit.services.etcd_lessor import BUGS as LESSOR_BUGS
from consensuskit.services.etcd_lessor import LOOK
from consensuskit.statemachines.levels import ETCD_CHECKS, RELEASE_LEVEL
from consensuskit.statemachines.mvcc import BUGS as STORE_BUGS
from consensuskit.statemachines.mvcc import (
    EQUAL,
    KINDS,
    READ_KINDS,
    VALUE,
    VERSION,
    MVCCStateMachine,
    as_bytes,
    conflicts,
)

MAX_TXN_OPS = 128  # etcd's --max-txn-ops default: ops in a txn's compares or one branch
DUPLICATE_KEY = "duplicate key given in txn request"  # etcd's text, after "etcdserver: "

_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "range": {
        "key": (bytes, str),
        "range_end": (bytes, str),
        "limit": (int,),
        "revision": (int,),
        "sort_order": (int,),
        "sort_target": (int,),
        "serializable": (bool,),
        "keys_only": (bool,),
        "count_only": (bool,),
        "min_mod_revision": (int,),
        "max_mod_revision": (int,),
        "min_create_revision": (int,),
        "max_create_revision": (int,),
    },
    "watch": {"key": (bytes, str), "range_end": (bytes, str), "start_revision": (int,), "prev_kv": (bool,)},
    "put": {
        "key": (bytes, str),
        "value": (bytes, str),
        "lease": (int,),
        "prev_kv": (bool,),
        "ignore_value": (bool,),
        "ignore_lease": (bool,),
    },
    "delete_range": {
        "key": (bytes, str),
        "range_end": (bytes, str),
        "prev_kv": (bool,),
        "empty_ranges": (bool,),
    },
    "txn": {
        "compare": (list, tuple),
        "success": (list, tuple),
        "failure": (list, tuple),
        "precheck": (bool,),
        "empty_ranges": (bool,),
    },
    "compact": {"revision": (int,), "physical": (bool,)},
    "lease_grant": {"id": (int,), "ttl": (int,)},
    "lease_revoke": {"id": (int,)},
    "lease_keepalive": {"id": (int,)},
    "lease_expire": {"id": (int,), "stamp": (int,)},
    "lease_ttl": {"id": (int,), "keys": (bool,)},
    "hash_kv": {"revision": (int,)},
    "lease_leases": {},
}
_COMPARE = {
    "key": (bytes, str),
    "range_end": (bytes, str),
    "target": (int,),
    "result": (int,),
    "value": (bytes, str),
    "version": (int,),
    "create_revision": (int,),
    "mod_revision": (int,),
    "lease": (int,),
}
_TXN_REQUESTS = ("range", "put", "delete_range", "txn")


def _check_fields(where: str, body: Any, fields: dict[str, tuple[type, ...]]) -> None:
    if not isinstance(body, dict):
        raise ValueError(f"{where}: expected a map, got {type(body).__name__}")
    for name, value in body.items():
        types = fields.get(name)
        if types is None:
            raise ValueError(f"{where}: unknown field {name!r}; valid: {', '.join(sorted(fields))}")
        if value is None:
            continue
        if type(value) is bool and bool not in types:
            raise ValueError(f"{where}: {name} must be {' or '.join(t.__name__ for t in types)}")
        if not isinstance(value, types):
            raise ValueError(f"{where}: {name} must be {' or '.join(t.__name__ for t in types)}")
        if type(value) is int and not -(2**63) <= value < 2**64:
            raise ValueError(f"{where}: {name} out of range")


def _check_body(kind: str, body: Any, depth: int = 0, budget: int = MAX_TXN_OPS) -> None:
    """The op's shape, and etcd's own checks before the log (api/v3rpc/key.go): a range,
    put, delete or compare names a key; a txn's compares and each branch hold at most
    ``budget`` ops, its nested txns what is left."""
    _check_fields(kind, body, _FIELDS[kind])
    if kind in ("range", "put", "delete_range") and not body.get("key"):
        raise ValueError("key is not provided")
    if kind == "put" and body.get("ignore_value") and body.get("value"):
        raise ValueError("value is provided")
    if kind == "put" and body.get("ignore_lease") and body.get("lease"):
        raise ValueError("lease is provided")
    if kind != "txn":
        return
    if depth > 8:
        raise ValueError("txn: nested more than 8 deep")
    compares = body.get("compare") or ()
    branches = {branch: body.get(branch) or () for branch in ("success", "failure")}
    ops = max(len(compares), *map(len, branches.values()))
    if ops > budget:
        raise ValueError("too many operations in txn request")
    for cmp in compares:
        _check_fields("txn compare", cmp, _COMPARE)
        if not cmp.get("key"):
            raise ValueError("key is not provided")
    for branch, items in branches.items():
        for item in items:
            if item == {}:  # an empty RequestOp: etcd's checkRequestOp says this
                raise ValueError("key not found")
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"txn {branch}: each request holds one of {', '.join(_TXN_REQUESTS)}")
            ((sub, sub_body),) = item.items()
            if sub not in _TXN_REQUESTS:
                raise ValueError(f"txn {branch}: unknown request {sub!r}; valid: {', '.join(_TXN_REQUESTS)}")
            _check_body(sub, sub_body, depth + 1, budget - ops)


def _deleted(key: bytes, deletes: list[tuple[bytes, bytes]]) -> bool:
    return any(conflicts(key, start, end) for start, end in deletes)


def _writes(ops: Any) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """The keys a txn branch puts and the ranges it deletes, nested txns included;
    ValueError when one key is written twice (etcd's checkIntervals).  A key that both
    branches of a nested txn put is fine: only one of them runs."""
    deletes = [
        (as_bytes(body.get("key"), "key"), as_bytes(body.get("range_end"), "range_end"))
        for item in ops
        for kind, body in item.items()
        if kind == "delete_range"
    ]
    puts: set[bytes] = set()
    nested_deletes: list[tuple[bytes, bytes]] = []
    for item in ops:
        for kind, body in item.items():
            if kind != "txn":
                continue
            then_puts, then_deletes = _writes(body.get("success") or ())
            else_puts, else_deletes = _writes(body.get("failure") or ())
            for key in then_puts:
                if key in puts or _deleted(key, deletes):
                    raise ValueError(DUPLICATE_KEY)
                puts.add(key)
            for key in else_puts:
                if (key in puts and key not in then_puts) or _deleted(key, deletes):
                    raise ValueError(DUPLICATE_KEY)
                puts.add(key)
            nested_deletes += then_deletes + else_deletes
    deletes += nested_deletes
    for item in ops:
        for kind, body in item.items():
            if kind != "put":
                continue
            key = as_bytes(body.get("key"), "key")
            if key in puts or _deleted(key, deletes):
                raise ValueError(DUPLICATE_KEY)
            puts.add(key)
    return puts, deletes


def validate(op: Any) -> None:
    if type(op) is not ServiceOp:
        raise ValueError(f"an etcd operation is a ServiceOp, not a {type(op).__name__}")
    body = op.value if op.value is not None else {}
    _check_body(op.kind, body)
    if op.kind == "txn":
        _writes(body.get("success") or ())
        _writes(body.get("failure") or ())


def _text(key: Any) -> str:
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key or "")


def single_key(kind: str, body: dict[str, Any]) -> str:
    """The one key ``body`` touches, or "" (see the module rules)."""
    keys: set[str] = set()

    def visit(kind: str, body: dict[str, Any]) -> bool:
        if kind in ("lease_grant", "lease_revoke", "lease_keepalive", "lease_expire", "lease_ttl"):
            return False
        if kind in ("compact", "lease_leases", "hash_kv"):
            return False
        if kind == "txn":
            for cmp in body.get("compare") or ():
                if cmp.get("range_end"):
                    return False
                keys.add(_text(cmp.get("key")))
            for branch in ("success", "failure"):
                for item in body.get(branch) or ():
                    ((sub, sub_body),) = item.items()
                    if not visit(sub, sub_body):
                        return False
            return True
        if body.get("range_end"):
            return False
        keys.add(_text(body.get("key")))
        return True

    try:
        if not visit(kind, body) or len(keys) != 1:
            return ""
    except (AttributeError, TypeError, ValueError):  # malformed: validate() names the problem
        return ""
    return next(iter(keys))


def make_op(kind: str, key: str = "", value: Any = None, *, level: int = RELEASE_LEVEL) -> ServiceOp:
    """The op of ``kind`` with request body ``value`` (``key``, when the body has none,
    becomes the body's key), for a cluster of ``level`` (module rules)."""
    body = dict(value) if isinstance(value, dict) else {}
    if key and "key" not in body and kind in ("range", "put", "delete_range", "watch"):
        body["key"] = key
    if kind == "txn" and level >= ETCD_CHECKS:
        body.setdefault("precheck", True)  # etcd's order of checks (statemachines/mvcc.py)
    if kind in ("txn", "delete_range") and level >= ETCD_CHECKS:
        body.setdefault("empty_ranges", True)  # etcd's permission on a range that ends early
    return ServiceOp(kind=kind, key=single_key(kind, body), value=body, read=kind in READ_KINDS)


LEASE_TTLS = (1, 2, 3)  # seconds: short against a 10 s run, long against its timers
MAX_LEASES = 2  # leases one client holds (kept alive or left to lapse)
KEEPALIVE_AFTER = 1 / 3  # of the TTL, after the last refresh answered (etcd's clientv3)
LATE_SHARE = 0.5  # of refreshes sent at the TTL, to race the leader's expiry
# A keep-alive's way from a client into the leader's log and then to its apply: a few
# one-way latencies of the simulator's links (1-5 ms) and a sync.
RACE_AIM = 0.012
WAIT_FOR_AIM = 0.05  # a client this close to an aimed refresh waits for it, idle


class _Lease:
    """What a client knows of one of its leases."""

    __slots__ = ("due", "early_by", "kept", "ttl")

    def __init__(self, ttl: int, kept: bool, early_by: float | None) -> None:
        self.ttl = ttl
        self.kept = kept  # kept alive (False: left to lapse)
        # The next refresh goes out this long before the look that expires the lease; None:
        # on time (KEEPALIVE_AFTER).
        self.early_by = early_by
        self.due: float | None = None  # when to refresh (None: not granted as far as we know)

    def refresh_at(self, now: float) -> float:
        """When to refresh, the last refresh being answered at ``now``."""
        if self.early_by is None:
            return now + self.ttl * KEEPALIVE_AFTER
        expiring_look = (math.floor((now + self.ttl) / LOOK) + 1) * LOOK
        return expiring_look - self.early_by


class EtcdWorkload:
    """One simulated etcd client (see the module rules)."""

    __slots__ = ("counter", "index", "keys", "known", "leases", "now", "wake_at")

    def __init__(self, index: int, keys: int) -> None:
        self.index = index
        self.keys = keys
        self.counter = 0
        self.known: dict[str, tuple[str | None, int]] = {}  # key -> (value, version) last seen
        self.leases: dict[int, _Lease] = {}
        self.now = 0.0  # the simulator's clock, set before each call
        self.wake_at = 0.0  # when next_op answered None: when to ask again

    def _unique(self) -> str:
        self.counter += 1
        return str(self.index * 1_000_000 + self.counter)

    @staticmethod
    def _plan(rng: random.Random) -> float | None:
        return rng.uniform(0, RACE_AIM) if rng.random() < LATE_SHARE else None

    def _keepalive(self, lease_id: int, rng: random.Random) -> ServiceOp:
        lease = self.leases[lease_id]
        lease.early_by = self._plan(rng)
        lease.due = lease.refresh_at(self.now)  # unanswered: try again as if it were
        return make_op("lease_keepalive", "", {"id": lease_id})

    def _soonest(self) -> tuple[float, int] | None:
        """(when, id) of the kept lease whose refresh is due soonest."""
        due = [(lease.due, i) for i, lease in self.leases.items() if lease.kept and lease.due is not None]
        return min(due) if due else None

    def _lease_op(self, rng: random.Random) -> ServiceOp | None:
        """A grant or a revoke; None when the client holds all the kept leases it may."""
        held = sorted(self.leases)
        lapsing = [i for i in held if not self.leases[i].kept]
        if held and rng.random() < 0.1:
            lease_id = rng.choice(held)
            del self.leases[lease_id]
            return make_op("lease_revoke", "", {"id": lease_id})
        if len(held) == MAX_LEASES:
            if not lapsing:
                return None  # (an early refresh would spoil a late one's aim)
            del self.leases[lapsing[0]]  # stop using the oldest lapsing lease: room for one
        lease_id = int(self._unique())
        ttl = rng.choice(LEASE_TTLS)
        self.leases[lease_id] = _Lease(ttl, rng.random() < 0.5, self._plan(rng))
        return make_op("lease_grant", "", {"id": lease_id, "ttl": ttl})

    def next_op(self, rng: random.Random) -> ServiceOp | None:
        soonest = self._soonest()
        if soonest is not None:
            when, lease_id = soonest
            if when <= self.now:
                return self._keepalive(lease_id, rng)
            if self.leases[lease_id].early_by is not None and when - self.now < WAIT_FOR_AIM:
                self.wake_at = when  # a refresh aimed at an expiry: be idle, not in an op, then
                return None
        key = f"k{rng.randrange(self.keys)}"
        r = rng.random()
        if r < 0.2:
            lease_op = self._lease_op(rng)
            if lease_op is not None:
                return lease_op
            r = 0.2 + rng.random() * 0.8  # one of the other ops instead
        if r < 0.48:
            return make_op("range", f"l{key[1:]}" if rng.random() < 1 / 3 else key, {})
        if r < 0.68:
            body: dict[str, Any] = {"value": self._unique(), "prev_kv": True}
            if self.leases and rng.random() < 0.5:
                body["lease"] = rng.choice(sorted(self.leases))
                key = f"l{key[1:]}"
            return make_op("put", key, body)
        if r < 0.76:
            return make_op("delete_range", key, {"prev_kv": True})
        value, version = self.known.get(key, (None, 0))
        if rng.random() < 0.33 and value is not None:
            cmp = {"key": key, "target": VALUE, "result": EQUAL, "value": value}
        else:
            cmp = {"key": key, "target": VERSION, "result": EQUAL, "version": version}
        body = {
            "compare": [cmp],
            "success": [{"put": {"key": key, "value": self._unique()}}],
            "failure": [{"range": {"key": key}}],
        }
        return make_op("txn", key, body)

    def learn(self, op: Any, result: Any) -> None:
        if not isinstance(result, dict) or "error" in result:
            return
        key = op.key
        body = op.value or {}
        if op.kind in ("lease_grant", "lease_keepalive"):
            lease = self.leases.get(body.get("id"))
            if lease is None:
                return
            if not result.get("ttl"):
                del self.leases[body["id"]]  # expired or revoked: forget it
            else:
                lease.due = lease.refresh_at(self.now)
        elif op.kind == "range":
            kvs = result.get("kvs") or ()
            self.known[key] = (_text(kvs[0][4]), kvs[0][3]) if kvs else (None, 0)
        elif op.kind == "put":
            prev = result.get("prev_kv")
            self.known[key] = (_text(body.get("value")), (prev[3] if prev else 0) + 1)
        elif op.kind == "delete_range":
            self.known[key] = (None, 0)
        elif op.kind == "txn":
            responses = result.get("responses") or ()
            if result.get("succeeded"):
                self.known.pop(key, None)  # the new version is not in the answer: read it again
            elif responses and "range" in responses[0]:
                kvs = responses[0]["range"].get("kvs") or ()
                self.known[key] = (_text(kvs[0][4]), kvs[0][3]) if kvs else (None, 0)


def etcd_model() -> Any:
    """The checker's model (check/ sits above services: imported when a check runs)."""
    from consensuskit.check.linearizability.etcd_model import EtcdModel

    return EtcdModel()


def etcd_service() -> ServiceSpec:
    return ServiceSpec(
        name="etcd",
        description="etcd v3 API: MVCC revisions, ranges at a revision, txn, compaction, leases, watch",
        kinds=KINDS,
        read_kinds=READ_KINDS,
        make_state_machine=MVCCStateMachine,
        make_workload=EtcdWorkload,
        validate=validate,
        make_op=make_op,
        model=etcd_model,
        log=True,
        http="consensuskit.services.etcd_gateway:ROUTES",
        listeners="consensuskit.services.etcd_api:start",
        ports=("grpc",),
        # grpcio's asyncio server takes one call per loop wake-up: keep fsyncs off the loop.
        sync_inline=False,
        example="etcdctl --endpoints {grpc} put hello world",
        # The simulator's lease checks (check/etcd_leases.py) catch each.
        bugs=STORE_BUGS + LESSOR_BUGS,
    )
