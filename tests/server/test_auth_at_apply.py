"""Client auth judged where a write is applied (auth_api.py, statemachines/auth.py), on
in-process 3-node clusters whose followers forward writes (Raft, Multi-Paxos).

A follower that has not yet applied a change of auth (``enable``, a revoked role) still
admits a write at its edge by its own stale state, and forwards it; the node that applies
it judges it by the log's state and refuses it, with the edge's status and code.  The
follower is made to lag by dropping the leader's replication messages to it (its
heartbeats still arrive, so it neither campaigns nor learns the entries)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test
from tests.server.test_fast_http import _exchange, _request, _served_fast
from tests.server.test_http_auth import FAST_HASH, admin, kv, setup_users, token
from tests.server.test_http_multipaxos import OPTIONS as MP_OPTIONS
from tests.server.test_http_multipaxos import wait_leader as mp_wait_leader

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]
# What carries log entries from the leader to a follower, per protocol.
REPLICATION = {
    "raft": {"AppendEntries", "InstallSnapshot"},
    "multipaxos": {"Accept", "Learn", "InstallSnapshot"},
}
PROTOCOLS = sorted(REPLICATION)


def cluster(tmp_path: Any, protocol: str) -> Cluster:
    extra: dict[str, Any] = {"options": dict(MP_OPTIONS)} if protocol == "multipaxos" else {}
    return Cluster(tmp_path, IDS, transport="loopback", protocol=protocol, auth=FAST_HASH, **extra)


async def leader_of(c: Cluster, protocol: str) -> str:
    return await (mp_wait_leader(c) if protocol == "multipaxos" else c.wait_leader())


@contextmanager
def lagging(c: Cluster, protocol: str, leader: str, follower: str) -> Iterator[None]:
    """While inside, ``follower`` receives no log entries from ``leader``."""
    transport = c.network.transports[leader]  # type: ignore[union-attr]
    send = transport.send
    kinds = REPLICATION[protocol]

    def filtered(dst: str, msg: Any) -> None:
        if dst == follower and type(msg).__name__ in kinds:
            return
        send(dst, msg)

    transport.send = filtered  # type: ignore[method-assign]
    try:
        yield
    finally:
        transport.send = send  # type: ignore[method-assign]


def auth_enabled(c: Cluster, node: str) -> bool:
    return bool(c.servers[node].runtime.node.sm.auth.enabled)


def value(c: Cluster, node: str, key: str) -> Any:
    return c.servers[node].runtime.node.sm.get(key)


async def settled(c: Cluster, protocol: str, key: str) -> None:
    """Every node applied the same value of ``key`` (the refused write changed nothing anywhere)."""
    await c.wait_until(lambda: len({repr(value(c, i, key)) for i in IDS}) == 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_a_write_without_a_token_through_a_follower_that_missed_enable_is_refused(tmp_path, protocol):
    async with cluster(tmp_path, protocol) as c:
        leader = await leader_of(c, protocol)
        follower = next(i for i in IDS if i != leader)
        await setup_users(c, leader, enable=False)
        assert (await kv(c, follower, "PUT", "app/x", data="1"))[0] == 200
        await settled(c, protocol, "app/x")
        with lagging(c, protocol, leader, follower):
            await admin(c, leader, "POST", "/v1/auth/enable")
            assert not auth_enabled(c, follower)  # its edge still believes auth is off
            write = asyncio.create_task(kv(c, follower, "PUT", "app/x", data="anonymous"))
            # The admin token is carried too (off the fast path, which reads no credentials).
            # Raw bytes the fast path would serve but for the credentials.
            raw = _request("PUT", "/v1/kv/y", b"admin", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
            by_admin = asyncio.create_task(_exchange(c, follower, raw))
            await asyncio.sleep(0.3)  # forwarded; for Raft, the follower waits for the entries
            assert not auth_enabled(c, follower)
        status, body = await write
        assert (status, body["error"], body["outcome"]) == (401, "unauthenticated", "not-applied"), body
        status, headers, raw_body = await by_admin
        assert status == 200 and not _served_fast(headers), raw_body
        await c.wait_until(lambda: auth_enabled(c, follower))
        await settled(c, protocol, "app/x")
        assert value(c, leader, "app/x") == "1"
        # With a token the same follower takes it.
        tok = await token(c, follower, "alice", "alicepw")
        status, body = await kv(c, follower, "PUT", "app/x", tok, data="2")
        assert status == 200 and body["version"] == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
@async_test
async def test_a_write_through_a_follower_that_missed_a_revoke_is_refused(tmp_path, protocol):
    async with cluster(tmp_path, protocol) as c:
        leader = await leader_of(c, protocol)
        follower = next(i for i in IDS if i != leader)
        await setup_users(c, leader)
        tok = await token(c, follower, "alice", "alicepw")
        assert (await kv(c, follower, "PUT", "app/x", tok, data="1"))[0] == 200
        await settled(c, protocol, "app/x")
        with lagging(c, protocol, leader, follower):
            await admin(c, leader, "DELETE", "/v1/auth/users/alice/roles/app")
            # The follower's edge still sees the role and lets the write by.
            assert "app" in c.servers[follower].runtime.node.sm.auth.users["alice"].roles
            write = asyncio.create_task(kv(c, follower, "PUT", "app/x", tok, data="2"))
            await asyncio.sleep(0.3)
        status, body = await write
        assert (status, body["error"], body["outcome"]) == (403, "permission-denied", "not-applied"), body
        await settled(c, protocol, "app/x")
        assert value(c, leader, "app/x") == "1"
        # Once the follower caught up its own edge refuses, with the edge's message.
        auth = lambda: c.servers[follower].runtime.node.sm.auth  # noqa: E731
        await c.wait_until(lambda: "app" not in auth().users["alice"].roles)
        status, body = await kv(c, follower, "PUT", "app/x", tok, data="3")
        assert (status, body["error"]) == (403, "permission-denied")
        assert body["message"] == "user 'alice' may not write 'app/x'"


@async_test
async def test_a_linearizable_read_is_judged_after_its_read_index(tmp_path):
    """A Raft follower serves a linearizable read itself, after applying up to the
    leader's commit index: the revoke committed before the read counts."""
    async with cluster(tmp_path, "raft") as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        await setup_users(c, leader)
        tok = await token(c, follower, "alice", "alicepw")
        assert (await kv(c, leader, "PUT", "app/x", tok, data="1"))[0] == 200
        await settled(c, "raft", "app/x")
        with lagging(c, "raft", leader, follower):
            await admin(c, leader, "DELETE", "/v1/auth/users/alice/roles/app")
            read = asyncio.create_task(
                kv(c, follower, "GET", "app/x", tok, params={"consistency": "linearizable"})
            )
            await asyncio.sleep(0.3)
            assert not read.done()  # waiting to apply up to the read index
        status, body = await read
        assert (status, body["error"]) == (403, "permission-denied"), body


