"""etcd's Cluster service and MoveLeader (services/etcd_cluster.py) on an in-process etcd
cluster, through the gateway's routes (the same servicers as gRPC): members add as
learners, are promoted, moved to, updated and removed, from a follower as from the
leader, with etcd's texts for every refusal; etcdctl's own walk-through is in
tests/services/test_etcd_clients.py."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from consensuskit.server.config import PeerInfo
from consensuskit.server.http_api import ACTIVE_WITHIN
from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]
FAILED_PRECONDITION, NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE = 9, 5, 3, 14


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def peer_url(c: Cluster, node: str) -> str:
    return f"http://127.0.0.1:{c.servers[node].peer_port}"


async def cluster_call(c: Cluster, node: str, what: str, body: dict[str, Any]) -> tuple[int, Any]:
    path = "/v3/maintenance/transfer-leadership" if what == "move" else f"/v3/cluster/member/{what}"
    status, answer, _ = await c.call("POST", node, path, json=body)
    return status, answer


def by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in answer["members"]}


async def members(c: Cluster, node: str) -> dict[str, dict[str, Any]]:
    status, answer = await cluster_call(c, node, "list", {})
    assert status == 200, answer
    return by_name(answer)


@async_test
async def test_members_are_added_promoted_moved_to_updated_and_removed(tmp_path):
    ids = [*IDS, "n4"]
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        listed = await members(c, follower)
        assert sorted(listed) == IDS and not any(m.get("isLearner") for m in listed.values())
        assert listed[leader]["peerURLs"] == [peer_url(c, leader)]
        # A peer URL no node has: etcd's request names no node, so the refusal says how.
        status, answer = await cluster_call(c, follower, "add", {"peerURLs": ["http://127.0.0.1:9"]})
        assert (status, answer["code"]) == (400, FAILED_PRECONDITION)
        assert "consensuskit member add ID --peer-address" in answer["message"]
        status, answer = await cluster_call(c, follower, "add", {"peerURLs": ["not a url"]})
        assert (answer["code"], answer["message"]) == (
            INVALID_ARGUMENT,
            "etcdserver: given member URLs are invalid",
        )
        status, answer = await cluster_call(c, follower, "add", {"peerURLs": [peer_url(c, leader)]})
        assert (answer["code"], answer["message"]) == (
            FAILED_PRECONDITION,
            "etcdserver: Peer URLs already exists",
        )

        # n4 is in every node's [peers]: a follower adds it as a learner (at the leader).
        c.ids = ids
        n4 = await c.start_node("n4", members=IDS)
        status, answer = await cluster_call(
            c, follower, "add", {"peerURLs": [peer_url(c, "n4")], "isLearner": True}
        )
        assert status == 200, answer
        assert answer["member"]["name"] == "n4" and answer["member"]["isLearner"] is True
        assert answer["member"]["peerURLs"] == [peer_url(c, "n4")]
        assert by_name(answer)["n4"]["isLearner"] is True and len(answer["members"]) == 4
        n4_id = answer["member"]["ID"]
        status, answer = await cluster_call(c, leader, "add", {"peerURLs": [peer_url(c, "n4")]})
        assert answer["message"] == "etcdserver: Peer URLs already exists"

        # Not promoted while it lags the leader (stopped, while 30 writes go by) ...
        await c.stop_node("n4")
        for i in range(30):
            status, _, _ = await c.call(
                "POST", leader, "/v3/kv/put", json={"key": b64(f"k{i}"), "value": b64("v")}
            )
            assert status == 200
        status, answer = await cluster_call(c, follower, "promote", {"ID": n4_id})
        assert (answer["code"], answer["message"]) == (
            FAILED_PRECONDITION,
            "etcdserver: can only promote a learner member which is in sync with leader",
        )
        # ... but once in sync; a voter cannot be promoted again.
        n4 = await c.start_node("n4", members=IDS)
        lead = c.servers[leader].runtime.node
        index = lead.log_position().last_index
        await c.wait_until(lambda: n4.runtime.node.last_applied >= index)
        # In sync as the leader sees it (its progress of n4, from n4's next answer): on a
        # loaded machine the leader once heard of it after n4 had applied.
        await c.wait_until(lambda: lead.progress["n4"].match >= index)
        status, answer = await cluster_call(c, follower, "promote", {"ID": n4_id})
        assert status == 200 and by_name(answer)["n4"].get("isLearner", False) is False, answer
        status, answer = await cluster_call(c, follower, "promote", {"ID": n4_id})
        assert (answer["code"], answer["message"]) == (
            FAILED_PRECONDITION,
            "etcdserver: can only promote a learner member",
        )

        # MoveLeader: the leader only; a target that is not a voter is a bad transferee.
        status, answer = await cluster_call(c, follower, "move", {"targetID": n4_id})
        assert (answer["code"], answer["message"]) == (FAILED_PRECONDITION, "etcdserver: not leader")
        status, answer = await cluster_call(c, leader, "move", {"targetID": "12345"})
        assert (answer["code"], answer["message"]) == (
            FAILED_PRECONDITION,
            "etcdserver: bad leader transferee",
        )
        status, answer = await cluster_call(c, leader, "move", {"targetID": n4_id})
        assert status == 200, answer
        assert await c.wait_leader() == "n4"

        status, answer = await cluster_call(c, "n4", "move", {"targetID": listed[leader]["ID"]})
        assert status == 200, answer
        await c.wait_until(lambda: c.leaders() == [leader])

        # MemberUpdate records the new peer URL in every node's directory (a follower's
        # call, run at the leader); one no node has is refused.
        status, answer = await cluster_call(
            c, follower, "update", {"ID": n4_id, "peerURLs": [peer_url(c, leader)]}
        )
        assert answer["message"] == "etcdserver: Peer URLs already exists"
        status, answer = await cluster_call(
            c, follower, "update", {"ID": n4_id, "peerURLs": ["http://127.0.0.1:1"]}
        )
        assert status == 200 and by_name(answer)["n4"]["peerURLs"] == ["http://127.0.0.1:1"], answer
        await c.wait_until(lambda: all(c.servers[i].directory()["n4"].peer_address[1] == 1 for i in IDS))
        status, answer = await cluster_call(
            c, follower, "update", {"ID": n4_id, "peerURLs": [peer_url(c, "n4")]}
        )
        assert status == 200, answer
        await c.wait_until(
            lambda: all(c.servers[i].directory()["n4"].peer_address[1] == n4.peer_port for i in IDS)
        )
        status, answer = await cluster_call(
            c, follower, "update", {"ID": 77, "peerURLs": [peer_url(c, "n4")]}
        )
        assert (status, answer["message"]) == (404, "etcdserver: member not found")

        # Removed by its ID; then it is not found.
        status, answer = await cluster_call(c, follower, "remove", {"ID": n4_id})
        assert status == 200 and sorted(by_name(answer)) == IDS, answer
        status, answer = await cluster_call(c, follower, "remove", {"ID": n4_id})
        assert (status, answer["code"], answer["message"]) == (404, NOT_FOUND, "etcdserver: member not found")
        status, answer = await cluster_call(c, follower, "promote", {"ID": n4_id})
        assert answer["message"] == "etcdserver: member not found"


@async_test
async def test_a_node_added_with_its_addresses_is_listed_by_every_node(tmp_path):
    """A node no [peers] names, added with ``consensuskit member add --peer-address``:
    every node's MemberList shows its peer URL (statemachines/peers.py)."""
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        n4 = await c.start_node("n4", wire=False, members=IDS)
        n4.set_directory(
            {
                i: PeerInfo(peer_address=("127.0.0.1", c.servers[i].peer_port), client_url=c.url(i))
                for i in IDS
            }
        )
        leader = await c.wait_leader()
        from tests.server.runtime_harness import ADMIN_TOKEN

        body = {
            "id": "n4",
            "voter": False,
            "peer_address": f"127.0.0.1:{n4.peer_port}",
            "client_url": c.url("n4"),
        }
        status, answer, _ = await c.call("POST", leader, "/v1/members", json=body, token=ADMIN_TOKEN)
        assert status == 200, answer
        for node in IDS:
            await c.wait_until(lambda node=node: "n4" in c.servers[node].directory())
            assert (await members(c, node))["n4"]["peerURLs"] == [peer_url(c, "n4")]
        # And etcd's MemberAdd now finds it by its peer URL (already a member).
        status, answer = await cluster_call(c, leader, "add", {"peerURLs": [peer_url(c, "n4")]})
        assert answer["message"] == "etcdserver: Peer URLs already exists"


