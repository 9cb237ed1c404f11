"""The eventual-kv service: the kv service's operations and HTTP routes, served by an
eventually consistent (AP) protocol, gossip-kv.

Same front doors as kv: ``server/kv_routes.py`` (``/v1/kv``), ``consensuskit kv ...`` and
``Client.get/put/delete/list``. What differs is the contract, so it is a service of its
own: no linearizability model (``model=None``: histories are not checked for it; what
the gossip kv promises, convergence, is checked by its monitor, check/gossip_kv.py), no
compare-and-swap (``validate`` refuses it: it needs consensus), and a result's
``version`` is the version's packed hybrid-logical-clock stamp, not a count of writes.

Rules this module owns (the workload): keys ``k0 .. k{keys-1}``; 40% get, 45% put, 15%
delete; values are unique ints (client index * 1_000_000 + counter), so the monitor can
tell which acknowledged writes the final state lost.
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import Op
from consensuskit.core.service import ServiceSpec
from consensuskit.protocols.gossip import KV_SERVICE_NAME, ReplicaMachine
from consensuskit.protocols.gossip.messages import KVEntry

KINDS = ("get", "put", "delete", "list")
READS = ("get", "list")


class EventualKVMachine(ReplicaMachine):
    """One replica's map as a state machine, for tools that replay a history on one
    replica (the gossip kv node keeps its own replica): writes are stamped in order."""

    def apply(self, command: Any) -> Any:
        op = command.op
        if op.kind in READS:
            return self.read(command)
        before = self.replica.get(op.key)
        entry = KVEntry(
            key=op.key,
            counter=self.replica.max_counter + 1,
            origin=command.client_id,
            value=None if op.kind == "delete" else op.value,
            deleted=op.kind == "delete",
        )
        self.replica.merge(entry)
        result: dict[str, Any] = {"version": entry.counter, "origin": entry.origin}
        if op.kind == "delete":
            result["deleted"] = before is not None and not getattr(before, "deleted", False)
        return result

    def read(self, request: Any) -> Any:
        op = request.op
        if op.kind not in READS:
            raise ValueError(f"{op.kind!r} is not a read")
        if op.kind == "list":
            items = tuple(
                (k, e.value, e.counter)
                for k, e in sorted(self.replica.entries.items())
                if k.startswith(op.key) and not getattr(e, "deleted", False)
            )
            return {"items": items, "truncated": False}
        entry = self.replica.get(op.key)
        if entry is None or getattr(entry, "deleted", False):
            return {"value": None, "version": 0}
        return {"value": entry.value, "version": entry.counter}


class EventualKVWorkload:
    """One simulated client (see the module rules)."""

    __slots__ = ("counter", "index", "keys")

    def __init__(self, index: int, keys: int) -> None:
        self.index = index
        self.keys = keys
        self.counter = 0

    def next_op(self, rng: random.Random) -> Op:
        key = f"k{rng.randrange(self.keys)}"
        r = rng.random()
        if r < 0.4:
            return Op(kind="get", key=key)
        if r < 0.85:
            self.counter += 1
            return Op(kind="put", key=key, value=self.index * 1_000_000 + self.counter)
        return Op(kind="delete", key=key)

    def learn(self, op: Op, result: Any) -> None:
        pass


def _validate(op: Any) -> None:
    if type(op) is not Op:
        raise ValueError(f"an eventual-kv operation is an Op, not a {type(op).__name__}")
    if op.kind == "cas":
        raise ValueError("eventual-kv has no compare-and-swap: it needs consensus (use the kv service)")


def _make_op(kind: str, key: str, value: Any) -> Op:
    return Op(kind=kind, key=key, value=value)


def eventual_kv_service() -> ServiceSpec:
    return ServiceSpec(
        name=KV_SERVICE_NAME,
        description="the kv service's get/put/delete/list and routes, eventually consistent (gossip-kv)",
        kinds=KINDS,
        read_kinds=READS,
        make_state_machine=EventualKVMachine,
        make_workload=EventualKVWorkload,
        validate=_validate,
        make_op=_make_op,
        model=None,
        log=False,
        http="consensuskit.server.kv_routes:ROUTES",
        client=None,  # consensuskit.client.Client's kv methods (get, put, delete, list)
        cli=None,  # `consensuskit kv ...` (the kv service's verbs) talks to the same routes
        example="consensuskit kv put hello world --endpoints {endpoints}",
    )
