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