@async_test
async def test_the_admin_token_still_passes_where_the_write_is_applied(tmp_path):
    async with cluster(tmp_path, "raft") as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        await setup_users(c, leader)
        status, body = await kv(c, follower, "PUT", "any/key", ADMIN_TOKEN, data="v")
        assert status == 200 and body["version"] == 1


PREVIOUS_RELEASE = Path(__file__).parent.parent / "data" / "prev_release_auth"


@async_test
async def test_a_log_written_by_the_previous_release_replays_with_every_write(tmp_path):
    """Its commands carry no principal (they were judged at that release's edge): replayed
    with auth enabled in the log, every write still applies, and the session it left
    still answers a retry; new writes are judged where they are applied."""
    shutil.copytree(PREVIOUS_RELEASE / "n1", tmp_path / "n1")
    async with Cluster(tmp_path, ["n1"], transport="loopback", auth=FAST_HASH) as c:
        await c.wait_leader()
        sm = c.servers["n1"].runtime.node.sm
        assert sm.auth.enabled and sorted(sm.auth.users) == ["alice", "root"]
        assert sm.items() == {"app/x": "2", "app/y": "by admin", "before": "auth off", "other": "root"}
        tok = await token(c, "n1", "alice", "alicepw")
        headers = {"X-Request-Id": "alice-1:1"}
        status, body = await kv(c, "n1", "PUT", "app/x", tok, data="2", headers=headers)
        assert status == 200 and body["version"] == 2  # the cached answer of the old write
        assert (await kv(c, "n1", "PUT", "app/x", data="3"))[0] == 401
        status, body = await kv(c, "n1", "PUT", "app/x", tok, data="3")
        assert status == 200 and body["version"] == 3


@async_test
async def test_an_auth_read_through_a_follower_that_missed_enable_is_judged_after_its_read_index(tmp_path):
    """Without an admin token auth management is open while auth is off (as etcd): a
    follower that has not applied ``enable`` lets the listing in, and refuses it once its
    read index brought the ``enable``; a write of auth is refused where it is applied."""
    c = Cluster(tmp_path, IDS, transport="loopback", auth=FAST_HASH, admin_token_file=None)
    async with c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        for method, path, body in (
            ("POST", "/v1/auth/users", {"name": "root", "password": "rootpw"}),
            ("PUT", "/v1/auth/users/root/roles/root", None),
        ):
            assert (await c.call(method, leader, path, json=body))[0] == 200
        with lagging(c, "raft", leader, follower):
            assert (await c.call("POST", leader, "/v1/auth/enable"))[0] == 200
            assert not auth_enabled(c, follower)
            listing = asyncio.create_task(c.call("GET", follower, "/v1/auth/users"))
            user = {"name": "mallory", "password": "pw"}
            add = asyncio.create_task(c.call("POST", follower, "/v1/auth/users", json=user))
            await asyncio.sleep(0.3)
            assert not listing.done() and not add.done()
        status, answer, _ = await listing
        assert (status, answer["error"]) == (401, "unauthenticated"), answer
        status, answer, _ = await add
        assert (status, answer["error"]) == (401, "unauthenticated"), answer
        assert "mallory" not in c.servers[leader].runtime.node.sm.auth.users
