"""ZAB as ZooKeeper runs it (Junqueira, Reed, Serafini 2011; ZooKeeper's quorum
package): see README.md here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.core.service import StateMachine
from consensuskit.protocols.zab.messages import STATES, Snapshot, Txn, zxid_str
from consensuskit.protocols.zab.node import (
    ACCEPTED_EPOCH_KEY,
    CURRENT_EPOCH_KEY,
    SNAPSHOT_KEY,
    ZabNode,
)
from consensuskit.protocols.zab.options import BUGS, SERVER_OPTIONS, ZabOptions
from consensuskit.protocols.zab.vote import beats

# The public surface other packages may use (check/ reads txns and durable records).
__all__ = [
    "ACCEPTED_EPOCH_KEY",
    "BUGS",
    "CURRENT_EPOCH_KEY",
    "SNAPSHOT_KEY",
    "STATES",
    "Snapshot",
    "Txn",
    "ZabNode",
    "ZabOptions",
    "beats",
    "zab_spec",
    "zxid_str",
]


def make_zab_node(
    node_id: str,
    env: Env,
    members: Sequence[str],
    options: dict[str, Any],
    *,
    state_machine: StateMachine | None = None,
) -> ZabNode:
    """Build a server; ``options["node_options"][node_id]`` overrides options per server."""
    merged = dict(options)
    per_node = merged.pop("node_options", None) or {}
    merged.update(per_node.get(node_id, {}))
    return ZabNode(node_id, env, members, ZabOptions.from_dict(merged), state_machine=state_machine)


def zab_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="zab",
        description="ZAB as ZooKeeper runs it: fast leader election, discovery, "
        "DIFF/TRUNC/SNAP synchronisation, pipelined broadcast, observers",
        make_node=make_zab_node,
        bugs=BUGS,
        validate_options=validate_options,
        log=True,
        survives_disk_loss=True,
        server_options=dict(SERVER_OPTIONS),
        flags=(
            ProtocolFlag(
                name="observers",
                kind=int,
                default=0,
                help="How many servers (the last in id order) observe: they learn commits, "
                "forward writes and never vote.",
            ),
        ),
    )


def validate_options(options: dict[str, Any]) -> None:
    merged = dict(options)
    for overrides in (merged.pop("node_options", None) or {}).values():
        ZabOptions.from_dict({**merged, **overrides})
    ZabOptions.from_dict(merged)
