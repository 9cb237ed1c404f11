"""The sharded key-value service (sharded-raft's default): the kv API (``/v1/kv``, kv's
``Op`` get/put/delete/cas, each key served by its shard), multi-key transactions across
shards (``/v1/txn``, the txn service's shape) and the Jepsen bank test's operations, which
are what the simulator's clients run.

Bank operations (``ServiceOp``): ``transfer`` {from, to, amount} moves ``amount`` (an int)
from one account to another as one transaction; ``balances`` [accounts] reads them all
as one read-only transaction.  Every account starts at 0 and may go negative, so a
transfer always commits and every read must sum to 0 (conservation).  Answers carry,
for each key the transaction touched, the transaction that wrote the version it read and
that writer's predecessor (``reads``), and the keys it wrote (``wrote``): what the
serializability checker (check/serializability.py) builds its graph from.

Rules this module owns (the workload): accounts ``a0 .. a{A-1}`` with A = max(keys, 6);
60% transfers of 1..5 between two distinct random accounts, 40% reads of all balances.

No linearizability model: histories are checked for serializability and conservation
(check/sharded.py), not against a sequential model (``--service kv`` runs kv's workload on
sharded-raft and checks linearizability).
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import Op, ServiceOp
from consensuskit.core.service import ProtocolKeepsState, ServiceSpec

KV_KINDS = ("get", "put", "delete", "cas", "list")
BANK_KINDS = ("transfer", "balances")
KINDS = (*KV_KINDS, "txn", *BANK_KINDS)
READ_KINDS = ("get", "list", "balances")
MIN_ACCOUNTS = 6


def accounts(keys: int) -> list[str]:
    return [f"a{i}" for i in range(max(keys, MIN_ACCOUNTS))]


class BankExecutor(ProtocolKeepsState):
    """For the platform's interfaces only: sharded-raft keeps its keys in its shards."""

    refusal = "sharded-raft executes these operations in its shards"


class BankWorkload:
    __slots__ = ("accounts",)

    def __init__(self, index: int, keys: int) -> None:
        self.accounts = accounts(keys)

    def next_op(self, rng: random.Random) -> ServiceOp:
        if rng.random() < 0.6:
            src, dst = rng.sample(self.accounts, 2)
            value = {"from": src, "to": dst, "amount": rng.randint(1, 5)}
            return ServiceOp(kind="transfer", key=f"{src}->{dst}", value=value)
        return ServiceOp(kind="balances", key="*", value=list(self.accounts), read=True)

    def learn(self, op: Any, result: Any) -> None:
        pass


def _make_op(kind: str, key: str, value: Any) -> Any:
    if kind in KV_KINDS:
        return Op(kind=kind, key=key, value=value)
    return ServiceOp(kind=kind, key=key, value=value, read=kind in READ_KINDS)


def _validate(op: Any) -> None:
    value = op.value
    if op.kind in KV_KINDS:
        if type(op) is not Op:
            raise ValueError(f"a kv operation is an Op, not a {type(op).__name__}")
        return
    if op.kind == "txn":
        from consensuskit.protocols.commit import validate_txn

        validate_txn(value)
        return
    if op.kind == "transfer":
        if not isinstance(value, dict) or sorted(value) != ["amount", "from", "to"]:
            raise ValueError("a transfer is {from, to, amount}")
        if (
            type(value["amount"]) is not int
            or not isinstance(value["from"], str)
            or not isinstance(value["to"], str)
        ):
            raise ValueError("a transfer moves an integer amount between two named accounts")
        if value["from"] == value["to"]:
            raise ValueError("a transfer needs two distinct accounts")
    elif not isinstance(value, list | tuple) or not value or not all(isinstance(a, str) for a in value):
        raise ValueError("balances takes a non-empty list of account names")


def shard_kv_service() -> ServiceSpec:
    return ServiceSpec(
        name="shard-kv",
        description="kv API and /v1/txn across shards, and the bank test (transfers, balances)",
        kinds=KINDS,
        read_kinds=READ_KINDS,
        make_state_machine=BankExecutor,
        make_workload=BankWorkload,
        validate=_validate,
        make_op=_make_op,
        model=None,
        log=False,
        http="consensuskit.services.shard_kv:ROUTES",
        client="consensuskit.services.txn_http:TxnClient",
        example="consensuskit kv put hello world --endpoints {endpoints}; "
        "consensuskit txn put k1=a k2=b --endpoints {endpoints}",
    )


class _Routes:
    """The kv routes (and their fast path) and the txn service's ``POST /v1/txn``."""

    @staticmethod
    def mount(api: Any, router: Any) -> None:
        from consensuskit.server.kv_routes import ROUTES as KV_ROUTES
        from consensuskit.services.txn_http import ROUTES as TXN_ROUTES

        KV_ROUTES.mount(api, router)
        TXN_ROUTES.mount(api, router)

    @staticmethod
    def fast_site(*args: Any, **kwargs: Any) -> Any:
        from consensuskit.server.kv_routes import ROUTES as KV_ROUTES

        return KV_ROUTES.fast_site(*args, **kwargs)


ROUTES = _Routes()
