"""SWIM membership with Lifeguard (Das et al. 2002; Dadgar et al. 2018): see README.md here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
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
    "FLAGS",
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


# ``consensuskit sim swim`` flags: the fault ones reach the monitor (check/swim_monitor.py)
# only; --lifeguard is the member option of the same name.
FLAGS = (
    ProtocolFlag(name="loss", kind=float, default=0.0, help="Message loss probability.", option=False),
    ProtocolFlag(name="crashes", kind=int, default=0, help="Members crashed during the run.", option=False),
    ProtocolFlag(
        name="slow-members", kind=int, default=0, help="Members starved of CPU in bursts.", option=False
    ),
    ProtocolFlag(name="lifeguard", kind=bool, default=True, help="Lifeguard on or off."),
)


def swim_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name="swim",
        description="SWIM membership with Lifeguard (local health, dynamic suspicion, buddy "
        "system), piggybacked dissemination, push-pull and join",
        make_node=make_swim_node,
        bugs=BUGS,
        validate_options=validate_options,
        services=("membership",),
        flags=FLAGS,
        amnesia_safe=True,  # a wiped member joins again and refutes with a higher incarnation
    )
