"""The etcd service's sequential specification, one key at a time (P-compositionality).

The etcd workload (services/etcd.py) touches one key per operation: ``range`` of the key,
``put`` (with prev_kv), ``delete_range`` of the key (with prev_kv), and ``txn`` whose
compares and requests all name that key.  A key's state is ``None`` (absent) or
``(value, version, create_revision, mod_revision, lease)``; a revision is ``None`` while
the history has not told it (the write that made it never answered), and the first read
that shows it pins it.  Revisions are global, so this model checks what one key can:
values, versions, leases, prev_kv, a txn's compare outcome, and that every revision a
read shows is the one its write answered.  Errors (``{"error": ...}``) are outputs of
operations that changed nothing.

Leases: an expiry (or a revoke, which names no key) is no client operation of the key,
so the model lets it happen on its own: a key put with a lease may vanish at any moment
after that put, until a later put replaces it.  The model's state is therefore the
frozenset of the key states still possible, closed under that vanishing; a step is legal
if it is legal from one of them.  A key seen gone must stay gone until a put: a read
that shows it again, or a put whose prev_kv does, is a violation.  (A put refused for
a lease already gone answers an error, which changes nothing; an unanswered one may be
placed last, as every unanswered operation.)

A lease's own operations (grant, keep-alive, revoke) touch no key: they form one
partition per lease id, whose state is ``None`` (not granted), ``LIVE`` or ``GONE``, with
the same vanishing (a live lease may expire at any moment).  A grant answered ok needs
the lease not granted yet; a keep-alive answers a TTL above 0 only for a live lease, 0
otherwise; a revoke succeeds only on a live lease and answers lease-not-found otherwise.
So a lease seen gone never comes back.  The timing rules of expiry are checked on every
node's applied state by check/etcd_leases.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from consensuskit.check.linearizability.models import ModelError
from consensuskit.check.linearizability.operation import UNKNOWN, Call, Operation

KINDS = ("range", "put", "delete_range", "txn")
LEASE_KINDS = ("lease_grant", "lease_keepalive", "lease_revoke")
LIVE, GONE = "live", "gone"  # a lease's states (None: not granted)
VERSION, CREATE, MOD, VALUE, LEASE = range(5)
EQUAL, GREATER, LESS, NOT_EQUAL = range(4)
_FIELD_NAMES = {VERSION: "version", CREATE: "create_revision", MOD: "mod_revision", LEASE: "lease"}


def _b(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _args(call: Call) -> dict[str, Any]:
    value = call.value
    if isinstance(value, dict):
        return value
    if isinstance(value, tuple):
        return {k: _thaw(v) for k, v in value}
    return {}


def _thaw(value: Any) -> Any:
    """formats._hashable's inverse for what the workload sends (lists of maps)."""
    pairs = isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value)
    if pairs and all(isinstance(v[0], str) for v in value):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _kv_matches(state: Any, kv: Any) -> tuple[bool, Any]:
    """Does the key-value ``kv`` a read returned agree with ``state``?  (and the state
    with the revisions the read pinned)."""
    if state is None:
        return kv is None, state
    if kv is None:
        return False, state
    value, version, create, mod, lease = state
    if _b(kv[4]) != value or kv[3] != version or (kv[5] if len(kv) > 5 else 0) != lease:
        return False, state
    if (create is not None and kv[1] != create) or (mod is not None and kv[2] != mod):
        return False, state
    return True, (value, version, kv[1], kv[2], lease)


def _closed(states: set[Any]) -> frozenset[Any]:
    """``states`` and what an expiry may make of them: a key that holds a lease gone, a
    live lease gone."""
    if LIVE in states:
        states.add(GONE)
    if any(isinstance(s, tuple) and s[4] for s in states):
        states.add(None)
    return frozenset(states)


def _lease_step(state: Any, kind: str, output: Any) -> tuple[bool, Any]:
    """One lease operation on a lease's state (see the module docstring)."""
    unknown = output is UNKNOWN
    error = None if unknown or not isinstance(output, dict) else output.get("error")
    if kind == "lease_grant":
        if unknown:
            return True, LIVE if state is None else state
        if error is not None:
            return error != "lease-exists" or state is not None, state
        return state is None, LIVE
    if kind == "lease_keepalive":
        if unknown or error is not None:
            return True, state
        return ((output.get("ttl") or 0) > 0) == (state == LIVE), state
    if unknown:
        return True, GONE if state == LIVE else state
    if error is not None:
        return error != "lease-not-found" or state != LIVE, state
    return state == LIVE, GONE


