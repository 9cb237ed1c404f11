"""The protocols this build ships, by name.

The one module that names every protocol: core/ defines what a protocol offers
(``core.registry.ProtocolSpec``) and knows none of them; the simulator, the server and the
CLI take a ``Registry`` and default to this one.
"""

from __future__ import annotations

from consensuskit.core.registry import Registry
from consensuskit.protocols.paxos import basic_paxos_spec, fast_paxos_spec, multipaxos_spec
from consensuskit.protocols.raft import raft_spec


def default_registry() -> Registry:
    """Every protocol this build ships."""
    registry = Registry()
    registry.add(raft_spec())
    registry.add(multipaxos_spec())
    registry.add(basic_paxos_spec())
    registry.add(fast_paxos_spec())
    return registry
