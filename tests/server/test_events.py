"""The node event feed (server/events.py): the ring, where a subscriber starts, what an
event looks like, sampling; and ``GET /v1/events`` on an in-process 3-node cluster."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.protocols.raft.messages import AppendEntries, RequestVote
from consensuskit.server.events import EventFeed, EventRing, dumps, parse_since
from consensuskit.server.runtime import RuntimeStats
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

IDS = ["n1", "n2", "n3"]


# ---------------------------------------------------------------------- the ring
def test_ring_numbers_from_one_and_keeps_the_newest():
    ring = EventRing(4)
    assert (ring.first, ring.last) == (1, 0) and ring.after(0) == []
    for i in range(1, 7):
        assert ring.append(f"e{i}") == i
    assert (ring.first, ring.last) == (3, 6)
    assert ring.after(2) == [(3, "e3"), (4, "e4"), (5, "e5"), (6, "e6")]
    assert ring.after(4, most=1) == [(5, "e5")]
    assert ring.after(6) == []
    assert ring.after(1) is None  # e2 was overwritten: the subscriber lost events
    assert ring.after(7) is None  # from the future (another run of the node)
    with pytest.raises(ValueError, match="at least 1"):
        EventRing(0)


# ---------------------------------------------------------------------- the feed
@dataclass
class FakeNode:
    role: str = "follower"

    def node_status(self) -> Any:
        from consensuskit.core.capabilities import NodeStatus

        return NodeStatus(id="n1", role=self.role, leader=None, generation_name="term", generation=3)


@dataclass
class FakeRuntime:
    node: FakeNode = field(default_factory=FakeNode)
    stats: RuntimeStats = field(default_factory=RuntimeStats)
    events_tap: Any = None
    failure: Any = None
    closed: bool = False


def feed(**kwargs: Any) -> EventFeed:
    return EventFeed("n1", FakeRuntime(), protocol="raft", **kwargs)


def rendered(f: EventFeed) -> list[dict[str, Any]]:
    return [f.render(s, item) for s, item in f.ring.after(f.ring.first - 1) or []]


def test_events_are_rendered_trace_records_with_node_and_seq():
    f = feed()
    f.rec("role", {"role": "leader", "term": 3})
    f.fault("block", peers=["n2"])
    msg = AppendEntries(term=3, leader="n1", prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0)
    f.on_send("n2", msg)
    f.on_deliver("n2", msg)
    f.on_request(ClientRequest(client_id="c1", seq=7, op=Op(kind="put", key="k", value="v")))
    f.on_answer(ClientResponse(client_id="c1", seq=7, ok=True))
    f.sample_status()
    start, role, fault, send, deliver, request, response, status = rendered(f)
    events = (start, role, fault, send, deliver, request, response, status)
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert all(e["node"] == "n1" and isinstance(e["t"], float) for e in (start, role, status))
    assert start["ev"] == "start" and start["incarnation"] == f.incarnation
    assert role == {**role, "ev": "rec", "kind": "role", "role": "leader", "term": 3}
    assert fault == {**fault, "ev": "fault", "kind": "block", "peers": ["n2"]}
    assert send["ev"] == "send" and (send["src"], send["dst"], send["type"]) == ("n1", "n2", "AppendEntries")
    assert deliver["ev"] == "deliver" and (deliver["src"], deliver["dst"]) == ("n2", "n1")
    # The same message has the same mid and size on both ends: a page pairs them.
    assert send["mid"] == deliver["mid"] and send["size"] == deliver["size"] > 0
    assert request == {**request, "ev": "request", "client": "c1", "cseq": 7, "op": "put"}
    assert response == {**response, "ev": "response", "client": "c1", "cseq": 7, "ok": True}
    assert status["ev"] == "status" and (status["role"], status["generation"]) == ("follower", 3)
    json.dumps(rendered(f))  # every event is JSON
    f.rec("odd", {"by_pair": {("a", 1): 2, "b": {3}}, "blob": b"\x01"})
    odd = json.loads(dumps(f.render(f.ring.last, f.ring.after(f.ring.last - 1)[0][1])))
    assert (odd["by_pair"], odd["blob"]) == ({"b": [3]}, "01")  # what JSON cannot hold, summarised


def test_status_is_an_event_only_when_it_changes():
    f = feed()
    f.sample_status()
    f.sample_status()
    f.runtime.node.role = "leader"
    f.sample_status()
    assert [e["role"] for e in rendered(f) if e["ev"] == "status"] == ["follower", "leader"]


def test_heartbeats_are_counted_not_sent_and_messages_are_sampled_alike_on_both_ends():
    f = feed(heartbeats=("RequestVote",), sample_every=3)
    vote = RequestVote(term=1, candidate="n1", last_log_index=0, last_log_term=0)
    f.on_send("n2", vote)
    f.on_deliver("n2", vote)
    f._count_beats()
    assert [(e["ev"], e.get("sent"), e.get("received")) for e in rendered(f)][1:] == [("beats", 1, 1)]
    sent = [
        AppendEntries(term=1, leader="n1", prev_log_index=i, prev_log_term=1, entries=(), leader_commit=0)
        for i in range(60)
    ]
    for m in sent:
        f.on_send("n2", m)
        f.on_deliver("n1", m)
    sends = [e["mid"] for e in rendered(f) if e["ev"] == "send"]
    delivers = [e["mid"] for e in rendered(f) if e["ev"] == "deliver"]
    assert sends == delivers and 5 < len(sends) < 45  # about one in three, the same ones
    assert all(mid % 3 == 0 for mid in sends)


def test_a_subscriber_starts_where_the_ring_can_serve_it():
    f = feed(capacity=5)
    for i in range(3):
        f.rec("x", {"i": i})  # seqs 2..4 (1 is the start event)
    assert f.start_at(None, None) == (4, False)  # a new viewer: from now on
    assert f.start_at(2, f.incarnation) == (2, True)  # a reconnect: what it missed
    assert f.start_at(2, None) == (2, True)
    assert f.start_at(9, f.incarnation) == (0, False)  # from the future: from the first event
    assert f.start_at(2, "another-run") == (0, False)  # a restarted node: from its first event
    for i in range(5):
        f.rec("x", {"i": i})  # the ring wraps: seq 1..4 are gone
    assert f.start_at(2, f.incarnation) == (9, False)  # lost events: a snapshot, from now on
    assert f.start_at(2, "another-run") == (9, False)


def test_parse_since_refuses_what_is_not_a_sequence_number():
    assert parse_since({}) == (None, None)
    assert parse_since({"since": "12", "incarnation": "ab"}) == (12, "ab")
    for bad in ("-1", "x", "1e3", "9" * 40):
        with pytest.raises(ValueError, match="since must be"):
            parse_since({"since": bad})


# ---------------------------------------------------------------------- the websocket
async def _messages(ws: aiohttp.ClientWebSocketResponse, until: Any, timeout: float = 10.0) -> list[dict]:
    out: list[dict] = []
    end = asyncio.get_running_loop().time() + timeout
    while not until(out):
        remaining = end - asyncio.get_running_loop().time()
        assert remaining > 0, f"timed out; got {json.dumps(out)[:2000]}"
        msg = await ws.receive(timeout=remaining)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


def _records(messages: list[dict]) -> list[dict]:
    return [r for m in messages for r in m.get("records", ())]


@async_test
async def test_events_websocket_streams_snapshot_then_records_and_resumes_after_since(tmp_path):
    async with Cluster(tmp_path, IDS, enable_fault_injection=True) as c:
        leader = await c.wait_leader()
        url = c.servers[leader].config.client_url + "/v1/events"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as http:
            # Credentials: the admin token (one is configured); a plain GET is refused.
            async with http.get(url) as response:
                assert response.status == 401
            async with http.get(url, headers=auth) as response:
                assert response.status == 400 and "websocket" in (await response.json())["message"]
            async with http.get(url, headers=auth, params={"since": "x"}) as response:
                assert response.status == 400 and "since must be" in (await response.json())["message"]

            async with http.ws_connect(url, headers=auth) as ws:
                first = await _messages(ws, lambda out: len(out) >= 1)
                snap = first[0]["snapshot"]
                assert snap["node"] == leader and snap["resumed"] is False
                assert snap["status"]["role"] == "leader"
                assert {"epoch", "incarnation", "pid", "seq", "protocol"} <= set(snap)
                assert (await c.call("PUT", leader, "/v1/kv/k", data="v"))[0] == 200
                got = await _messages(ws, lambda out: any(r["ev"] == "response" for r in _records(out)))
                records = _records(got)
                seqs = [r["seq"] for r in records]
                assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seqs)))
                kinds = {r["ev"] for r in records}
                assert {"request", "send", "deliver", "response"} <= kinds, kinds
                last = seqs[-1]
            # Reconnect from an earlier seq of this incarnation: the ring replays the rest.
            params = {"since": str(last - 3), "incarnation": snap["incarnation"]}
            async with http.ws_connect(url, headers=auth, params=params) as ws:
                got = await _messages(ws, lambda out: len(_records(out)) >= 3)
                assert got[0]["snapshot"]["resumed"] is True and got[0]["snapshot"]["seq"] == last - 3
                assert [r["seq"] for r in _records(got)][:3] == [last - 2, last - 1, last]
            # A fault applied through the test hook is an event.
            async with http.ws_connect(url, headers=auth) as ws:
                await _messages(ws, lambda out: len(out) >= 1)
                block = {"block": ["n9"]}
                assert (await c.call("POST", leader, "/v1/debug/faults", json=block, headers=auth))[0] == 200
                got = await _messages(ws, lambda out: any(r["ev"] == "fault" for r in _records(out)))
                fault = next(r for r in _records(got) if r["ev"] == "fault")
                assert (fault["kind"], fault["peers"], fault["node"]) == ("block", ["n9"], leader)


@async_test
async def test_nobody_listening_taps_no_message_and_a_listener_turns_the_tap_on_and_off(tmp_path):
    async with Cluster(tmp_path, IDS, transport="loopback") as c:
        leader = await c.wait_leader()
        server = c.servers[leader]
        assert server.runtime.events_tap is None and server.events is not None
        before = server.events.ring.last
        assert (await c.call("PUT", leader, "/v1/kv/a", data="1"))[0] == 200
        # Without a listener only the protocol's records go in, no message.
        added = [item[1] for _, item in server.events.ring.after(before) or []]
        assert set(added) <= {"rec"}, added
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        url = server.config.client_url + "/v1/events"
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=auth) as ws:
            await _messages(ws, lambda out: len(out) >= 1)
            assert server.runtime.events_tap is server.events and server.events.listeners == 1
        for _ in range(100):
            if server.events.listeners == 0:
                break
            await asyncio.sleep(0.02)
        assert server.runtime.events_tap is None and server.events.listeners == 0


@async_test
async def test_events_ring_0_keeps_no_feed(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", events_ring=0) as c:
        await c.wait_leader()
        server = c.servers["n1"]
        assert server.events is None and server.runtime.events is None
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status, body, _ = await c.call("GET", "n1", "/v1/events", headers=auth)
        assert status == 404 and body["message"] == "this node keeps no event feed"


class SlowSocket:
    """A subscriber's websocket that takes each message only when the test lets it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self.gate = asyncio.Event()
        self._done = asyncio.Event()

    async def send_str(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(text))

    async def close(self) -> None:
        self.closed = True
        self._done.set()

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        await self._done.wait()
        raise StopAsyncIteration


