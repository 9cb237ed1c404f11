"""The client's credentials (user/password, token, admin token) against an in-process
cluster with client auth: token fetch, renewal after expiry and revocation, auth turned
on under a running client, and the auth administration methods."""

from __future__ import annotations

import asyncio

import pytest

from consensuskit.client import AsyncClient, Client, Unauthorized
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]


async def _setup(admin: AsyncClient, *, enable: bool = True) -> None:
    await admin.add_user("root", "rootpw")
    await admin.grant_role("root", "root")
    await admin.add_role("app")
    await admin.grant_permission("app", "app/", "readwrite")
    await admin.add_user("alice", "alicepw")
    await admin.grant_role("alice", "app")
    if enable:
        await admin.auth_enable()


def _urls(c: Cluster) -> list[str]:
    return [c.url(i) for i in IDS]


@async_test
async def test_a_user_client_fetches_renews_and_loses_its_token(tmp_path):
    auth = {"password_iterations": 1000, "token_ttl": 0.5}
    async with Cluster(tmp_path, IDS, auth=auth) as c:
        await c.wait_leader()
        async with (
            AsyncClient(_urls(c), admin_token=ADMIN_TOKEN) as admin,
            AsyncClient(_urls(c), user="alice", password="alicepw") as alice,
        ):
            await _setup(admin)
            assert (await alice.put("app/x", "1")).version == 1
            first = alice._token
            assert first is not None
            await asyncio.sleep(0.6)  # expired: renewed before (or after a 401) the next request
            assert (await alice.get("app/x")).value == "1"
            assert alice._token != first
            with pytest.raises(Unauthorized) as info:
                await alice.put("other", "1")
            assert info.value.code == "permission-denied" and info.value.status == 403
            # A new password: the client's old one no longer gets a token.
            await admin.set_password("alice", "changed")
            with pytest.raises(Unauthorized) as info:
                await alice.get("app/x")
            assert info.value.code == "unauthenticated"
            # Auth administration needs the root role.
            with pytest.raises(Unauthorized):
                await alice.users()
        async with AsyncClient(_urls(c), user="root", password="rootpw") as root:
            users = await root.users()
            assert [u["name"] for u in users["users"]] == ["alice", "root"]
            roles = await root.roles()
            assert {r["name"] for r in roles["roles"]} == {"app", "root"}
            assert (await root.auth_status())["enabled"] is True
            await root.revoke_permission("app", "app/")
            await root.delete_role("app")
            await root.delete_user("alice")
            assert [u["name"] for u in (await root.users())["users"]] == ["root"]


# Known defect (issue 18's note): a Raft follower now passes writes on to the leader but
# judges client auth by its own applied state, so right after `auth enable` a follower
# that has not applied it yet still takes a write without a token.  A catch-up barrier
# before the check fixed this but broke six edge and forwarding suites; it was reverted
# for lack of time.  Not strict: whether the follower lags is a matter of timing.
@async_test
async def test_a_user_client_works_before_and_after_auth_is_enabled(tmp_path):
    async with Cluster(tmp_path, IDS, auth={"password_iterations": 1000}) as c:
        await c.wait_leader()
        async with (
            AsyncClient(_urls(c), admin_token=ADMIN_TOKEN) as admin,
            AsyncClient(_urls(c), user="alice", password="alicepw") as alice,
        ):
            await _setup(admin, enable=False)
            assert (await alice.put("app/x", "1")).version == 1  # auth off: no token
            assert alice._token is None
            await admin.auth_enable()
            assert (await alice.put("app/x", "2")).version == 2  # a 401, a token, the retry
            assert alice._token is not None
            token = await alice.fetch_token()
            async with AsyncClient(_urls(c), token=token) as by_token:
                assert (await by_token.get("app/x")).value == "2"
            async with AsyncClient(_urls(c)) as anonymous:
                with pytest.raises(Unauthorized) as info:
                    await anonymous.get("app/x")
                assert info.value.status == 401


def test_credentials_are_checked_by_the_constructor():
    with pytest.raises(ValueError, match="together"):
        Client("127.0.0.1:1", user="alice")
    with pytest.raises(ValueError, match="not both"):
        AsyncClient("127.0.0.1:1", user="a", password="b", token="t")
