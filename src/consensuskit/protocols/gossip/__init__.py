"""Gossip: epidemic dissemination (Demers et al., PODC 1987).

The public surface other packages use: the rumor-mongering cycle model (``epidemic``),
the paper's tables (``demers_tables``), and the gossip protocol node (``node``: rumor
mongering backed by anti-entropy over a last-writer-wins map, ``replica``) with its
registry entry (``spec``); the gossip kv (``kv_node``: an eventually consistent kv with
hybrid logical clocks, ``hlc``) with its registry entry (``kv_spec``).
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
from consensuskit.protocols.gossip.hlc import HybridClock
from consensuskit.protocols.gossip.hlc import unpack as unpack_hlc
from consensuskit.protocols.gossip.kv_node import GossipKVNode
from consensuskit.protocols.gossip.kv_spec import KV_SERVICE_NAME, gossip_kv_spec
from consensuskit.protocols.gossip.node import GossipNode
from consensuskit.protocols.gossip.replica import Replica, ReplicaMachine
from consensuskit.protocols.gossip.spec import SERVICE_NAME, gossip_spec

__all__ = [
    "FIGURES",
    "INTEREST",
    "KV_SERVICE_NAME",
    "MODES",
    "SERVICE_NAME",
    "TABLES",
    "GossipKVNode",
    "GossipNode",
    "HybridClock",
    "PaperRow",
    "Replica",
    "ReplicaMachine",
    "RumorConfig",
    "RumorRun",
    "Spread",
    "gossip_kv_spec",
    "gossip_spec",
    "measure",
    "run_rumor",
    "spread",
    "unpack_hlc",
]
