"""Protocol registry: what the simulator and server need to run a protocol by name.

Neither the simulator nor the server knows any protocol beyond its ``ProtocolSpec``.
This module knows none at all: the list of protocols a build ships is
``consensuskit.catalog`` (core/ imports nothing above it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.env import Env, NodeId, ProtocolNode


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


class Registry:
    """Name -> spec map; one instance per program, built explicitly (no import magic)."""

    def __init__(self) -> None:
        self._specs: dict[str, ProtocolSpec] = {}

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

