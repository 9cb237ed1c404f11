"""The client against a fake cluster: leader finding, redirects, retries, error mapping.

The fake speaks the HTTP API of docs/openapi.yaml with a scriptable misbehaviour per
request, and keeps the state machine's session rule (one cached result per session,
older seqs refused), so a client that reused ids wrongly or ran two ops on one session
at once would be caught here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from consensuskit.client import (
    AsyncClient,
    BadRequest,
    CasFailed,
    Client,
    ClientError,
    NotFound,
    PayloadTooLarge,
    RequestIdReused,
    ServerError,
    SessionExpired,
    Unauthorized,
    Unavailable,
    error_from_answer,
    parse_endpoints,
)
from consensuskit.server.cluster import free_port

pytestmark = pytest.mark.timeout(60)

VALUE_LIMIT = 1024


@dataclass
class Seen:
    node: int
    method: str
    path: str
    request_id: str | None


@dataclass
class FakeCluster:
    """N fake nodes sharing one state; node ``leader`` serves, the others redirect."""

    n: int = 3
    leader: int | None = 0
    hint_leader: bool = True
    data: dict[str, tuple[str, int]] = field(default_factory=dict)
    sessions: dict[str, tuple[int, Any, Any]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)  # sessions the fake "expired"
    seen: list[Seen] = field(default_factory=list)
    # Misbehaviour, consumed one per write that reaches the leader:
    # "503" (refuse before applying), "503-after" (apply, then 503),
    # "slow" (apply, then answer after the client gave up), "drop" (apply, close the socket),
    # "crash" (apply, stop listening, close the socket: the node died after applying),
    # "drop-forget" ("drop", and the session is forgotten before the retry arrives).
    write_faults: list[str] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)  # session -> seq being handled
    overlaps: list[str] = field(default_factory=list)
    applied: int = 0
    urls: list[str] = field(default_factory=list)
    sites: list[web.TCPSite] = field(default_factory=list)
    status_override: dict[str, Any] = field(default_factory=dict)

    # -- request handling -----------------------------------------------------
    def app(self, node: int) -> web.Application:
        app = web.Application(client_max_size=VALUE_LIMIT * 4)

        async def handle(request: web.Request) -> web.StreamResponse:
            rid = request.headers.get("X-Request-Id")
            self.seen.append(Seen(node, request.method, request.path, rid))
            return await self.route(node, request, rid)

        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def route(self, node: int, request: web.Request, rid: str | None) -> web.StreamResponse:
        path, method = request.path, request.method
        if path == "/v1/status" and method == "GET":
            role = "leader" if node == self.leader else "follower"
            return web.json_response(
                {
                    "id": f"n{node + 1}",
                    "role": role,
                    "term": 3,
                    "leader": self.leader_id(),
                    **self.status_override,
                }
            )
        if path == "/v1/members" and method == "POST":
            if request.headers.get("Authorization") != "Bearer sesame":
                return error(401, "unauthorized", "admin token required")
            return web.json_response({"ok": True})
        if path == "/v1/kv" and method == "GET":
            if (redirect := self.redirect(node)) is not None:
                return redirect
            prefix = request.query.get("prefix", "")
            items = [
                {"key": k, "value": v, "version": ver}
                for k, (v, ver) in sorted(self.data.items())
                if k.startswith(prefix)
            ]
            return web.json_response({"items": items})
        if not path.startswith("/v1/kv/"):
            return error(404, "not-found", f"no route {method} {path}")
        key = request.match_info["tail"][len("v1/kv/") :]
        if method == "GET":
            if (
                request.query.get("consistency", "linearizable") != "stale"
                and (redirect := self.redirect(node)) is not None
            ):
                return redirect
            if key not in self.data:
                return error(404, "not-found", f"no key {key!r}")
            value, version = self.data[key]
            return web.json_response({"key": key, "value": value, "version": version})
        if method not in ("PUT", "DELETE"):
            return error(405, "method-not-allowed", method)
        if (redirect := self.redirect(node)) is not None:
            return redirect
        body = await request.read()
        if len(body) > VALUE_LIMIT:
            return error(413, "too-large", f"value of {len(body)} bytes exceeds {VALUE_LIMIT}")
        cas_version = request.query.get("cas_version")
        if cas_version is not None and not cas_version.isdigit():
            return error(400, "bad-request", f"cas_version must be an integer, not {cas_version!r}")
        if rid is None:
            return error(400, "bad-request", "the fake wants X-Request-Id on writes")
        session, _, seq_text = rid.rpartition(":")
        seq = int(seq_text)
        # A retry of the same id may overlap its first attempt; two different ops may not.
        if self.in_flight.get(session, seq) != seq:
            self.overlaps.append(rid)
        self.in_flight[session] = seq
        try:
            answer = await self.write(key, method, body.decode(), request.query, session, seq)
            if answer == "crash":
                await self.sites[node].stop()
                answer = None
            if answer is None:  # "drop": the write happened, the answer is lost with the connection
                assert request.transport is not None
                request.transport.abort()
                await asyncio.sleep(0.1)
                raise web.HTTPInternalServerError
            return answer
        finally:
            self.in_flight.pop(session, None)

    async def write(
        self, key: str, method: str, value: str, query: Any, session: str, seq: int
    ) -> web.StreamResponse | str | None:
        fault = self.write_faults.pop(0) if self.write_faults else None
        if fault == "503":
            return error(503, "busy", "leadership transfer in progress", outcome="not-applied")
        if session in self.forgotten:
            return error(409, "session-expired", "session forgotten", outcome="unknown")
        cached = self.sessions.get(session)
        command = (key, method, value, dict(query))
        if cached is not None and seq < cached[0]:
            return error(409, "stale-session", "seq older than the session's last")
        if cached is not None and seq == cached[0]:
            if cached[2] != command:
                return error(409, "request-id-reused", "another command", outcome="not-applied")
            status, result = cached[1]
        else:
            status, result = self.apply(key, method, value, query)
            self.sessions[session] = (seq, (status, result), command)
        if fault == "drop-forget":
            self.forgotten.add(session)
            fault = "drop"
        if fault == "503-after":
            return error(503, "timeout", "no quorum in time", outcome="unknown")
        if fault == "slow":
            await asyncio.sleep(1.0)
        if fault == "drop":
            return None
        if fault == "crash":
            return "crash"
        return web.json_response(result, status=status)

    def apply(self, key: str, method: str, value: str, query: Any) -> tuple[int, dict[str, Any]]:
        self.applied += 1
        current = self.data.get(key)
        if method == "DELETE":
            if current is None:
                return 404, {"error": "not-found", "message": f"no key {key!r}"}
            del self.data[key]
            return 200, {"key": key, "deleted": True}
        if "cas_version" in query:
            matches = (current[1] if current else 0) == int(query["cas_version"])
        elif "prev_value" in query:
            matches = current is not None and current[0] == query["prev_value"]
        else:
            matches = True
        if not matches:
            return 412, {
                "error": "cas-failed",
                "message": "comparison failed",
                "value": current[0] if current else None,
                "version": current[1] if current else 0,
            }
        version = (current[1] if current else 0) + 1
        self.data[key] = (value, version)
        return 200, {"key": key, "version": version}

    def leader_id(self) -> str | None:
        return None if self.leader is None else f"n{self.leader + 1}"

    def redirect(self, node: int) -> web.Response | None:
        if node == self.leader:
            return None
        body: dict[str, Any] = {
            "error": "not-leader",
            "message": "not the leader",
            "outcome": "not-applied",
            "leader": self.leader_id(),
            "leader_url": None,
        }
        if self.hint_leader and self.leader is not None:
            body["leader_url"] = self.urls[self.leader]
            return web.json_response(body, status=421)
        return web.json_response(body, status=503)


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


def refused_port() -> int:
    return free_port()  # below the ephemeral range: no outgoing connection takes it meanwhile


@contextlib.contextmanager
def running(cluster: FakeCluster) -> Iterator[FakeCluster]:
    """Serve the fake nodes on loopback from a background event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    async def start() -> None:
        for i in range(cluster.n):
            runner = web.AppRunner(cluster.app(i), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            cluster.urls.append(f"http://127.0.0.1:{port}")
            cluster.sites.append(site)
            runners.append(runner)

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()

    asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield cluster
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    with running(FakeCluster()) as cluster:
        yield cluster


def client_for(fake: FakeCluster, order: list[int] | None = None, **options: Any) -> Client:
    urls = [fake.urls[i] for i in (order if order is not None else range(fake.n))]
    options.setdefault("timeout", 0.3)
    options.setdefault("deadline", 3.0)
    return Client(urls, **options)


# ---------------------------------------------------------------------- leader finding
def test_a_follower_redirects_and_the_client_remembers_the_leader(fake: FakeCluster) -> None:
    fake.leader = 2
    with client_for(fake, order=[0, 1, 2]) as kv:
        written = kv.put("x", "1")
        assert written.version == 1
        assert kv.leader == fake.urls[2]
        assert [(s.node, s.method) for s in fake.seen] == [(0, "PUT"), (2, "PUT")]
        # Both attempts of one write carry the same id.
        assert fake.seen[0].request_id == fake.seen[1].request_id is not None
        fake.seen.clear()
        assert kv.get("x").value == "1"
        assert [s.node for s in fake.seen] == [2]  # straight to the leader now


def test_without_a_hint_the_client_tries_the_others_until_one_answers(fake: FakeCluster) -> None:
    fake.leader, fake.hint_leader = 1, False
    with client_for(fake, order=[2, 0, 1]) as kv:
        assert kv.put("x", "a").version == 1
        assert [s.node for s in fake.seen] == [2, 0, 1]
        assert kv.leader == fake.urls[1]


def test_the_leader_moves_and_the_client_follows(fake: FakeCluster) -> None:
    with client_for(fake) as kv:
        kv.put("x", "1")
        fake.leader = 1
        fake.seen.clear()
        assert kv.put("x", "2").version == 2
        assert [s.node for s in fake.seen] == [0, 1]
        assert kv.leader == fake.urls[1]


def test_a_refused_connection_moves_to_the_next_endpoint(fake: FakeCluster) -> None:
    dead = f"127.0.0.1:{refused_port()}"
    with Client([dead, *fake.urls], timeout=0.3, deadline=3.0) as kv:
        assert kv.put("x", "1").version == 1
        assert fake.applied == 1


def test_stale_reads_are_served_by_any_node(fake: FakeCluster) -> None:
    fake.data["x"] = ("v", 4)
    with client_for(fake, order=[1]) as kv:
        entry = kv.get("x", consistency="stale")
        assert (entry.key, entry.value, entry.version) == ("x", "v", 4)
        assert [s.node for s in fake.seen] == [1]


# ---------------------------------------------------------------------- retries
@pytest.mark.parametrize("fault", ["slow", "drop", "503-after"])
def test_a_lost_answer_is_retried_with_the_same_id_and_applied_once(fake: FakeCluster, fault: str) -> None:
    fake.write_faults = [fault]
    with client_for(fake) as kv:
        written = kv.put("x", "only-once")
        assert written.version == 1
        ids = [s.request_id for s in fake.seen if s.method == "PUT"]
        assert len(ids) >= 2 and len(set(ids)) == 1
        assert written.request_id == ids[0]
        assert fake.applied == 1
        assert fake.data["x"] == ("only-once", 1)


def test_a_node_that_dies_after_applying_leaves_the_write_maybe_applied(fake: FakeCluster) -> None:
    # The first write makes the connection persistent; the second is applied, then the
    # node stops listening and drops the connection, so any resend is refused.
    fake.write_faults = ["", "crash"]
    with Client([fake.urls[0]], timeout=0.3, deadline=0.5) as kv:
        kv.put("x", "1")
        with pytest.raises(Unavailable) as info:
            kv.put("x", "2")
    assert fake.applied == 2
    assert info.value.maybe_applied is True
    assert "cannot connect" in str(info.value.last_error)


def test_a_503_before_applying_is_retried(fake: FakeCluster) -> None:
    fake.write_faults = ["503", "503"]
    with client_for(fake) as kv:
        assert kv.put("x", "1").version == 1
        assert fake.applied == 1


def test_each_write_gets_a_new_seq(fake: FakeCluster) -> None:
    with client_for(fake) as kv:
        ids = [kv.put("x", str(i)).request_id for i in range(3)]
    sessions = {i.rpartition(":")[0] for i in ids if i}
    seqs = [int(i.rpartition(":")[2]) for i in ids if i]
    assert len(sessions) == 1 and seqs == [1, 2, 3]


def test_no_answer_at_all_is_unavailable_and_maybe_applied(fake: FakeCluster) -> None:
    fake.write_faults = ["503-after"] * 100
    with client_for(fake, deadline=0.5) as kv, pytest.raises(Unavailable) as info:
        kv.put("x", "1")
    assert info.value.maybe_applied is True
    assert info.value.attempts >= 2


def test_definite_503_refusals_until_the_deadline_are_certainly_not_applied(fake: FakeCluster) -> None:
    fake.write_faults = ["503"] * 1000
    with client_for(fake, deadline=0.5) as kv, pytest.raises(Unavailable) as info:
        kv.put("x", "1")
    assert info.value.maybe_applied is False
    assert fake.applied == 0


def test_bytes_values_come_back_as_bytes() -> None:
    from consensuskit.client import decode_value

    assert decode_value({"value": "AAH/", "encoding": "base64"}) == b"\x00\x01\xff"
    assert decode_value({"value": "text", "encoding": "utf-8"}) == "text"
    assert (
        CasFailed("cas-failed", "m", details={"value": "AA==", "encoding": "base64"}).current_value == b"\x00"
    )


def test_refused_everywhere_is_unavailable_and_certainly_not_applied() -> None:
    dead = [f"127.0.0.1:{refused_port()}" for _ in range(2)]
    with Client(dead, timeout=0.2, deadline=0.5) as kv, pytest.raises(Unavailable) as info:
        kv.put("x", "1")
    assert info.value.maybe_applied is False
    assert "cannot connect" in str(info.value.last_error)


def test_reads_that_time_out_are_not_maybe_applied(fake: FakeCluster) -> None:
    fake.leader = None  # everyone redirects without a leader: an election that never ends
    with client_for(fake, deadline=0.5) as kv, pytest.raises(Unavailable) as info:
        kv.get("x")
    assert info.value.maybe_applied is False


# ---------------------------------------------------------------------- sessions
def _session_of(request_id: str | None) -> str:
    assert request_id is not None
    return request_id.rpartition(":")[0]


def test_a_forgotten_session_is_replaced_when_the_write_certainly_did_not_apply(fake: FakeCluster) -> None:
    with client_for(fake, client_id="me") as kv:
        first = kv.put("x", "1")
        fake.forgotten.add(_session_of(first.request_id))  # the server expired it meanwhile
        second = kv.put("x", "2")
    assert second.version == 2 and fake.applied == 2
    assert _session_of(second.request_id) != _session_of(first.request_id)
    assert second.request_id is not None and second.request_id.endswith(":1")  # a new session starts at 1
    ids = [s.request_id for s in fake.seen if s.method == "PUT"]
    assert ids == [first.request_id, "me.1:2", second.request_id]


def test_a_forgotten_session_after_a_maybe_applied_attempt_is_an_unknown_outcome(fake: FakeCluster) -> None:
    fake.write_faults = ["drop-forget"]
    with client_for(fake) as kv:
        with pytest.raises(SessionExpired) as info:
            kv.put("x", "1")
        assert info.value.maybe_applied is True and info.value.status == 409
        assert fake.applied == 1  # applied once, never again
        # The session is dropped: the next write starts a new one at seq 1.
        written = kv.put("x", "2")
    assert written.request_id is not None and written.request_id.endswith(":1")
    assert fake.applied == 2


def test_a_reused_request_id_raises_and_the_session_is_dropped(fake: FakeCluster) -> None:
    with client_for(fake, client_id="me") as kv:
        kv.put("x", "1")
        fake.sessions["me.1"] = (2, (200, {}), ("elsewhere", "PUT", "?", {}))  # another process's
        with pytest.raises(RequestIdReused) as info:
            kv.put("x", "2")
        assert info.value.code == "request-id-reused"
        written = kv.put("x", "3")
    assert written.request_id == "me.2:1"
    assert fake.data["x"] == ("3", 2)


def test_clients_without_an_id_share_sessions_per_process_and_cluster(fake: FakeCluster) -> None:
    """A Client per request no longer leaves a session behind per request."""
    ids = []
    for i in range(3):
        with client_for(fake) as kv:
            ids.append(kv.put("x", str(i)).request_id)
    assert len({_session_of(i) for i in ids}) == 1
    assert [i.rpartition(":")[2] for i in ids if i] == ["1", "2", "3"]
    with client_for(fake, order=[2, 1, 0]) as kv:  # the same cluster, endpoints in another order
        assert _session_of(kv.put("x", "again").request_id) == _session_of(ids[0])
    with client_for(fake, client_id="mine") as kv:
        assert kv.put("x", "own").request_id == "mine.1:1"


# ---------------------------------------------------------------------- concurrency
def test_concurrent_writes_never_share_a_session(fake: FakeCluster) -> None:
    fake.write_faults = ["slow"] * 3 + [""] * 20 + ["503-after"] * 3

    async def main() -> list[int]:
        async with AsyncClient(fake.urls, timeout=0.3, deadline=5.0) as kv:
            results = await asyncio.gather(*(kv.put(f"k{i % 5}", str(i)) for i in range(40)))
            return [r.version for r in results]

    versions = asyncio.run(main())
    assert fake.overlaps == []
    assert fake.applied == 40  # every write once, despite the retried ones
    assert sorted(v for _, v in fake.data.values()) == [8, 8, 8, 8, 8]
    assert len(versions) == 40


def test_the_sync_client_is_shared_by_threads(fake: FakeCluster) -> None:
    with client_for(fake) as kv:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(10):
                    kv.put(f"t{t}", str(i))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {k: v for k, v in fake.data.items()} == {f"t{t}": ("9", 10) for t in range(4)}
        assert fake.overlaps == []


# ---------------------------------------------------------------------- errors
def test_missing_key_raises_not_found(fake: FakeCluster) -> None:
    with client_for(fake) as kv, pytest.raises(NotFound) as info:
        kv.get("nope")
    assert (info.value.code, info.value.status) == ("not-found", 404)
    assert "nope" in info.value.message


def test_cas_on_version_and_value(fake: FakeCluster) -> None:
    with client_for(fake) as kv:
        assert kv.cas("x", "a", expected_version=0).version == 1
        assert kv.cas("x", "b", expected="a").version == 2
        with pytest.raises(CasFailed) as info:
            kv.cas("x", "c", expected_version=1)
        assert (info.value.current_value, info.value.current_version) == ("b", 2)
        with pytest.raises(CasFailed):
            kv.cas("x", "c", expected="a")
        assert kv.get("x").value == "b"
        with pytest.raises(ValueError, match="exactly one"):
            kv.cas("x", "c")


def test_delete_and_list(fake: FakeCluster) -> None:
    with client_for(fake) as kv:
        for key in ("b/2", "a/1", "b/1", "c"):
            kv.put(key, key.upper())
        assert [(e.key, e.value) for e in kv.list("b/")] == [("b/1", "B/1"), ("b/2", "B/2")]
        assert kv.delete("c").deleted is True
        assert kv.delete("c").deleted is False
        assert [e.key for e in kv.list()] == ["a/1", "b/1", "b/2"]


def test_oversized_value_raises_payload_too_large(fake: FakeCluster) -> None:
    with client_for(fake) as kv, pytest.raises(PayloadTooLarge) as info:
        kv.put("x", "v" * (VALUE_LIMIT + 1))
    assert info.value.status == 413
    assert fake.applied == 0


def test_malformed_request_raises_bad_request(fake: FakeCluster) -> None:
    with client_for(fake) as kv, pytest.raises(BadRequest) as info:
        kv.cas("x", "1", expected_version=-1)  # the fake refuses "-1" as not an integer
    assert info.value.status == 400 and "cas_version" in info.value.message


def test_admin_calls_carry_the_token(fake: FakeCluster) -> None:
    with client_for(fake) as kv, pytest.raises(Unauthorized):
        kv.add_member("n4")
    with client_for(fake, admin_token="sesame") as kv:
        assert kv.add_member("n4") == {"ok": True}


def test_status_of_each_node_and_the_leader(fake: FakeCluster) -> None:
    fake.leader = 1
    with client_for(fake) as kv:
        assert kv.status(fake.urls[0])["role"] == "follower"
        statuses = kv.cluster_status()
        assert [s["role"] for s in statuses.values() if isinstance(s, dict)] == [
            "follower",
            "leader",
            "follower",
        ]
        assert kv.find_leader() == fake.urls[1]


def test_status_of_a_dead_node_is_an_error_not_a_hang() -> None:
    dead = f"127.0.0.1:{refused_port()}"
    with Client([dead], timeout=0.2, deadline=5) as kv:
        statuses = kv.cluster_status()
    assert isinstance(statuses[f"http://{dead}"], Unavailable)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, {"error": "bad-request", "message": "m"}, BadRequest, "bad-request"),
        (404, {"error": "not-found", "message": "m"}, NotFound, "not-found"),
        (412, {"error": "cas-failed", "message": "m", "version": 3}, CasFailed, "cas-failed"),
        (409, {"error": "stale-session", "message": "m"}, ClientError, "stale-session"),
        (413, {"error": "too-large", "message": "m"}, PayloadTooLarge, "too-large"),
        (401, {"error": "unauthorized", "message": "m"}, Unauthorized, "unauthorized"),
        (500, {"error": "internal", "message": "m"}, ServerError, "internal"),
        (502, "<html>bad gateway</html>", ServerError, "http-502"),
        (418, {"error": "teapot", "message": "m"}, ClientError, "teapot"),
    ],
)
def test_error_mapping(status: int, body: Any, cls: type[ClientError], code: str) -> None:
    err = error_from_answer(status, body, body if isinstance(body, str) else "")
    assert type(err) is cls
    assert (err.code, err.status) == (code, status)
    if isinstance(body, dict):
        assert err.details == body


def test_endpoint_parsing() -> None:
    assert parse_endpoints("127.0.0.1:1, http://h:2/ ,127.0.0.1:1") == ["http://127.0.0.1:1", "http://h:2"]
    with pytest.raises(ValueError, match="no endpoints"):
        parse_endpoints(" , ")


def test_a_closed_client_refuses_calls(fake: FakeCluster) -> None:
    kv = client_for(fake)
    kv.close()
    kv.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        kv.get("x")
