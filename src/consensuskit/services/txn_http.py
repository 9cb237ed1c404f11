"""The txn service's HTTP route (its ``http`` reference): ``POST /v1/txn``.

Body, in the shape of etcd's Txn: ``{"compare": [{"key": K, "value": V} | {"key": K,
"version": N}], "success": [{"put": {"key": K, "value": V}} | {"delete": {"key": K}} |
{"get": {"key": K}}], "failure": [...]}``.  Answer, once the transaction is decided:
``200 {"succeeded": bool, "responses": [...], "txn": id}`` (a put's response carries the
key's new version), or ``409 {"error": "aborted", "message": "aborted ID: why"}``.  A
write like any other: ``X-Request-Id: CLIENT:SEQ`` makes a retry find its answer.

Rules this module owns (the edge): the body is UTF-8 JSON whatever charset its
Content-Type names; ``compare``, ``success`` and ``failure`` are lists (or absent or
null); every key is 1..``max_key_bytes`` UTF-8 bytes, as a kv key (server/edge.py); JSON
nested deeper than Python's parser goes, and the non-JSON constants ``NaN`` and
``Infinity``, are refused.  Anything else malformed is 400 ``bad-request`` naming what.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from consensuskit.core.client import ServiceOp
from consensuskit.server import edge

PATH = "/v1/txn"
MAX_SHOWN = 200  # characters of a refused item quoted in the error message


def _no_constant(name: str) -> Any:
    # json.loads takes NaN and Infinity, which are not JSON: the answer carrying such a
    # value back (json.dumps writes them bare) would be unreadable by strict clients.
    raise ValueError(f"{name} is not a JSON value")


def load_body(raw: bytes) -> Any:
    """The request body as JSON; ValueError (one line) if it is not UTF-8 JSON.  The
    bytes are decoded as UTF-8 whatever charset the Content-Type names (JSON is UTF-8:
    RFC 8259), so a bogus charset is no LookupError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8: {exc}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # "[[[[..." deeper than the parser goes
        raise ValueError("the body is JSON nested too deep") from None
    except ValueError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None


def _items(body: dict[str, Any], field: str) -> list[Any]:
    items = body.get(field)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{field} is a list, got {type(items).__name__}")
    return items


def _key(key: Any, item: Any, max_key_bytes: int) -> str:
    try:
        return edge.check_key(key, max_key_bytes)
    except edge.EdgeError as exc:
        raise ValueError(f"{exc.message}: {_show(item)}") from None


def _show(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def parse(body: Any, max_key_bytes: int = 4096) -> dict[str, list[tuple[str, str, Any]]]:
    """The JSON body -> the service's transaction shape; ValueError (one line)."""
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object with compare, success and failure")
    unknown = sorted(set(body) - {"compare", "success", "failure"})
    if unknown:
        raise ValueError(f"unknown field(s) {_show(unknown)[1:-1]}; valid: compare, success, failure")
    txn: dict[str, list[tuple[str, str, Any]]] = {"compare": [], "success": [], "failure": []}
    for item in _items(body, "compare"):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValueError(f"a compare is {{key, value}} or {{key, version}}, got {_show(item)}")
        _key(item["key"], item, max_key_bytes)
        if "version" in item:
            txn["compare"].append((item["key"], "version", item["version"]))
        elif "value" in item:
            txn["compare"].append((item["key"], "value", item["value"]))
        else:
            raise ValueError(f"a compare needs value or version: {_show(item)}")
    for branch in ("success", "failure"):
        for item in _items(body, branch):
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"an op is {{put|delete|get: {{key, ...}}}}, got {_show(item)}")
            ((op, args),) = item.items()
            if (
                op not in ("put", "delete", "get")
                or not isinstance(args, dict)
                or not isinstance(args.get("key"), str)
            ):
                raise ValueError(f"an op is {{put|delete|get: {{key, ...}}}}, got {_show(item)}")
            txn[branch].append((op, _key(args["key"], item, max_key_bytes), args.get("value")))
    return txn


class _Routes:
    @staticmethod
    def mount(api: Any, router: web.UrlDispatcher) -> None:
        async def txn(request: web.Request) -> web.Response:
            from consensuskit.protocols.commit import validate_txn

            try:
                value = parse(load_body(await request.read()), api.config.max_key_bytes)
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
