"""The bank service: transfers between accounts and reads of every balance, the
Jepsen bank test's operations (served by sharded-raft, the accounts spread over its
shards).

Operations (``ServiceOp``): ``transfer`` {from, to, amount} moves ``amount`` (an int)
from one account to another as one transaction; ``balances`` [accounts] reads them all
as one read-only transaction.  Every account starts at 0 and may go negative, so a
transfer always commits and every read must sum to 0 (conservation).  Answers carry,
for each key the transaction touched, the transaction that wrote the version it read and
that writer's predecessor (``reads``), and the keys it wrote (``wrote``): what the
serializability checker (check/serializability.py) builds its graph from.

Rules this module owns (the workload): accounts ``a0 .. a{A-1}`` with A = max(keys, 6);
60% transfers of 1..5 between two distinct random accounts, 40% reads of all balances.

No linearizability model: histories are checked for serializability and conservation
(check/sharded.py), not against a sequential model.
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.core.service import ServiceSpec

KINDS = ("transfer", "balances")
READ_KINDS = ("balances",)
MIN_ACCOUNTS = 6


def accounts(keys: int) -> list[str]:
    return [f"a{i}" for i in range(max(keys, MIN_ACCOUNTS))]


class BankExecutor:
    """For the platform's interfaces only: sharded-raft keeps balances in its shards."""

    def apply(self, command: ClientRequest) -> Any:
        raise ValueError("bank operations are executed by sharded-raft's shards")

    def read(self, request: ClientRequest) -> Any:
        raise ValueError("bank operations are executed by sharded-raft's shards")

    def snapshot(self) -> Any:
        return ()

    def restore(self, snapshot: Any) -> None:
        pass

    def digest(self) -> Any:
        return ()

    def __len__(self) -> int:
        return 0


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


def _validate(op: Any) -> None:
    value = op.value
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


def bank_service() -> ServiceSpec:
    return ServiceSpec(
        name="bank",
        description="the bank test: transfers between accounts and reads of all balances",
        kinds=KINDS,
        read_kinds=READ_KINDS,
        make_state_machine=BankExecutor,
        make_workload=BankWorkload,
        validate=_validate,
        model=None,
        log=False,
    )