class EtcdModel:
    name = "etcd"

    def init(self) -> Hashable:
        return frozenset((None,))

    def validate(self, call: Call) -> None:
        if call.kind not in KINDS + LEASE_KINDS:
            valid = ", ".join(KINDS + LEASE_KINDS)
            raise ModelError(f"the etcd model has no {call.kind!r} operation; valid: {valid}")

    def step(self, state: Any, call: Call, output: Any) -> tuple[bool, Hashable]:
        args = _args(call)
        after: set[Any] = set()
        for one in state:
            if call.kind in LEASE_KINDS:
                ok, nxt = _lease_step(one, call.kind, output)
            else:
                ok, nxt = self._step(one, call.kind, args, output)
            if ok:
                after.add(nxt)
        if not after:
            return False, state
        return True, _closed(after)

    def _step(self, state: Any, kind: str, args: dict[str, Any], output: Any) -> tuple[bool, Any]:
        unknown = output is UNKNOWN
        if not unknown and isinstance(output, dict) and "error" in output:
            return True, state  # refused: changed nothing
        if kind == "range":
            if unknown:
                return True, state
            kvs = output.get("kvs") or ()
            if len(kvs) > 1:
                return False, state
            return _kv_matches(state, kvs[0] if kvs else None)
        if kind == "put":
            value = _b(args.get("value"))
            lease = args.get("lease") or 0
            rev = None if unknown else output.get("revision")
            if state is None:
                after = (value, 1, rev, rev, lease)
            else:
                after = (value, state[1] + 1, state[2], rev, lease)
            if unknown:
                return True, after
            if args.get("prev_kv"):
                ok, _ = _kv_matches(state, output.get("prev_kv"))
                if not ok:
                    return False, after
            return True, after
        if kind == "delete_range":
            if unknown:
                return True, None
            if output.get("deleted", 0) != (0 if state is None else 1):
                return False, None
            if args.get("prev_kv"):
                prev = output.get("prev_kvs") or ()
                ok, _ = _kv_matches(state, prev[0] if prev else None)
                if not ok:
                    return False, None
            return True, None
        if kind == "txn":
            return self._txn(state, args, output)
        raise ModelError(f"the etcd model has no {kind!r} operation")

    def _txn(self, state: Any, args: dict[str, Any], output: Any) -> tuple[bool, Any]:
        succeeded = all(self._compare(state, c) for c in args.get("compare") or ())
        unknown = output is UNKNOWN
        if not unknown and bool(output.get("succeeded")) != succeeded:
            return False, state
        branch = args.get("success" if succeeded else "failure") or ()
        responses = () if unknown else output.get("responses") or ()
        if not unknown and len(responses) != len(branch):
            return False, state
        rev = None if unknown else output.get("revision")
        for i, item in enumerate(branch):
            ((kind, body),) = item.items()
            sub = UNKNOWN if unknown else responses[i].get(kind)
            if sub is None:
                return False, state
            if kind == "put" and sub is not UNKNOWN:
                sub = {**sub, "revision": rev}
            ok, state = self._step(state, kind, body, sub)
            if not ok:
                return False, state
        return True, state

    @staticmethod
    def _compare(state: Any, cmp: dict[str, Any]) -> bool:
        target, result = cmp.get("target", VERSION), cmp.get("result", EQUAL)
        if state is None:
            if target == VALUE:
                return False
            have: Any = 0
        elif target == VALUE:
            have = state[0]
        elif target == VERSION:
            have = state[1]
        elif target in (CREATE, MOD):
            have = state[2 if target == CREATE else 3]
            if have is None:
                raise ModelError("the etcd model cannot compare a revision it has not seen")
        else:
            have = state[4]
        if target == VALUE:
            want: Any = _b(cmp.get("value"))
        else:
            name = _FIELD_NAMES[target]
            want = cmp.get(name, 0)
        if result == EQUAL:
            return have == want
        if result == GREATER:
            return have > want
        if result == LESS:
            return have < want
        return have != want

    def read_only(self, call: Call) -> bool:
        """Unanswered, a range or a keep-alive changes no state (search.py leaves it out)."""
        return call.kind in ("range", "lease_keepalive")

    def partition(self, ops: list[Operation]) -> list[list[Operation]]:
        """One partition per key, and one per lease id for the lease operations."""
        groups: dict[Any, list[Operation]] = defaultdict(list)
        for op in ops:
            if op.input.kind in LEASE_KINDS:
                groups[("lease", _args(op.input).get("id"))].append(op)
            else:
                groups[op.input.key].append(op)
        return list(groups.values())

    def describe_operation(self, call: Call, output: Any) -> str:
        args = _args(call)
        text = f"{call.kind} {args.get('id') if call.kind in LEASE_KINDS else call.key}"
        if call.kind == "put":
            text += f"={args.get('value')!r}"
        if output is UNKNOWN:
            return f"{text} → outcome unknown"
        if not isinstance(output, dict):
            return f"{text} → {output!r}"
        fields = ("succeeded", "deleted", "revision", "error", "kvs", "ttl")
        shown = {k: v for k, v in output.items() if k in fields}
        return f"{text} → {shown}"

    def describe_state(self, state: Any) -> str:
        if isinstance(state, frozenset):
            return " or ".join(sorted(self.describe_state(s) for s in state))
        if state is None:
            return "absent"
        if state in (LIVE, GONE):
            return f"lease {state}"
        value, version, create, mod, lease = state
        held = f", lease {lease}" if lease else ""
        return f"{value!r} (version {version}, create {create}, mod {mod}{held})"
