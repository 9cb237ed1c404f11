"""The key-value service: get, put, delete, compare-and-swap, list, and client auth.

Everything the platform needs to run kv, in one spec: its ops (``core.client.Op``), its
state machine (``statemachines/kv.py``), its checker model (``kv`` in
check/linearizability/models.py), the simulator's kv workload, its HTTP routes
(``server/kv_routes.py``, the ``/v1/kv`` part of docs/openapi.yaml), its client methods
(``Client.get/put/delete/cas/list``) and its CLI verbs (``consensuskit kv ...``).

Rules this module owns (the workload):
  * keys are ``k0 .. k{keys-1}``; 40% get, 30% put, 10% delete, 20% cas (a third of
    them on the version the client last saw, the rest on its last seen value);
  * values are unique ints (client index * 1_000_000 + counter) so a history says
    exactly which write a read observed.
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import OP_KINDS, READ_KINDS, Op
from consensuskit.core.service import ServiceSpec
from consensuskit.statemachines.kv import KVStateMachine

# What clients may send (the clock command is the server runtime's own).
KINDS = tuple(kind for kind in OP_KINDS if kind != "clock")


class KVWorkload:
    """One simulated kv client's operations (see the module rules)."""

    __slots__ = ("counter", "index", "keys", "known")

    def __init__(self, index: int, keys: int) -> None:
        self.index = index
        self.keys = keys
        self.counter = 0
        # key -> (value, version) as last observed by this client, for cas.
        self.known: dict[str, tuple[Any, int]] = {}

    def _unique(self) -> int:
        self.counter += 1
        return self.index * 1_000_000 + self.counter

    def next_op(self, rng: random.Random) -> Op:
        key = f"k{rng.randrange(self.keys)}"
        r = rng.random()
        if r < 0.4:
            return Op(kind="get", key=key)
        if r < 0.7:
            return Op(kind="put", key=key, value=self._unique())
        if r < 0.8:
            return Op(kind="delete", key=key)
        value, version = self.known.get(key, (None, 0))
        if rng.random() < 0.3:
            return Op(kind="cas", key=key, value=self._unique(), expected_version=version)
        return Op(kind="cas", key=key, value=self._unique(), expected=value)

    def learn(self, op: Op, result: Any) -> None:
        # Results follow statemachines/kv.py; other shapes teach the client nothing.
        if not isinstance(result, dict):
            return
        key = op.key
        if op.kind == "get" or (op.kind == "cas" and not result.get("swapped")):
            if "version" in result:
                self.known[key] = (result.get("value"), int(result["version"]))
        elif op.kind in ("put", "cas") and "version" in result:
            self.known[key] = (op.value, int(result["version"]))
        elif op.kind == "delete":
            self.known[key] = (None, 0)


def _validate(op: Any) -> None:
    if type(op) is not Op:
        raise ValueError(f"a kv operation is an Op, not a {type(op).__name__}")


def _make_op(kind: str, key: str, value: Any) -> Op:
    return Op(kind=kind, key=key, value=value)


def kv_service() -> ServiceSpec:
    return ServiceSpec(
        name="kv",
        description="key-value store: get, put, delete, compare-and-swap, list; client auth",
        kinds=KINDS,
        read_kinds=READ_KINDS,
        make_state_machine=KVStateMachine,
        make_workload=KVWorkload,
        validate=_validate,
        make_op=_make_op,
        model="kv",
        log=True,
        http="consensuskit.server.kv_routes:ROUTES",
        client=None,  # its methods are consensuskit.client.Client's own (get, put, delete, cas, list)
        cli="consensuskit.cli_kv:kv_app",
        example="consensuskit kv put hello world --endpoints {endpoints}",
    )
