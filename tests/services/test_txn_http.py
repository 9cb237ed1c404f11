"""The txn service's route (services/txn_http.py) on a bare aiohttp app with a fake node
API: malformed bodies found by the fuzz (tests/services/test_txn_fuzz.py) are 400s naming
what is wrong, never a 500, and never reach the node."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensuskit.services.txn_http import ROUTES

MAX_KEY_BYTES = 64


class FakeApi:
    def __init__(self) -> None:
        self.config = SimpleNamespace(max_key_bytes=MAX_KEY_BYTES)
        self.ops: list[Any] = []

    async def submit(self, request: web.Request, op: Any, write: bool = False) -> Any:
        self.ops.append(op)
        responses = [{op_kind: {"key": key}} for op_kind, key, _ in op.value["success"]]
        return SimpleNamespace(result={"succeeded": True, "responses": responses, "txn": "n1.1.1"})


def post(body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, FakeApi]:
    async def scenario() -> tuple[int, Any, FakeApi]:
        api = FakeApi()
        app = web.Application()
        ROUTES.mount(api, app.router)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/v1/txn", data=body, headers=headers or {})
            return resp.status, await resp.json(content_type=None), api

    return asyncio.run(scenario())


PUT_A = {"success": [{"put": {"key": "a", "value": 1}}]}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"compare": 5}', "compare is a list"),  # was a 500: TypeError, int not iterable
        (b'{"success": 5}', "success is a list"),
        (b'{"failure": true, "success": [{"get": {"key": "a"}}]}', "failure is a list"),
        (b"[" * 100_000, "nested too deep"),  # was a 500: RecursionError
        (b'{"success": [{"put": {"key": "a", "value": NaN}}]}', "NaN is not a JSON value"),
        (b'{"success": [{"put": {"key": "a", "value": -Infinity}}]}', "Infinity is not a JSON value"),
        (b'{"success": [{"put": {"key": "", "value": 1}}]}', "empty key"),  # was stored
        (b'{"success": [{"put": {"key": "' + b"k" * 65 + b'", "value": 1}}]}', "longer than 64 bytes"),
        (b'{"compare": [{"key": "", "version": 0}], "success": [{"get": {"key": "a"}}]}', "empty key"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_txn_bodies_are_400s_naming_what_is_wrong(body: bytes, says: str) -> None:
    status, answer, api = post(body)
    assert status == 400, (status, answer)
    assert answer["error"] == "bad-request" and says in answer["message"], answer
    assert api.ops == []


def test_a_bogus_charset_is_ignored_the_body_is_utf8_json() -> None:
    # Was a 500: aiohttp's request.text() looked the charset up (LookupError).
    status, answer, api = post(json.dumps(PUT_A).encode(), {"Content-Type": "text/plain; charset=nope"})
    assert status == 200 and answer["succeeded"], answer
    assert [op.value["success"] for op in api.ops] == [[("put", "a", 1)]]
