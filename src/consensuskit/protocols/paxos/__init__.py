"""The Paxos family: Basic Paxos, Multi-Paxos (Chubby style) and Fast Paxos.

Specs are imported lazily so that importing one variant never pulls in the others.
"""

from __future__ import annotations

from consensuskit.core.registry import ProtocolSpec


def basic_paxos_spec() -> ProtocolSpec:
    from consensuskit.protocols.paxos.basic import basic_paxos_spec as spec

    return spec()


def fast_paxos_spec() -> ProtocolSpec:
    from consensuskit.protocols.paxos.fast import fast_paxos_spec as spec

    return spec()


def multipaxos_spec() -> ProtocolSpec:
    from consensuskit.protocols.paxos.multi import multipaxos_spec as spec

    return spec()


__all__ = ["basic_paxos_spec", "fast_paxos_spec", "multipaxos_spec"]
