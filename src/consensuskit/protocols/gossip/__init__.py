"""Gossip: epidemic dissemination (Demers et al., PODC 1987).

The public surface other packages use: the rumor-mongering cycle model (``epidemic``),
the paper's tables (``demers_tables``), and the gossip protocol node (``node``: rumor
mongering backed by anti-entropy over a last-writer-wins map, ``replica``) with its
registry entry (``spec``).
"""

from consensuskit.protocols.gossip.demers_tables import TABLES, PaperRow
from consensuskit.protocols.gossip.epidemic import (
    FIGURES,
    INTEREST,
    MODES,
    RumorConfig,
    RumorRun,
    Spread,
    measure,
    run_rumor,
    spread,
)
from consensuskit.protocols.gossip.node import GossipNode
from consensuskit.protocols.gossip.replica import Replica
from consensuskit.protocols.gossip.spec import SERVICE_NAME, gossip_spec

__all__ = [
    "FIGURES",
    "INTEREST",
    "MODES",
    "SERVICE_NAME",
    "TABLES",
    "GossipNode",
    "PaperRow",
    "Replica",
    "RumorConfig",
    "RumorRun",
    "Spread",
    "gossip_spec",
    "measure",
    "run_rumor",
    "spread",
]
