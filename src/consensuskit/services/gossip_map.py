"""The gossip-map service: an eventually consistent map served by the gossip protocol.

``put KEY VALUE`` is accepted by any node and stamped there; ``get KEY`` reads that
node's replica. Front doors: ``PUT/GET /v1/map/KEY``, ``Client.service("gossip-map")``
and ``consensuskit gossip-map put|get`` (services/gossip_map_http.py). There is no
linearizability verdict (``model=None``): the property the gossip family checks is
convergence (check/gossip.py), after the run settles.

Rules this module owns (the workload): keys ``k0 .. k{keys-1}``; 70% put, 30% get; values
are unique ints (client index * 1_000_000 + counter).
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.client import ClientRequest
from consensuskit.core.service import ServiceSpec
from consensuskit.protocols.gossip import SERVICE_NAME, ReplicaMachine
from consensuskit.protocols.gossip.messages import Entry

KINDS = ("put", "get")
READS = ("get",)


class MapMachine(ReplicaMachine):
    """The map a single replica holds, as a state machine (for tools that replay a
    history on one replica; the gossip node keeps its own ``Replica``)."""

    def apply(self, command: ClientRequest) -> Any:
        op = command.op
        if op.kind != "put":
            return self.read(command)
        entry = Entry(
            key=op.key, counter=self.replica.max_counter + 1, origin=command.client_id, value=op.value
        )
        self.replica.merge(entry)
        return {"counter": entry.counter, "origin": entry.origin}

    def read(self, request: ClientRequest) -> Any:
        if request.op.kind != "get":
            raise ValueError(f"{request.op.kind!r} is not a read")
        entry = self.replica.get(request.op.key)
        return None if entry is None else entry.value


class MapWorkload:
    """One simulated client of the map (see the module rules)."""

    __slots__ = ("counter", "index", "keys")

    def __init__(self, index: int, keys: int) -> None:
        self.index = index
        self.keys = keys
        self.counter = 0

    def next_op(self, rng: random.Random) -> Any:
        key = f"k{rng.randrange(self.keys)}"
        if rng.random() < 0.3:
            return SERVICE.op("get", key)
        self.counter += 1
        return SERVICE.op("put", key, self.index * 1_000_000 + self.counter)

    def learn(self, op: Any, result: Any) -> None:
        pass


def gossip_map_service() -> ServiceSpec:
    return SERVICE


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    description="eventually consistent map: put anywhere, get local (gossip)",
    kinds=KINDS,
    read_kinds=READS,
    make_state_machine=MapMachine,
    make_workload=MapWorkload,
    model=None,
    log=False,
    http="consensuskit.services.gossip_map_http:ROUTES",
    client="consensuskit.services.gossip_map_http:GossipMapClient",
    cli="consensuskit.services.gossip_map_http:CLI",
    example="consensuskit gossip-map put hello world --endpoints {url}",
)
