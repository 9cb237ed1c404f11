"""The view's web server (aiohttp): one page for a replay or for a live cluster.

Rules this module owns:
  * ``make_app`` takes either a list of records (replay) or a ``LiveSource`` (live,
    view/source.py) and serves the same page: ``GET /`` (the page: for a replay the
    ``--html`` export itself, data inline), ``GET /<file>`` (its modules and style, from
    view/static/ only), ``GET /view.json`` (``{"meta",
    "records"}``; in live mode ``meta.live`` is true and no records: the websocket
    sends the recent history first) and, in live mode only, the websocket ``GET /live``;
  * live: one task reads the source and keeps the newest ``HISTORY`` records; every
    page gets that history on connecting, then batches ``{"records": [...]}`` at most
    every ``FLUSH`` seconds; a record without ``"ev"`` but with ``"snapshot"`` is sent
    as ``{"snapshot": ...}``;
  * each page has its own outbox, written by one task in order: the history always
    arrives before the first batch (two sends racing on one websocket can overtake each
    other: aiohttp compresses a large message in a thread), and a slow page holds up
    nobody else; a page more than ``OUTBOX`` messages behind is closed (code 1013), not
    buffered without bound;
  * a source whose stream fails is reported to the pages as a ``fault`` record of kind
    ``source-failed`` (the page stays up, showing what it had);
  * an action ``{"act": {...}, "id": N}`` is checked (source.check_action) and done by
    the source; the answer is always ``{"reply": {"ok", "detail"}, "id": N}``, also for
    a malformed action or a source that raised; other client messages are ignored;
  * the server listens on 127.0.0.1 unless told otherwise: its actions are the admin's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from consensuskit.view.export import render_html, static_text
from consensuskit.view.source import LiveSource, check_action

HISTORY = 50_000
FLUSH = 0.05
OUTBOX = 1_000  # messages a page may fall behind (50 s of flushes) before it is closed
STATIC = {"main.js", "model.js", "state.js", "draw.js", "panel.js", "style.css"}
_TYPES = {".js": "text/javascript", ".css": "text/css"}

META_KEY = web.AppKey("meta", dict)
RECORDS_KEY = web.AppKey("records", list)
HUB_KEY = web.AppKey("hub", object)
BODY_KEY = web.AppKey("body", list)  # view.json, encoded once (a replay never changes)
PAGE_KEY = web.AppKey("page", list)  # a replay's whole page, rendered once


class Outbox:
    """One page's messages, sent in the order given by one task of its own."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.task = asyncio.create_task(self._write())
        self.closing: asyncio.Task[bool] | None = None

    def put(self, text: str) -> None:
        if self.closing is not None:
            return
        if self.queue.qsize() >= OUTBOX:
            # Too far behind to catch up: closed (the page says so), never buffered
            # without bound.
            self.task.cancel()
            self.closing = asyncio.create_task(
                self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too far behind")
            )
            return
        self.queue.put_nowait(text)

    async def _write(self) -> None:
        try:
            while True:
                await self.ws.send_str(await self.queue.get())
        except (ConnectionError, RuntimeError):
            pass  # the page went away; its handler ends with the socket

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class LiveHub:
    """Reads one LiveSource, keeps its recent history and fans it out to every page."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.pages: dict[web.WebSocketResponse, Outbox] = {}
        self.pending: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, _app: web.Application) -> None:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._flush())]

    async def stop(self, _app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ws in list(self.pages):
            await ws.close()
        await self.source.close()

    async def _read(self) -> None:
        t = 0.0
        try:
            async for record in self.source.records():
                if isinstance(record, dict):
                    self.pending.append(record)
                    t = record.get("t", t)
        except Exception as exc:  # the pages are told, as a fault across the cluster
            detail = f"{type(exc).__name__}: {exc}"
            self.pending.append({"t": t, "ev": "fault", "kind": "source-failed", "detail": detail})

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH)
            if not self.pending:
                continue
            batch, self.pending = self.pending, []
            records = [r for r in batch if "ev" in r or "snapshot" not in r]
            self.history.extend(records)
            messages = [
                json.dumps({"snapshot": r["snapshot"]}) for r in batch if "ev" not in r and "snapshot" in r
            ]
            if records:
                messages.append(json.dumps({"records": records}, default=str))
            for outbox in self.pages.values():
                for text in messages:
                    outbox.put(text)

    async def act(self, action: Any) -> dict[str, Any]:
        problem = check_action(action)
        if problem is not None:
            return {"ok": False, "detail": problem}
        try:
            reply = await self.source.act(action)
        except Exception as exc:  # the source's failure is the answer, never the page's crash
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        if not isinstance(reply, dict):
            return {"ok": False, "detail": "the source gave no answer"}
        return {"ok": bool(reply.get("ok")), "detail": str(reply.get("detail", ""))}


async def _page(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    if page:  # a replay: the whole page with its data, rendered once
        return web.Response(body=page[0], content_type="text/html", charset="utf-8")
    return web.Response(text=static_text("index.html"), content_type="text/html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=static_text(name), content_type=_TYPES[name[name.rindex(".") :]])


async def _data(request: web.Request) -> web.Response:
    app = request.app
    body = app[BODY_KEY]
    if not body:
        # Live: the websocket brings the history (so nothing falls between the two).
        records = [] if isinstance(app.get(HUB_KEY), LiveHub) else app[RECORDS_KEY]
        data = {"meta": app[META_KEY], "records": records}
        body.append(json.dumps(data, separators=(",", ":"), default=str).encode())
    return web.Response(body=body[0], content_type="application/json")


async def _live(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[HUB_KEY]
    assert isinstance(hub, LiveHub)
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    # The history, then every later flush: nothing between them is lost (no await
    # between taking the history and joining the pages) and nothing overtakes it (one
    # outbox, written in order).
    outbox = Outbox(ws)
    if hub.history:
        outbox.put(json.dumps({"records": list(hub.history)}, default=str))
    hub.pages[ws] = outbox
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(data, dict) and "act" in data:
                reply = await hub.act(data["act"])
                outbox.put(json.dumps({"reply": reply, "id": data.get("id")}))
    finally:
        hub.pages.pop(ws, None)
        await outbox.close()
    return ws


def make_app(
    meta: dict[str, Any],
    records: Sequence[dict[str, Any]] | None = None,
    source: LiveSource | None = None,
) -> web.Application:
    """The view's app: a replay of ``records`` or the live ``source`` (exactly one)."""
    if (records is None) == (source is None):
        raise ValueError("make_app takes records (a replay) or a live source, not both or neither")
    app = web.Application()
    app[META_KEY] = dict(meta, live=source is not None)
    app[RECORDS_KEY] = list(records or [])
    app[BODY_KEY] = []
    app[PAGE_KEY] = []
    if source is None:
        # A replay's page is the --html export (data, modules and style inline): one
        # response, parsed by the browser as it arrives, where a fetch of view.json
        # would read the whole body first.  Rendered now, before the URL is announced.
        app[PAGE_KEY].append(render_html(app[META_KEY], app[RECORDS_KEY]).encode())
    app.router.add_get("/", _page)
    app.router.add_get("/view.json", _data)
    if source is not None:
        hub = LiveHub(source)
        app[HUB_KEY] = hub
        app.on_startup.append(hub.start)
        app.on_cleanup.append(hub.stop)
        app.router.add_get("/live", _live)
    app.router.add_get("/{name}", _static)
    return app


def serve(app: web.Application, host: str, port: int, announce: Any = print) -> None:
    """Run ``app`` until interrupted, announcing its URL once it listens."""

    async def run() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        announce(f"view: http://{shown}:{bound}/  (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@contextlib.contextmanager
def running(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """``app`` served on a free port by a thread of its own, for as long as the block
    runs; yields its base URL (the browser tests, the benchmark, the screenshots)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the caller below
            box["error"] = exc
            started.set()
            return
        loop.run_forever()

    thread = threading.Thread(target=run, name="consensuskit-view", daemon=True)
    thread.start()
    started.wait()
    if "error" in box:
        raise RuntimeError(f"the view did not start: {box['error']}")
    try:
        yield f"http://{host}:{box['port']}/"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
