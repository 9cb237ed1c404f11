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


class TxnClient:
    """The service's client methods (its ``client`` reference): ``Client.service("txn")``.
    An aborted transaction raises the client's ClientError with code "aborted"."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def txn(self, compare: Any = (), success: Any = (), failure: Any = ()) -> dict[str, Any]:
        """One transaction in the route's JSON shape; its answer."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        answer = self.client.request("POST", PATH, body=json.dumps(body).encode(), write=True)
        return dict(answer.body)

    def put(self, pairs: dict[str, Any]) -> dict[str, Any]:
        """Put every key (across participants) in one transaction."""
        return self.txn(success=[{"put": {"key": k, "value": v}} for k, v in pairs.items()])

    def get(self, *keys: str) -> dict[str, Any]:
        """Read keys in one transaction: key -> value (None when absent)."""
        answer = self.txn(success=[{"get": {"key": k}} for k in keys])
        return {r["get"]["key"]: r["get"]["value"] for r in answer["responses"]}


def _cli() -> Any:
    """``consensuskit txn put k1=a k2=b`` / ``consensuskit txn get k1 k2`` (--endpoints)."""
    import typer

    app = typer.Typer(
        help="Multi-key transactions on a running 2pc/3pc/paxos-commit cluster.", no_args_is_help=True
    )

    def run(endpoints: str, fn: Any) -> None:
        from consensuskit.client import Client, ClientError

        try:
            with Client(endpoints) as client:
                print(json.dumps(fn(TxnClient(client))))
        except ClientError as exc:
            print(f"Error: {exc}")
            raise typer.Exit(1) from None

    @app.command("put")
    def put(pairs: list[str], endpoints: str = "127.0.0.1:7100") -> None:
        """KEY=VALUE ...: one transaction putting them all."""
        values = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                print(f"Error: expected KEY=VALUE, got {pair!r}")
                raise typer.Exit(2)
            values[key] = value
        run(endpoints, lambda c: c.put(values))

    @app.command("get")
    def get(keys: list[str], endpoints: str = "127.0.0.1:7100") -> None:
        """KEY ...: one transaction reading them all."""
        run(endpoints, lambda c: c.get(*keys))

    return app


CLI = _cli()
