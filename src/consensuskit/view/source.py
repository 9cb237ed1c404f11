"""The contract between the browser view's server (``view/app.py``) and a live cluster.

Rules this module owns:
  * a ``LiveSource`` is what ``app.py`` serves in live mode; a replay is a plain list of
    rendered trace records (the JSON-lines form of ``sim/trace.py``: ``{"t", "ev", ...}``);
  * ``records()`` yields rendered trace dicts, each with ``"node"`` (the node that
    reported it) and ``"seq"`` (a per-node sequence number, 1, 2, 3, ... without gaps,
    so the page notices a gap and asks for a resync);
  * ``act(action)`` performs one of ``ACTIONS`` and returns ``{"ok": bool, "detail": str}``;
    it never raises for a bad action (a clear ``detail`` instead);
  * the websocket protocol (``/live``) is fixed here so both sides of the wire agree:
    client -> server ``{"act": {...}, "id": N}``; server -> client ``{"reply": {...},
    "id": N}``, ``{"records": [...]}`` and ``{"snapshot": {node: status, ...}}``.

Actions (the ``"action"`` key of an act):
  ``{"action": "kill", "node": ID}``, ``restart``, ``pause``, ``resume`` (each with
  ``"node"``), ``{"action": "partition", "groups": [[ids], [ids]]}``, ``heal``,
  ``{"action": "transfer", "to": ID}``, ``{"action": "put", "key": K, "value": V}``,
  ``{"action": "get", "key": K}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

ACTIONS: tuple[str, ...] = (
    "kill",
    "restart",
    "pause",
    "resume",
    "partition",
    "heal",
    "transfer",
    "put",
    "get",
)

# Actions that name one node with "node".
NODE_ACTIONS = frozenset({"kill", "restart", "pause", "resume"})


@runtime_checkable
class LiveSource(Protocol):
    """A running cluster as the view sees it: a stream of records and a set of actions."""

    node_ids: list[str]

    def records(self) -> AsyncIterator[dict[str, Any]]:
        """Rendered trace dicts, each with ``"node"`` and a per-node ``"seq"``."""
        ...

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        """Perform one action; return ``{"ok": bool, "detail": str}``."""
        ...

    async def close(self) -> None: ...


def check_action(action: Any) -> str | None:
    """Why ``action`` is malformed (one line), or None when it is well formed."""
    if not isinstance(action, dict):
        return "an action is a JSON object"
    name = action.get("action")
    if name not in ACTIONS:
        return f"unknown action {name!r}; valid: {', '.join(ACTIONS)}"
    if name in NODE_ACTIONS and not isinstance(action.get("node"), str):
        return f"{name} needs a 'node' (string)"
    if name == "partition":
        groups = action.get("groups")
        if not (
            isinstance(groups, list)
            and len(groups) >= 2
            and all(isinstance(g, list) and all(isinstance(n, str) for n in g) for g in groups)
        ):
            return "partition needs 'groups': a list of at least two lists of node ids"
    if name == "transfer" and not isinstance(action.get("to"), str):
        return "transfer needs 'to' (a node id)"
    if name in ("put", "get") and not isinstance(action.get("key"), str):
        return f"{name} needs a 'key' (string)"
    if name == "put" and not isinstance(action.get("value"), str):
        return "put needs a 'value' (string)"
    return None
