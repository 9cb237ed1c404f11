"""The gossip-map service's front doors (its ``http``, ``client`` and ``cli`` references),
on a node run by ``consensuskit up --protocol gossip``.

Rules this module owns:
  * ``PUT /v1/map/KEY`` (body: the value, UTF-8 text) writes on the node that receives it
    and answers ``{"key", "counter", "origin"}``: the write's stamp (the gossip map's
    Lamport counter and the node that wrote it); ``GET /v1/map/KEY`` reads that node's
    replica, ``{"key", "value"}``, or 404 when it holds no value (maybe not yet);
  * a key is 1 to ``max_key_bytes`` bytes (the node's limit), a value at most
    ``max_value_bytes`` and valid UTF-8; anything else is a 400 or 413 naming the limit;
  * ``GossipMapClient`` (``Client.service("gossip-map")``) and the verbs ``consensuskit
    gossip-map put KEY VALUE`` / ``get KEY`` use these routes through a ``Client``, whose
    retries and sessions they reuse; reads are never redirected (there is no leader).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from consensuskit.services.gossip_map import SERVICE

PREFIX = "/v1/map/"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class _Routes:
    @staticmethod
    def mount(api: Any, router: web.UrlDispatcher) -> None:
        def key_of(request: web.Request) -> str | web.Response:
            key = request.match_info["key"]
            limit = api.config.max_key_bytes
            if not key or len(key.encode()) > limit:
                return _error(400, "bad-key", f"a key is 1 to {limit} bytes")
            return key

        async def put(request: web.Request) -> web.Response:
            key = key_of(request)
            if isinstance(key, web.Response):
                return key
            limit = api.config.max_value_bytes
            body = await request.content.read(limit + 1)
            if len(body) > limit:
                return _error(413, "too-large", f"a value is at most {limit} bytes")
            try:
                value = body.decode("utf-8")
            except UnicodeDecodeError:
                return _error(400, "bad-value", "a gossip-map value is UTF-8 text")
            response = await api.submit(request, SERVICE.op("put", key, value), write=True)
            return web.json_response({"key": key, **response.result})

        async def get(request: web.Request) -> web.Response:
            key = key_of(request)
            if isinstance(key, web.Response):
                return key
            response = await api.submit(request, SERVICE.op("get", key))
            if response.result is None:
                return _error(404, "not-found", f"this node holds no value for {key!r} (yet)")
            return web.json_response({"key": key, "value": response.result})

        router.add_route("PUT", PREFIX + "{key:.+}", put)
        router.add_route("GET", PREFIX + "{key:.+}", get)


ROUTES = _Routes()


class GossipMapClient:
    """The service's client methods, built with a ``consensuskit.client.Client``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put(self, key: str, value: str) -> dict[str, Any]:
        """Write on some node; the write's stamp ``{"key", "counter", "origin"}``."""
        answer = self.client.request("PUT", PREFIX + quote(key, safe=""), body=value.encode(), write=True,
                                     leader_only=False)  # fmt: skip
        return dict(answer.body)

    def get(self, key: str) -> str:
        """That node's value (raises the client's NotFound when it holds none)."""
        answer = self.client.request("GET", PREFIX + quote(key, safe=""), leader_only=False)
        return str(answer.body["value"])


def _cli() -> Any:
    """``consensuskit gossip-map put KEY VALUE`` / ``get KEY`` (``--endpoints``)."""
    import typer

    from consensuskit.client import Client, ClientError

    app = typer.Typer(
        help="The gossip map on a running `up --protocol gossip` cluster.", no_args_is_help=True
    )

    def run(endpoints: str, call: Any) -> None:
        try:
            with Client(endpoints, timeout=2, deadline=5) as client:
                print(call(GossipMapClient(client)))
        except (ClientError, ValueError) as exc:
            print(f"error: {exc}")
            raise typer.Exit(1) from None

    @app.command("put")
    def put(key: str, value: str, endpoints: str = "127.0.0.1:7100") -> None:
        """Write KEY=VALUE on a node; prints the write's stamp."""
        run(endpoints, lambda c: "ok (counter {counter}, origin {origin})".format(**c.put(key, value)))

    @app.command("get")
    def get(key: str, endpoints: str = "127.0.0.1:7100") -> None:
        """Read KEY from a node's replica."""
        run(endpoints, lambda c: c.get(key))

    return app


CLI = _cli()
