"""A participant's keys and locks.

Rules this module owns:
  * each key holds ``(value, version)``; version 0 means absent (txn.py's view);
  * locking is no-wait: a transaction whose part touches a key locked by another one is
    refused at once (its participant votes no), so no deadlock can form and a blocked
    transaction's locks show up as refusals of the transactions behind it;
  * a yes vote holds the locks of every key of its part until the decision; the keys'
    snapshot taken under the locks stays true until then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from consensuskit.protocols.commit.messages import TxnPart
from consensuskit.protocols.commit.txn import View, run_ops


class Store:
    __slots__ = ("data", "locks")

    def __init__(self) -> None:
        self.data: View = {}
        self.locks: dict[str, str] = {}  # key -> the transaction holding it

    def conflict(self, txn: str, keys: Iterable[str]) -> str | None:
        """The first key locked by another transaction, or None."""
        for key in keys:
            holder = self.locks.get(key)
            if holder is not None and holder != txn:
                return key
        return None

    def lock(self, txn: str, keys: Iterable[str]) -> None:
        for key in keys:
            self.locks[key] = txn

    def unlock(self, txn: str, keys: Iterable[str]) -> None:
        for key in keys:
            if self.locks.get(key) == txn:
                del self.locks[key]

    def held_by(self, txn: str) -> list[str]:
        return sorted(k for k, holder in self.locks.items() if holder == txn)

    def snapshot(self, keys: Iterable[str]) -> tuple[tuple[str, Any, int], ...]:
        out = []
        for key in keys:
            value, version = self.data.get(key, (None, 0))
            out.append((key, value, version))
        return tuple(out)

    def apply(self, part: TxnPart, succeeded: bool) -> None:
        run_ops(part.success if succeeded else part.failure, self.data)
