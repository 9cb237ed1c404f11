"""The gossip-kv protocol's registry entry: the gossip node's flags plus the kv's own.

Rules this module owns: gossip-kv takes every gossip flag (spec.py) and
``--tombstone-ttl``; it serves the ``eventual-kv`` service (the kv service's operations
and routes, eventually consistent: services/eventual_kv.py).
"""

from __future__ import annotations

from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.protocols.gossip.kv_node import KV_BUGS, KV_DEFAULTS, GossipKVNode, validate_options
from consensuskit.protocols.gossip.spec import FLAGS as GOSSIP_FLAGS

KV_SERVICE_NAME = "eventual-kv"

KV_FLAGS = (
    *GOSSIP_FLAGS,
    ProtocolFlag(name="tombstone-ttl", kind=float, default=KV_DEFAULTS["tombstone_ttl"],
                 help="Seconds (HLC time) a tombstone is kept before it is dropped (0: forever)."),
)  # fmt: skip


def gossip_kv_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="gossip-kv",
        description="eventually consistent kv (AP): HLC last-writer-wins, tombstones, rumors + anti-entropy",
        make_node=GossipKVNode,
        bugs=KV_BUGS,
        validate_options=validate_options,
        services=(KV_SERVICE_NAME,),
        flags=KV_FLAGS,
        min_nodes=1,
        amnesia_safe=True,  # anti-entropy gives a wiped node the state back
    )
