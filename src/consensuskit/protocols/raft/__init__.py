"""Raft (Ongaro & Ousterhout 2014; Ongaro's dissertation): see README.md here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec
from consensuskit.core.service import StateMachine
from consensuskit.protocols.raft.messages import LogEntry, Snapshot
from consensuskit.protocols.raft.node import HARD_STATE_KEY, SNAPSHOT_KEY, RaftNode
from consensuskit.protocols.raft.options import BUGS, SERVER_OPTIONS, RaftOptions

# The public surface other packages may use (check/ reads the durable snapshot and log).
__all__ = [
    "BUGS",
    "HARD_STATE_KEY",
    "SNAPSHOT_KEY",
    "LogEntry",
    "RaftNode",
    "RaftOptions",
    "Snapshot",
    "raft_spec",
]


def make_raft_node(
    node_id: str,
    env: Env,
    members: Sequence[str],
    options: dict[str, Any],
    *,
    state_machine: StateMachine | None = None,
) -> RaftNode:
    """Build a node; ``options["node_options"][node_id]`` overrides options per node
    (e.g. a shorter election timeout for the node a scenario wants to win)."""
    merged = dict(options)
    per_node = merged.pop("node_options", None) or {}
    merged.update(per_node.get(node_id, {}))
    return RaftNode(node_id, env, members, RaftOptions.from_dict(merged), state_machine=state_machine)


def raft_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="raft",
        description="Raft with pre-vote, check-quorum, ReadIndex/lease reads, snapshots, "
        "leadership transfer and single-server membership changes",
        make_node=make_raft_node,
        bugs=BUGS,
        validate_options=validate_options,
        survives_disk_loss=True,
        log=True,
        server_options=dict(SERVER_OPTIONS),
    )


def validate_options(options: dict[str, Any]) -> None:
    merged = dict(options)
    for overrides in (merged.pop("node_options", None) or {}).values():
        RaftOptions.from_dict({**merged, **overrides})
    RaftOptions.from_dict(merged)
