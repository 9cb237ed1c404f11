"""Multi-Paxos (Chubby style) as a registry entry: see README.md here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec
from consensuskit.core.service import StateMachine
from consensuskit.protocols.paxos.multi_node import MultiPaxosNode
from consensuskit.protocols.paxos.multi_options import BUGS, SERVER_OPTIONS, MultiPaxosOptions

__all__ = ["BUGS", "MultiPaxosNode", "MultiPaxosOptions", "make_multipaxos_node", "multipaxos_spec"]


def make_multipaxos_node(
    node_id: str,
    env: Env,
    members: Sequence[str],
    options: dict[str, Any],
    *,
    state_machine: StateMachine | None = None,
) -> MultiPaxosNode:
    """Build a node; ``options["node_options"][node_id]`` overrides options per node."""
    merged = dict(options)
    per_node = merged.pop("node_options", None) or {}
    merged.update(per_node.get(node_id, {}))
    opts = MultiPaxosOptions.from_dict(merged)
    return MultiPaxosNode(node_id, env, members, opts, state_machine=state_machine)


def validate_options(options: dict[str, Any]) -> None:
    merged = dict(options)
    for overrides in (merged.pop("node_options", None) or {}).values():
        MultiPaxosOptions.from_dict({**merged, **overrides})
    MultiPaxosOptions.from_dict(merged)


def multipaxos_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="multipaxos",
        description="Multi-Paxos in the Chubby style: leader by phase 1 over all slots, pre-vote, "
        "leases with lease reads, forwarding, alpha-delayed membership changes, snapshots",
        make_node=make_multipaxos_node,
        bugs=BUGS,
        validate_options=validate_options,
        survives_disk_loss=True,
        log=True,
        server_options=dict(SERVER_OPTIONS),
    )
