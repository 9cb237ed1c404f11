"""Sharded Raft: S groups of a log protocol (Raft in the catalog), each owning a key
range, and transactions across them committed by two-phase commit whose records live in
the groups' logs (README.md here).

Public surface: ``sharded_spec``, ``shard_of`` (routing), ``ShardedNode`` and the
shard state machine's outcomes for checkers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.protocols.sharded.node import ShardedNode
from consensuskit.protocols.sharded.options import BUGS, ShardedOptions
from consensuskit.protocols.sharded.routing import shard_of
from consensuskit.protocols.sharded.shard import ABORT, COMMIT, ShardMachine

__all__ = [
    "ABORT",
    "BUGS",
    "COMMIT",
    "SHARDS_FLAG",
    "ShardMachine",
    "ShardedNode",
    "shard_of",
    "sharded_raft_spec",
]

SHARDS_FLAG = ProtocolFlag(
    name="shards",
    kind=int,
    default=2,
    help="how many Raft groups (shards), each owning a key range; every node hosts one replica of each",
    names_protocol=True,  # `consensuskit up --shards S` means sharded Raft
)


def sharded_spec(group: ProtocolSpec, name: str = "") -> ProtocolSpec:
    """The sharded protocol whose groups run the log protocol ``group`` (the catalog
    composes ``sharded_spec(raft_spec())`` as ``sharded-raft``)."""
    if not group.log:
        raise ValueError(f"{group.name} is not a log protocol: it cannot replicate a shard")

    def make_node(node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> ShardedNode:
        return ShardedNode(node_id, env, members, ShardedOptions.from_dict(options), group.make_node)

    def validate_options(options: dict[str, Any]) -> None:
        made = ShardedOptions.from_dict(options)
        if group.validate_options is not None:
            group.validate_options(dict(made.group))

    return ProtocolSpec(
        name=name or f"sharded-{group.name}",
        description=f"S {group.name.capitalize()} groups owning key ranges; cross-shard transactions "
        "by 2PC over replicated records (CockroachDB/Spanner style), pushes and recovery",
        make_node=make_node,
        bugs=BUGS,
        validate_options=validate_options,
        min_nodes=3,
        # A host hands a lost disk's rejoining to its groups' replicas (node.py).
        survives_disk_loss=group.survives_disk_loss,
        services=("shard-kv", "kv", "txn"),
        flags=(SHARDS_FLAG,),
    )
