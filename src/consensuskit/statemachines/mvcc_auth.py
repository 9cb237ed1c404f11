"""Who may run which etcd operation: etcd's auth checks (its authApplierV3) over the MVCC
store's operations, against the users and roles of ``statemachines/auth.py``.

Rules this module owns:
  * a key is bytes; ``AuthState`` compares strings: a key becomes the string of its bytes
    one per character (``latin-1``), so string order is etcd's byte order and a prefix of
    the bytes is a prefix of the string;
  * what each operation needs (``needs``), as etcd asks it:
      - ``range``, ``watch``: read on ``[key, range_end)`` (etcd's ranges: ``range_end``
        empty is the key alone, "\\0" every key from ``key`` on).  A range that ends at or
        before its key holds no key, but etcd's interval check asks for the keys from
        its end to its key, both included (checked against etcd 3.4: [b, a) needs a
        and b); so do reads here, and the writes (``delete_range``, a txn's compares
        and ops) of an op marked ``empty_ranges`` (services/etcd.make_op marks every
        one since; one without, written by an earlier release, is judged as it was
        then: such a range needs nothing);
      - ``put``: write on the key, and read too when it asks for the previous value
        (``prev_kv``); ``delete_range``: write on its range, read too with ``prev_kv``;
      - ``txn``: read on every compare's range, and what each op of *both* branches
        needs, nested txns included (etcd checks both: which branch runs must not
        decide whether a request is allowed);
      - ``lease_revoke``: write on every key attached to the lease (etcd's
        checkLeasePuts), found in the store where the revoke is applied;
      - ``lease_grant``, ``lease_keepalive``, ``lease_ttl``, ``lease_leases``: any user;
      - ``compact``, ``hash_kv``, ``lease_expire``: the root role (compaction forgets
        every key's history; an expiry is the leader's lessor's, sent with the admin
        principal), and so does every kind this module does not know;
  * a body this module cannot read needs the root role (the store refuses it anyway;
    no check may raise where a command is applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from consensuskit.statemachines.auth import ADMINISTER, READ, READWRITE, WRITE, Span, range_span

ANY_USER: tuple[tuple[str, Span], ...] = ()
ROOT_ONLY: tuple[tuple[str, Span], ...] = ((ADMINISTER, ("", None)),)
_ANY_USER_KINDS = frozenset(("lease_grant", "lease_keepalive", "lease_ttl", "lease_leases"))


def key_text(key: bytes) -> str:
    """An etcd key as the string ``AuthState`` compares (module rules)."""
    return key.decode("latin-1")


def text_key(text: str) -> bytes:
    """The etcd key a string of ``key_text`` names."""
    return text.encode("latin-1")


def span_of(key: Any, end: Any, inverted: bool = False) -> Span:
    """The keys of etcd's ``[key, end)``.  ``inverted``: a range that ends at or before
    its key (no key in it) spans the keys from ``end`` to ``key`` itself, as etcd's
    interval check reads it (module rules); without, it is empty (and always allowed)."""
    start, stop = key_text(_raw(key)), key_text(_raw(end))
    if inverted and stop not in ("", "\0") and stop <= start:
        return (stop, start + "\0")
    return range_span(start, stop)


def _raw(value: Any) -> bytes:
    """A key or range end of a request body as the store reads it (``as_bytes``)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"a key is bytes, not {type(value).__name__}")


def needs(kind: str, body: Any, lease_keys: Any = None) -> tuple[tuple[str, Span], ...]:
    """What an op of ``kind`` with request ``body`` needs (module rules).  ``lease_keys``
    maps a lease id to its attached keys (the store's leases), for ``lease_revoke``."""
    if kind in _ANY_USER_KINDS:
        return ANY_USER
    try:
        if kind == "lease_revoke":
            lease = (lease_keys or {}).get(body.get("id"))
            keys = sorted(getattr(lease, "keys", ()) or ())
            return tuple((WRITE, span_of(k, b"")) for k in keys)
        found = tuple(_needs(kind, body))
    except (AttributeError, TypeError, ValueError, UnicodeDecodeError):
        return ROOT_ONLY
    if not found:
        return ANY_USER if kind == "txn" else ROOT_ONLY  # a txn of nothing reads nothing
    return found


def _needs(kind: str, body: Any, inverted: bool | None = None) -> Iterator[tuple[str, Span]]:
    if inverted is None:  # the op's own flag (a nested op goes by its top txn's)
        inverted = body.get("empty_ranges") is True
    if kind in ("range", "watch"):
        # Judged at the edge, never where a log is applied: etcd's reading always.
        yield READ, span_of(body.get("key"), body.get("range_end"), True)
    elif kind == "put":
        yield (READWRITE if body.get("prev_kv") else WRITE), span_of(body.get("key"), b"")
    elif kind == "delete_range":
        need = READWRITE if body.get("prev_kv") else WRITE
        yield need, span_of(body.get("key"), body.get("range_end"), inverted)
    elif kind == "txn":
        for cmp in body.get("compare") or ():
            yield READ, span_of(cmp.get("key"), cmp.get("range_end"), inverted)
        for branch in ("success", "failure"):
            for item in body.get(branch) or ():
                ((sub, sub_body),) = item.items()
                found = tuple(_needs(sub, sub_body, inverted))
                if not found:
                    raise ValueError(f"unknown request op {sub!r}")
                yield from found
    # anything else: nothing yielded, so ``needs`` asks for the root role
