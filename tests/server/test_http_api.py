"""The HTTP API of docs/openapi.yaml against in-process 3-node clusters (real TCP
transport, real DiskStorage, ephemeral ports on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import functools

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consensuskit.server import http_api
from consensuskit.server.admin_commands import admin_command
from consensuskit.server.cluster import free_port
from tests.protocols.common.test_replies import break_reads_of_boom
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]


async def put(c: Cluster, node: str, key: str, value: bytes | str, **kwargs):
    return await c.call("PUT", node, f"/v1/kv/{key}", data=value, **kwargs)


# ---------------------------------------------------------------------- key-value
@async_test
async def test_put_get_delete_and_versions(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        status, body, _ = await put(c, leader, "greeting", "hello")
        assert status == 200 and body["key"] == "greeting" and body["version"] == 1 and body["index"] > 0
        status, body, _ = await put(c, leader, "greeting", "hello again")
        assert (status, body["version"]) == (200, 2)
        status, body, _ = await c.call("GET", leader, "/v1/kv/greeting")
        assert status == 200
        assert {k: body[k] for k in ("key", "value", "encoding", "version")} == {
            "key": "greeting",
            "value": "hello again",
            "encoding": "utf-8",
            "version": 2,
        }
        status, body, _ = await c.call("DELETE", leader, "/v1/kv/greeting")
        assert status == 200 and body["deleted"] is True
        status, body, _ = await c.call("DELETE", leader, "/v1/kv/greeting")
        assert status == 200 and body["deleted"] is False
        status, body, _ = await c.call("GET", leader, "/v1/kv/greeting")
        assert status == 404 and body["error"] == "not-found" and "greeting" in body["message"]


# Where a read is served: from the state machine (Raft's read index, ``?consistency=``),
# or applied as a command: through Raft's log (``read_mode = "log"``), ordered by PBFT
# (its servers order every read).
READ_PATHS = {
    "raft": ({}, ("?consistency=linearizable", "?consistency=stale")),
    "raft-log": ({"options": {"read_mode": "log", "election_timeout": 0.3}}, ("",)),
    "pbft": ({"protocol": "pbft", "options": {}}, ("",)),
}


@pytest.mark.parametrize("path", sorted(READ_PATHS))
@async_test
async def test_a_read_the_state_machine_fails_is_a_500_and_the_node_goes_on(
    tmp_path, monkeypatch, path
) -> None:
    """A bug in a state machine's read halted the node (protocols/common/replies.py): it
    is refused ``read-failed``, a 500 that says nothing changed, and the node serves on,
    whichever way the read is served."""
    break_reads_of_boom(monkeypatch)
    settings, queries = READ_PATHS[path]
    async with Cluster(tmp_path, ["n1"], **settings) as c:
        if path != "pbft":  # a lone PBFT replica is its view's primary from the start
            await c.wait_leader()
        for query in queries:
            status, body, _ = await c.call("GET", "n1", f"/v1/kv/boom{query}")
            assert status == 500 and body["error"] == "read-failed", body
            assert body["outcome"] == "not-applied" and "goes on serving" in body["message"]
        status, body, _ = await c.call("PUT", "n1", "/v1/kv/after", data="1")
        assert status == 200, body
        status, body, _ = await c.call("GET", "n1", "/v1/kv/after")
        assert status == 200 and body["value"] == "1", body
        status, text, _ = await c.call("GET", "n1", "/metrics")
        failed = f'consensuskit_events_total{{kind="read-failed"}} {float(len(queries))}'
        assert failed in text  # what an alert watches


@async_test
async def test_binary_values_slashes_in_keys_and_raw_reads(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        blob = b"\x00\xff\xfe binary"
        assert (await put(c, leader, "dir%2Fsub/file", blob))[0] == 200
        status, body, _ = await c.call("GET", leader, "/v1/kv/dir%2Fsub/file")
        assert status == 200 and body["key"] == "dir/sub/file" and body["encoding"] == "base64"
        assert base64.b64decode(body["value"]) == blob
        status, raw, headers = await c.call(
            "GET", leader, "/v1/kv/dir/sub/file", headers={"Accept": "application/octet-stream"}
        )
        assert status == 200 and headers["X-Version"] == "1"
        # The harness decodes non-JSON bodies as text; compare through the same lens.
        assert raw == blob.decode("utf-8", "replace")


@async_test
async def test_compare_and_swap_by_version_and_by_value(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        status, body, _ = await put(c, leader, "k", "v1", params={"cas_version": "0"})
        assert status == 200 and body["swapped"] is True and body["version"] == 1  # 0 = absent
        status, body, _ = await put(c, leader, "k", "v2", params={"cas_version": "0"})
        assert status == 412 and body["error"] == "cas-failed" and body["outcome"] == "not-applied"
        assert (body["value"], body["version"]) == ("v1", 1)
        status, body, _ = await put(c, leader, "k", "v2", params={"prev_value": "v1"})
        assert status == 200 and body["version"] == 2
        status, body, _ = await put(c, leader, "k", "v3", params={"prev_value": "v1"})
        assert status == 412 and body["value"] == "v2"
        status, body, _ = await put(c, leader, "k", "v3", params={"cas_version": "2"})
        assert status == 200 and body["version"] == 3
        status, body, _ = await put(c, leader, "absent", "x", params={"prev_value": "y"})
        assert status == 412 and body["value"] is None and body["version"] == 0


@async_test
async def test_list_by_prefix_with_limit(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for key in ("app/b", "app/a", "app/c", "other"):
            assert (await put(c, leader, key.replace("/", "%2F"), key.upper()))[0] == 200
        status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": "app/"})
        assert status == 200 and body["truncated"] is False and body["prefix"] == "app/"
        assert [(i["key"], i["value"], i["version"]) for i in body["items"]] == [
            ("app/a", "APP/A", 1),
            ("app/b", "APP/B", 1),
            ("app/c", "APP/C", 1),
        ]
        status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": "app/", "limit": "2"})
        assert [i["key"] for i in body["items"]] == ["app/a", "app/b"] and body["truncated"] is True
        status, body, _ = await c.call("GET", leader, "/v1/kv")
        assert len(body["items"]) == 4


# ---------------------------------------------------------------------- leaders and followers
@async_test
async def test_a_follower_serves_writes_and_linearizable_reads_through_the_leader(tmp_path):
    """As etcd's members do: the follower forwards the write and answers it once it applied
    it, and serves a linearizable read at a read index the leader confirmed."""
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        status, body, _ = await c.call("PUT", follower, "/v1/kv/x", data=b"via-follower")
        assert status == 200 and body["version"] == 1, body
        for node in (follower, leader):
            status, body, _ = await c.call("GET", node, "/v1/kv/x")
            assert (status, body["value"]) == (200, "via-follower"), body
        status, body, _ = await c.call("DELETE", follower, "/v1/kv/x")
        assert status == 200, body
        status, body, _ = await c.call("GET", follower, "/v1/kv/x")
        assert status == 404, body  # the delete, read back linearizably at the follower


@async_test
async def test_follower_redirects_writes_and_linearizable_reads_when_asked_to(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        only = {"X-Leader-Only": "true"}
        for method, path in (("PUT", "/v1/kv/x"), ("DELETE", "/v1/kv/x"), ("GET", "/v1/kv/x")):
            status, body, _ = await c.call(
                method, follower, path, data=b"v" if method == "PUT" else None, headers=only
            )
            assert status == 421, (method, body)
            assert body["error"] == "not-leader" and body["outcome"] == "not-applied"
            assert body["leader"] == leader and body["leader_url"] == c.url(leader)
            assert c.url(leader) in body["message"]


@async_test
async def test_stale_read_on_a_follower_and_lease_read_on_the_leader(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        status, body, _ = await put(c, leader, "k", "v")
        index = body["index"]
        await c.wait_until(lambda: c.servers[follower].runtime.node.last_applied >= index)
        status, body, _ = await c.call("GET", follower, "/v1/kv/k", params={"consistency": "stale"})
        assert status == 200 and body["value"] == "v"
        status, body, _ = await c.call("GET", leader, "/v1/kv/k", params={"consistency": "lease"})
        assert status == 200 and body["value"] == "v"
        status, body, _ = await c.call("GET", follower, "/v1/kv", params={"consistency": "stale"})
        assert status == 200 and [i["key"] for i in body["items"]] == ["k"]


@async_test
async def test_request_id_retry_is_applied_once_and_returns_the_first_result(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        first = await put(c, leader, "k", "first", headers={"X-Request-Id": "client-7:1"})
        assert first[0] == 200 and first[1]["version"] == 1
        retry = await put(c, leader, "k", "first", headers={"X-Request-Id": "client-7:1"})
        assert retry[0] == 200 and retry[1]["version"] == 1  # the cached result (logged again)
        # The same id on another command: refused, nothing applied (honest idempotency).
        status, body, _ = await put(c, leader, "k", "second", headers={"X-Request-Id": "client-7:1"})
        assert status == 409 and body["error"] == "request-id-reused" and body["outcome"] == "not-applied"
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert (body["value"], body["version"]) == ("first", 1)
        # The next sequence number applies; an older one is refused without effect.
        assert (await put(c, leader, "k", "third", headers={"X-Request-Id": "client-7:2"}))[1]["version"] == 2
        status, body, _ = await put(c, leader, "k", "stale", headers={"X-Request-Id": "client-7:1"})
        assert status == 409 and body["error"] == "stale-session"
        # Concurrent duplicates of one new request: one effect, same answer for both.
        a, b = await asyncio.gather(
            put(c, leader, "k", "dup", headers={"X-Request-Id": "client-7:3"}),
            put(c, leader, "k", "dup", headers={"X-Request-Id": "client-7:3"}),
        )
        assert a[1]["version"] == b[1]["version"] == 3


# ---------------------------------------------------------------------- errors
@async_test
async def test_error_bodies(tmp_path):
    async with Cluster(tmp_path, IDS, max_value_bytes=1024) as c:
        leader = await c.wait_leader()
        cases = [
            (("PUT", "/v1/kv/k"), {"params": {"cas_version": "x"}}, 400, "bad-request"),
            (("PUT", "/v1/kv/k"), {"params": {"cas_version": "1", "prev_value": "a"}}, 400, "bad-request"),
            (("PUT", "/v1/kv/k"), {"params": {"bogus": "1"}}, 400, "bad-request"),
            (("GET", "/v1/kv/k"), {"params": {"consistency": "eventual"}}, 400, "bad-request"),
            (("GET", "/v1/kv"), {"params": {"limit": "-1"}}, 400, "bad-request"),
            (("PUT", "/v1/kv/k"), {"headers": {"X-Request-Id": "no-seq"}}, 400, "bad-request-id"),
            (("PUT", "/v1/kv/k"), {"headers": {"X-Request-Id": "c:0"}}, 400, "bad-request-id"),
            (("PUT", "/v1/kv/k"), {"headers": {"X-Request-Id": "anon.x:1"}}, 400, "bad-request-id"),
            (("PUT", "/v1/kv/" + "k" * 5000), {}, 400, "bad-key"),
            (("GET", "/v1/nothing"), {}, 404, "not-found"),
            (("GET", "/"), {}, 404, "not-found"),
            (("POST", "/v1/kv/k"), {}, 405, "method-not-allowed"),
            (("PUT", "/v1/status"), {}, 405, "method-not-allowed"),
            (("PUT", "/v1/kv/k"), {"data": b"x" * 1025}, 413, "too-large"),
            (("POST", "/v1/members"), {"data": b"{not json", "token": ADMIN_TOKEN}, 400, "bad-json"),
        ]
        for (method, path), kwargs, want_status, want_code in cases:
            kwargs = dict(kwargs)
            kwargs.setdefault("data", b"v" if method == "PUT" else None)
            status, body, headers = await c.call(method, leader, path, **kwargs)
            assert (status, body["error"]) == (want_status, want_code), (method, path, kwargs, body)
            assert isinstance(body["message"], str) and body["message"]
            if status == 405:
                assert "Allow" in headers
        # Exactly at the limit is fine; a streamed (chunked) body over it is refused too.
        assert (await put(c, leader, "k", b"x" * 1024))[0] == 200

        async def chunks():
            for _ in range(4):
                yield b"y" * 512

        status, body, _ = await c.call("PUT", leader, "/v1/kv/k", data=chunks())
        assert (status, body["error"]) == (413, "too-large")
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert body["value"] == "x" * 1024


@async_test
async def test_no_quorum_is_a_bounded_503(tmp_path):
    async with Cluster(tmp_path, IDS, request_timeout=0.5) as c:
        leader = await c.wait_leader()
        for follower in IDS:
            if follower != leader:
                await c.stop_node(follower)
        status, body, _ = await put(c, leader, "k", "v")
        assert status == 503 and body["error"] in ("timeout", "leadership-lost", "not-leader")
        if body["error"] != "not-leader":
            assert body["outcome"] == "unknown"


# ---------------------------------------------------------------------- status and metrics
@async_test
async def test_status_and_members(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        await put(c, leader, "k", "v")
        status, body, _ = await c.call("GET", leader, "/v1/status")
        assert status == 200
        assert body["id"] == leader and body["role"] == "leader" and body["leader"] == leader
        assert body["leader_url"] == c.url(leader) and body["client_url"] == c.url(leader)
        assert body["term"] >= 1 and body["commit"] >= 2 and body["applied"] == body["commit"]
        assert isinstance(body["pid"], int) and body["protocol"] == "raft" and body["halted"] is False
        assert sorted(body["peers"]) == sorted(i for i in IDS if i != leader)
        for peer, info in body["peers"].items():
            assert info["client_url"] == c.url(peer) and info["connected"] is True
        # The status reports each follower's match against the leader's last index.  The
        # leader may append (its session clock's command) between any check and the call
        # that reads the status, so read it until one answer shows every follower caught up.
        for _ in range(200):
            status, body, _ = await c.call("GET", leader, "/v1/status")
            if all(info["match"] == body["last_index"] for info in body["peers"].values()):
                break
            await asyncio.sleep(0.02)
        assert all(info["match"] == body["last_index"] for info in body["peers"].values()), body
        follower = next(i for i in IDS if i != leader)
        status, body, _ = await c.call("GET", follower, "/v1/status")
        assert body["role"] == "follower" and body["leader"] == leader and body["leader_url"] == c.url(leader)
        assert all(info["match"] is None for info in body["peers"].values())
        status, body, _ = await c.call("GET", follower, "/v1/members")
        assert status == 200 and body["voters"] == IDS and body["learners"] == [] and body["leader"] == leader
        assert body["members"] == [{"id": i, "voter": True, "client_url": c.url(i)} for i in IDS]


@async_test
async def test_metrics_endpoint_parses_and_counts(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for i in range(5):
            await put(c, leader, f"k{i}", "v")
        await c.call("GET", leader, "/v1/kv/k1")
        status, text, headers = await c.call("GET", leader, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text)}

        def value(name: str, **labels: str) -> float:
            for sample in families[name].samples:
                if sample.name in (name, name + "_total", name + "_count") and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
            raise AssertionError(f"no sample {name} {labels}")

        assert value("consensuskit_is_leader") == 1
        assert value("consensuskit_proposals") >= 5
        assert value("consensuskit_commit_index") >= 6
        assert value("consensuskit_apply_lag") == 0
        assert value("consensuskit_fsync_seconds") >= 1  # histogram count
        assert value("consensuskit_elections") + value("consensuskit_leader_elected") >= 1
        assert value("consensuskit_messages_sent", type="AppendEntries") >= 1
        assert value("consensuskit_client_requests", op="put") == 5
        assert value("consensuskit_http_request_seconds", op="get") == 1
        assert value("consensuskit_storage_fsync_count") >= 1
        follower = next(i for i in IDS if i != leader)
        assert value("consensuskit_transport_frames_sent", peer=follower) >= 1
        assert value("consensuskit_peer_match_index", peer=follower) >= 1


# ---------------------------------------------------------------------- admin
@async_test
async def test_admin_endpoints_need_the_token(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for method, path in (
            ("POST", "/v1/members"),
            ("DELETE", "/v1/members/n3"),
            ("POST", "/v1/leader/transfer"),
        ):
            status, body, headers = await c.call(method, leader, path, json={"id": "n4"})
            assert (status, body["error"]) == (401, "unauthorized") and headers[
                "WWW-Authenticate"
            ] == "Bearer"
            status, body, _ = await c.call(method, leader, path, json={"id": "n4"}, token="wrong")
            assert (status, body["error"]) == (403, "forbidden")
        status, body, _ = await c.call("GET", leader, "/v1/members")
        assert body["voters"] == IDS


@async_test
async def test_admin_endpoints_are_refused_without_a_configured_token(tmp_path):
    async with Cluster(tmp_path, IDS, admin_token_file=None) as c:
        leader = await c.wait_leader()
        status, body, _ = await c.call("DELETE", leader, "/v1/members/n3", token=ADMIN_TOKEN)
        assert status == 403 and "admin_token_file" in body["message"]


@async_test
async def test_membership_add_learner_promote_and_remove(tmp_path):
    ids = ["n1", "n2", "n3", "n4"]
    async with Cluster(tmp_path, ids[:3], members=["n1", "n2", "n3"]) as c:
        c.ids = ids  # n4 is known to everyone's [peers] from now on, but not a member yet
        await c.start_node("n4", members=["n1", "n2", "n3"])
        leader = await c.wait_leader()
        await put(c, leader, "before", "v")
        follower = next(i for i in ids[:3] if i != leader)
        status, body, _ = await c.call("POST", follower, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 421 and body["leader_url"] == c.url(leader)
        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", "voter": False}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["learners"] == ["n4"] and body["voters"] == ["n1", "n2", "n3"]
        n4 = c.servers["n4"].runtime.node
        await c.wait_until(lambda: n4.last_applied >= body["index"])
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == ids and body["learners"] == []
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 409 and body["error"] == "conflict"
        status, body, _ = await c.call("GET", "n4", "/v1/kv/before", params={"consistency": "stale"})
        assert body["value"] == "v"
        status, body, _ = await c.call("DELETE", leader, "/v1/members/n4", token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == ["n1", "n2", "n3"]
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n9"}, token=ADMIN_TOKEN)
        assert status == 400 and body["error"] == "unknown-peer"
        status, body, _ = await c.call("GET", leader, "/v1/members")
        assert body["voters"] == ["n1", "n2", "n3"]


@async_test
async def test_a_change_that_would_leave_too_few_voters_up_is_refused_unless_forced(
    tmp_path, monkeypatch, capsys
):
    """etcd's strict reconfiguration check: with one of three voters down, removing a
    live voter or adding a voter would stop the cluster at once."""
    ids = ["n1", "n2", "n3", "n4"]
    async with Cluster(tmp_path, ids[:3], members=["n1", "n2", "n3"]) as c:
        c.ids = ids  # n4 is known to everyone's [peers] from now on, but down
        await c.start_node("n4", members=["n1", "n2", "n3"])
        leader = await c.wait_leader()
        down, other = (i for i in ids[:3] if i != leader)
        await c.stop_node("n4")
        await c.stop_node(down)
        # Down at once: their connections closed, well before ACTIVE_WITHIN passed.
        transport = c.servers[leader].transport
        await c.wait_until(lambda: not {down, "n4"} & transport.connected_from(), timeout=1.0)
        status, body, _ = await c.call("DELETE", leader, f"/v1/members/{other}", token=ADMIN_TOKEN)
        assert status == 409 and body["error"] == "unhealthy" and body["unreachable"] == [down], body
        assert f"would leave 1 of 2 voters up ({leader})" in body["message"]
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 409 and body["error"] == "unhealthy" and body["unreachable"] == sorted([down, "n4"])
        assert "2 of 4 voters up" in body["message"] and "the 3 a quorum needs" in body["message"]
        status, body, _ = await c.call("GET", leader, "/v1/members")
        assert body["voters"] == ids[:3] and body["learners"] == []
        # A learner counts toward no quorum; the voter that is down may go.
        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", "voter": False}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["learners"] == ["n4"], body
        status, body, _ = await c.call("DELETE", leader, f"/v1/members/{down}", token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == sorted([leader, other]), body
        # Nobody heard lately (as if every peer were down): refused, and force goes through.
        monkeypatch.setattr(http_api, "ACTIVE_WITHIN", -1.0)
        # A repeated add changes no quorum: the usual conflict, not the strict refusal.
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": other}, token=ADMIN_TOKEN)
        assert status == 409 and body["error"] == "conflict", body
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 409 and body["unreachable"] == sorted([other, "n4"]), body
        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", "force": True}, token=ADMIN_TOKEN
        )
        assert status == 200 and "n4" in body["voters"], body
        # The CLI's verb (consensuskit member remove n4 [--force]).
        eps, token = c.url(leader), str(tmp_path / "admin-token")
        remove = functools.partial(admin_command, "member-remove", endpoints=eps, admin_token_file=token)
        assert await asyncio.to_thread(remove, {"id": "n4"}) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: unhealthy: removing n4 would leave 1 of 2 voters up"), err
        assert await asyncio.to_thread(remove, {"id": "n4", "force": True}) == 0
        status, body, _ = await c.call("GET", leader, "/v1/members")
        assert body["voters"] == sorted([leader, other]), body
        for bad in ({"json": {"id": "n4", "force": "yes"}}, {"params": {"force": "1"}}):
            method, path = ("POST", "/v1/members") if "json" in bad else ("DELETE", "/v1/members/n4")
            status, body, _ = await c.call(method, leader, path, token=ADMIN_TOKEN, **bad)
            assert status == 400 and body["error"] == "bad-request", body


@async_test
async def test_a_member_added_with_its_addresses_is_known_to_every_node_and_after_restarts(tmp_path):
    """``peer_address``/``client_url`` go through the log (statemachines/peers.py): after
    a leader change a node that never had n4 in its [peers] replicates to it, and a node
    restarted from its disk still knows it; removing n4 drops the addresses everywhere."""
    from consensuskit.server.config import PeerInfo

    async with Cluster(tmp_path, IDS) as c:
        n4 = await c.start_node("n4", wire=False, members=IDS)  # nobody else knows n4
        others = {
            i: PeerInfo(peer_address=("127.0.0.1", c.servers[i].peer_port), client_url=c.url(i)) for i in IDS
        }
        n4.set_directory(others)
        leader = await c.wait_leader()
        n4_info = {"peer_address": f"127.0.0.1:{n4.peer_port}", "client_url": c.url("n4")}
        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", "voter": False, **n4_info}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["learners"] == ["n4"], body
        await c.wait_until(lambda: all("n4" in c.servers[i].directory() for i in IDS))
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == [*IDS, "n4"]
        # Adding it again with other addresses is refused before anything is recorded.
        bogus = {"peer_address": "127.0.0.1:1", "client_url": "http://127.0.0.1:1"}
        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", **bogus}, token=ADMIN_TOKEN
        )
        assert (status, body["error"]) == (409, "conflict")
        assert c.servers[leader].directory()["n4"].peer_address == ("127.0.0.1", n4.peer_port)
        # Leadership moves to a node whose [peers] never named n4: n4 still gets writes.
        target = next(i for i in IDS if i != leader)
        status, body, _ = await c.call(
            "POST", leader, "/v1/leader/transfer", json={"to": target}, token=ADMIN_TOKEN
        )
        assert status == 200
        assert (await put(c, target, "after-transfer", "v"))[0] == 200
        index = c.servers[target].runtime.node.commit_index
        await c.wait_until(lambda: n4.runtime.node.last_applied >= index)
        status, body, _ = await c.call("GET", "n4", "/v1/kv/after-transfer", params={"consistency": "stale"})
        assert body["value"] == "v"
        status, body, _ = await c.call("GET", target, "/v1/members")
        assert {m["id"]: m["client_url"] for m in body["members"]}["n4"] == c.url("n4")
        # A node restarted from its disk, whose [peers] never named n4, knows it again
        # once it applied its log (Raft learns how far that is from the leader).
        follower = next(i for i in IDS if i not in (leader, target))
        await c.stop_node(follower)
        restarted = await c.start_node(follower, wire=False)
        others[follower] = PeerInfo(
            peer_address=("127.0.0.1", restarted.peer_port), client_url=c.url(follower)
        )
        for i in IDS:
            c.servers[i].set_directory(others)
        n4.set_directory(others)
        await c.wait_until(lambda: "n4" in restarted.directory())
        assert restarted.directory()["n4"] == PeerInfo(
            peer_address=("127.0.0.1", n4.peer_port), client_url=c.url("n4")
        )
        # Removed: its addresses are dropped on every node.
        status, body, _ = await c.call("DELETE", target, "/v1/members/n4", token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == IDS
        await c.wait_until(lambda: all("n4" not in c.servers[i].directory() for i in IDS))


@async_test
async def test_a_cluster_whose_members_were_replaced_restarts_from_its_disks(tmp_path):
    """n4 and n5 join with their addresses, n2 and n3 leave, and then the whole cluster
    stops.  Restarted with the files it was started with, n1 knows nobody alive and n4
    and n5 know only n1: the addresses are in the log, which no node can apply before a
    leader is elected.  Every node remembers the directory it applied (server/main.py),
    so they find each other and the cluster serves again with its data."""
    ids = ["n1", "n2", "n3", "n4", "n5"]
    address = {i: f"127.0.0.1:{free_port()}" for i in ids}

    def settings(node_id: str, known: list[str]) -> dict[str, object]:
        peers = {p: {"peer_address": address[p], "client_url": "http://127.0.0.1:1"} for p in known}
        return {"peer_address": address[node_id], "peers": peers, "members": IDS}

    files = {i: settings(i, [p for p in IDS if p != i]) for i in ids}  # n4, n5 know n1..n3
    async with Cluster(tmp_path, []) as c:
        c.ids = ids
        for i in ids:
            await c.start_node(i, wire=False, **files[i])
        leader = await c.wait_leader()
        assert (await put(c, leader, "before", "v"))[0] == 200
        for new in ("n4", "n5"):
            info = {"peer_address": address[new], "client_url": c.url(new)}
            status, body, _ = await c.call(
                "POST", leader, "/v1/members", json={"id": new, "voter": False, **info}, token=ADMIN_TOKEN
            )
            assert status == 200, body
            index = c.servers[leader].runtime.node.commit_index
            await c.wait_until(lambda new=new, index=index: c.servers[new].runtime.node.last_applied >= index)
            status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": new}, token=ADMIN_TOKEN)
            assert status == 200, body
        for old in ("n2", "n3"):
            leader = await c.wait_leader()
            status, body, _ = await c.call("DELETE", leader, f"/v1/members/{old}", token=ADMIN_TOKEN)
            assert status == 200, body
        assert body["voters"] == ["n1", "n4", "n5"]
        for old in ("n2", "n3"):
            await c.stop_node(old)
        leader = await c.wait_leader()
        assert (await put(c, leader, "after", "w"))[0] == 200
        index = c.servers[leader].runtime.node.commit_index
        await c.wait_until(lambda: all(s.runtime.node.last_applied >= index for s in c.servers.values()))
        for i in list(c.servers):
            await c.stop_node(i)
        for i in ("n1", "n4", "n5"):
            await c.start_node(i, wire=False, **files[i])
        leader = await c.wait_leader(timeout=15)
        for key, value in (("before", "v"), ("after", "w")):
            status, body, _ = await c.call("GET", leader, f"/v1/kv/{key}")
            assert (status, body["value"]) == (200, value)
        assert (await put(c, leader, "restarted", "x"))[0] == 200


@async_test
async def test_leader_transfer(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        target = next(i for i in IDS if i != leader)
        await put(c, leader, "k", "v")
        status, body, _ = await c.call(
            "POST", leader, "/v1/leader/transfer", json={"to": target}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["leader"] == target and body["leader_url"] == c.url(target)
        assert await c.wait_leader() == target
        status, body, _ = await c.call("GET", target, "/v1/kv/k")
        assert body["value"] == "v"
        # Without "to", the leader picks the most up-to-date other voter.
        status, body, _ = await c.call("POST", target, "/v1/leader/transfer", token=ADMIN_TOKEN)
        assert status == 200 and body["leader"] != target
        status, body, _ = await c.call(
            "POST", body["leader"], "/v1/leader/transfer", json={"to": "nobody"}, token=ADMIN_TOKEN
        )
        assert status == 400 and "not a voter" in body["message"]


@async_test
async def test_fault_injection_needs_the_flag_and_partitions_the_leader(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        status, body, _ = await c.call(
            "POST", leader, "/v1/debug/faults", json={"block": []}, token=ADMIN_TOKEN
        )
        assert status == 404
    async with Cluster(tmp_path / "faulty", IDS, enable_fault_injection=True, request_timeout=1.0) as c:
        leader = await c.wait_leader()
        others = [i for i in IDS if i != leader]
        status, body, _ = await c.call("POST", leader, "/v1/debug/faults", json={"block": others})
        assert status == 401
        status, body, _ = await c.call(
            "POST", leader, "/v1/debug/faults", json={"block": others}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["blocked"] == others
        new_leader = await c.wait_leader(exclude=(leader,))
        assert new_leader != leader
        status, body, _ = await put(c, leader, "k", "v")
        assert status in (421, 503)  # the old leader stepped down (check-quorum)
        status, body, _ = await c.call(
            "POST", leader, "/v1/debug/faults", json={"block": []}, token=ADMIN_TOKEN
        )
        assert status == 200 and body["blocked"] == []
        await c.wait_until(lambda: c.servers[leader].runtime.node.leader_id == new_leader)


# ---------------------------------------------------------------------- restart
@async_test
async def test_restart_nodes_from_their_data_dirs(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for i in range(10):
            assert (await put(c, leader, f"k{i}", f"v{i}", headers={"X-Request-Id": f"w:{i + 1}"}))[0] == 200
        follower = next(i for i in IDS if i != leader)
        await c.stop_node(follower)
        assert (await put(c, leader, "while-down", "x"))[0] == 200
        await c.start_node(follower)
        await c.wait_until(
            lambda: (
                c.servers[follower].runtime.node.last_applied >= c.servers[leader].runtime.node.commit_index
            )
        )
        status, body, _ = await c.call("GET", follower, "/v1/kv/while-down", params={"consistency": "stale"})
        assert body["value"] == "x"
        # Whole cluster down and up again: every acknowledged write is there.
        for node_id in list(c.servers):
            await c.stop_node(node_id)
        for node_id in IDS:
            await c.start_node(node_id)
        leader = await c.wait_leader()
        status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": "k"})
        assert [(i["key"], i["value"]) for i in body["items"]] == [(f"k{i}", f"v{i}") for i in range(10)]
        # Sessions survive too: a retry of an old request id is still answered from the cache.
        status, body, _ = await put(c, leader, "k9", "v9", headers={"X-Request-Id": "w:10"})
        assert status == 200 and body["version"] == 1
        status, body, _ = await c.call("GET", leader, "/v1/kv/k9")
        assert body["value"] == "v9"
