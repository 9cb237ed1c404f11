"""The kv service's HTTP routes (``/v1/kv``; docs/openapi.yaml) and its fast path.

The one module of server/ that knows the key-value service: ``services/kv.py`` names
``ROUTES`` here, and a node's API mounts them when it serves kv (``NodeApi.app``).

Rules this module owns:
  * any key, even empty (400 bad-key, edge.py, rather than 404) or with a newline (%0A:
    "." would not match it), is routed here; the key itself is read from the raw path;
  * a compare-and-swap that fails answers 412 with the current value and version;
  * ``fast_site`` is ``fast_http.FastSite``: the plain-text listener's lean front for hot
    kv requests (the server uses it when the service offers one and TLS is off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from consensuskit.core.client import Op
from consensuskit.server import edge
from consensuskit.server.http_api import (
    NOT_APPLIED,
    ApiError,
    _consistency,
    _ok,
    _only_params,
    encode_value,
)

if TYPE_CHECKING:
    from consensuskit.server.http_api import NodeApi

KV_PATH = "/v1/kv/"


class KVRoutes:
    """The handlers of ``/v1/kv`` on one node's API."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api

    async def put(self, request: web.Request) -> web.Response:
        query = _only_params(request, ("cas_version", "prev_value"))
        key = self._key(request)
        cas_version = query.get("cas_version")
        prev_value = query.get("prev_value")
        if cas_version is not None and prev_value is not None:
            raise ApiError(400, "bad-request", "give cas_version or prev_value, not both")
        # A compare-and-swap reads too: a failed one answers the current value.
        cas = cas_version is not None or prev_value is not None
        await self.api.auth.authorize(request, "readwrite" if cas else "write", key)
        value = await self._value(request)
        if cas_version is not None:
            op = Op(
                kind="cas", key=key, value=value, expected_version=edge.parse_int(cas_version, "cas_version")
            )
        elif prev_value is not None:
            edge.check_prev_value(prev_value, self.api.config.max_value_bytes)
            op = Op(kind="cas", key=key, value=value, expected=prev_value)
        else:
            op = Op(kind="put", key=key, value=value)
        response = await self.api.submit(request, op, write=True)
        result = response.result
        if op.kind == "cas" and not result.get("swapped"):
            raise ApiError(
                412,
                "cas-failed",
                f"compare-and-swap on {key!r} failed: the key holds another value or version",
                outcome=NOT_APPLIED,
                key=key,
                version=result.get("version", 0),
                index=response.index,
                **(encode_value(result.get("value")) if result.get("version") else {"value": None}),
            )
        body = {"key": key, "version": result["version"], "index": response.index}
        if op.kind == "cas":
            body["swapped"] = True
        return _ok(body)

    async def get(self, request: web.Request) -> web.StreamResponse:
        query = _only_params(request, ("consistency",))
        key = self._key(request)
        consistency = _consistency(query)
        await self.api.auth.authorize(request, "read", key)
        response = await self.api.submit(request, Op(kind="get", key=key), consistency=consistency)
        result = response.result
        if not result.get("version"):
            raise ApiError(404, "not-found", f"key {key!r} not found", key=key, index=response.index)
        accept = request.headers.get("Accept", "")
        if "application/octet-stream" in accept and "json" not in accept:
            value = result["value"]
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            headers = {"X-Version": str(result["version"]), "X-Index": str(response.index)}
            return web.Response(body=raw, content_type="application/octet-stream", headers=headers)
        value = encode_value(result["value"])
        body = {"key": key, **value, "version": result["version"], "index": response.index}
        if "lease" in result:  # a cache lease the leader granted (consistency=cache)
            body["lease"] = result["lease"]
        return _ok(body)

    async def delete(self, request: web.Request) -> web.Response:
        _only_params(request, ())
        key = self._key(request)
        await self.api.auth.authorize(request, "write", key)
        response = await self.api.submit(request, Op(kind="delete", key=key), write=True)
        return _ok({"key": key, "deleted": bool(response.result.get("deleted")), "index": response.index})

    async def list(self, request: web.Request) -> web.Response:
        query = _only_params(request, ("prefix", "limit", "consistency"))
        prefix = edge.check_prefix(query.get("prefix", ""), self.api.config.max_key_bytes)
        limit_text = query.get("limit")
        limit = edge.parse_int(limit_text, "limit") if limit_text is not None else None
        consistency = _consistency(query)
        await self.api.auth.authorize(request, "read", prefix)
        response = await self.api.submit(
            request, Op(kind="list", key=prefix, value=limit), consistency=consistency
        )
        items = [{"key": k, **encode_value(v), "version": ver} for k, v, ver in response.result["items"]]
        return _ok(
            {
                "prefix": prefix,
                "items": items,
                "truncated": bool(response.result["truncated"]),
                "index": response.index,
            }
        )

    def _key(self, request: web.Request) -> str:
        # From the raw path, strictly decoded (edge.py): aiohttp's decoded path keeps an
        # invalid escape such as %FF literally while it decodes the valid ones.
        return edge.key_from_path(request.rel_url.raw_path, KV_PATH, self.api.config.max_key_bytes)

    async def _value(self, request: web.Request) -> str | bytes:
        limit = self.api.config.max_value_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "too-large", f"value of {request.content_length} bytes is over {limit}")
        body = await request.read()
        if len(body) > limit:
            raise ApiError(413, "too-large", f"value of {len(body)} bytes is over {limit}")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body


class _Routes:
    """What ``services/kv.py`` names: ``mount`` and the fast path."""

    @staticmethod
    def mount(api: NodeApi, router: web.UrlDispatcher) -> None:
        routes = KVRoutes(api)
        router.add_route("PUT", r"/v1/kv/{key:[\s\S]*}", routes.put)
        router.add_route("GET", r"/v1/kv/{key:[\s\S]*}", routes.get)
        router.add_route("DELETE", r"/v1/kv/{key:[\s\S]*}", routes.delete)
        router.add_route("GET", "/v1/kv", routes.list)

    @staticmethod
    def fast_site(*args: Any, **kwargs: Any) -> Any:
        from consensuskit.server.fast_http import FastSite  # here: fast_http imports http_api

        return FastSite(*args, **kwargs)


ROUTES = _Routes()
