"""Client authentication and authorization (server/auth_api.py, server/auth.py) against
in-process 3-node clusters: users, roles, prefix permissions, tokens on every node,
revocation, restricted /v1/status and /metrics, the fast path, client certificates."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from consensuskit.server.auth import mint_token, token_key
from consensuskit.server.fast_http import FastConnection
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test
from tests.server.test_fast_http import _open, _read_response, _request, _served_fast

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]
SECRET = b"cluster-secret-for-tests"  # runtime_harness.node_config writes it
FAST_HASH = {"password_iterations": 1000}


async def admin(c: Cluster, node: str, method: str, path: str, json=None, **kwargs):
    status, body, _ = await c.call(method, node, path, json=json, token=ADMIN_TOKEN, **kwargs)
    assert status == 200, (method, path, status, body)
    return body


async def setup_users(c: Cluster, leader: str, *, enable: bool = True) -> None:
    """root (root role); alice: readwrite app/; bob: read pub/, write inbox/; wo: write only w/."""
    for name, password in (("root", "rootpw"), ("alice", "alicepw"), ("bob", "bobpw"), ("wo", "wopw")):
        await admin(c, leader, "POST", "/v1/auth/users", {"name": name, "password": password})
    await admin(c, leader, "PUT", "/v1/auth/users/root/roles/root")
    for role, grants in (
        ("app", [("app", "readwrite")]),
        ("reader", [("pub/", "read"), ("inbox/", "write")]),
        ("writer", [("w/", "write")]),
    ):
        await admin(c, leader, "POST", "/v1/auth/roles", {"name": role})
        for prefix, permission in grants:
            body = {"prefix": prefix, "permission": permission}
            await admin(c, leader, "POST", f"/v1/auth/roles/{role}/permissions", body)
    for user, role in (("alice", "app"), ("bob", "reader"), ("wo", "writer")):
        await admin(c, leader, "PUT", f"/v1/auth/users/{user}/roles/{role}")
    if enable:
        await admin(c, leader, "POST", "/v1/auth/enable")


async def token(c: Cluster, node: str, user: str, password: str) -> str:
    status, body, _ = await c.call("POST", node, "/v1/auth/token", json={"user": user, "password": password})
    assert status == 200, body
    assert body["user"] == user and body["ttl"] == 300 and body["expires_at"] > time.time()
    return body["token"]


async def kv(c: Cluster, node: str, method: str, key: str, tok: str | None = None, **kwargs):
    path = "/v1/kv" if key is None else f"/v1/kv/{key}"
    status, body, _ = await c.call(method, node, path, token=tok, **kwargs)
    return status, body


# ---------------------------------------------------------------------- off by default
@async_test
async def test_auth_is_off_by_default_and_then_nothing_changes(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        assert (await kv(c, leader, "PUT", "k", data="v"))[0] == 200
        assert (await kv(c, leader, "GET", "k"))[0] == 200
        assert (await c.call("GET", leader, "/v1/status"))[0] == 200
        assert (await c.call("GET", leader, "/metrics"))[0] == 200
        status, body, _ = await c.call("GET", leader, "/v1/auth/status")
        assert (status, body) == (200, {"enabled": False, "revision": 0})
        # Users exist but auth is off: no token is issued, and none is needed.
        await admin(c, leader, "POST", "/v1/auth/users", {"name": "u", "password": "pw"})
        status, body, _ = await c.call("POST", leader, "/v1/auth/token", json={"user": "u", "password": "pw"})
        assert (status, body["error"]) == (409, "auth-not-enabled")
        # With an admin token configured, only it manages auth while auth is off.
        status, body, _ = await c.call("POST", leader, "/v1/auth/users", json={"name": "x", "password": "p"})
        assert (status, body["error"]) == (401, "unauthenticated")
        status, body, _ = await c.call("GET", leader, "/v1/auth/users", token="wrong")
        assert (status, body["error"]) == (403, "permission-denied")


@async_test
async def test_enabling_needs_a_root_user_with_the_root_role(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        status, body, _ = await c.call("POST", leader, "/v1/auth/enable", token=ADMIN_TOKEN)
        assert (status, body["error"]) == (409, "root-required") and "grant-role root root" in body["message"]
        await admin(c, leader, "POST", "/v1/auth/users", {"name": "root", "password": "pw"})
        status, body, _ = await c.call("POST", leader, "/v1/auth/enable", token=ADMIN_TOKEN)
        assert status == 409
        await admin(c, leader, "PUT", "/v1/auth/users/root/roles/root")
        body = await admin(c, leader, "POST", "/v1/auth/enable")
        assert body["revision"] == 3 and body["index"] > 0
        status, body, _ = await c.call("DELETE", leader, "/v1/auth/users/root", token=ADMIN_TOKEN)
        assert (status, body["error"]) == (409, "root-protected")


# ---------------------------------------------------------------------- authorization
@async_test
async def test_requests_are_allowed_and_denied_per_prefix_and_permission(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        alice = await token(c, leader, "alice", "alicepw")
        bob = await token(c, leader, "bob", "bobpw")
        wo = await token(c, leader, "wo", "wopw")
        root = await token(c, leader, "root", "rootpw")

        # No credentials: 401 for every key-value request, and nothing written.
        for method, key in (("PUT", "app-1"), ("GET", "app-1"), ("DELETE", "app-1"), ("GET", None)):
            status, body = await kv(c, leader, method, key, data="x" if method == "PUT" else None)
            assert (status, body["error"], body["outcome"]) == (401, "unauthenticated", "not-applied")
        assert c.servers[leader].runtime.node.sm.get("app-1") is None

        assert (await kv(c, leader, "PUT", "app-1", alice, data="a"))[0] == 200
        assert (await kv(c, leader, "GET", "app-1", alice))[1]["value"] == "a"
        status, body = await kv(c, leader, "PUT", "other", alice, data="a")
        assert (status, body["error"]) == (403, "permission-denied") and "alice" in body["message"]
        assert (await kv(c, leader, "GET", "app-1", bob))[0] == 403
        assert (await kv(c, leader, "DELETE", "app-1", bob))[0] == 403

        # bob: read pub/, write inbox/ (but not read it back)
        assert (await kv(c, leader, "PUT", "pub%2Fnews", root, data="n"))[0] == 200
        assert (await kv(c, leader, "GET", "pub%2Fnews", bob))[0] == 200
        assert (await kv(c, leader, "PUT", "pub%2Fnews", bob, data="x"))[0] == 403
        assert (await kv(c, leader, "PUT", "inbox%2Fm1", bob, data="hi"))[0] == 200
        assert (await kv(c, leader, "GET", "inbox%2Fm1", bob))[0] == 403

        # Listings need read permission covering the whole requested prefix.
        status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": "pub/"}, token=bob)
        assert status == 200 and [i["key"] for i in body["items"]] == ["pub/news"]
        for prefix in ("", "pu", "inbox/"):
            status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": prefix}, token=bob)
            assert (status, body["error"]) == (403, "permission-denied"), prefix

        # A compare-and-swap reads as well as writes: write-only is not enough.
        status, body = await kv(c, leader, "PUT", "w%2Fk", wo, data="1")
        assert status == 200
        status, body = await kv(c, leader, "PUT", "w%2Fk", wo, data="2", params={"cas_version": "1"})
        assert (status, body["error"]) == (403, "permission-denied")
        status, body = await kv(c, leader, "PUT", "app-1", alice, data="b", params={"prev_value": "a"})
        assert status == 200 and body["swapped"] is True

        # The admin token counts as root for keys too.
        assert (await kv(c, leader, "GET", "app-1", ADMIN_TOKEN))[0] == 200
        # Non-root users cannot manage auth.
        status, body, _ = await c.call("GET", leader, "/v1/auth/users", token=alice)
        assert (status, body["error"]) == (403, "permission-denied")
        # As in etcd, a user reads its own record and the roles it holds, nothing else.
        follower = next(i for i in IDS if i != leader)
        for node in (leader, follower):
            status, body, _ = await c.call("GET", node, "/v1/auth/users/alice", token=alice)
            assert status == 200 and body["roles"] == ["app"], body
            status, body, _ = await c.call("GET", node, "/v1/auth/roles/app", token=alice)
            assert status == 200 and body["permissions"], body
            for path in ("/v1/auth/users/bob", "/v1/auth/roles/reader", "/v1/auth/roles/root"):
                status, body, _ = await c.call("GET", node, path, token=alice)
                assert (status, body["error"]) == (403, "permission-denied"), (path, body)
        status, body, _ = await c.call("GET", leader, "/v1/auth/users/alice")
        assert (status, body["error"]) == (401, "unauthenticated")
        status, body, _ = await c.call("GET", leader, "/v1/auth/users", token=root)
        assert status == 200 and [u["name"] for u in body["users"]] == ["alice", "bob", "root", "wo"]


@async_test
async def test_the_fast_path_does_not_bypass_auth(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader, enable=False)
        reader, writer = await _open(c, leader)  # a keep-alive connection from before
        try:
            writer.write(_request("PUT", "/v1/kv/app-fast", b"v1"))
            status, headers, _ = await _read_response(reader)
            assert status == 200 and _served_fast(headers)
            await admin(c, leader, "POST", "/v1/auth/enable")
            for method, body in (("PUT", b"v2"), ("GET", b""), ("DELETE", b"")):
                writer.write(_request(method, "/v1/kv/app-fast", body))
                status, headers, raw = await _read_response(reader)
                assert status == 401 and b'"unauthenticated"' in raw, (method, raw)
            alice = await token(c, leader, "alice", "alicepw")
            writer.write(_request("GET", "/v1/kv/app-fast", headers={"Authorization": f"Bearer {alice}"}))
            status, _, raw = await _read_response(reader)
            assert status == 200 and b'"v1"' in raw
        finally:
            writer.close()
        assert c.servers[leader].runtime.node.sm.get("app-fast") == "v1"


@async_test
async def test_a_fast_read_admitted_before_auth_was_enabled_is_judged_when_answered(tmp_path, monkeypatch):
    """The window between admitting a read (auth off: no check) and answering it after
    the node applied an enable up to the read's index: the answer is 401, as aiohttp's."""
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader, enable=False)
        await kv(c, leader, "PUT", "app-window", data="secret")
        held: list = []
        submit = FastConnection.submit

        def hold(self, request, timeout, callback):  # admitted; the node sees it later
            held.append(lambda: submit(self, request, timeout, callback))

        monkeypatch.setattr(FastConnection, "submit", hold)
        reader, writer = await _open(c, leader)
        try:
            writer.write(_request("GET", "/v1/kv/app-window"))
            for _ in range(200):
                if held:
                    break
                await asyncio.sleep(0.01)
            assert len(held) == 1
            monkeypatch.setattr(FastConnection, "submit", submit)
            await admin(c, leader, "POST", "/v1/auth/enable")
            held[0]()
            status, headers, raw = await _read_response(reader)
            assert _served_fast(headers)
            assert status == 401 and b'"unauthenticated"' in raw and b"secret" not in raw, raw
        finally:
            writer.close()


# ---------------------------------------------------------------------- tokens
@async_test
async def test_a_token_is_good_on_every_node_even_one_that_lags(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        alice = await token(c, leader, "alice", "alicepw")
        assert (await kv(c, leader, "PUT", "app-x", alice, data="1"))[0] == 200
        await c.wait_until(lambda: all(s.runtime.node.sm.get("app-x") == "1" for s in c.servers.values()))
        for node in IDS:
            status, body = await kv(c, node, "GET", "app-x", alice, params={"consistency": "stale"})
            assert (status, body["value"]) == (200, "1"), node

        # A follower cut off while a user is created: it waits for the user's revision.
        lagging = next(n for n in IDS if n != leader)
        c.servers[lagging].set_blocked(set(IDS) - {lagging})
        await admin(c, leader, "POST", "/v1/auth/users", {"name": "carol", "password": "carolpw"})
        await admin(c, leader, "PUT", "/v1/auth/users/carol/roles/app")
        carol = await token(c, leader, "carol", "carolpw")
        assert c.servers[lagging].runtime.node.sm.auth.users.get("carol") is None
        read = asyncio.ensure_future(kv(c, lagging, "GET", "app-x", carol, params={"consistency": "stale"}))
        await asyncio.sleep(0.3)
        assert not read.done()
        c.servers[lagging].set_blocked(set())
        status, body = await read
        assert (status, body["value"]) == (200, "1")


@async_test
async def test_wrong_password_bad_and_expired_tokens(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        for user, password in (("alice", "nope"), ("nobody", "alicepw"), ("", "x"), ("wo", "")):
            status, body, headers = await c.call(
                "POST", leader, "/v1/auth/token", json={"user": user, "password": password}
            )
            assert (status, body["error"]) == (401, "unauthenticated"), user
            assert (
                body["message"] == "wrong user name or password" and headers["WWW-Authenticate"] == "Bearer"
            )
        for bad in ({"user": "alice"}, {"user": 1, "password": "x"}, ["alice"]):
            status, body, _ = await c.call("POST", leader, "/v1/auth/token", json=bad)
            assert status == 400, bad
        status, body, _ = await c.call("POST", leader, "/v1/auth/token", data=b"{not json")
        assert (status, body["error"]) == (400, "bad-json")

        alice = await token(c, leader, "alice", "alicepw")
        rev = c.servers[leader].runtime.node.sm.auth.revision
        forged = mint_token(token_key(b"another cluster"), "root", rev, time.time() + 60)
        expired = mint_token(token_key(SECRET), "alice", rev, time.time() - 1)
        tampered = alice[:-3] + ("AAA" if alice[-3:] != "AAA" else "BBB")
        cases = [
            ("garbage", "invalid-token"),
            ("ck1.x.y", "invalid-token"),
            (forged, "invalid-token"),
            (tampered, "invalid-token"),
            (expired, "token-expired"),
        ]
        for tok, code in cases:
            status, body = await kv(c, leader, "GET", "app-x", tok)
            assert (status, body["error"]) == (401, code), tok
        status, body, _ = await c.call("GET", leader, "/v1/kv/app-x", headers={"Authorization": "Basic YTpi"})
        assert (status, body["error"]) == (401, "unauthenticated")


@async_test
async def test_short_token_ttl_expires(tmp_path):
    async with Cluster(tmp_path, IDS, auth={**FAST_HASH, "token_ttl": 0.5}) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        status, body, _ = await c.call(
            "POST", leader, "/v1/auth/token", json={"user": "alice", "password": "alicepw"}
        )
        alice = body["token"]
        assert body["ttl"] == 0.5
        assert (await kv(c, leader, "PUT", "app-t", alice, data="1"))[0] == 200
        await asyncio.sleep(0.6)
        status, body = await kv(c, leader, "PUT", "app-t", alice, data="2")
        assert (status, body["error"]) == (401, "token-expired")


@async_test
async def test_revocation(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        alice = await token(c, leader, "alice", "alicepw")
        bob = await token(c, leader, "bob", "bobpw")
        # A role change takes effect at once and keeps the token.
        await admin(c, leader, "DELETE", "/v1/auth/users/alice/roles/app")
        assert (await kv(c, leader, "PUT", "app-r", alice, data="1"))[0] == 403
        await admin(c, leader, "PUT", "/v1/auth/users/alice/roles/app")
        assert (await kv(c, leader, "PUT", "app-r", alice, data="1"))[0] == 200
        await admin(c, leader, "DELETE", "/v1/auth/roles/app/permissions", params={"prefix": "app"})
        assert (await kv(c, leader, "PUT", "app-r", alice, data="1"))[0] == 403
        # A new password kills the tokens issued before it.
        await admin(c, leader, "PUT", "/v1/auth/users/alice/password", {"password": "new"})
        status, body = await kv(c, leader, "GET", "app-r", alice)
        assert (status, body["error"]) == (401, "invalid-token")
        assert (
            await c.call("POST", leader, "/v1/auth/token", json={"user": "alice", "password": "alicepw"})
        )[0] == 401
        await token(c, leader, "alice", "new")
        # Deleting the user kills its tokens.
        await admin(c, leader, "DELETE", "/v1/auth/users/bob")
        status, body = await kv(c, leader, "GET", "pub%2Fx", bob)
        assert (status, body["error"]) == (401, "invalid-token")
        # Disabling auth opens everything; enabling it again kills every earlier token.
        root = await token(c, leader, "root", "rootpw")
        await admin(c, leader, "POST", "/v1/auth/disable")
        assert (await kv(c, leader, "GET", "app-r"))[0] == 200
        await admin(c, leader, "POST", "/v1/auth/enable")
        status, body = await kv(c, leader, "GET", "app-r", root)
        assert (status, body["error"]) == (401, "invalid-token")


# ---------------------------------------------------------------------- status, metrics
@async_test
async def test_status_and_metrics_access(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        bob = await token(c, leader, "bob", "bobpw")
        for path in ("/v1/status", "/v1/members"):  # default: authenticated
            assert (await c.call("GET", leader, path))[0] == 401
            assert (await c.call("GET", leader, path, token=bob))[0] == 200
            assert (await c.call("GET", leader, path, token=ADMIN_TOKEN))[0] == 200
        assert (await c.call("GET", leader, "/metrics"))[0] == 200  # default: public
    async with Cluster(
        tmp_path / "b", IDS, auth={**FAST_HASH, "status": "public", "metrics": "authenticated"}
    ) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        bob = await token(c, leader, "bob", "bobpw")
        assert (await c.call("GET", leader, "/v1/status"))[0] == 200
        status, body, _ = await c.call("GET", leader, "/metrics")
        assert (status, body["error"]) == (401, "unauthenticated")
        assert (await c.call("GET", leader, "/metrics", token=bob))[0] == 200


# ---------------------------------------------------------------------- admin routes
@async_test
async def test_admin_routes_answers_and_errors(tmp_path):
    async with Cluster(tmp_path, IDS, auth=FAST_HASH) as c:
        leader = await c.wait_leader()
        follower = next(n for n in IDS if n != leader)
        await setup_users(c, leader, enable=False)
        body = await admin(c, leader, "GET", "/v1/auth/users/alice")
        assert body == {"name": "alice", "roles": ["app"], "has_password": True, "revision": body["revision"]}
        body = await admin(c, leader, "GET", "/v1/auth/roles/reader")
        assert body["permissions"] == [
            {"prefix": "inbox/", "permission": "write"},
            {"prefix": "pub/", "permission": "read"},
        ]
        roles = await admin(c, leader, "GET", "/v1/auth/roles")
        assert [r["name"] for r in roles["roles"]] == ["app", "reader", "root", "writer"]
        users = await admin(c, leader, "GET", "/v1/auth/users")
        assert "password" not in str(users).replace("has_password", "")
        cases = [
            ("POST", "/v1/auth/users", {"name": "alice", "password": "x"}, 409, "user-exists"),
            ("POST", "/v1/auth/users", {"name": "a:b", "password": "x"}, 400, "bad-request"),
            ("PUT", "/v1/auth/users/alice/roles/a%2Fb", None, 400, "bad-request"),
            ("POST", "/v1/auth/users", {"name": "z", "password": ""}, 400, "bad-request"),
            ("POST", "/v1/auth/users", {"password": "x"}, 400, "bad-request"),
            ("GET", "/v1/auth/users/nobody", None, 404, "user-not-found"),
            ("DELETE", "/v1/auth/users/nobody", None, 404, "user-not-found"),
            ("PUT", "/v1/auth/users/alice/roles/nope", None, 404, "role-not-found"),
            ("DELETE", "/v1/auth/users/alice/roles/reader", None, 404, "role-not-granted"),
            ("POST", "/v1/auth/roles", {"name": "app"}, 409, "role-exists"),
            (
                "POST",
                "/v1/auth/roles/app/permissions",
                {"prefix": "x", "permission": "all"},
                400,
                "bad-request",
            ),
            (
                "POST",
                "/v1/auth/roles/root/permissions",
                {"prefix": "", "permission": "read"},
                409,
                "root-protected",
            ),
            ("DELETE", "/v1/auth/roles/app/permissions", None, 400, "bad-request"),
            ("DELETE", "/v1/auth/roles/nope", None, 404, "role-not-found"),
            ("PUT", "/v1/auth/users/alice/password", {}, 400, "bad-request"),
        ]
        for method, path, json, code, error in cases:
            status, body, _ = await c.call(method, leader, path, json=json, token=ADMIN_TOKEN)
            assert (status, body["error"]) == (code, error), (method, path, body)
        # Values the log could not encode (lone surrogates from JSON escapes) are refused
        # at the edge: they must not reach the log writer, whose failure halts a node.
        for path, raw in (
            ("/v1/auth/users", b'{"name": "\\udcff", "password": "x"}'),
            ("/v1/auth/roles", b'{"name": "r\\ud800"}'),
            ("/v1/auth/roles/app/permissions", b'{"prefix": "\\udcff", "permission": "read"}'),
            ("/v1/auth/token", b'{"user": "\\udcff", "password": "x"}'),
        ):
            status, body, _ = await c.call("POST", leader, path, data=raw, token=ADMIN_TOKEN)
            assert status in (400, 409), (path, body)  # the token route: 409 auth-not-enabled
        assert all(s.runtime.failure is None for s in c.servers.values())
        await admin(c, leader, "POST", "/v1/auth/roles", {"name": "still-serving"})
        # Changes go to the leader: a follower passes them on, or points there when asked.
        status, body, _ = await c.call(
            "POST",
            follower,
            "/v1/auth/roles",
            json={"name": "z"},
            token=ADMIN_TOKEN,
            headers={"X-Leader-Only": "1"},
        )
        assert (status, body["error"], body["leader_url"]) == (421, "not-leader", c.url(leader))
        status, body, _ = await c.call(
            "POST", follower, "/v1/auth/roles", json={"name": "z"}, token=ADMIN_TOKEN
        )
        assert status in (200, 201), body
        # A retry with the same request id is applied once.
        headers = {"X-Request-Id": "admin:1"}
        first = await admin(c, leader, "POST", "/v1/auth/roles", {"name": "once"}, headers=headers)
        again = await admin(c, leader, "POST", "/v1/auth/roles", {"name": "once"}, headers=headers)
        assert first["revision"] == again["revision"]  # the cached result (a new log index)
        assert c.servers[leader].runtime.node.sm.auth.revision == first["revision"]
        # A certificate-only user (password null) gets no token.
        await admin(c, leader, "POST", "/v1/auth/users", {"name": "svc", "password": None})
        await admin(c, leader, "POST", "/v1/auth/enable")
        status, _, _ = await c.call("POST", leader, "/v1/auth/token", json={"user": "svc", "password": "x"})
        assert status == 401


@async_test
async def test_auth_state_survives_a_restart_and_a_snapshot(tmp_path):
    options = {"election_timeout": 0.3, "heartbeat_interval": 0.05, "snapshot_threshold": 5}
    async with Cluster(tmp_path, IDS, auth=FAST_HASH, options=options) as c:
        leader = await c.wait_leader()
        await setup_users(c, leader)
        alice = await token(c, leader, "alice", "alicepw")
        for i in range(8):
            assert (await kv(c, leader, "PUT", f"app-{i}", alice, data="v"))[0] == 200
        node = next(n for n in IDS if n != leader)
        await c.stop_node(node)
        await c.start_node(node)
        await c.wait_until(lambda: c.servers[node].runtime.node.sm.auth.enabled)
        assert c.servers[node].runtime.node.sm.auth.users["alice"].roles == ("app",)
        await c.wait_until(lambda: c.servers[node].runtime.node.sm.get("app-7") == "v")
        status, body = await kv(c, node, "GET", "app-7", alice, params={"consistency": "stale"})
        assert (status, body["value"]) == (200, "v")


# ---------------------------------------------------------------------- client certificates
def _ca_and_leaf(
    directory: Path, ca_name: str, leaves: list[str]
) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A CA (self-signed) and client certificates it signed, one per CN in ``leaves``."""
    from tests.server.test_transport_tls import make_certificate

    ca_cert, ca_key = make_certificate(directory, ca_name)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not available")
    out = {}
    for serial, name in enumerate(leaves, start=2):
        cert, key, csr = (directory / f"{ca_name}-{name}.{ext}" for ext in ("crt", "key", "csr"))
        subprocess.run(
            [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        subprocess.run(
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-set_serial", str(serial), "-days", "2", "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        out[name] = (cert, key)
    return ca_cert, out


@async_test
async def test_a_verified_client_certificate_names_the_user(tmp_path):
    from tests.server.test_transport_tls import make_certificate

    server_cert, server_key = make_certificate(tmp_path, "cluster")
    client_ca, leaves = _ca_and_leaf(tmp_path, "clients", ["alice", "mallory"])
    _, outsiders = _ca_and_leaf(tmp_path, "other", ["alice"])
    tls = {"cert": str(server_cert), "key": str(server_key), "ca": str(server_cert), "client_api": True}
    auth = {**FAST_HASH, "client_ca": str(client_ca), "client_cert": "optional"}
    async with Cluster(tmp_path, IDS, tls=tls, auth=auth) as c:
        c.url = lambda node_id: c.servers[node_id].config.client_url  # type: ignore[method-assign]
        c.wire()
        leader = await c.wait_leader()
        base = c.url(leader)

        def context(cert: tuple[Path, Path] | None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(server_cert))
            if cert is not None:
                ctx.load_cert_chain(*cert)
            return ctx

        async def call(cert, method, path, **kwargs):
            connector = aiohttp.TCPConnector(ssl=context(cert))
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.request(method, base + path, **kwargs) as resp,
            ):
                return resp.status, await resp.json()

        admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for path, body in (
            ("/v1/auth/users", {"name": "root", "password": "rootpw"}),
            ("/v1/auth/users", {"name": "alice", "password": None}),
            ("/v1/auth/roles", {"name": "app"}),
            ("/v1/auth/roles/app/permissions", {"prefix": "app", "permission": "readwrite"}),
        ):
            assert (await call(None, "POST", path, json=body, headers=admin_headers))[0] == 200
        for path in ("/v1/auth/users/root/roles/root", "/v1/auth/users/alice/roles/app"):
            assert (await call(None, "PUT", path, headers=admin_headers))[0] == 200
        assert (await call(None, "POST", "/v1/auth/enable", headers=admin_headers))[0] == 200

        assert (await call(leaves["alice"], "PUT", "/v1/kv/app-cert", data=b"v"))[0] == 200
        status, body = await call(leaves["alice"], "GET", "/v1/kv/app-cert")
        assert (status, body["value"]) == (200, "v")
        status, body = await call(leaves["alice"], "PUT", "/v1/kv/other", data=b"v")
        assert (status, body["error"]) == (403, "permission-denied")
        status, body = await call(leaves["mallory"], "GET", "/v1/kv/app-cert")  # signed, but no user
        assert (status, body["error"]) == (401, "unauthenticated")
        status, body = await call(None, "GET", "/v1/kv/app-cert")  # optional: no cert, no token
        assert (status, body["error"]) == (401, "unauthenticated")
        # A certificate from another CA is refused by TLS itself.
        with pytest.raises(aiohttp.ClientError):
            await call(outsiders["alice"], "GET", "/v1/kv/app-cert")


@async_test
async def test_multipaxos_followers_forward_auth_changes_and_check_tokens(tmp_path):
    from tests.server.test_http_multipaxos import mp_cluster, wait_leader

    async with mp_cluster(tmp_path, auth=FAST_HASH) as c:
        leader = await wait_leader(c)
        follower = next(n for n in IDS if n != leader)
        await setup_users(c, follower)  # every change forwarded to the leader
        alice = await token(c, follower, "alice", "alicepw")
        for node in IDS:
            assert (await kv(c, node, "PUT", f"app-{node}", alice, data=node))[0] == 200, node
            status, body = await kv(c, node, "GET", f"app-{node}", alice)
            assert (status, body["value"]) == (200, node)
            assert (await kv(c, node, "PUT", "other", alice, data="x"))[0] == 403
            assert (await kv(c, node, "GET", f"app-{node}"))[0] == 401


@async_test
async def test_client_cert_required_refuses_connections_without_one(tmp_path):
    from tests.server.test_transport_tls import make_certificate

    server_cert, server_key = make_certificate(tmp_path, "cluster")
    client_ca, leaves = _ca_and_leaf(tmp_path, "clients", ["alice"])
    tls = {"cert": str(server_cert), "key": str(server_key), "ca": str(server_cert), "client_api": True}
    auth = {**FAST_HASH, "client_ca": str(client_ca)}  # client_cert = "required" by default
    async with Cluster(tmp_path, ["n1"], tls=tls, auth=auth) as c:
        url = c.servers["n1"].config.client_url
        await c.wait_leader()
        plain = ssl.create_default_context(cafile=str(server_cert))
        with pytest.raises(aiohttp.ClientError):
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=plain)) as http,
                http.get(url + "/v1/auth/status") as resp,
            ):
                await resp.read()
        with_cert = ssl.create_default_context(cafile=str(server_cert))
        with_cert.load_cert_chain(*leaves["alice"])
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=with_cert)) as http,
            http.get(url + "/v1/auth/status") as resp,
        ):
            assert resp.status == 200
