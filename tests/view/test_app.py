"""The view's server (view/app.py): the page, its data, and the live websocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consensuskit.view.app import make_app
from consensuskit.view.source import LiveSource, check_action

META = {"protocol": "raft", "nodes": ["n1", "n2"], "view": {}, "title": "t"}


class FakeSource:
    """A LiveSource in memory: yields given records, remembers actions."""

    def __init__(self, records: list[dict[str, Any]], fail: bool = False) -> None:
        self.node_ids = ["n1", "n2"]
        self._records = records
        self.actions: list[dict[str, Any]] = []
        self.closed = False
        self.fail = fail

    async def records(self):
        for r in self._records:
            yield r
        await asyncio.Event().wait()

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("the cluster is on fire")
        self.actions.append(action)
        return {"ok": True, "detail": f"did {action['action']}"}

    async def close(self) -> None:
        self.closed = True


def run(coro):
    return asyncio.run(coro)


async def client_of(app) -> TestClient:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def test_replay_serves_the_page_its_modules_and_its_data():
    async def go():
        client = await client_of(make_app(META, records=[{"t": 0, "ev": "start", "node": "n1"}]))
        try:
            page = await client.get("/")
            assert page.status == 200 and "<canvas" in await page.text()
            data = await (await client.get("/view.json")).json()
            assert data["meta"]["live"] is False and data["records"][0]["node"] == "n1"
            js = await client.get("/main.js")
            assert js.status == 200 and js.content_type == "text/javascript"
            for path in ("/nope.js", "/live", "/..%2fapp.py"):
                assert (await client.get(path)).status == 404, path
        finally:
            await client.close()

    run(go())


def test_make_app_wants_exactly_one_input():
    with pytest.raises(ValueError, match="not both or neither"):
        make_app(META)


def test_the_fake_source_keeps_to_the_contract():
    assert isinstance(FakeSource([]), LiveSource)


def test_live_sends_history_then_records_and_answers_actions():
    records = [
        {"t": i / 10, "ev": "rec", "kind": "role", "role": "follower", "node": "n1", "seq": i}
        for i in range(1, 6)
    ]
    source = FakeSource(records)

    async def go():
        client = await client_of(make_app(META, source=source))
        try:
            data = await (await client.get("/view.json")).json()
            assert data["meta"]["live"] is True and data["records"] == []
            ws = await client.ws_connect("/live")
            got: list[dict[str, Any]] = []
            while len(got) < 5:
                msg = json.loads((await ws.receive(timeout=10)).data)
                got += msg.get("records", [])
            assert [r["seq"] for r in got] == [1, 2, 3, 4, 5]
            await ws.send_str(json.dumps({"act": {"action": "kill", "node": "n1"}, "id": 7}))
            await ws.send_str(json.dumps({"act": {"action": "explode"}, "id": 8}))
            await ws.send_str(json.dumps({"act": {"action": "partition", "groups": [["n1"]]}, "id": 9}))
            await ws.send_str("not json")
            replies = {}
            while len(replies) < 3:
                msg = json.loads((await ws.receive(timeout=10)).data)
                if "reply" in msg:
                    replies[msg["id"]] = msg["reply"]
            assert replies[7] == {"ok": True, "detail": "did kill"}
            assert replies[8]["ok"] is False and "unknown action 'explode'" in replies[8]["detail"]
            assert replies[9]["ok"] is False and "partition needs 'groups'" in replies[9]["detail"]
            assert source.actions == [{"action": "kill", "node": "n1"}]
            await ws.close()
        finally:
            await client.close()
        assert source.closed

    run(go())


def test_a_source_that_raises_is_an_answer_not_a_crash():
    async def go():
        client = await client_of(make_app(META, source=FakeSource([], fail=True)))
        try:
            ws = await client.ws_connect("/live")
            await ws.send_str(json.dumps({"act": {"action": "heal"}, "id": 1}))
            msg = json.loads((await ws.receive(timeout=10)).data)
            assert msg == {"reply": {"ok": False, "detail": "RuntimeError: the cluster is on fire"}, "id": 1}
            await ws.close()
        finally:
            await client.close()

    run(go())


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ({"action": "kill"}, "kill needs a 'node'"),
        ({"action": "transfer"}, "transfer needs 'to'"),
        ({"action": "put", "key": "k"}, "put needs a 'value'"),
        ({"action": "get"}, "get needs a 'key'"),
        ("kill", "an action is a JSON object"),
    ],
)
def test_malformed_actions_are_named(action, problem):
    assert problem in (check_action(action) or "")


def test_well_formed_actions_pass():
    for action in (
        {"action": "kill", "node": "n1"},
        {"action": "partition", "groups": [["n1"], ["n2", "n3"]]},
        {"action": "heal"},
        {"action": "transfer", "to": "n2"},
        {"action": "put", "key": "k", "value": "v"},
        {"action": "get", "key": "k"},
    ):
        assert check_action(action) is None, action


class BrokenSource(FakeSource):
    async def records(self):
        yield {"t": 1.5, "ev": "rec", "kind": "role", "role": "leader", "node": "n1", "seq": 1}
        raise ConnectionError("node n1 went away")


def test_a_failing_source_is_reported_to_the_page():
    async def go():
        client = await client_of(make_app(META, source=BrokenSource([])))
        try:
            ws = await client.ws_connect("/live")
            got: list[dict[str, Any]] = []
            while not any(r["ev"] == "fault" for r in got):
                got += json.loads((await ws.receive(timeout=10)).data).get("records", [])
            assert got[-1] == {
                "t": 1.5,
                "ev": "fault",
                "kind": "source-failed",
                "detail": "ConnectionError: node n1 went away",
            }
            await ws.close()
        finally:
            await client.close()

    run(go())


class EndlessSource(FakeSource):
    """Commit records for n1, numbered from 1, twenty every few milliseconds."""

    async def records(self):
        seq = 0
        while True:
            for _ in range(20):
                seq += 1
                yield {"t": seq / 1000, "ev": "rec", "kind": "commit", "node": "n1", "seq": seq}
            await asyncio.sleep(0.005)


async def received_seqs(ws, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        msg = await ws.receive(timeout=10)
        seqs += [r["seq"] for r in json.loads(msg.data).get("records", [])]
    return seqs


def test_the_history_arrives_before_any_later_batch_however_slow_its_send(monkeypatch):
    # CI's flake: aiohttp compresses a large message in a thread, so a batch flushed
    # while a page's history was being sent could reach the page first, and the page
    # took the history's records for repeats.  Here each page's first send is slow.
    from aiohttp import web

    plain = web.WebSocketResponse.send_str
    started: set[int] = set()

    async def slow_first(self, data, compress=None):
        if id(self) not in started:
            started.add(id(self))
            await asyncio.sleep(0.3)
        await plain(self, data, compress)

    monkeypatch.setattr(web.WebSocketResponse, "send_str", slow_first)

    async def go():
        client = await client_of(make_app(META, source=EndlessSource([])))
        try:
            await asyncio.sleep(0.2)  # a history of hundreds of records
            ws = await client.ws_connect("/live")
            seqs = await received_seqs(ws, 1_000)
            assert seqs == list(range(1, len(seqs) + 1))
            await ws.close()
        finally:
            await client.close()

    run(go())


def test_a_page_that_stops_reading_holds_up_nobody_and_is_closed_when_too_far_behind(monkeypatch):
    from aiohttp import WSCloseCode, WSMsgType, web

    import consensuskit.view.app as app_module

    monkeypatch.setattr(app_module, "OUTBOX", 5)
    plain = web.WebSocketResponse.send_str
    stuck: list[object] = []  # the first page's sends never finish (it stopped reading)

    async def send(self, data, compress=None):
        if not stuck:
            stuck.append(self)
        if self is stuck[0]:
            await asyncio.Event().wait()
        await plain(self, data, compress)

    monkeypatch.setattr(web.WebSocketResponse, "send_str", send)

    async def go():
        client = await client_of(make_app(META, source=EndlessSource([])))
        try:
            slow = await client.ws_connect("/live")
            await asyncio.sleep(0.1)
            reader = await client.ws_connect("/live")
            seqs = await received_seqs(reader, 500)
            assert seqs == list(range(1, len(seqs) + 1))
            msg = await slow.receive(timeout=10)
            assert (msg.type, slow.close_code) == (WSMsgType.CLOSE, WSCloseCode.TRY_AGAIN_LATER)
            assert msg.extra == "too far behind"
            await reader.close()
        finally:
            await client.close()

    run(go())
