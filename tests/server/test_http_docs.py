"""docs/openapi.yaml documents exactly the routes the HTTP API serves."""

from __future__ import annotations

import re
from pathlib import Path

from consensuskit.catalog import default_registry
from consensuskit.server.http_api import NodeApi

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


class _Host:
    """Just enough of a NodeServer to build the routing table."""

    def __init__(self) -> None:
        from consensuskit.server.config import ServerConfig

        self.config = ServerConfig(
            node_id="n1",
            peer_address=("127.0.0.1", 0),
            client_address=("127.0.0.1", 0),
            client_url="http://127.0.0.1:1",
            data_dir=Path("unused"),
            secret=b"s",
        )
        self.runtime = None


def documented() -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    path = None
    for line in OPENAPI.read_text().splitlines():
        if m := re.match(r"^  (/\S*):$", line):
            path = m.group(1)
        elif path and (m := re.match(r"^    (get|put|post|delete|patch):$", line)):
            routes.add((m.group(1).upper(), path))
        elif line and not line.startswith(" "):
            path = None
    return routes


def served() -> set[tuple[str, str]]:
    # The built-in services' routes and the platform's own (one node serves one service).
    app = NodeApi(_Host(), default_registry().service("kv")).app()  # type: ignore[arg-type]
    routes = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        routes.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", canonical)))
    return routes


def test_every_served_route_is_documented_and_vice_versa():
    assert documented() == served()
    assert ("PUT", "/v1/kv/{key}") in served()
