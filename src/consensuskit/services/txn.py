"""The transaction service: multi-key transactions in the shape of etcd's Txn, served
by the atomic-commit protocols (2pc, 3pc, paxos-commit), each participant owning a key
range.

One operation, ``txn``: a ``ServiceOp`` whose value is ``{"compare": [(key,
"value"|"version", target), ...], "success": [(op, key, value), ...], "failure":
[...]}`` with op put, delete or get.  The answer is ``{"succeeded": bool, "responses":
[...], "txn": id}`` once the transaction committed, or a refusal ``aborted: why``.

Rules this module owns (the workload):
  * keys are ``k0 .. k{K-1}`` with K = max(keys, 12), so transactions spread over the
    participants' key ranges and still collide often enough to abort some;
  * each transaction touches 2 or 3 distinct keys: 60% blind puts, 25% a version
    compare on the first key (the version the client last saw) with puts on success and
    a get on failure, 15% gets only;
  * values are unique ints (client index * 1_000_000 + counter).

No linearizability model: the verdict on a commit protocol is its checker's
(check/commit.py: atomicity, validity, durable votes and decisions), not a history's.
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import ServiceOp
from consensuskit.core.service import ProtocolKeepsState, ServiceSpec

KINDS = ("txn",)
MIN_KEYS = 12


class TxnExecutor(ProtocolKeepsState):
    """The service's state machine, for the platform's interfaces only: the commit
    protocols keep their keys in their participants (protocols/commit/store.py) and
    never hand a transaction to a state machine."""

    refusal = "transactions are executed by the commit protocols' participants"


class TxnWorkload:
    """One simulated client's transactions (see the module rules)."""

    __slots__ = ("counter", "index", "keys", "versions")

    def __init__(self, index: int, keys: int) -> None:
        self.index = index
        self.keys = max(keys, MIN_KEYS)
        self.counter = 0
        self.versions: dict[str, int] = {}

    def _unique(self) -> int:
        self.counter += 1
        return self.index * 1_000_000 + self.counter

    def next_op(self, rng: random.Random) -> ServiceOp:
        keys = [f"k{i}" for i in rng.sample(range(self.keys), rng.choice((2, 3)))]
        r = rng.random()
        if r < 0.6:
            body: dict[str, Any] = {"success": [("put", k, self._unique()) for k in keys]}
        elif r < 0.85:
            first = keys[0]
            body = {
                "compare": [(first, "version", self.versions.get(first, 0))],
                "success": [("put", k, self._unique()) for k in keys],
                "failure": [("get", first, None)],
            }
        else:
            body = {"success": [("get", k, None) for k in keys]}
        return ServiceOp(kind="txn", key=",".join(keys), value=body)

    def learn(self, op: Any, result: Any) -> None:
        if not isinstance(result, dict):
            return
        for response in result.get("responses", ()):
            for kind in ("put", "get"):
                item = response.get(kind)
                if isinstance(item, dict) and isinstance(item.get("version"), int):
                    self.versions[item["key"]] = item["version"]


def _validate(op: Any) -> None:
    from consensuskit.protocols.commit import validate_txn

    validate_txn(op.value)


def txn_service() -> ServiceSpec:
    return ServiceSpec(
        name="txn",
        description="multi-key transactions (etcd Txn shape) over participants owning key ranges",
        kinds=KINDS,
        read_kinds=(),
        make_state_machine=TxnExecutor,
        make_workload=TxnWorkload,
        validate=_validate,
        model=None,
        log=False,
        http="consensuskit.services.txn_http:ROUTES",
        client="consensuskit.services.txn_http:TxnClient",
        cli="consensuskit.services.txn_http:CLI",
        example="consensuskit txn put k1=a k2=b --endpoints {endpoints}",
    )
