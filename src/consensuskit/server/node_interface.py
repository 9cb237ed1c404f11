"""What the server needs from a protocol node (docs/server.md, "What a protocol must
offer the server"), in one place: the HTTP API, the metrics and the local cluster read
a node only through these fields and optional methods, never through a protocol's own
attributes.

Rules this module owns:
  * ``status()`` carries ``STATUS_FIELDS`` with those types; a protocol whose nodes do
    not is refused at start (a configuration error), not discovered at the first request;
  * membership changes are named ``CONFIG_CHANGES``; a node that supports only some
    lists them in ``config_changes``; one without ``propose_config_change`` has none;
  * a change is pending while ``config_pending`` (or, for a node without that field,
    while ``config_index > commit``).
"""

from __future__ import annotations

from typing import Any, Protocol

from consensuskit.core.env import ProtocolNode

CONFIG_CHANGES = ("add-voter", "add-learner", "remove")

# field -> accepted types (None: null allowed)
STATUS_FIELDS: dict[str, tuple[type | None, ...]] = {
    "role": (str,),
    "leader": (str, None),
    "term": (int,),
    "commit": (int,),
    "applied": (int,),
    "last_index": (int,),
    "snapshot_index": (int,),
    "voters": (list,),
    "learners": (list,),
    "config_index": (int,),
    "peers": (dict,),
}


class ServedNode(ProtocolNode, Protocol):
    """A node the server can run (optional methods: see the module rules)."""

    def status(self) -> dict[str, Any]: ...


def status_problems(node: Any) -> list[str]:
    """What keeps ``node`` from being served: missing or mistyped status fields."""
    status_fn = getattr(node, "status", None)
    if status_fn is None:
        return ["no status() method"]
    status = status_fn()
    problems = []
    for name, types in STATUS_FIELDS.items():
        if name not in status:
            problems.append(f"status() lacks {name!r}")
            continue
        value = status[name]
        ok = any(value is None if t is None else isinstance(value, t) for t in types)
        if not ok or (isinstance(value, bool) and bool not in types):
            problems.append(f"status()[{name!r}] is {type(value).__name__}")
    return problems


def supported_changes(node: Any) -> tuple[str, ...]:
    """The membership changes ``node`` accepts (none without ``propose_config_change``)."""
    if not hasattr(node, "propose_config_change"):
        return ()
    return tuple(getattr(node, "config_changes", CONFIG_CHANGES))


def config_pending(status: dict[str, Any]) -> bool:
    """A membership change is proposed and not committed."""
    pending = status.get("config_pending")
    if pending is None:
        return bool(status["config_index"] > status["commit"])
    return bool(pending)


def change_visible(change: str, node_id: str, status: dict[str, Any]) -> bool:
    """The configuration in ``status`` shows ``change`` of ``node_id``."""
    voters, learners = status.get("voters", []), status.get("learners", [])
    if change == "add-voter":
        return node_id in voters
    if change == "add-learner":
        return node_id in learners
    return node_id not in voters and node_id not in learners
