"""``GET /v1/backup`` and ``POST /v1/restore``: a log service's whole state out of a
running cluster and into a new one (docs/server.md, "Backup and restore").

Rules this module owns:
  * both need the admin token (a backup holds every key, user and password hash); a
    service that is not a log service (it keeps no state machine of its own) answers
    501 ``not-implemented``;
  * a backup is the state machine's snapshot read as a linearizable read
    (statemachines/backup.py): it holds every write acknowledged before the request.
    Any node serves it; the snapshot is immutable (core/service.py), so it is encoded
    in a worker thread, not on the node's loop.  The answer is the backup file
    (server/backup_file.py), ``application/octet-stream``;
  * a restore's body is a backup file: one that ``backup_file.parse`` refuses, or one of
    another service, is 400 ``bad-backup`` and nothing is proposed.  Otherwise its state
    goes through the log as one command, applied only by a state machine that holds
    nothing: 409 ``not-empty`` when it holds data (nothing changed), 200
    ``{"restored": entries, "index": ...}`` when it was applied.  It may take
    ``RESTORE_TIMEOUT`` (a large state is one large command: replicated, made durable
    and applied like any other);
  * a body longer than the node's ``max_buffered_bytes`` (the connection limits, 64 MiB
    by default) is 413 ``too-large``: raise that limit to restore a larger backup.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from consensuskit.core.client import LINEARIZABLE
from consensuskit.core.messages import CODEC_VERSION, encode
from consensuskit.server import backup_file
from consensuskit.server.http_api import ApiError, NodeApi
from consensuskit.statemachines.backup import backup_op, restore_op_of_encoded

RESTORE_TIMEOUT = 120.0
CONTENT_TYPE = "application/octet-stream"


class BackupRoutes:
    def __init__(self, api: NodeApi) -> None:
        self.api = api

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_route("GET", "/v1/backup", self.backup)
        router.add_route("POST", "/v1/restore", self.restore)

    def _check(self, request: web.Request) -> str:
        """The admin check, then the service's name (501 for a service without a log)."""
        api = self.api
        api._admin(request)
        service = api.service
        if service is None or not service.log:
            name = service.name if service is not None else "(none)"
            raise ApiError(
                501,
                "not-implemented",
                f"service {name} keeps no state machine of its own: nothing to back up or restore",
            )
        return service.name

    async def backup(self, request: web.Request) -> web.Response:
        service = self._check(request)
        api = self.api
        response = await api.submit(request, backup_op(), consistency=LINEARIZABLE)
        body = await backup_bytes(api, response.result, response.index)
        disposition = f'attachment; filename="{service}-{api.config.node_id}.ckbackup"'
        headers = {"Content-Disposition": disposition}
        return web.Response(body=body, content_type=CONTENT_TYPE, headers=headers)

    async def restore(self, request: web.Request) -> web.Response:
        service = self._check(request)
        api = self.api
        limit = api.config.limits.max_buffered_bytes
        data = await _read_body(request, limit)
        try:
            backup = await asyncio.to_thread(backup_file.parse, data)
        except backup_file.BackupError as exc:
            raise ApiError(400, "bad-backup", str(exc)) from None
        if backup.service != service:
            raise ApiError(
                400,
                "bad-backup",
                f"a backup of service {backup.service} cannot be restored into service {service}",
            )
        op = restore_op_of_encoded(bytes(backup.state))
        timeout = max(api.config.request_timeout, RESTORE_TIMEOUT)
        response = await api.submit(request, op, write=True, timeout=timeout)
        result = response.result if isinstance(response.result, dict) else {}
        body = {"restored": result.get("restored"), "index": response.index, "from": backup.header}
        return web.json_response(body)


async def backup_bytes(api: NodeApi, snapshot: Any, index: int | None) -> bytes:
    """The backup file of ``snapshot``, the result of a backup op this node answered at
    log position ``index`` (also the etcd service's Maintenance.Snapshot)."""
    cfg = api.config
    service = api.service.name if api.service is not None else ""
    header = {
        "service": service,
        "protocol": cfg.protocol,
        "cluster_id": cfg.cluster_id or "",
        "node": cfg.node_id,
        "index": max(0, int(index or 0)),
        "taken_at": time.time(),
        "codec": CODEC_VERSION,
    }
    # The snapshot never changes once made (core/service.py): encoded off the loop.
    return await asyncio.to_thread(lambda: backup_file.build(header, encode(snapshot)))


async def _read_body(request: web.Request, limit: int) -> bytes:
    def too_large(size: str) -> ApiError:
        exc = ApiError(413, "too-large", f"backup of {size} is over max_buffered_bytes ({limit} bytes)")
        # The rest of the body is never read: the connection cannot carry another request.
        exc.headers["Connection"] = "close"
        return exc

    length = request.content_length
    if length is not None and length > limit:
        raise too_large(f"{length} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise too_large(f"more than {size} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
