"""Client sessions with real node processes: a session expires over real time through
the leader's clock commands, its retry is refused and never re-applied, and the refusal
survives a restart of every node (the log clock, the table and the record of forgotten
ids are rebuilt from disk)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consensuskit.catalog import default_registry
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from tests.server.test_processes import PROTOCOLS_SLOW_LEADERLESS, node_options, restart_everyone

pytestmark = pytest.mark.timeout(240)


def put(cluster: LocalCluster, key: str, value: bytes, request_id: str) -> tuple[int, dict[str, Any]]:
    """PUT at the leader (without one: at n2, not the clock writer), waiting out
    elections; (status, JSON body)."""
    for _ in range(100):
        leader = cluster.leader() if cluster.has_leader() else "n2"
        if leader is None:
            time.sleep(0.1)
            continue
        request = urllib.request.Request(
            cluster.url(leader) + f"/v1/kv/{key}",
            data=value,
            method="PUT",
            headers={"X-Request-Id": request_id},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (421, 503):  # moved, or a new leader still waiting out a lease
                time.sleep(0.1)
                continue
            return exc.code, json.loads(exc.read())
    pytest.fail("no leader answered")


@pytest.mark.parametrize("protocol", PROTOCOLS_SLOW_LEADERLESS)
def test_a_session_expires_over_real_time_and_stays_expired_across_restarts(
    tmp_path: Path, protocol: str
) -> None:
    options = node_options(protocol, session_ttl=1.0)
    nodes = max(3, default_registry().get(protocol).min_nodes)
    layout = ClusterLayout.prepare(
        tmp_path / "data", nodes, free_base_port(2 * nodes), node_options=options, protocol=protocol
    )
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        status, body = put(cluster, "s", b"once", "proc:1")
        assert (status, body["version"]) == (200, 1)
        applied_at = body["index"]
        deadline = time.monotonic() + 30
        while True:  # a cached answer is not activity: retrying does not keep the session alive
            status, body = put(cluster, "s", b"once", "proc:1")
            if status == 409:
                break
            assert status == 200 and body["version"] == 1
            assert time.monotonic() < deadline, "the session never expired"
            time.sleep(0.2)
        assert (body["error"], body["outcome"]) == ("session-expired", "unknown")
        restart_everyone(cluster, power_loss=False)
        cluster.wait_ready(30)
        status, body = put(cluster, "s", b"once", "proc:1")
        if status == 200:
            # Multi-Paxos: a retry that waits while a restarted leader executes its log
            # again is answered when a slot holding the same (client, seq) executes (the
            # original or a logged retry): the first answer -- true, not a second apply.
            assert protocol == "multipaxos" and body["version"] == 1 and body["index"] >= applied_at
        else:
            assert (status, body["error"]) == (409, "session-expired"), body
        status, body = put(cluster, "s", b"again", "proc-new:1")
        assert (status, body["version"]) == (200, 2)  # "once" was applied exactly once
