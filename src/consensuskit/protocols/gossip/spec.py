"""The gossip protocol's registry entry: its node, options, flags and bug knobs.

Rules this module owns: every node option is also a command-line flag of ``sim``,
``sweep``, ``up`` and ``server`` (``--mode push``, ``--exchange full``, ...), with the
node's defaults; the protocol serves the ``gossip-map`` service.
"""

from __future__ import annotations

from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.protocols.gossip.node import (
    BUGS,
    DEFAULTS,
    EXCHANGES,
    FLOWS,
    LOSSES,
    GossipNode,
    validate_options,
)
from consensuskit.protocols.gossip.peers import TOPOLOGIES

SERVICE_NAME = "gossip-map"

FLAGS = (
    ProtocolFlag(name="mode", kind=str, default=DEFAULTS["mode"], choices=FLOWS,
                 help="Anti-entropy direction: push, pull or push-pull."),
    ProtocolFlag(name="exchange", kind=str, default=DEFAULTS["exchange"], choices=EXCHANGES,
                 help="Anti-entropy by full state or by Merkle digests."),
    ProtocolFlag(name="anti-entropy-period", kind=float, default=DEFAULTS["anti_entropy_period"],
                 help="Seconds between a node's anti-entropy exchanges (0: none)."),
    ProtocolFlag(name="rumor", kind=bool, default=DEFAULTS["rumor"], help="Rumor mongering on or off."),
    ProtocolFlag(name="rumor-period", kind=float, default=DEFAULTS["rumor_period"],
                 help="Seconds between a node's rumor rounds."),
    ProtocolFlag(name="fanout", kind=int, default=DEFAULTS["fanout"],
                 help="Peers a node sends its hot rumors to per round."),
    ProtocolFlag(name="rumor-k", kind=int, default=DEFAULTS["rumor_k"],
                 help="A rumor goes cold after k peers said they already knew it."),
    ProtocolFlag(name="rumor-mode", kind=str, default=DEFAULTS["rumor_mode"], choices=FLOWS,
                 help="Rumor mongering by push, pull or push-pull."),
    ProtocolFlag(name="rumor-feedback", kind=bool, default=DEFAULTS["rumor_feedback"],
                 help="Count only 'already knew' answers (on) or every round that sent it (off, blind)."),
    ProtocolFlag(name="rumor-loss", kind=str, default=DEFAULTS["rumor_loss"], choices=LOSSES,
                 help="Go cold after k counts (counter) or with probability 1/k per count (coin)."),
    ProtocolFlag(name="topology", kind=str, default=DEFAULTS["topology"], choices=TOPOLOGIES,
                 help="Peers: every member (uniform) or a partial mesh."),
    ProtocolFlag(name="degree", kind=int, default=DEFAULTS["degree"], help="Mesh degree (topology mesh)."),
    ProtocolFlag(name="graph-seed", kind=int, default=DEFAULTS["graph_seed"],
                 help="Which mesh (topology mesh)."),
)  # fmt: skip


def gossip_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="gossip",
        description="anti-entropy (full state or Merkle digests) + rumor mongering, LWW map",
        make_node=GossipNode,
        bugs=BUGS,
        validate_options=validate_options,
        services=(SERVICE_NAME,),
        flags=FLAGS,
        min_nodes=1,
        amnesia_safe=True,  # anti-entropy gives a wiped node the state back
    )
