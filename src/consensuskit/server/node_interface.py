"""What the server needs from a protocol node (docs/server.md, "What a protocol must
offer the server"), in one place: the HTTP API, the metrics, the session clock and the
local cluster read a node only through ``core/capabilities.py`` -- its ``NodeStatus``
and the optional capabilities it implements -- never through a protocol's own fields.

Rules this module owns:
  * a served node answers ``node_status()`` with a ``NodeStatus``; a protocol whose nodes
    do not is refused at start (a configuration error), not discovered at the first
    request.  Everything else is optional;
  * a route or command that needs a capability the node lacks is refused naming the
    capability (``missing``), HTTP 501 ``not-implemented``;
  * the node that writes the session clock into the log (server/session_clock.py) is the
    leader where the protocol has one; in a protocol without a leader it is one fixed
    node, the first of the initial members (``clock_writer``): clock commands of two
    writers would keep restarting the log clock's epoch, so it would never advance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import (
    CAPABILITIES,
    HasLeader,
    Inspectable,
    Membership,
    NodeStatus,
    capabilities,
    is_leading,
    supported_changes,
)

__all__ = [
    "CAPABILITIES",
    "change_visible",
    "clock_writer",
    "missing",
    "status_problems",
    "supported_changes",
]


def status_problems(node: Any) -> list[str]:
    """What keeps ``node`` from being served: no ``node_status()``, or a wrong answer."""
    if not isinstance(node, Inspectable):
        return ["no node_status() method (core/capabilities.py)"]
    status = node.node_status()
    if not isinstance(status, NodeStatus):
        return [f"node_status() returned {type(status).__name__}, not a NodeStatus"]
    problems = []
    if not isinstance(status.generation, int) or isinstance(status.generation, bool):
        problems.append(f"node_status().generation is {type(status.generation).__name__}")
    if not isinstance(status.details, dict):
        problems.append(f"node_status().details is {type(status.details).__name__}")
    return problems


def missing(node: Any, capability: str) -> str | None:
    """None when ``node`` has ``capability``, else the one-line refusal naming it."""
    if capability in capabilities(node):
        return None
    return f"this protocol's nodes lack the {capability} capability (core/capabilities.py)"


def clock_writer(node: Any, node_id: str, members: Sequence[str]) -> bool:
    """This node writes the session clock now (see the module rules)."""
    if isinstance(node, HasLeader):
        return is_leading(node)
    return bool(members) and node_id == sorted(members)[0]


def change_visible(change: str, node_id: str, membership: Membership) -> bool:
    """The configuration ``membership`` shows ``change`` of ``node_id``."""
    voters, learners = membership.voters, membership.learners
    if change == "add-voter":
        return node_id in voters
    if change == "add-learner":
        return node_id in learners
    return node_id not in voters and node_id not in learners
