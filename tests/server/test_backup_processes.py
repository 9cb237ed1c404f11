"""Backup and restore with real processes (docs/server.md, "Backup and restore"): a backup
taken while clients write holds every write acknowledged before it was asked for;
``consensuskit up --restore`` starts a new cluster (of another protocol) holding it,
which a later ``up`` recovers from disk; a second ``--restore`` into it is refused.
PBFT's replicas back up and restore too, and keep the restored state across restarts."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from consensuskit.client import Client
from consensuskit.server import backup_file
from consensuskit.server.backup_commands import load_file, save_file
from consensuskit.server.cluster import free_base_port
from tests.server.test_processes import make_cluster, restart_everyone, run_up, wait_for_line

pytestmark = pytest.mark.timeout(240)


def test_a_backup_under_load_restores_into_a_new_multipaxos_cluster_with_up(tmp_path: Path) -> None:
    path = tmp_path / "kv.ckbackup"
    acknowledged: list[str] = []
    stop = threading.Event()
    with make_cluster(tmp_path / "a") as cluster:
        cluster.start()
        cluster.wait_for_leader(30)
        token = cluster.layout.admin_token_path.read_text().strip()

        def writer() -> None:
            with cluster.client(timeout=2.0, deadline=20.0) as kv:
                i = 0
                while not stop.is_set():
                    kv.put(f"w/{i:05d}", str(i))
                    acknowledged.append(f"w/{i:05d}")
                    i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(acknowledged) < 200:
                stop.wait(0.05)
            before = list(acknowledged)  # acknowledged before the backup is asked for
            with Client(cluster.layout.endpoints, admin_token=token, timeout=30, deadline=60) as admin:
                save_file(path, admin.backup())
        finally:
            stop.set()
            thread.join(timeout=30)
    backup = load_file(str(path))
    assert backup.header["protocol"] == "raft"

    data = tmp_path / "b"
    base = free_base_port(6)
    endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]
    up = run_up(data, nodes=3, base_port=base, protocol="multipaxos", restore=str(path))
    try:
        lines = wait_for_line(up, "endpoints:")
        restored = next(line for line in lines if line.startswith("restored "))
        assert f"of service kv (taken from {backup.header['node']}" in restored
        with Client(endpoints, timeout=2, deadline=20) as kv:
            keys = {e.key for e in kv.list("w/")}
        assert set(before) <= keys  # nothing acknowledged before the backup is missing
        assert keys <= set(acknowledged)
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()

    again = run_up(data)  # recovered from disk: the restore is in the log (or a snapshot)
    try:
        wait_for_line(again, "endpoints:")
        with Client(endpoints, timeout=2, deadline=20) as kv:
            assert {e.key for e in kv.list("w/")} == keys
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
    finally:
        if again.poll() is None:
            again.kill()

    refused = run_up(data, restore=str(path))  # it holds data now
    try:
        out, _ = refused.communicate(timeout=90)
    finally:
        if refused.poll() is None:
            refused.kill()
    assert refused.returncode == 1, out
    assert "--restore" in out and "not-empty" in out and "all nodes stopped" in out


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.2)


def _restore(url: str, token: str, data: bytes, request_id: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/v1/restore",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_pbft_backup_restores_into_a_new_pbft_cluster_and_survives_its_restart(tmp_path: Path) -> None:
    """PBFT orders a backup and a restore as any other operation (statemachines/backup.py):
    on real processes, with signatures, checkpoints and state transfer, every replica
    holds the restored state, a retried restore gets its first answer, and a restart of
    every node recovers it."""
    with make_cluster(tmp_path / "a", protocol="pbft") as cluster:
        cluster.start()
        cluster.wait_ready(30)
        token = cluster.layout.admin_token_path.read_text().strip()
        with cluster.client(timeout=2.0, deadline=30.0) as kv:
            for i in range(12):  # past a few checkpoints (checkpoint_interval 4)
                kv.put(f"k/{i:02d}", str(i))
            expected = {e.key: e.value for e in kv.list("k/")}
        with Client(cluster.layout.endpoints, admin_token=token, timeout=30, deadline=60) as admin:
            data = admin.backup()
    assert len(expected) == 12
    assert backup_file.parse(data).header["protocol"] == "pbft"

    with make_cluster(tmp_path / "b", protocol="pbft") as cluster:
        cluster.start()
        cluster.wait_ready(30)
        token = cluster.layout.admin_token_path.read_text().strip()
        url = cluster.url("n1")
        status, first = _restore(url, token, data, "ops:1")
        assert (status, first["restored"]) == (200, 12), first
        status, again = _restore(url, token, data, "ops:1")  # a retry: its first answer
        assert (status, again["restored"]) == (200, 12), again
        status, other = _restore(url, token, data, "ops:2")  # another restore: refused
        assert (status, other["error"]) == (409, "not-empty"), other

        def every_replica_holds_it() -> bool:
            for node in cluster.nodes:
                with Client([cluster.url(node)], timeout=2.0, deadline=5.0) as one:
                    if {e.key: e.value for e in one.list("k/", consistency="stale")} != expected:
                        return False
            return True

        wait_until(every_replica_holds_it, timeout=20)
        restart_everyone(cluster, power_loss=False)
        with cluster.client(timeout=2.0, deadline=30.0) as kv:
            assert {e.key: e.value for e in kv.list("k/")} == expected
        wait_until(every_replica_holds_it, timeout=20)
