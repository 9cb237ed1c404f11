"""Jepsen's etcd lock workload against real processes: clients read-modify-write a set in a
store under the etcd service's lock while a nemesis SIGSTOPs a holder past its lease.

Locks are leases, so they cannot give mutual exclusion (Jepsen, etcd 3.4.3): the paused
holder wakes up believing it still holds the lock and writes a set that lacks what the
next holder added.  The fencing token (the lock key's create revision) fixes it, if the
resource checks it: ``consensuskit fenced-store`` refuses a token below one it accepted.
Without fencing, acknowledged elements are lost; with fencing, never.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensuskit.server.cluster import free_port
from consensuskit.services.fenced_store import FencedStore
from tests.services.etcd_cluster import EtcdCluster, etcd_cluster

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 3
ROUNDS = 4
TTL = 2
PAUSE = TTL + 1.5  # seconds a holder stays stopped: past its lease


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(tmp_path_factory, "raft")


def python(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def run_workload(etcd: EtcdCluster, *, fencing: bool) -> dict[str, Any]:
    port = free_port()
    store = python(
        "-m",
        "consensuskit.services.fenced_store",
        "--port",
        str(port),
        *([] if fencing else ["--no-fencing"]),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert store.stdout is not None
        assert "fenced-store on" in store.stdout.readline()
        endpoints = etcd.grpc_addresses()
        clients = [
            python(
                "-m",
                "tests.services.lock_client",
                "--endpoint",
                endpoints[i % len(endpoints)],
                "--store",
                url,
                "--name",
                f"c{i}",
                "--rounds",
                str(ROUNDS),
                "--ttl",
                str(TTL),
            )
            for i in range(CLIENTS)
        ]
        acked: list[str] = []
        refused: list[str] = []
        pauses: list[str] = []
        lock = threading.Lock()

        def pause(proc: subprocess.Popen[str], name: str) -> None:
            proc.send_signal(signal.SIGSTOP)
            time.sleep(PAUSE)
            proc.send_signal(signal.SIGCONT)

        def follow(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                event = json.loads(line)
                with lock:
                    if "ack" in event:
                        acked.append(event["ack"])
                    elif "refused" in event:
                        refused.append(event["refused"])
                    elif "hold" in event and len(pauses) < 2 and not any(t.is_alive() for t in nemeses):
                        # the nemesis: stop this holder inside its critical section
                        pauses.append(event["name"])
                        thread = threading.Thread(target=pause, args=(proc, event["name"]))
                        nemeses.append(thread)
                        thread.start()

        nemeses: list[threading.Thread] = []
        readers = [threading.Thread(target=follow, args=(p,)) for p in clients]
        for t in readers:
            t.start()
        for t in readers:
            t.join(timeout=120)
        for p in clients:
            assert p.wait(timeout=10) == 0, p.stderr.read() if p.stderr else ""
        final = get_json(url + "/value")["value"] or []
        stats = get_json(url + "/stats")
        return {
            "acked": acked,
            "refused": refused,
            "pauses": pauses,
            "final": final,
            "lost": sorted(set(acked) - set(final)),
            "stats": stats,
        }
    finally:
        store.terminate()
        store.wait(timeout=10)


def test_without_fencing_a_paused_holder_loses_acknowledged_updates(etcd: EtcdCluster) -> None:
    result = run_workload(etcd, fencing=False)
    assert result["pauses"], result
    assert result["lost"], f"no lost update although a holder was paused past its lease: {result}"


def test_with_fencing_no_acknowledged_update_is_ever_lost(etcd: EtcdCluster) -> None:
    result = run_workload(etcd, fencing=True)
    assert result["pauses"], result
    assert result["lost"] == [], result
    assert result["refused"], f"the paused holder's stale write should have been refused: {result}"
    assert len(result["acked"]) + len(result["refused"]) >= CLIENTS * ROUNDS - len(result["pauses"])


def test_the_store_refuses_a_token_below_the_highest() -> None:
    store = FencedStore()
    assert store.write(["a"], 5)[0] == 200
    assert store.write(["a", "b"], 5)[0] == 200  # the same holder again
    status, body = store.write(["stale"], 4)
    assert status == 409 and body["error"] == "stale-token" and store.value == ["a", "b"]
    assert store.write(["x"], None)[0] == 400
    trusting = FencedStore(fencing=False)
    assert trusting.write(["new"], 9)[0] == 200 and trusting.write(["old"], 1)[0] == 200
    assert trusting.value == ["old"]


def test_fenced_store_is_a_consensuskit_verb() -> None:
    from typer.testing import CliRunner

    from consensuskit.cli import app

    result = CliRunner().invoke(app, ["fenced-store", "--help"])
    assert result.exit_code == 0 and "--no-fencing" in result.output
