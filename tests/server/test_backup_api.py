"""``GET /v1/backup`` and ``POST /v1/restore`` (server/backup_api.py) on in-process
clusters: a backup holds every acknowledged write, keys, versions and client sessions
come back in a new cluster (of another protocol too), and a restore is refused, changing
nothing, into a cluster that holds data, for a corrupt file or another service's."""

from __future__ import annotations

from typing import Any

import pytest

from consensuskit.core.messages import decode
from consensuskit.server import backup_file
from consensuskit.statemachines.kv import KVStateMachine
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test
from tests.server.test_http_multipaxos import mp_cluster
from tests.server.test_http_multipaxos import wait_leader as mp_wait_leader

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]


async def raw_call(c: Cluster, method: str, node: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    assert c.http is not None
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with c.http.request(method, c.url(node) + path, headers=headers, **kwargs) as resp:
        return resp.status, await resp.read(), resp.headers


async def take_backup(c: Cluster, node: str) -> bytes:
    status, body, headers = await raw_call(c, "GET", node, "/v1/backup")
    assert status == 200, body
    assert headers["Content-Type"] == "application/octet-stream"
    return body


def restored_items(state: bytes) -> dict[str, Any]:
    """The keys and values of an encoded kv snapshot, restored off any cluster."""
    machine = KVStateMachine()
    machine.restore(decode(state))
    return machine.items()


async def values(c: Cluster, node: str, prefix: str = "") -> dict[str, tuple[str, int]]:
    status, body, _ = await c.call("GET", node, f"/v1/kv?prefix={prefix}")
    assert status == 200, body
    return {item["key"]: (item["value"], item["version"]) for item in body["items"]}


@async_test
async def test_a_backup_from_a_follower_holds_every_acknowledged_write_and_restores_elsewhere(tmp_path):
    async with Cluster(tmp_path / "a", IDS) as c:
        leader = await c.wait_leader()
        follower = next(n for n in IDS if n != leader)
        for i in range(20):
            status, _, _ = await c.call("PUT", leader, f"/v1/kv/k{i % 7}", data=f"v{i}")
            assert status == 200
        # A session's write: after the restore its retry must get the first answer.
        status, first, _ = await c.call(
            "PUT", leader, "/v1/kv/once", data="1", headers={"X-Request-Id": "app:1"}
        )
        assert status == 200
        expected = await values(c, leader)
        # Asked of a follower right after the leader acknowledged: still in it.
        data = await take_backup(c, follower)
    backup = backup_file.parse(data)
    assert backup.header["service"] == "kv" and backup.header["protocol"] == "raft"
    assert backup.header["node"] == follower and backup.header["index"] > 20

    async with Cluster(tmp_path / "b", IDS) as c:
        leader = await c.wait_leader()
        restore_id = {"X-Request-Id": "ops:1"}
        status, body, _ = await c.call(
            "POST", leader, "/v1/restore", data=data, token=ADMIN_TOKEN, headers=restore_id
        )
        assert status == 200, body
        assert body["restored"] == len(expected) and body["from"]["node"] == follower
        # Its answer lost, the client retries: the first answer, not "not-empty".
        status, retried, _ = await c.call(
            "POST", leader, "/v1/restore", data=data, token=ADMIN_TOKEN, headers=restore_id
        )
        assert status == 200 and {**retried, "index": None} == {**body, "index": None}
        for node in IDS:
            assert await values(c, node) == expected  # values and versions alike
        status, again, _ = await c.call(
            "PUT", leader, "/v1/kv/once", data="1", headers={"X-Request-Id": "app:1"}
        )
        # The session came back: the retry gets the first answer (at its own log index).
        assert status == 200 and {**again, "index": None} == {**first, "index": None}
        assert (await values(c, leader, "once"))["once"] == ("1", 1)
        # A second restore: the cluster holds data now, refused, nothing changed.
        status, body, _ = await c.call("POST", leader, "/v1/restore", data=data, token=ADMIN_TOKEN)
        assert (status, body["error"], body["outcome"]) == (409, "not-empty", "not-applied")


@async_test
async def test_a_kv_backup_of_raft_restores_into_multipaxos(tmp_path):
    async with Cluster(tmp_path / "a", IDS) as c:
        leader = await c.wait_leader()
        for i in range(5):
            await c.call("PUT", leader, f"/v1/kv/x{i}", data=str(i))
        data = await take_backup(c, leader)
    async with mp_cluster(tmp_path / "b") as c:
        leader = await mp_wait_leader(c)
        follower = next(n for n in IDS if n != leader)
        status, body, _ = await c.call("POST", follower, "/v1/restore", data=data, token=ADMIN_TOKEN)
        assert status == 200, body
        assert body["restored"] == 5
        assert await values(c, leader) == {f"x{i}": (str(i), 1) for i in range(5)}
        # A Multi-Paxos follower passes reads to its leader: its backup is the leader's.
        again = backup_file.parse(await take_backup(c, follower))
        assert again.header["protocol"] == "multipaxos"
        assert restored_items(bytes(again.state)) == restored_items(bytes(backup_file.parse(data).state))


@async_test
async def test_bad_backups_are_refused_and_change_nothing(tmp_path):
    async with Cluster(tmp_path / "a", IDS) as c:
        leader = await c.wait_leader()
        await c.call("PUT", leader, "/v1/kv/a", data="1")
        data = await take_backup(c, leader)
    async with Cluster(tmp_path / "b", IDS) as c:
        leader = await c.wait_leader()
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x01
        cases = {
            "truncated": (data[:-5], "checksum mismatch"),
            "flipped": (bytes(flipped), "checksum mismatch"),
            "not a backup": (b'{"json": true}' * 4, "not a consensuskit backup"),
            "empty": (b"", "shorter than any backup"),
        }
        for name, (body_bytes, message) in cases.items():
            status, body, _ = await c.call("POST", leader, "/v1/restore", data=body_bytes, token=ADMIN_TOKEN)
            assert (status, body["error"]) == (400, "bad-backup"), name
            assert message in body["message"], (name, body)
        # Another service's backup: the header says so before anything is proposed.
        other = backup_file.parse(data)
        header = {k: v for k, v in other.header.items() if k != "state_bytes"}
        etcd = backup_file.build({**header, "service": "etcd"}, bytes(other.state))
        status, body, _ = await c.call("POST", leader, "/v1/restore", data=etcd, token=ADMIN_TOKEN)
        assert (status, body["error"]) == (400, "bad-backup")
        assert "service etcd cannot be restored into service kv" in body["message"]
        # A state its service's restore refuses, with a valid file around it.
        junk = backup_file.build(header, b"\x02\x93\x01\x02\x03")
        status, body, _ = await c.call("POST", leader, "/v1/restore", data=junk, token=ADMIN_TOKEN)
        assert (status, body["error"], body["outcome"]) == (400, "bad-backup", "not-applied")
        assert await values(c, leader) == {}
        # The node is fine: the real backup restores after all that.
        status, body, _ = await c.call("POST", leader, "/v1/restore", data=data, token=ADMIN_TOKEN)
        assert status == 200 and body["restored"] == 1


@async_test
async def test_backup_and_restore_need_the_admin_token(tmp_path):
    async with Cluster(tmp_path, IDS) as c:
        leader = await c.wait_leader()
        for method, path in (("GET", "/v1/backup"), ("POST", "/v1/restore")):
            status, body, _ = await c.call(method, leader, path)
            assert (status, body["error"]) == (401, "unauthorized")
            status, body, _ = await c.call(method, leader, path, token="wrong")
            assert (status, body["error"]) == (403, "forbidden")


@async_test
async def test_a_restore_larger_than_the_buffer_limit_is_413(tmp_path):
    async with Cluster(tmp_path, IDS, max_buffered_bytes=1 << 20) as c:
        leader = await c.wait_leader()
        status, body, _ = await c.call(
            "POST", leader, "/v1/restore", data=b"\0" * (2 << 20), token=ADMIN_TOKEN
        )
        assert (status, body["error"]) == (413, "too-large"), body
        assert "over max_buffered_bytes" in body["message"]
        status, _, _ = await c.call("PUT", leader, "/v1/kv/still", data="fine")
        assert status == 200
