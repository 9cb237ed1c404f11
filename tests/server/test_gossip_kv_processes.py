"""The gossip kv as real processes: ``consensuskit up --protocol gossip-kv`` (3 nodes),
a partition through ``/v1/debug/faults``, a write of the same key on each side (both
acknowledged: available), the heal, and convergence: every node ends with the same
values, the key holding the write with the greater HLC stamp; the other acknowledged
write is gone (last-writer-wins, measured). SIGTERM stops the cluster cleanly, and a
second ``up`` recovers every node's values from its log."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from consensuskit.client import Client, NotFound
from consensuskit.server.cluster import free_base_port
from tests.server.test_processes import post_json, run_up, wait_for_line

pytestmark = pytest.mark.timeout(180)

NODES = ("n1", "n2", "n3")


def test_up_gossip_kv_partition_both_sides_write_heal_converge(tmp_path: Path) -> None:
    base = free_base_port(6)
    data = tmp_path / "data"
    up = run_up(
        data,
        base_port=base,
        protocol="gossip-kv",
        nodes=3,
        node_options={
            "enable_fault_injection": True,
            "options": {"anti_entropy_period": 0.3, "rumor_period": 0.05},
        },
    )
    try:
        lines = "".join(wait_for_line(up, "endpoints:"))
        assert "3 gossip-kv nodes" in lines and "gossip-kv has no leader" in lines
        url = {node: f"http://127.0.0.1:{base + i}" for i, node in enumerate(NODES)}
        token = (data / "admin.token").read_text().strip()

        def block(node: str, peers: list[str]) -> None:
            code, body = post_json(url[node] + "/v1/debug/faults", {"block": peers}, token)
            assert code == 200, body

        def read(node: str, key: str) -> str | None:
            with Client([url[node]], timeout=1, deadline=5) as kv:
                try:
                    return str(kv.get(key, consistency="stale").value)
                except NotFound:
                    return None

        # {n1} | {n2, n3}
        block("n1", ["n2", "n3"])
        block("n2", ["n1"])
        block("n3", ["n1"])
        with Client([url["n1"]], timeout=1, deadline=10) as kv:
            left = kv.put("k", "left")
            kv.put("only-left", "l")
        time.sleep(0.05)
        with Client([url["n3"]], timeout=1, deadline=10) as kv:
            right = kv.put("k", "right")
            kv.put("only-right", "r")
        # Both sides answered (available) and, cut off, disagree.
        time.sleep(1.0)
        assert (read("n1", "k"), read("n2", "k"), read("n3", "k")) == ("left", "right", "right")
        assert read("n2", "only-left") is None and read("n1", "only-right") is None

        for node in NODES:
            block(node, [])
        winner = "left" if (left.version, "n1") > (right.version, "n3") else "right"
        expected = {"k": winner, "only-left": "l", "only-right": "r"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            views = {node: {key: read(node, key) for key in expected} for node in NODES}
            if all(view == expected for view in views.values()):
                break
            time.sleep(0.3)
        assert all(view == expected for view in views.values()), views
        # The measured cost of availability: one acknowledged write of "k" is lost.
        assert winner == "right"  # n3 wrote later by a clock both nodes share (one machine)
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
        assert up.returncode == 0, out
        # A second `up` on the same directory: every node replays its log (versions and
        # their stamps, decoded from disk) and serves the same values.
        up = run_up(data, base_port=base)
        wait_for_line(up, "endpoints:")
        assert {node: {key: read(node, key) for key in expected} for node in NODES} == dict.fromkeys(
            NODES, expected
        )
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out
