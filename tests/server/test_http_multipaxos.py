"""The HTTP API of docs/openapi.yaml served by Multi-Paxos nodes (``protocol =
"multipaxos"``), in-process 3-node clusters over real TCP and DiskStorage.

What differs from Raft is what the protocol offers the server (docs/server.md, "What a
protocol must offer the server"): a follower forwards commands to the leader instead of
redirecting (a redirect happens only when the forward meets a node that no longer
leads), reads default to the leader's lease, membership has no learners, and there is
no leadership transfer (501).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(60)

IDS = ["n1", "n2", "n3"]
# Slow heartbeats (but a lease well above them), so a burst of reads shows whether each
# one ran its own heartbeat round.
OPTIONS: dict[str, Any] = {
    "election_timeout": 0.6,
    "heartbeat_interval": 0.1,
    "lease_duration": 0.8,
    "alpha": 3,
}


def mp_cluster(tmp_path: Any, ids: list[str] = IDS, **settings: Any) -> Cluster:
    settings.setdefault("options", dict(OPTIONS))
    return Cluster(tmp_path, ids, protocol="multipaxos", **settings)


async def wait_leader(c: Cluster, timeout: float = 10.0, exclude: tuple[str, ...] = ()) -> str:
    """The one node that leads, once it is ready (old leases waited out, recovery done)."""
    found: list[str] = []

    def ready() -> bool:
        found[:] = [
            i
            for i, s in c.servers.items()
            if i not in exclude and s.runtime.node.role == "leader" and s.runtime.node.ready
        ]
        return len(found) == 1

    await c.wait_until(ready, timeout)
    return found[0]


async def put(c: Cluster, node: str, key: str, value: bytes | str, **kwargs: Any) -> tuple[int, Any, Any]:
    return await c.call("PUT", node, f"/v1/kv/{key}", data=value, **kwargs)


def sent(c: Cluster, node: str, kind: str) -> int:
    return c.servers[node].runtime.stats.sent.get(kind, 0)


# ---------------------------------------------------------------------- status
@async_test
async def test_status_and_members_speak_the_servers_fields(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        assert (await put(c, leader, "k", "v"))[0] == 200
        follower = next(i for i in IDS if i != leader)
        await c.wait_until(lambda: c.servers[leader].runtime.node.peer_executed.get(follower, 0) >= 1)
        status, body, _ = await c.call("GET", leader, "/v1/status")
        assert status == 200
        assert body["protocol"] == "multipaxos" and body["halted"] is False
        assert (body["id"], body["role"], body["leader"]) == (leader, "leader", leader)
        assert body["leader_url"] == body["client_url"] == c.url(leader)
        node = c.servers[leader].runtime.node
        assert body["term"] == node.ballot.round >= 1 and body["ballot"] == str(node.ballot)
        # The leader may execute another slot (the level raise, a clock tick) after it
        # answered: the status is at most what it executed since.
        assert body["commit"] == body["applied"] and 1 <= body["applied"] <= node.executed
        assert body["voters"] == IDS and body["learners"] == [] and body["config_index"] == 0
        assert body["config_pending"] is False and body["ready"] is True
        assert sorted(body["peers"]) == sorted(i for i in IDS if i != leader)
        for peer, info in body["peers"].items():
            assert info["client_url"] == c.url(peer) and info["connected"] is True
        assert body["peers"][follower]["match"] == body["peers"][follower]["executed"] >= 1

        status, body, _ = await c.call("GET", follower, "/v1/status")
        assert (body["role"], body["leader"], body["leader_url"]) == ("follower", leader, c.url(leader))
        assert body["term"] == node.ballot.round  # a follower reports the ballot it promised
        assert all(info["match"] is None for info in body["peers"].values())
        status, body, _ = await c.call("GET", follower, "/v1/members")
        assert status == 200 and (body["leader"], body["leader_url"]) == (leader, c.url(leader))
        assert body["voters"] == IDS and body["learners"] == []
        assert body["members"] == [{"id": i, "voter": True, "client_url": c.url(i)} for i in IDS]


@async_test
async def test_metrics_follow_the_node_interface(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        for i in range(3):
            assert (await put(c, leader, f"k{i}", "v"))[0] == 200
        follower = next(i for i in IDS if i != leader)
        await c.wait_until(lambda: c.servers[leader].runtime.node.peer_executed.get(follower, 0) >= 3)
        _status, text, _ = await c.call("GET", leader, "/metrics")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("consensuskit_is_leader", ())] == 1
        assert samples[("consensuskit_term", ())] == c.servers[leader].runtime.node.ballot.round
        assert samples[("consensuskit_commit_index", ())] >= 3
        assert samples[("consensuskit_apply_lag", ())] == 0
        assert samples[("consensuskit_peer_match_index", (("peer", follower),))] >= 3
        assert samples[("consensuskit_messages_sent_total", (("type", "Accept"),))] >= 3
        info = ("consensuskit_node_info", (("node", leader), ("protocol", "multipaxos")))
        assert samples[info] == 1


# ---------------------------------------------------------------------- followers
@async_test
async def test_a_follower_forwards_writes_and_reads_to_the_leader(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        follower = next(i for i in IDS if i != leader)
        status, body, _ = await put(c, follower, "k", "via follower")
        assert status == 200 and body["version"] == 1
        status, body, _ = await c.call("GET", follower, "/v1/kv/k")
        assert status == 200 and body["value"] == "via follower"
        status, body, _ = await c.call("GET", follower, "/v1/kv/k", params={"consistency": "linearizable"})
        assert status == 200 and body["value"] == "via follower"
        status, body, _ = await c.call("DELETE", follower, "/v1/kv/k")
        assert status == 200 and body["deleted"] is True
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert status == 404 and body["error"] == "not-found"
        # The leader did the work: the follower only relayed (one Forward per request).
        assert sent(c, follower, "Forward") == 4
        assert sent(c, leader, "ForwardReply") == 4


@async_test
async def test_a_forward_to_a_node_that_does_not_lead_is_a_421_naming_the_leader(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        relay, stale = (i for i in IDS if i != leader)
        # The relay believes a follower leads (as after a missed leadership change): the
        # follower refuses the forward, naming the leader it knows; no second hop.
        # A heartbeat from the real leader may correct the relay between the two steps;
        # then the write simply succeeds, so try again on a fresh key.
        for attempt in range(5):
            key = f"k{attempt}"
            await c.servers[relay].runtime.call(lambda n: setattr(n, "leader_id", stale))
            status, body, _ = await put(c, relay, key, "v")
            if status != 200:
                break
        assert status == 421 and body["error"] == "not-leader" and body["outcome"] == "not-applied"
        assert (body["leader"], body["leader_url"]) == (leader, c.url(leader))
        status, body, _ = await c.call("GET", leader, f"/v1/kv/{key}")
        assert status == 404  # certainly not applied


@async_test
async def test_a_node_outside_the_configuration_knowing_no_leader_answers_503(tmp_path):
    ids = ["n1", "n2", "n3", "n4"]
    async with mp_cluster(tmp_path, ids[:3], members=ids[:3]) as c:
        c.ids = ids
        await c.start_node("n4", members=ids[:3])
        await wait_leader(c)
        status, body, _ = await put(c, "n4", "k", "v")
        assert status == 503 and body["error"] == "not-leader" and body["leader_url"] is None
        assert body["outcome"] == "not-applied"


# ---------------------------------------------------------------------- exactly once
@async_test
async def test_request_id_retry_is_applied_once_on_any_node(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        follower = next(i for i in IDS if i != leader)
        first = await put(c, leader, "k", "first", headers={"X-Request-Id": "client-7:1"})
        assert first[0] == 200 and first[1]["version"] == 1
        # A retry through a follower (a client that lost the answer and moved on).
        retry = await put(c, follower, "k", "first", headers={"X-Request-Id": "client-7:1"})
        assert retry[0] == 200 and retry[1]["version"] == 1
        status, body, _ = await put(c, follower, "k", "second", headers={"X-Request-Id": "client-7:1"})
        assert status == 409 and body["error"] == "request-id-reused" and body["outcome"] == "not-applied"
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert (body["value"], body["version"]) == ("first", 1)
        assert (await put(c, follower, "k", "third", headers={"X-Request-Id": "client-7:2"}))[1][
            "version"
        ] == 2
        status, body, _ = await put(c, leader, "k", "stale", headers={"X-Request-Id": "client-7:1"})
        assert status == 409 and body["error"] == "stale-session" and body["outcome"] == "not-applied"
        # Concurrent duplicates of one new request, to the leader and through a follower.
        a, b = await asyncio.gather(
            put(c, leader, "k", "dup", headers={"X-Request-Id": "client-7:3"}),
            put(c, follower, "k", "dup", headers={"X-Request-Id": "client-7:3"}),
        )
        assert a[0] == b[0] == 200 and a[1]["version"] == b[1]["version"] == 3
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert (body["value"], body["version"]) == ("dup", 3)


# ---------------------------------------------------------------------- reads
@async_test
async def test_lease_reads_skip_the_round_linearizable_reads_run_one_stale_reads_stay_local(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        follower = next(i for i in IDS if i != leader)
        status, body, _ = await put(c, leader, "k", "v")
        index = body["index"]
        node = c.servers[leader].runtime.node
        await c.wait_until(lambda: node.serving_lease_reads())

        before, started = sent(c, leader, "Heartbeat"), time.monotonic()
        for _ in range(20):
            status, body, _ = await c.call("GET", leader, "/v1/kv/k", params={"consistency": "lease"})
            assert status == 200 and body["value"] == "v"
        lease_rounds = (sent(c, leader, "Heartbeat") - before) // 2
        timer_rounds = (time.monotonic() - started) / OPTIONS["heartbeat_interval"] + 2
        before = sent(c, leader, "Heartbeat")
        for _ in range(20):
            status, body, _ = await c.call("GET", leader, "/v1/kv/k", params={"consistency": "linearizable"})
            assert status == 200 and body["value"] == "v"
        quorum_rounds = (sent(c, leader, "Heartbeat") - before) // 2
        assert quorum_rounds >= 20, quorum_rounds  # one heartbeat round per linearizable read
        assert lease_rounds <= min(timer_rounds, 19), (lease_rounds, timer_rounds)  # the timer's only
        # Without ?consistency the node's read_mode decides: lease by default.
        status, body, _ = await c.call("GET", leader, "/v1/kv/k")
        assert status == 200 and body["value"] == "v"

        await c.wait_until(lambda: c.servers[follower].runtime.node.executed >= index)
        forwards = sent(c, follower, "Forward")
        status, body, _ = await c.call("GET", follower, "/v1/kv/k", params={"consistency": "stale"})
        assert status == 200 and body["value"] == "v"
        status, body, _ = await c.call("GET", follower, "/v1/kv", params={"consistency": "stale"})
        assert status == 200 and [i["key"] for i in body["items"]] == ["k"]
        assert sent(c, follower, "Forward") == forwards  # answered from its own state


@async_test
async def test_a_cut_off_leader_serves_no_reads_after_its_lease(tmp_path):
    async with mp_cluster(tmp_path, enable_fault_injection=True, request_timeout=1.0) as c:
        old = await wait_leader(c)
        assert (await put(c, old, "k", "before"))[0] == 200
        others = [i for i in IDS if i != old]
        status, _, _ = await c.call(
            "POST", old, "/v1/debug/faults", json={"block": others}, token=ADMIN_TOKEN
        )
        assert status == 200
        new = await wait_leader(c, exclude=(old,))
        assert (await put(c, new, "k", "after"))[0] == 200
        # The new leader waited out the old lease; the old leader stepped down or cannot
        # serve: a read there is never "before" any more.
        status, body, _ = await c.call("GET", old, "/v1/kv/k", params={"consistency": "lease"})
        assert status in (421, 503), body
        assert not c.servers[old].runtime.node.serving_lease_reads()


# ---------------------------------------------------------------------- errors
@async_test
async def test_error_bodies(tmp_path):
    async with mp_cluster(tmp_path, max_value_bytes=1024) as c:
        leader = await wait_leader(c)
        follower = next(i for i in IDS if i != leader)
        cases = [
            (("PUT", "/v1/kv/k"), {"params": {"cas_version": "x"}}, 400, "bad-request"),
            (("PUT", "/v1/kv/k"), {"params": {"bogus": "1"}}, 400, "bad-request"),
            (("GET", "/v1/kv/k"), {"params": {"consistency": "eventual"}}, 400, "bad-request"),
            (("PUT", "/v1/kv/k"), {"headers": {"X-Request-Id": "no-seq"}}, 400, "bad-request-id"),
            (("PUT", "/v1/kv/" + "k" * 5000), {}, 400, "bad-key"),
            (("GET", "/v1/kv/absent"), {}, 404, "not-found"),
            (("GET", "/v1/nothing"), {}, 404, "not-found"),
            (("POST", "/v1/kv/k"), {}, 405, "method-not-allowed"),
            (("PUT", "/v1/kv/k"), {"data": b"x" * 1025}, 413, "too-large"),
            (("POST", "/v1/members"), {"data": b"{not json", "token": ADMIN_TOKEN}, 400, "bad-json"),
        ]
        for node in (leader, follower):
            for (method, path), kwargs, want_status, want_code in cases:
                kwargs = dict(kwargs)
                kwargs.setdefault("data", b"v" if method == "PUT" else None)
                status, body, _ = await c.call(method, node, path, **kwargs)
                assert (status, body["error"]) == (want_status, want_code), (node, method, path, body)
                assert isinstance(body["message"], str) and body["message"]
        # Nothing of that was applied; exactly at the limit is fine.
        status, body, _ = await c.call("GET", leader, "/v1/kv")
        assert body["items"] == []
        assert (await put(c, follower, "k", b"x" * 1024))[0] == 200


@async_test
async def test_no_quorum_is_a_bounded_503(tmp_path):
    async with mp_cluster(tmp_path, request_timeout=0.5) as c:
        leader = await wait_leader(c)
        for follower in IDS:
            if follower != leader:
                await c.stop_node(follower)
        status, body, _ = await put(c, leader, "k", "v")
        assert status == 503 and body["error"] in ("timeout", "leadership-lost", "not-leader")
        if body["error"] != "not-leader":
            assert body["outcome"] == "unknown"


# ---------------------------------------------------------------------- admin
@async_test
async def test_membership_add_and_remove_no_learners_no_transfer(tmp_path):
    ids = ["n1", "n2", "n3", "n4"]
    async with mp_cluster(tmp_path, ids[:3], members=ids[:3]) as c:
        c.ids = ids  # n4 is in everyone's [peers] from now on, but not a member yet
        await c.start_node("n4", members=ids[:3])
        leader = await wait_leader(c)
        assert (await put(c, leader, "before", "v"))[0] == 200

        status, body, _ = await c.call(
            "POST", leader, "/v1/members", json={"id": "n4", "voter": False}, token=ADMIN_TOKEN
        )
        assert status == 501 and body["error"] == "not-implemented" and "add-learner" in body["message"]
        status, body, _ = await c.call("POST", leader, "/v1/leader/transfer", json={}, token=ADMIN_TOKEN)
        assert status == 501 and body["error"] == "not-implemented"
        follower = next(i for i in ids[:3] if i != leader)
        status, body, _ = await c.call("POST", follower, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 421 and body["leader_url"] == c.url(leader)

        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 200, body
        assert (body["change"], body["voters"], body["learners"]) == ("add-voter", ids, [])
        decided = body["index"]
        assert decided > 1
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n4"}, token=ADMIN_TOKEN)
        assert status == 409 and body["error"] == "conflict"
        # The new configuration governs from alpha slots after the deciding one: write
        # past it, then n4 has caught up and votes.
        for i in range(OPTIONS["alpha"] + 1):
            assert (await put(c, leader, f"after{i}", "w"))[0] == 200
        n4 = c.servers["n4"].runtime.node
        await c.wait_until(lambda: n4.executed >= decided + OPTIONS["alpha"])
        assert n4.config_at(n4.executed + 1) == tuple(ids)
        status, body, _ = await c.call("GET", "n4", "/v1/kv/before", params={"consistency": "stale"})
        assert body["value"] == "v"
        status, body, _ = await c.call("GET", "n4", "/v1/members")
        assert body["voters"] == ids

        status, body, _ = await c.call("DELETE", leader, "/v1/members/n4", token=ADMIN_TOKEN)
        assert status == 200 and body["voters"] == ids[:3] and body["index"] > decided
        status, body, _ = await c.call("POST", leader, "/v1/members", json={"id": "n9"}, token=ADMIN_TOKEN)
        assert status == 400 and body["error"] == "unknown-peer"


# ---------------------------------------------------------------------- restart
@async_test
async def test_restart_nodes_from_their_data_dirs(tmp_path):
    async with mp_cluster(tmp_path) as c:
        leader = await wait_leader(c)
        for i in range(10):
            assert (await put(c, leader, f"k{i}", f"v{i}", headers={"X-Request-Id": f"w:{i + 1}"}))[0] == 200
        follower = next(i for i in IDS if i != leader)
        await c.stop_node(follower)
        assert (await put(c, leader, "while-down", "x"))[0] == 200
        await c.start_node(follower)
        target = c.servers[leader].runtime.node.executed
        await c.wait_until(lambda: c.servers[follower].runtime.node.executed >= target)
        status, body, _ = await c.call("GET", follower, "/v1/kv/while-down", params={"consistency": "stale"})
        assert body["value"] == "x"
        # Whole cluster down and up again: every acknowledged write is there.
        for node_id in list(c.servers):
            await c.stop_node(node_id)
        for node_id in IDS:
            await c.start_node(node_id)
        leader = await wait_leader(c)
        status, body, _ = await c.call("GET", leader, "/v1/kv", params={"prefix": "k"})
        assert [(i["key"], i["value"]) for i in body["items"]] == [(f"k{i}", f"v{i}") for i in range(10)]
        # Sessions survive too: a retry of an old request id is answered from the cache.
        status, body, _ = await put(c, leader, "k9", "v9", headers={"X-Request-Id": "w:10"})
        assert status == 200 and body["version"] == 1
        status, body, _ = await c.call("GET", leader, "/v1/kv/k9")
        assert body["value"] == "v9"