@pytest.mark.timeout(30)
@async_test
async def test_a_subscriber_a_ring_behind_gets_a_snapshot_and_goes_on_from_the_newest():
    f = EventFeed("n1", FakeRuntime(), capacity=8, protocol="raft")
    ws = SlowSocket()
    ws.gate.set()
    serving = asyncio.ensure_future(f.serve(ws, None, None))  # type: ignore[arg-type]
    while not ws.sent:
        await asyncio.sleep(0.01)
    ws.gate.clear()  # the subscriber stops reading ...
    f.rec("x", {"i": 0})
    await asyncio.sleep(0.1)  # ... while the feed is sending it that one
    for i in range(1, 30):  # ... and 29 more come: the ring holds 8
        f.rec("x", {"i": i})
    ws.gate.set()
    while sum("snapshot" in m for m in ws.sent) < 2:  # 1..28 are lost: a new snapshot
        await asyncio.sleep(0.01)
    f.rec("x", {"i": 30})  # and the stream goes on after it
    while not any(r.get("i") == 30 for m in ws.sent for r in m.get("records", ())):
        await asyncio.sleep(0.01)
    await ws.close()
    await asyncio.wait_for(serving, 5)
    kinds = [next(iter(m)) for m in ws.sent]
    assert kinds[:2] == ["snapshot", "records"] and "snapshot" in kinds[2:], kinds
    again = next(m["snapshot"] for m in ws.sent[2:] if "snapshot" in m)
    assert again["resumed"] is False and f.lost > 0
    after = [r for m in ws.sent[ws.sent.index({"snapshot": again}) :] for r in m.get("records", ())]
    assert [r["seq"] for r in after] == list(range(again["seq"] + 1, again["seq"] + 1 + len(after)))
    assert f.listeners == 0 and f.runtime.events_tap is None
