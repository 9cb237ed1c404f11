"""Transactions: who owns a key, how a transaction splits into parts, what it does.

Rules this module owns:
  * key ownership: participant ``i`` of ``P`` owns the keys whose CRC-32 falls in the
    ``i``-th of ``P`` equal ranges of the 32-bit hash space (hash-range partitioning: a
    key range per participant, stable, the same on every node and client);
  * a transaction is etcd's Txn shape: ``compare`` (every one must hold for the
    ``success`` branch, else ``failure`` runs), each compare ``(key, "value"|"version",
    target)`` and each op ``(op, key, value)`` with op put, delete or get;
  * ``split`` gives each owning participant the compares and ops on its keys, in the
    original order; a participant locks every key of its part;
  * ``run_ops`` is the one definition of what a branch does to a view of the keys, used
    by the coordinator (to answer the client from the yes votes' snapshots) and by the
    participants (to apply the decided branch): a put bumps the key's version, a delete
    removes the key (version 0 = absent), a get reads.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from consensuskit.protocols.commit.messages import TxnPart

OPS = ("put", "delete", "get")
COMPARE_TARGETS = ("value", "version")

# key -> (value, version); version 0 means the key is absent.
View = dict[str, tuple[Any, int]]


def owner(key: str, participants: Sequence[str]) -> str:
    """The participant owning ``key`` (see the module rules)."""
    position = zlib.crc32(key.encode())
    return participants[position * len(participants) >> 32]


def split(txn: Mapping[str, Any], participants: Sequence[str]) -> dict[str, TxnPart]:
    """Each participant owning a key of ``txn`` -> its part, participants sorted."""
    parts: dict[str, dict[str, list[tuple[str, str, Any]]]] = {}

    def part(key: str) -> dict[str, list[tuple[str, str, Any]]]:
        return parts.setdefault(owner(key, participants), {"compare": [], "success": [], "failure": []})

    for key, target, value in txn.get("compare", ()):
        part(key)["compare"].append((key, target, value))
    for branch in ("success", "failure"):
        for op, key, value in txn.get(branch, ()):
            part(key)[branch].append((op, key, value))
    return {
        p: TxnPart(compare=tuple(v["compare"]), success=tuple(v["success"]), failure=tuple(v["failure"]))
        for p, v in sorted(parts.items())
    }


def validate(txn: Any) -> None:
    """ValueError (one line) unless ``txn`` is a transaction of the normalized shape."""
    if not isinstance(txn, Mapping):
        raise ValueError(f"a transaction is a mapping of compare/success/failure, got {type(txn).__name__}")
    unknown = sorted(set(txn) - {"compare", "success", "failure"})
    if unknown:
        raise ValueError(
            f"unknown transaction field(s) {', '.join(map(str, unknown))}; valid: compare, success, failure"
        )
    for item in txn.get("compare", ()):
        if not (isinstance(item, Sequence) and len(item) == 3 and isinstance(item[0], str)):
            raise ValueError(f"a compare is (key, value|version, target), got {item!r}")
        if item[1] not in COMPARE_TARGETS:
            raise ValueError(f"a compare targets value or version, got {item[1]!r}")
        if item[1] == "version" and type(item[2]) is not int:
            raise ValueError(f"a version compare takes an integer, got {item[2]!r}")
    for branch in ("success", "failure"):
        for item in txn.get(branch, ()):
            if not (isinstance(item, Sequence) and len(item) == 3 and isinstance(item[1], str)):
                raise ValueError(f"an op is (put|delete|get, key, value), got {item!r}")
            if item[0] not in OPS:
                raise ValueError(f"unknown op {item[0]!r}; valid: {', '.join(OPS)}")
    if not any(txn.get(k) for k in ("compare", "success", "failure")):
        raise ValueError("an empty transaction")


def well_formed_part(part: Any) -> bool:
    """A peer's ``TxnPart`` holds (key, target, value) compares and (op, key, value) ops
    of the known kinds, keys as strings (a malformed one is dropped, never run)."""
    try:
        compares_ok = all(
            len(c) == 3 and isinstance(c[0], str) and c[1] in COMPARE_TARGETS for c in part.compare
        )
        ops_ok = all(
            len(o) == 3 and o[0] in OPS and isinstance(o[1], str) for o in (*part.success, *part.failure)
        )
    except TypeError:
        return False
    return compares_ok and ops_ok


def well_formed_snapshot(snapshot: Any) -> bool:
    """A peer's snapshot: (key, value, version) triples, key a string, version an int."""
    try:
        return all(len(item) == 3 and isinstance(item[0], str) and type(item[2]) is int for item in snapshot)
    except TypeError:
        return False


def normalize(txn: Mapping[str, Any]) -> dict[str, tuple[tuple[str, str, Any], ...]]:
    """Tuples all the way down (hashable, msgpack round-trips them as they are)."""
    return {k: tuple(tuple(item) for item in txn.get(k, ())) for k in ("compare", "success", "failure")}


def holds(compare: Sequence[tuple[str, str, Any]], view: Mapping[str, tuple[Any, int]]) -> bool:
    """Every compare holds in ``view`` (an absent key has value None, version 0)."""
    for key, target, expected in compare:
        value, version = view.get(key, (None, 0))
        if (value if target == "value" else version) != expected:
            return False
    return True


def run_ops(ops: Sequence[tuple[str, str, Any]], view: View) -> list[dict[str, Any]]:
    """Apply ``ops`` to ``view`` in place; one response per op (etcd's shape)."""
    responses: list[dict[str, Any]] = []
    for op, key, value in ops:
        current, version = view.get(key, (None, 0))
        if op == "put":
            view[key] = (value, version + 1)
            responses.append({"put": {"key": key, "version": version + 1}})
        elif op == "delete":
            view.pop(key, None)
            responses.append({"delete": {"key": key, "deleted": int(version > 0)}})
        else:
            responses.append({"get": {"key": key, "value": current, "version": version}})
    return responses


def view_of(snapshots: Sequence[Sequence[tuple[str, Any, int]]]) -> View:
    """The keys' view assembled from the yes votes' snapshots."""
    view: View = {}
    for snapshot in snapshots:
        for key, value, version in snapshot:
            if version:
                view[key] = (value, version)
    return view


def outcome(txn: Mapping[str, Any], view: View) -> tuple[bool, list[dict[str, Any]]]:
    """(succeeded, responses) of a committed ``txn`` over ``view`` (not changed)."""
    succeeded = holds(txn.get("compare", ()), view)
    responses = run_ops(txn.get("success" if succeeded else "failure", ()), dict(view))
    return succeeded, responses
