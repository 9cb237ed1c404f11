"""SWIM membership with Lifeguard (Das et al. 2002; Dadgar et al. 2018): see README.md here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec
from consensuskit.protocols.swim.lifeguard import (
    Awareness,
    Suspicion,
    confirmations_wanted,
    push_pull_interval,
    retransmit_limit,
    suspicion_bounds,
    suspicion_timeout,
)
from consensuskit.protocols.swim.members import SUPERSEDES, Member, supersedes
from consensuskit.protocols.swim.messages import ALIVE, DEAD, LEFT, STATES, SUSPECT, Update
from consensuskit.protocols.swim.node import INCARNATION_KEY, SwimNode
from consensuskit.protocols.swim.options import BUGS, SwimOptions

# The public surface other packages may use (check/ and the membership service read it).
__all__ = [
    "ALIVE",
    "BUGS",
    "DEAD",
    "INCARNATION_KEY",
    "LEFT",
    "STATES",
    "SUPERSEDES",
    "SUSPECT",
    "Awareness",
    "Member",
    "Suspicion",
    "SwimNode",
    "SwimOptions",
    "Update",
    "confirmations_wanted",
    "push_pull_interval",
    "retransmit_limit",
    "supersedes",
    "suspicion_bounds",
    "suspicion_timeout",
    "swim_spec",
]


def make_swim_node(node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> SwimNode:
    return SwimNode(node_id, env, members, SwimOptions.from_dict(options))


def validate_options(options: dict[str, Any]) -> None:
    SwimOptions.from_dict(options)


def swim_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="swim",
        description="SWIM membership with Lifeguard (local health, dynamic suspicion, buddy "
        "system), piggybacked dissemination, push-pull and join",
        make_node=make_swim_node,
        bugs=BUGS,
        validate_options=validate_options,
        services=("membership",),
    )
