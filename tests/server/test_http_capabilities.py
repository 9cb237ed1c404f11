"""The HTTP API reads a node through its capabilities (core/capabilities.py):
``/v1/status`` shows what the node has, a route whose capability it lacks answers 501
naming it, and ``/metrics`` exports only what the node has.  Basic and Fast Paxos (no
leader, no membership change, no lease) serve the key-value API on any node."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(60)

LEADERLESS = {
    "basic-paxos": ["n1", "n2", "n3"],
    "fast-paxos": ["n1", "n2", "n3", "n4"],  # n >= 3f+1 with the default f = 1
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def put(c: Cluster, node: str, key: str, value: str, **kwargs: Any) -> tuple[int, Any, Any]:
    return await c.call("PUT", node, f"/v1/kv/{key}", data=value, **kwargs)


@pytest.mark.parametrize("protocol", sorted(LEADERLESS))
@async_test
async def test_a_leaderless_protocol_serves_kv_on_every_node(tmp_path, protocol: str) -> None:
    ids = LEADERLESS[protocol]
    async with Cluster(tmp_path, ids, protocol=protocol, options={}) as c:
        for i, node in enumerate(ids):
            status, body, _ = await put(c, node, f"k{i}", f"v{i}", headers={"X-Request-Id": f"c{i}:1"})
            assert status == 200 and body["version"] == 1, body
        for i, node in enumerate(reversed(ids)):  # read each key through another node
            status, body, _ = await c.call("GET", node, f"/v1/kv/k{i}")
            assert status == 200 and body["value"] == f"v{i}"
        # A retry of an answered write (same request id) is answered from the session.
        status, body, _ = await put(c, ids[-1], "k0", "v0", headers={"X-Request-Id": "c0:1"})
        assert status == 200 and body["version"] == 1
        status, body, _ = await c.call("GET", ids[1], "/v1/status")
        assert status == 200
        assert body["capabilities"] == ["replicated-log"]
        assert body["leader"] is None and body["leader_url"] is None and body["role"] != "leader"
        assert body["generation_name"] == "round" and body["generation"] >= 1
        assert body["protocol"] == protocol and body["commit"] >= len(ids) * 2
        assert "voters" not in body and "lease_remaining" not in body


@async_test
async def test_routes_of_a_missing_capability_answer_501_naming_it(tmp_path) -> None:
    async with Cluster(tmp_path, ["n1", "n2", "n3"], protocol="basic-paxos", options={}) as c:
        admin = {"token": ADMIN_TOKEN}
        for method, path, body, capability in (
            ("POST", "/v1/members", {"id": "n4"}, "membership-change"),
            ("DELETE", "/v1/members/n2", None, "membership-change"),
            ("POST", "/v1/leader/transfer", {}, "leader-transfer"),
        ):
            status, answer, _ = await c.call(method, "n1", path, json=body, **admin)
            assert status == 501, (path, answer)
            assert answer["error"] == "not-implemented" and answer["capability"] == capability
            assert capability in answer["message"] and "basic-paxos" in answer["message"]
            # The admin check still comes first.
            status, answer, _ = await c.call(method, "n1", path, json=body)
            assert status == 401
        status, answer, _ = await c.call("GET", "n1", "/v1/members")
        assert status == 501 and answer["capability"] == "membership-change"


@async_test
async def test_metrics_export_only_what_the_node_has(tmp_path) -> None:
    async with Cluster(tmp_path, ["n1", "n2", "n3"], protocol="basic-paxos", options={}) as c:
        assert (await put(c, "n1", "k", "v"))[0] == 200
        _status, text, _ = await c.call("GET", "n1", "/metrics")
        found = samples(text)
        names = {name for name, _ in found}
        assert found[("consensuskit_commit_index", ())] >= 1
        assert ("consensuskit_generation", (("name", "round"),)) in found
        for absent in ("consensuskit_is_leader", "consensuskit_term", "consensuskit_peer_match_index"):
            assert absent not in names, absent
        assert "consensuskit_lease_remaining_seconds" not in names
        assert found[("consensuskit_cluster_level", ())] in (1, 2)  # raised within a beat


@async_test
async def test_a_raft_leader_exports_every_capability_metric(tmp_path) -> None:
    async with Cluster(tmp_path, ["n1", "n2", "n3"]) as c:
        leader = await c.wait_leader()
        _status, text, _ = await c.call("GET", leader, "/metrics")
        found = samples(text)
        assert found[("consensuskit_is_leader", ())] == 1
        assert found[("consensuskit_generation", (("name", "term"),))] == found[("consensuskit_term", ())]
        assert ("consensuskit_lease_remaining_seconds", ()) in found
        assert ("consensuskit_cluster_level", ()) in found
        _status, body, _ = await c.call("GET", leader, "/v1/status")
        assert body["capabilities"] == [
            "has-leader",
            "replicated-log",
            "membership-change",
            "leader-transfer",
            "lease-reads",
        ]
        assert body["generation_name"] == "term" and body["generation"] == body["term"]
        assert body["config_pending"] is False


@async_test
async def test_the_cli_admin_verbs_name_a_missing_capability_in_one_line(tmp_path, capsys) -> None:
    from consensuskit.server.admin_commands import admin_command

    async with Cluster(tmp_path, ["n1", "n2", "n3"], protocol="basic-paxos", options={}) as c:
        eps = ",".join(c.url(n) for n in c.ids)
        token = str(tmp_path / "admin-token")
        for verb, args, capability in (
            ("member-add", {"id": "n4"}, "membership-change"),
            ("member-remove", {"id": "n2"}, "membership-change"),
            ("leader-transfer", {}, "leader-transfer"),
            ("member-list", {}, "membership-change"),
        ):
            code = await asyncio.to_thread(admin_command, verb, args, endpoints=eps, admin_token_file=token)
            err = capsys.readouterr().err
            assert code == 1 and err.count("\n") == 1, err
            assert err.startswith("error: protocol basic-paxos: ") and capability in err
        code = await asyncio.to_thread(
            admin_command, "leader-transfer", {}, endpoints=eps, admin_token_file=token, as_json=True
        )
        doc = json.loads(capsys.readouterr().out)
        assert code == 1 and (doc["status"], doc["capability"]) == (501, "leader-transfer")
    assert admin_command("frob") == 2
    assert "valid: member-list, member-add, member-remove, leader-transfer" in capsys.readouterr().err


@async_test
async def test_the_cli_admin_verbs_work_where_the_capability_is(tmp_path, capsys) -> None:
    from consensuskit.server.admin_commands import admin_command

    async with Cluster(tmp_path, ["n1", "n2", "n3"]) as c:
        leader = await c.wait_leader()
        eps = ",".join(c.url(n) for n in c.ids)
        token = str(tmp_path / "admin-token")
        assert await asyncio.to_thread(admin_command, "member-list", {}, endpoints=eps) == 0
        out = capsys.readouterr().out
        assert f"leader: {leader}" in out and "n3\tvoter" in out
        target = next(n for n in c.ids if n != leader)
        code = await asyncio.to_thread(
            admin_command, "leader-transfer", {"to": target}, endpoints=eps, admin_token_file=token
        )
        assert code == 0 and capsys.readouterr().out.startswith(f"leader: {target}")
