"""Sharded Raft as real node processes (WAL, TCP, HMAC handshake), as ``consensuskit up
--protocol sharded-raft --shards 2`` starts them (service shard-kv): a Jepsen-style bank over
``POST /v1/txn`` (transfers as compare-and-put transactions across the two shards, reads
of every balance as one transaction), with one node SIGKILLed mid-run (shard 0's leader:
a minority of each shard's group) and restarted: every read sums to 0, and transfers keep
committing while the node is down."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consensuskit.protocols.sharded import shard_of
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port

ACCOUNTS = [f"a{i}" for i in range(6)]
NODES = ("n1", "n2", "n3")


def post(url: str, body: Any, token: str, timeout: float = 5.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/v1/txn", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None  # refused or timed out: the outcome is unknown


def read_all(url: str, token: str) -> dict[str, Any] | None:
    status, body = post(url, {"success": [{"get": {"key": a}} for a in ACCOUNTS]}, token)
    if status != 200 or not body.get("succeeded"):
        return None
    return {r["get"]["key"]: (r["get"]["value"] or 0, r["get"]["version"]) for r in body["responses"]}


class Bank:
    """Clients moving money with compare-and-put transactions; what they saw."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.token = cluster.layout.admin_token
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sums: list[int] = []
        self.committed: list[float] = []  # when each transfer was acknowledged
        self.threads: list[threading.Thread] = []

    def start(self, clients: int) -> None:
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10.0)

    def client(self, index: int) -> None:
        n = index
        while not self.stop.is_set():
            n += 1
            url = self.cluster.url(NODES[n % len(NODES)])
            if not self.cluster.nodes[NODES[n % len(NODES)]].running:
                continue
            view = read_all(url, self.token)
            if view is None:
                time.sleep(0.05)
                continue
            with self.lock:
                self.sums.append(sum(v for v, _ in view.values()))
            src, dst = ACCOUNTS[n % 6], ACCOUNTS[(n * 7 + index) % 6]
            if src == dst or shard_of(src, 2) == shard_of(dst, 2):
                dst = next(a for a in ACCOUNTS if shard_of(a, 2) != shard_of(src, 2))
            (sv, sver), (dv, dver) = view[src], view[dst]
            body = {
                "compare": [{"key": src, "version": sver}, {"key": dst, "version": dver}],
                "success": [{"put": {"key": src, "value": sv - 3}}, {"put": {"key": dst, "value": dv + 3}}],
                "failure": [],
            }
            status, answer = post(url, body, self.token)
            if status == 200 and answer.get("succeeded"):
                with self.lock:
                    self.committed.append(time.monotonic())


def leader_of_group(cluster: LocalCluster, group: int) -> str:
    for status in cluster.statuses(2.0).values():
        if isinstance(status, dict):
            leader = status["groups"][group]["leader"]
            if leader in NODES:
                return str(leader)
    return "n3"


def bank_cluster(tmp_path: Path, **options: Any) -> LocalCluster:
    layout = ClusterLayout.prepare(
        tmp_path, 3, free_base_port(6), protocol="sharded-raft",
        node_options={"request_timeout": 5.0, "options": {"shards": 2, **options}},
    )  # fmt: skip
    return LocalCluster(layout)


@pytest.mark.timeout(180)
def test_bank_over_txn_with_a_node_killed_conserves_the_total(tmp_path: Path) -> None:
    with bank_cluster(tmp_path) as cluster:
        cluster.start()
        cluster.wait_ready(30.0)
        bank = Bank(cluster)
        bank.start(clients=3)
        time.sleep(3.0)
        victim = leader_of_group(cluster, 0)  # one replica of each group, shard 0's leader
        cluster.nodes[victim].kill()
        killed_at = time.monotonic()
        time.sleep(4.0)
        cluster.nodes[victim].start()
        restarted_at = time.monotonic()
        time.sleep(3.0)
        bank.finish()
        assert bank.sums and set(bank.sums) == {0}, sorted(set(bank.sums))
        while_down = [t for t in bank.committed if killed_at < t < restarted_at]
        assert len(bank.committed) >= 10 and while_down, (len(bank.committed), len(while_down))
        deadline = time.monotonic() + 20.0
        final = None
        while final is None and time.monotonic() < deadline:
            final = read_all(cluster.url(victim), bank.token)  # the restarted node serves again
        assert final is not None and sum(v for v, _ in final.values()) == 0
        with cluster.client() as client:  # the kv API on the same cluster, each key on its shard
            client.put("hello", "world")
            assert client.get("hello").value == "world"


@pytest.mark.timeout(180)
def test_a_host_that_lost_its_disk_rejoins_every_group_and_counts_again(tmp_path: Path) -> None:
    """--rejoin on a host's emptied directory: every group's replica rejoins (Raft's rule),
    the host says rejoining until all are readmitted; then, with another host killed, the
    groups' majorities need it, and transfers still commit with every total 0."""
    with bank_cluster(tmp_path) as cluster:
        cluster.start()
        cluster.wait_ready(30.0)
        bank = Bank(cluster)
        bank.start(clients=3)
        time.sleep(2.0)
        wiped = "n3"
        cluster.nodes[wiped].kill()
        data_dir = cluster.layout.node(wiped).data_dir
        shutil.rmtree(data_dir)
        data_dir.mkdir()
        cluster.nodes[wiped].start(["--rejoin"])

        def rejoining() -> Any:
            status = cluster.statuses(1.0).get(wiped)
            return status.get("rejoining") if isinstance(status, dict) else None

        deadline = time.monotonic() + 30.0
        while rejoining() is not False and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rejoining() is False, cluster.statuses(1.0).get(wiped)
        cluster.nodes["n1"].kill()
        killed_at = time.monotonic()
        time.sleep(4.0)
        bank.finish()
        assert bank.sums and set(bank.sums) == {0}, sorted(set(bank.sums))
        assert [t for t in bank.committed if t > killed_at + 1.0], len(bank.committed)
