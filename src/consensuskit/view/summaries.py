"""Per-protocol drawing data for the view, from the catalog (``ProtocolSpec.view``).

Rules this module owns:
  * the page never knows a protocol by name: everything protocol-specific it draws (role
    names, heartbeat messages, the generation's name, phase colours, the protocol panel)
    arrives as ``ViewSpec.to_json()`` in the page's meta;
  * a trace names no protocol, so when none is given it is guessed from the message
    types it carries: the catalog protocol whose view names most of them and fewest
    others wins; a trace that matches none draws generically (panel "none");
  * ``heartbeat_types`` is the one place viewers (the page and the terminal timeline)
    learn which messages are background liveness traffic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from consensuskit.core.registry import ViewSpec
from consensuskit.view.trace_io import node_ids as trace_node_ids

# A JavaScript named group "(?<name>" is Python's "(?P<name>".
_JS_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def python_pattern(js_pattern: str) -> re.Pattern[str]:
    """A ViewSpec pattern (JavaScript syntax) compiled for Python (tests, exports)."""
    return re.compile(_JS_GROUP.sub("(?P<", js_pattern))


def message_types(view: ViewSpec) -> set[str]:
    """Every message type ``view`` names (phases, heartbeats, rumours)."""
    names = set(view.heartbeats) | set(view.rumours)
    for phase in view.phases:
        names.update(phase.messages)
    return names


def guess_protocol(records: Iterable[dict[str, Any]], views: dict[str, ViewSpec]) -> str | None:
    """The protocol whose view best names the trace's message types and roles, or None."""
    types: set[str] = set()
    roles: set[str] = set()
    for r in records:
        ev = r.get("ev")
        if ev in ("send", "deliver", "drop") and isinstance(r.get("type"), str):
            types.add(r["type"])
        elif ev == "rec" and r.get("kind") == "role" and isinstance(r.get("role"), str):
            roles.add(r["role"])
    best: tuple[float, str] | None = None
    for name, view in views.items():
        named = message_types(view)
        if not named:
            continue
        hits = len(types & named) + len(roles & set(view.roles))
        if hits == 0:
            continue
        score = hits - 0.1 * len(named - types)
        if best is None or score > best[0]:
            best = (score, name)
    return best[1] if best else None


def catalog_views() -> dict[str, ViewSpec]:
    """Every catalog protocol's view, by name."""
    from consensuskit.catalog import default_catalog

    return {e.name: e.spec.view for e in default_catalog().protocols()}


def heartbeat_types(protocol: str | None) -> frozenset[str]:
    """The background liveness messages of ``protocol`` (every catalog protocol's if None)."""
    views = catalog_views()
    if protocol is not None and protocol in views:
        return frozenset(views[protocol].heartbeats)
    return frozenset(t for v in views.values() for t in v.heartbeats)


def view_meta(
    records: Sequence[dict[str, Any]],
    protocol: str | None = None,
    node_ids: Sequence[str] | None = None,
    title: str = "",
    views: dict[str, ViewSpec] | None = None,
) -> dict[str, Any]:
    """The page's meta: protocol, nodes and the protocol's ``ViewSpec`` as JSON.

    ValueError (one line, naming the valid ones) for an unknown ``protocol``.
    """
    views = catalog_views() if views is None else views
    if protocol is not None and protocol not in views:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(sorted(views))}")
    name = protocol or guess_protocol(records, views)
    view = views[name] if name is not None else ViewSpec()
    nodes = list(node_ids) if node_ids is not None else trace_node_ids(records)
    return {
        "protocol": name or "",
        "nodes": nodes,
        "view": view.to_json(),
        "title": title or (f"{name} trace" if name else "trace"),
    }
