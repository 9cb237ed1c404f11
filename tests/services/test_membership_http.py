"""The membership service's routes, mounted on a bare aiohttp app with a fake node API."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensuskit.services.membership_http import ROUTES

VIEW = [{"id": "n1", "address": "n1", "state": "alive", "incarnation": 2}]


class FakeApi:
    def __init__(self) -> None:
        self.ops: list[Any] = []

    async def submit(self, request: web.Request, op: Any, write: bool = False) -> Any:
        self.ops.append(op)
        if op.kind == "members":
            return SimpleNamespace(result=VIEW)
        return SimpleNamespace(result=VIEW[0] if op.key == "n1" else None)


def test_members_routes():
    async def scenario() -> None:
        api = FakeApi()
        app = web.Application()
        ROUTES.mount(api, app.router)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/v1/members")
            assert resp.status == 200 and await resp.json() == VIEW
            resp = await client.get("/v1/members/n1")
            assert resp.status == 200 and (await resp.json())["incarnation"] == 2
            resp = await client.get("/v1/members/n9")
            assert resp.status == 404
        assert [(op.kind, op.key) for op in api.ops] == [("members", ""), ("member", "n1"), ("member", "n9")]
        assert all(op.is_read() for op in api.ops)

    asyncio.run(scenario())
