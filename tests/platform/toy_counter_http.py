"""The counter service's HTTP routes (the toy's ``http`` reference): what a service adds to
a node's API, using only ``NodeApi``'s public helpers.

``POST /v1/counter/KEY`` increments (body: a positive integer, empty = 1) and answers
``{"key", "total", "index"}``; ``GET /v1/counter/KEY`` reads the total.  A write may carry
``X-Request-Id: CLIENT:SEQ`` like any write of the API (exactly once per id).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .toy_counter import SERVICE

PREFIX = "/v1/counter/"


class _Routes:
    @staticmethod
    def mount(api: Any, router: web.UrlDispatcher) -> None:
        async def incr(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            text = (await request.text()).strip()
            try:
                op = SERVICE.op("incr", key, int(text) if text else 1)
            except ValueError as exc:
                return web.json_response({"error": "bad-request", "message": str(exc)}, status=400)
            response = await api.submit(request, op, write=True)
            return web.json_response({"key": key, "total": response.result["total"], "index": response.index})

        async def read(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            response = await api.submit(request, SERVICE.op("read", key))
            return web.json_response({"key": key, "total": response.result["total"], "index": response.index})

        router.add_route("POST", PREFIX + "{key}", incr)
        router.add_route("GET", PREFIX + "{key}", read)


ROUTES = _Routes()


class CounterClient:
    """The service's client methods (its ``client`` reference): built with a
    ``consensuskit.client.Client``, whose retries, redirects and sessions it reuses."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def incr(self, key: str, by: int = 1) -> int:
        answer = self.client.request("POST", PREFIX + key, body=str(by).encode(), write=True)
        return int(answer.body["total"])

    def read(self, key: str) -> int:
        return int(self.client.request("GET", PREFIX + key).body["total"])


def _cli() -> Any:
    """The service's CLI verbs: ``consensuskit counter incr|read KEY --endpoints ...``."""
    import typer

    from consensuskit.client import Client

    app = typer.Typer(help="Named counters on a running cluster.", no_args_is_help=True)

    @app.command("incr")
    def incr(key: str, by: int = 1, endpoints: str = "127.0.0.1:7100") -> None:
        with Client(endpoints) as client:
            print(CounterClient(client).incr(key, by))

    @app.command("read")
    def read(key: str, endpoints: str = "127.0.0.1:7100") -> None:
        with Client(endpoints) as client:
            print(CounterClient(client).read(key))

    return app


CLI = _cli()
