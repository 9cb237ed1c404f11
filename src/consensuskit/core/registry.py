"""Protocol registry: what the simulator and server need to run a protocol by name.

Neither the simulator nor the server knows any protocol beyond its ``ProtocolSpec``.
This module knows none at all: the list of protocols a build ships is
``consensuskit.catalog`` (core/ imports nothing above it).

Rules this module owns (protocols and services, core/service.py):
  * a *log* protocol (``log=True``) serves every log service: ``make_node`` then takes the
    keyword ``state_machine`` (that service's, fresh per node start) and never builds one;
  * a protocol that is not a log serves the services it names (``services``, its
    default first) and builds what it needs itself;
  * a protocol naming no services serves ``DEFAULT_SERVICE``;
  * the registry also holds the services (``add_service``), so one object tells the
    simulator, the sweeps and the server everything they may run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.env import Env, NodeId, ProtocolNode
from consensuskit.core.service import DEFAULT_SERVICE, ServiceRegistry, ServiceSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolSpec:
    name: str
    description: str
    # make_node(node_id, env, members, options) -> node; members are the initial voters.
    make_node: Callable[[NodeId, Env, Sequence[NodeId], dict[str, Any]], ProtocolNode]
    # make_checker(bugs) -> an object with check(sim) called after every step, or None.
    make_checker: Callable[[frozenset[str]], Any] | None = None
    bugs: tuple[str, ...] = ()
    default_options: dict[str, Any] = field(default_factory=dict)
    # validate_options(options) raises ValueError naming the valid options.
    validate_options: Callable[[dict[str, Any]], None] | None = None
    # The node honours the platform's REJOINING_KEY (core/storage.py): started on an
    # empty storage with the key set, it takes no part in any quorum until it has been
    # caught up and readmitted, so losing a disk cannot undo a vote or an acknowledged
    # write.  The simulator's ``wipe`` fault applies only to such protocols.
    survives_disk_loss: bool = False
    # The fewest nodes the protocol runs with under its default options (fast-paxos: 4,
    # n >= 3f+1 with f = 1); ``consensuskit up`` starts at least this many by default.
    min_nodes: int = 1
    # See the module rules: a log protocol takes state_machine= in make_node.
    log: bool = False
    services: tuple[str, ...] = ()

    @property
    def default_service(self) -> str:
        return self.services[0] if self.services else DEFAULT_SERVICE

    def serves(self, service: ServiceSpec) -> bool:
        if service.name in self.services:
            return True
        if self.log:
            return service.log
        return not self.services and service.name == DEFAULT_SERVICE

    def build(
        self,
        node_id: NodeId,
        env: Env,
        members: Sequence[NodeId],
        options: dict[str, Any],
        service: ServiceSpec | None = None,
    ) -> ProtocolNode:
        """A node serving ``service`` (a log protocol gets its state machine)."""
        if self.log and service is not None:
            return self.make_node(  # type: ignore[call-arg]
                node_id, env, members, options, state_machine=service.make_state_machine()
            )
        return self.make_node(node_id, env, members, options)


class Registry:
    """Name -> spec map; one instance per program, built explicitly (no import magic)."""

    def __init__(self) -> None:
        self._specs: dict[str, ProtocolSpec] = {}
        self.services = ServiceRegistry()

    def add_service(self, spec: ServiceSpec) -> None:
        self.services.add(spec)

    def service(self, name: str) -> ServiceSpec:
        """The service ``name``; KeyError naming the valid ones."""
        return self.services.get(name)

    def service_for(self, protocol: ProtocolSpec, name: str | None = None) -> ServiceSpec:
        """The service ``protocol`` runs: ``name``, or its default.  KeyError (one line,
        naming the valid choices) for an unknown service or one it cannot serve."""
        spec = self.service(name or protocol.default_service)
        if not protocol.serves(spec):
            valid = ", ".join(n for n in self.services.names() if protocol.serves(self.services.get(n)))
            raise KeyError(f"{protocol.name} cannot serve {spec.name!r}; valid: {valid or '(none)'}")
        return spec

    def add(self, spec: ProtocolSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"protocol {spec.name!r} registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ProtocolSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(
                f"unknown protocol {name!r}; valid: {', '.join(sorted(self._specs))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

