"""Transactions over shards: their shape, how one splits into parts, what it does.

Rules this module owns:
  * a transaction is etcd's Txn shape (as protocols/commit/txn.py): ``compare`` (every
    one must hold for ``success`` to run, else ``failure`` runs), each compare ``(key,
    "value"|"version", target)``; each op ``(op, key, value)`` with op ``put``,
    ``delete``, ``get`` or ``add`` (a read-modify-write: the key's number plus
    ``value``, an absent key counting 0 -- the bank's transfers);
  * every key a transaction names is locked at its shard from prepare to resolve, and
    read there under the lock: the prepare's *snapshot* of its keys is
    ``(key, value, version, writer, prev)``, where ``writer`` is the transaction that
    wrote the version read and ``prev`` the one it overwrote (None: the initial
    state).  Versions thus name their writers, which is what the serializability checker
    needs (check/serializability.py);
  * ``outcome`` is the one definition of what a transaction does given the snapshots
    of all its shards: which branch runs and each op's response; ``writes`` the new
    (value, version) of each key the branch changes (None: deleted), applied by the
    shards when the decision is commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from consensuskit.protocols.sharded.routing import shard_of

OPS = ("put", "delete", "get", "add")
WRITE_OPS = ("put", "delete", "add")
COMPARE_TARGETS = ("value", "version")

# key -> (value, version, writer, prev) as read under the lock.
Snapshot = Sequence[Sequence[Any]]
View = dict[str, tuple[Any, int]]


def validate(txn: Any) -> None:
    """ValueError (one line) unless ``txn`` is a transaction of this module's shape."""
    if not isinstance(txn, Mapping):
        raise ValueError(f"a transaction is a mapping of compare/success/failure, got {type(txn).__name__}")
    unknown = sorted(map(str, set(txn) - {"compare", "success", "failure"}))
    if unknown:
        raise ValueError(
            f"unknown transaction field(s) {', '.join(unknown)}; valid: compare, success, failure"
        )
    for item in txn.get("compare") or ():
        if not (isinstance(item, Sequence) and len(item) == 3 and isinstance(item[0], str)):
            raise ValueError(f"a compare is (key, value|version, target), got {item!r}")
        if item[1] not in COMPARE_TARGETS:
            raise ValueError(f"a compare targets value or version, got {item[1]!r}")
        if item[1] == "version" and type(item[2]) is not int:
            raise ValueError(f"a version compare takes an integer, got {item[2]!r}")
    for branch in ("success", "failure"):
        for item in txn.get(branch) or ():
            if not (isinstance(item, Sequence) and len(item) == 3 and isinstance(item[1], str)):
                raise ValueError(f"an op is (put|delete|get|add, key, value), got {item!r}")
            if item[0] not in OPS:
                raise ValueError(f"unknown op {item[0]!r}; valid: {', '.join(OPS)}")
            if item[0] == "add" and type(item[2]) is not int:
                raise ValueError(f"add takes an integer, got {item[2]!r}")
    if not any(txn.get(k) for k in ("compare", "success", "failure")):
        raise ValueError("an empty transaction")


def keys_of(txn: Mapping[str, Any]) -> list[str]:
    """Every key ``txn`` names, in first-mention order (compares, success, failure)."""
    seen: dict[str, None] = {}
    for item in txn.get("compare") or ():
        seen.setdefault(item[0], None)
    for branch in ("success", "failure"):
        for item in txn.get(branch) or ():
            seen.setdefault(item[1], None)
    return list(seen)


def is_read_only(txn: Mapping[str, Any]) -> bool:
    return not any(item[0] in WRITE_OPS for b in ("success", "failure") for item in txn.get(b) or ())


def split(txn: Mapping[str, Any], shards: int) -> dict[int, list[str]]:
    """Each shard owning a key of ``txn`` -> its keys (shards sorted, keys in order)."""
    parts: dict[int, list[str]] = {}
    for key in keys_of(txn):
        parts.setdefault(shard_of(key, shards), []).append(key)
    return dict(sorted(parts.items()))


def coordinator(txn: Mapping[str, Any], shards: int) -> int:
    """The shard holding ``txn``'s record: the shard of its first key (CockroachDB's
    transaction record lives with the transaction's first key)."""
    return shard_of(keys_of(txn)[0], shards)


def view_of(snapshots: Sequence[Snapshot]) -> View:
    view: View = {}
    for snapshot in snapshots:
        for key, value, version, _writer, _prev in snapshot:
            view[key] = (value, version)
    return view


def _holds(compare: Sequence[Sequence[Any]], view: View) -> bool:
    for key, target, expected in compare:
        value, version = view.get(key, (None, 0))
        if (value if target == "value" else version) != expected:
            return False
    return True


def outcome(txn: Mapping[str, Any], view: View) -> tuple[bool, list[dict[str, Any]], dict[str, Any]]:
    """(succeeded, responses, writes) of ``txn`` over ``view`` (not changed): ``writes``
    maps each key the branch changes to its final (value, version), None if deleted."""
    succeeded = _holds(txn.get("compare") or (), view)
    local = dict(view)
    responses: list[dict[str, Any]] = []
    writes: dict[str, Any] = {}
    for op, key, value in txn.get("success" if succeeded else "failure") or ():
        current, version = local.get(key, (None, 0))
        if op == "put":
            local[key] = (value, version + 1)
            writes[key] = [value, version + 1]
            responses.append({"put": {"key": key, "version": version + 1}})
        elif op == "add":
            base = current if type(current) is int else 0
            local[key] = (base + value, version + 1)
            writes[key] = [base + value, version + 1]
            responses.append({"add": {"key": key, "value": base + value, "version": version + 1}})
        elif op == "delete":
            local[key] = (None, 0)
            writes[key] = None
            responses.append({"delete": {"key": key, "deleted": int(version > 0)}})
        else:
            responses.append({"get": {"key": key, "value": current, "version": version}})
    return succeeded, responses, writes
