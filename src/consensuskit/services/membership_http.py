"""The membership service's HTTP routes (its ``http`` reference), on a node run by
``consensuskit up --protocol swim``: ``GET /v1/members`` answers the node's view (a list of
``{"id", "address", "state", "incarnation"}``), ``GET /v1/members/ID`` one entry (404 when
the node never heard of it).  Both are reads served by the node that receives them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from consensuskit.services.membership import SERVICE

PREFIX = "/v1/members"


class _Routes:
    @staticmethod
    def mount(api: Any, router: web.UrlDispatcher) -> None:
        async def members(request: web.Request) -> web.Response:
            response = await api.submit(request, SERVICE.op("members"))
            return web.json_response(response.result)

        async def member(request: web.Request) -> web.Response:
            response = await api.submit(request, SERVICE.op("member", request.match_info["id"]))
            if response.result is None:
                return web.json_response({"error": "not-found", "message": "no such member"}, status=404)
            return web.json_response(response.result)

        router.add_route("GET", PREFIX, members)
        router.add_route("GET", PREFIX + "/{id}", member)


ROUTES = _Routes()
