"""The txn service's HTTP route (its ``http`` reference): ``POST /v1/txn``.

Body, in the shape of etcd's Txn: ``{"compare": [{"key": K, "value": V} | {"key": K,
"version": N}], "success": [{"put": {"key": K, "value": V}} | {"delete": {"key": K}} |
{"get": {"key": K}}], "failure": [...]}``.  Answer, once the transaction is decided:
``200 {"succeeded": bool, "responses": [...], "txn": id}`` (a put's response carries the
key's new version), or ``409 {"error": "aborted", "message": "aborted ID: why"}``.  A
write like any other: ``X-Request-Id: CLIENT:SEQ`` makes a retry find its answer.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from consensuskit.core.client import ServiceOp

PATH = "/v1/txn"


def parse(body: Any) -> dict[str, list[tuple[str, str, Any]]]:
    """The JSON body -> the service's transaction shape; ValueError (one line)."""
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object with compare, success and failure")
    unknown = sorted(set(body) - {"compare", "success", "failure"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; valid: compare, success, failure")
    txn: dict[str, list[tuple[str, str, Any]]] = {"compare": [], "success": [], "failure": []}
    for item in body.get("compare") or []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValueError(f"a compare is {{key, value}} or {{key, version}}, got {item!r}")
        if "version" in item:
            txn["compare"].append((item["key"], "version", item["version"]))
        elif "value" in item:
            txn["compare"].append((item["key"], "value", item["value"]))
        else:
            raise ValueError(f"a compare needs value or version: {item!r}")
    for branch in ("success", "failure"):
        for item in body.get(branch) or []:
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"an op is {{put|delete|get: {{key, ...}}}}, got {item!r}")
            ((op, args),) = item.items()
            if (
                op not in ("put", "delete", "get")
                or not isinstance(args, dict)
                or not isinstance(args.get("key"), str)
            ):
                raise ValueError(f"an op is {{put|delete|get: {{key, ...}}}}, got {item!r}")
            txn[branch].append((op, args["key"], args.get("value")))
    return txn


class _Routes:
    @staticmethod
    def mount(api: Any, router: web.UrlDispatcher) -> None:
        async def txn(request: web.Request) -> web.Response:
            from consensuskit.protocols.commit import validate_txn

            try:
                body = json.loads(await request.text() or "null")
                value = parse(body)
                validate_txn(value)
            except ValueError as exc:
                return web.json_response({"error": "bad-request", "message": str(exc)}, status=400)
            op = ServiceOp(kind="txn", key=",".join(sorted({i[1] for i in value["success"]})), value=value)
            try:
                response = await api.submit(request, op, write=True)
            except Exception as exc:
                message = getattr(exc, "message", "")
                if isinstance(message, str) and "aborted " in message:
                    why = message[message.index("aborted ") :]
                    return web.json_response({"error": "aborted", "message": why}, status=409)
                raise
            result = response.result
            return web.json_response(
                {"succeeded": result["succeeded"], "responses": result["responses"], "txn": result["txn"]}
            )

        router.add_route("POST", PATH, txn)


ROUTES = _Routes()