@async_test
async def test_changes_that_would_leave_too_few_members_up_get_etcds_strict_refusals(tmp_path):
    """etcd's --strict-reconfig-check (on by default): with a voter down, adding a voter
    or removing a live one is refused with etcd's texts, and nothing changes."""
    ids = [*IDS, "n4"]
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        c.ids = ids
        await c.start_node("n4", members=IDS)
        leader = await c.wait_leader()
        down, other = (i for i in IDS if i != leader)
        before = await members(c, leader)
        n4_url = peer_url(c, "n4")
        await c.stop_node(down)
        await c.stop_node("n4")
        await asyncio.sleep(ACTIVE_WITHIN + 0.3)
        status, answer = await cluster_call(c, other, "add", {"peerURLs": [n4_url]})
        assert (answer["code"], answer["message"]) == (
            FAILED_PRECONDITION,
            "etcdserver: re-configuration failed due to not enough started members",
        ), answer
        status, answer = await cluster_call(c, leader, "remove", {"ID": str(before[other]["ID"])})
        assert (status, answer["code"], answer["message"]) == (
            503,
            UNAVAILABLE,
            "etcdserver: unhealthy cluster",
        ), answer
        assert sorted(await members(c, leader)) == IDS
        status, answer = await cluster_call(c, leader, "remove", {"ID": str(before[down]["ID"])})
        assert status == 200 and sorted(by_name(answer)) == sorted([leader, other]), answer


@async_test
async def test_a_linearizable_member_list_waits_for_a_read_barrier(tmp_path):
    """MemberList's ``linearizable`` (etcd's linearizableReadNotify): a follower cut off
    from the others cannot confirm its view, so it answers with an error, not a list that
    may miss a committed change; the default (serializable) list is its own view."""
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        follower = next(i for i in IDS if i != leader)
        status, answer = await cluster_call(c, follower, "list", {"linearizable": True})
        assert status == 200 and sorted(by_name(answer)) == IDS, answer
        for node in IDS:  # the follower on one side, the other two on the other
            c.servers[node].set_blocked({i for i in IDS if i != node} if node == follower else {follower})
        status, answer = await cluster_call(c, follower, "list", {"linearizable": True})
        assert (status, answer["code"]) == (503, UNAVAILABLE), answer
        assert sorted(await members(c, follower)) == IDS
        for node in IDS:
            c.servers[node].set_blocked(set())
        await c.wait_leader()
        await c.wait_until(lambda: c.servers[follower].runtime.node.status()["leader"] is not None)
        status, answer = await cluster_call(c, follower, "list", {"linearizable": True})
        assert status == 200 and sorted(by_name(answer)) == IDS, answer
