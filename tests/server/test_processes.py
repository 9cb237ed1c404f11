"""Crash tests with real node processes on loopback.

* Jepsen-style: client workers record a history while a nemesis SIGKILLs the leader,
  SIGSTOPs/SIGCONTs nodes, restarts nodes and partitions peers (the fault endpoint);
  the history must be linearizable, and every acknowledged write must be there after
  every node restarts.
* Whole-cluster power loss: SIGKILL every node mid-load, restart, verify.
* Disk faults on a stopped node's WAL: a torn tail is cut and the node rejoins; a
  flipped bit in the middle makes it refuse to start, naming the file and the offset.
* Bad input to a running node: garbage, oversized frames and a wrong secret on the peer
  port, malformed HTTP, unknown routes, huge values.  The node stays up and serves.
* ``consensuskit up``: starts, stops on SIGTERM, recovers on a second run.

The Jepsen-style run, the power loss, the restart from disk and the partition run once
per log protocol of the catalog (Raft, Multi-Paxos, Basic and Fast Paxos; the last two
have no leader: the nemesis kills a random node instead, and the partition isolates one).
The default run is short (CI); ``-m slow`` runs the long Jepsen tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensuskit.catalog import default_registry
from consensuskit.client import AsyncClient, Client, NotFound
from consensuskit.server import handshake
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.server.commands import demo_script
from consensuskit.server.wal_format import RECORD_BATCH, frame_record
from consensuskit.sim.history import OpRecord
from tests.server.jepsen import (
    ClientLoad,
    HistoryRecorder,
    Nemesis,
    Workload,
    assert_acknowledged_writes_survive,
    check_linearizable,
    final_state,
    read_all,
    recorded,
)

pytestmark = pytest.mark.timeout(240)

MAX_VALUE = 4096
NODE_OPTIONS: dict[str, Any] = {
    "enable_fault_injection": True,
    "max_value_bytes": MAX_VALUE,
    "request_timeout": 2.0,
    "log_level": "info",
    # A loaded 2-core machine: keep elections from firing on scheduling hiccups alone.
    "options": {"election_timeout": 0.5, "heartbeat_interval": 0.05, "snapshot_threshold": 100},
}


# Protocols the server runs as a replicated key-value store (docs/server.md): every log
# protocol of the catalog.
PROTOCOLS = tuple(p for p in default_registry().names() if default_registry().get(p).log)
# Basic and Fast Paxos have no election timer or snapshots: their own defaults.
LEADERLESS_OPTIONS: dict[str, Any] = {"retry_timeout": 0.3}
# The same list where the leaderless protocols run only with ``-m slow``: suites that
# test the HTTP edge, fuzzing, or what test_runtime_process.py already runs on them (the
# session clock of a protocol without a leader); a few minutes saved on the default run.
LEADERLESS = ("basic-paxos", "fast-paxos")
PROTOCOLS_SLOW_LEADERLESS = tuple(
    pytest.param(p, marks=pytest.mark.slow) if p in LEADERLESS else p for p in PROTOCOLS
)


# PBFT on real processes (Ed25519 signatures keyed by the cluster key, its default there)
# with a request timer for a loaded 2-core machine; frequent checkpoints.
PBFT_OPTIONS: dict[str, Any] = {
    "view_change_timeout": 1.0,
    # A replica cut off catches up by state transfer at the next stable checkpoint.
    "checkpoint_interval": 4,
    "watermark_window": 16,
}


def node_options(protocol: str, **settings: Any) -> dict[str, Any]:
    """NODE_OPTIONS with ``protocol``'s own options, plus ``settings``."""
    options = {**NODE_OPTIONS, **settings}
    if protocol in LEADERLESS:
        options["options"] = dict(LEADERLESS_OPTIONS)
    elif protocol == "zab":  # ZooKeeper's names: a PING every tick
        options["options"] = {"election_timeout": 0.5, "tick": 0.05, "snapshot_threshold": 100}
    elif protocol == "pbft":
        options["options"] = dict(PBFT_OPTIONS)
    return options


def make_cluster(root: Path, nodes: int = 3, protocol: str = "raft") -> LocalCluster:
    nodes = max(nodes, default_registry().get(protocol).min_nodes)  # fast-paxos: 4
    layout = ClusterLayout.prepare(
        root, nodes, free_base_port(2 * nodes), node_options=node_options(protocol), protocol=protocol
    )
    return LocalCluster(layout)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path / "data") as c:
        c.start()
        c.wait_for_leader(30)
        yield c


@pytest.fixture(params=PROTOCOLS)
def any_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A running cluster of each protocol in turn."""
    with make_cluster(tmp_path / "data", protocol=request.param) as c:
        c.start()
        c.wait_ready(30)
        yield c


def post_json(url: str, body: Any, token: str | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def partition(cluster: LocalCluster, groups: list[list[str]]) -> None:
    """Each node drops traffic to and from the nodes outside its group."""
    token = cluster.layout.admin_token
    for group in groups:
        others = sorted(n for n in cluster.nodes if n not in group)
        for node in group:
            if cluster.nodes[node].running and not cluster.nodes[node].paused:
                # A node that just died or stalls is cut off anyway.
                with contextlib.suppress(OSError):
                    post_json(cluster.url(node) + "/v1/debug/faults", {"block": others}, token)


def heal(cluster: LocalCluster) -> None:
    partition(cluster, [sorted(cluster.nodes)])


def restart_everyone(cluster: LocalCluster, *, power_loss: bool) -> None:
    if power_loss:
        cluster.kill_all()
    else:
        cluster.stop()
    for node in cluster.nodes.values():
        node.start()
    cluster.wait_ready(30)


def jepsen(tmp_path: Path, nodes: int, seconds: float, seed: int, protocol: str = "raft") -> None:
    recorder = HistoryRecorder()
    workload = Workload(keys=8, workers=5, seed=seed, timeout=1.0, deadline=4.0)
    with make_cluster(tmp_path / "data", nodes, protocol) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        nemesis = Nemesis(cluster, random.Random(seed), partition=partition, heal=heal)
        load = ClientLoad(cluster.endpoints, workload, recorder).start()
        try:
            nemesis.run(seconds)
        finally:
            nemesis.heal_all()
            load.stop()
        cluster.wait_ready(30)
        keys = [workload.key(i) for i in range(workload.keys)]
        before = final_state(read_all(cluster.endpoints, recorder, keys, "before-restart"))
        restart_everyone(cluster, power_loss=False)
        after = final_state(read_all(cluster.endpoints, recorder, keys, "after-restart"))
        counts = recorder.counts()
        faults = [what for _, what in nemesis.log]
    history = tmp_path / "history.jsonl"
    assert recorder.unexpected == []
    assert counts["ok"] > 50, f"too little got through the faults: {counts}"
    assert any("SIGKILL" in f for f in faults) or any("restart" in f for f in faults), faults
    assert after == before
    assert_acknowledged_writes_survive(recorder, after)
    check_linearizable(recorder, history)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_jepsen_short(tmp_path: Path, protocol: str) -> None:
    jepsen(tmp_path, nodes=3, seconds=8.0, seed=1, protocol=protocol)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("nodes", "seed"), [(3, 2), (5, 3)])
def test_jepsen_long(tmp_path: Path, nodes: int, seed: int, protocol: str) -> None:
    jepsen(tmp_path, nodes=nodes, seconds=60.0, seed=seed, protocol=protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_whole_cluster_power_loss(tmp_path: Path, protocol: str) -> None:
    recorder = HistoryRecorder()
    workload = Workload(keys=8, workers=5, seed=7, mix=(("put", 0.6), ("cas", 0.2), ("get", 0.2)))
    with make_cluster(tmp_path / "data", protocol=protocol) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        load = ClientLoad(cluster.endpoints, workload, recorder).start()
        time.sleep(3.0)
        cluster.kill_all()  # every node at once, mid-load: whatever was not fsynced is gone
        load.stop()
        for node in cluster.nodes.values():
            node.start()
        cluster.wait_ready(30)
        keys = [workload.key(i) for i in range(workload.keys)]
        state = final_state(read_all(cluster.endpoints, recorder, keys, "after-power-loss"))
    acknowledged = recorder.acknowledged_versions()
    assert sum(acknowledged.values()) > 20, f"too few acknowledged writes to mean anything: {acknowledged}"
    assert_acknowledged_writes_survive(recorder, state)
    check_linearizable(recorder, tmp_path / "history.jsonl")


def test_restart_from_disk_keeps_writes_and_sessions(any_cluster: LocalCluster) -> None:
    """Every node stops (SIGTERM) and starts again from its data directory alone."""
    cluster = any_cluster
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        for i in range(20):
            kv.put(f"disk/{i}", f"v{i}")
    restart_everyone(cluster, power_loss=False)
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        assert [(e.key, e.value) for e in kv.list("disk/")] == sorted(
            (f"disk/{i}", f"v{i}") for i in range(20)
        )
        leader = cluster.leader() if cluster.has_leader() else "n1"  # leaderless: any node
        assert leader is not None
    # A retry of an acknowledged write (same X-Request-Id) is answered from the session
    # the state machine rebuilt from disk, not applied again.
    request = urllib.request.Request(
        cluster.url(leader) + "/v1/kv/disk/0",
        data=b"again",
        method="PUT",
        headers={"X-Request-Id": "restart-test:1"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        first = json.loads(resp.read())
    restart_everyone(cluster, power_loss=False)
    leader = cluster.leader() if cluster.has_leader() else "n2"
    assert leader is not None
    request.full_url = cluster.url(leader) + "/v1/kv/disk/0"
    for _ in range(50):  # the new leader may still be waiting out the old lease
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                retry = json.loads(resp.read())
            break
        except urllib.error.HTTPError as exc:
            assert exc.code in (421, 503), exc.read()
            time.sleep(0.1)
    else:
        pytest.fail("the retry never got an answer")
    assert retry["version"] == first["version"] == 2  # once: the first answer again
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        entry = kv.get("disk/0")
    assert (entry.value, entry.version) == ("again", 2)


# ---------------------------------------------------------------------- disk faults
def segments(node_dir: Path) -> list[Path]:
    return sorted(node_dir.rglob("wal-*.log"))


def wait_exit(cluster: LocalCluster, node: str, timeout: float = 20.0) -> int | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        code = cluster.nodes[node].returncode
        if code is not None:
            return code
        time.sleep(0.1)
    return None


def wait_applied(cluster: LocalCluster, node: str, index: int, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = cluster.statuses().get(node)
        if isinstance(status, dict) and status.get("applied", 0) >= index:
            return True
        time.sleep(0.1)
    return False


def stopped_follower_with_data(cluster: LocalCluster) -> tuple[str, Path]:
    victim = sorted(n for n in cluster.nodes if n != cluster.leader())[0]
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        for i in range(30):
            kv.put(f"disk/{i}", "v" * 50)
        last = kv.put("disk/last", "x").index or 0
    assert wait_applied(cluster, victim, last)
    cluster.nodes[victim].stop()
    return victim, cluster.layout.node(victim).data_dir


def test_wal_torn_tail_is_cut_and_bit_flip_refuses_to_start(cluster: LocalCluster) -> None:
    victim, node_dir = stopped_follower_with_data(cluster)

    # A torn final record (an append cut by power loss before its fsync finished): the
    # node discards it, says so, starts, and follows the leader again.
    tail = segments(node_dir)[-1]
    with open(tail, "ab") as f:
        f.write(frame_record(RECORD_BATCH, b"never synced" * 20)[:60])
    cluster.nodes[victim].start()
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        index = kv.put("disk/after-torn-tail", "y").index or 0
    assert wait_applied(cluster, victim, index), cluster.nodes[victim].log_tail()
    assert cluster.nodes[victim].running
    assert "discarded a torn final record" in cluster.nodes[victim].spec.log_path.read_text()

    # A flipped bit in the middle of the log: refuse to start, name file and offset.
    cluster.nodes[victim].stop()
    target = max(segments(node_dir), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x10
    target.write_bytes(bytes(data))
    log_size = cluster.nodes[victim].spec.log_path.stat().st_size
    cluster.nodes[victim].start()
    code = wait_exit(cluster, victim)
    assert code not in (None, 0), "a node with a corrupt WAL must refuse to start"
    log = cluster.nodes[victim].spec.log_path.read_text()[log_size:]
    assert "refuses to start" in log and target.name in log, log
    match = re.search(r"byte (\d+)", log)
    assert match is not None, log
    assert int(match.group(1)) <= middle
    # The rest of the cluster does not care.
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        assert kv.get("disk/after-torn-tail").value == "y"


def test_wal_truncated_synced_tail_starts(cluster: LocalCluster) -> None:
    """Cutting bytes off a record that *was* synced (a disk that lied about fsync): the
    node still starts, reporting what it discarded."""
    victim, node_dir = stopped_follower_with_data(cluster)
    tail = segments(node_dir)[-1]
    with open(tail, "r+b") as f:
        f.truncate(tail.stat().st_size - 5)
    cluster.nodes[victim].start()
    end = time.monotonic() + 20
    while time.monotonic() < end and not isinstance(cluster.statuses().get(victim), dict):
        time.sleep(0.1)
    assert cluster.nodes[victim].running
    status = cluster.statuses()[victim]
    assert isinstance(status, dict) and not status["halted"]
    assert "discarded a torn final record" in cluster.nodes[victim].spec.log_path.read_text()


def test_follower_that_lost_a_synced_entry_catches_up(cluster: LocalCluster) -> None:
    victim, node_dir = stopped_follower_with_data(cluster)
    tail = segments(node_dir)[-1]
    with open(tail, "r+b") as f:
        f.truncate(tail.stat().st_size - 5)
    cluster.nodes[victim].start()
    with cluster.client(timeout=1.0, deadline=10.0) as kv:
        index = kv.put("disk/after", "y").index or 0
    assert wait_applied(cluster, victim, index, timeout=10)


# ---------------------------------------------------------------------- bad input
def raw_http(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)  # no half-close: the server must answer what it has, then close
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_code(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), f"not an HTTP answer: {answer[:200]!r}"
    return int(answer.split(b" ", 2)[1])


def send_and_expect_close(port: int, payload: bytes, timeout: float = 10.0) -> bool:
    """Send ``payload`` to the peer port; True if the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(payload)
            while s.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            return False
    return True


async def dial_with(port: int, node_id: str, secret: bytes, expected_peer: str) -> str | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.wait_for(
            handshake.dial(reader, writer, node_id=node_id, secret=secret, expected_peer=expected_peer), 5
        )
        return None
    except handshake.HandshakeError as exc:
        return exc.reason
    finally:
        writer.close()


def test_bad_input_leaves_the_node_serving(cluster: LocalCluster) -> None:
    target = cluster.leader()
    assert target is not None
    spec = cluster.layout.node(target)
    pid = cluster.nodes[target].pid
    other = next(n for n in cluster.nodes if n != target)

    # Peer port: garbage before the handshake, an oversized frame after a real one.
    assert send_and_expect_close(spec.peer_port, os.urandom(4096))
    assert send_and_expect_close(spec.peer_port, b"CKIT" + b"\xff" * 100)
    secret = cluster.layout.secret_path.read_bytes().strip()

    async def oversized() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", spec.peer_port)
        await handshake.dial(reader, writer, node_id=other, secret=secret, expected_peer=target)
        writer.write((2**31).to_bytes(4, "big") + b"x" * 1024)
        await writer.drain()
        try:
            closed = await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            closed = True
        writer.close()
        return closed

    assert asyncio.run(oversized())
    # Wrong secret, unknown node id: refused.
    assert "refused" in (asyncio.run(dial_with(spec.peer_port, other, b"not the secret", target)) or "")
    assert "refused" in (asyncio.run(dial_with(spec.peer_port, "intruder", secret, target)) or "")

    # HTTP: malformed request line, bad parameters, unknown route, a value over the limit.
    assert status_code(raw_http(spec.client_port, b"GARBAGE\r\n\r\n")) == 400
    with Client([spec.client_url], timeout=2, deadline=5, admin_token=cluster.layout.admin_token) as kv:
        for method, path, body, expected in [
            ("PUT", "/v1/kv/k?cas_version=minus-one", b"v", (400, "bad-request")),
            ("GET", "/v1/kv/k?consistency=eventual", None, (400, "bad-request")),
            ("PUT", "/v1/kv/k", b"v" * (MAX_VALUE + 1), (413, "too-large")),
            ("GET", "/v1/no/such/route", None, (404, "not-found")),
            ("POST", "/v1/members", b"{not json", (400, "bad-json")),
        ]:
            request = urllib.request.Request(spec.client_url + path, data=body, method=method)
            if path == "/v1/members":
                request.add_header("Authorization", f"Bearer {cluster.layout.admin_token}")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=5)
            error = json.loads(info.value.read())
            assert (info.value.code, error["error"]) == expected, (path, error)
            assert error["message"]
        code, body = post_json(spec.client_url + "/v1/debug/faults", {"block": []}, token="wrong")
        assert code == 403 and body["error"] == "forbidden"

        # Unaffected: same process, still leader or follower in a working cluster.
        kv.put("still", "serving")
        assert kv.get("still").value == "serving"
        status = kv.status(spec.client_url)
    assert cluster.nodes[target].running and status["pid"] == pid
    assert not status["halted"]


def test_partition_through_the_fault_endpoint_moves_leadership(any_cluster: LocalCluster) -> None:
    """The leader (in a protocol without one: a node) is cut off; the rest elect a new
    leader where there is one and take writes; after the heal the cut node catches up."""
    cluster = any_cluster
    leader = cluster.leader() if cluster.has_leader() else sorted(cluster.nodes)[0]
    assert leader is not None
    rest = sorted(n for n in cluster.nodes if n != leader)
    partition(cluster, [[leader], rest])
    # The write first: a protocol may replace its leader only once a request waits
    # (PBFT's request timer); the others elect one meanwhile and the client retries.
    with Client([cluster.url(n) for n in rest], timeout=1, deadline=10) as kv:
        kv.put("during", "partition")
    if cluster.has_leader():
        new_leader = cluster.wait_for_leader(20, exclude=[leader])
        assert new_leader in rest
    heal(cluster)
    end = time.monotonic() + 20
    while time.monotonic() < end:  # the old leader learns the new term and the write
        try:
            with Client([cluster.url(leader)], timeout=1, deadline=1) as kv:
                if kv.get("during", consistency="stale").value == "partition":
                    break
        except (NotFound, Exception):
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"{leader} never caught up after the partition healed")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("protocol", "pre_vote"),
    [
        ("raft", True),
        ("multipaxos", True),
        ("raft", False),
        ("multipaxos", False),
        ("zab", None),  # ZAB has no pre-vote: a follower rejoins through leader election
    ],
)
def test_a_paused_follower_resumes_without_deposing_the_leader(
    tmp_path: Path, protocol: str, pre_vote: bool | None
) -> None:
    """A follower SIGSTOPped for five election timeouts (a long GC pause, a VM stall)
    finds its election timer overdue when it resumes.  The runtime handles the
    heartbeats waiting in its socket before that timer (server/runtime.py: a late timer
    waits for the sockets), so even without pre-vote it follows again; pre-vote would
    keep the leader anyway.  Same leader, same term, round or epoch.

    The pause starts once every node follows the leader: in a 3-node cluster that has
    elected with two nodes, pausing the one follower costs the leader its quorum, and it
    must step down (ZAB did, in about one run in five, while the late-started third node
    waited out its peers' dial backoff; the transport now dials back at once)."""
    options = node_options(protocol)
    if pre_vote is not None:
        options["options"] = {**options["options"], "pre_vote": pre_vote}
    layout = ClusterLayout.prepare(
        tmp_path / "data", 3, free_base_port(6), node_options=options, protocol=protocol
    )
    with LocalCluster(layout) as cluster:
        cluster.start()
        leader = cluster.wait_for_leader(30)
        with Client([cluster.url(leader)], timeout=2, deadline=10) as kv:
            kv.put("k", "before")
        end = time.monotonic() + 20
        while True:
            before = cluster.statuses()
            if all(isinstance(s, dict) and s.get("leader") == leader for s in before.values()):
                break
            assert time.monotonic() < end, f"not every node follows {leader}: {before}"
            time.sleep(0.1)
        follower = sorted(n for n in cluster.nodes if n != leader)[0]
        cluster.nodes[follower].pause()
        time.sleep(2.5)
        cluster.nodes[follower].resume()
        time.sleep(3.0)
        after = {n: s for n, s in cluster.statuses(timeout=2).items() if isinstance(s, dict)}
        assert after[leader]["role"] == "leader", after
        assert after[leader]["generation"] == before[leader]["generation"], (before, after[leader])
        assert after[follower]["leader"] == leader, after[follower]


# ---------------------------------------------------------------------- consensuskit up
def run_up(data_dir: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """``up_command`` in its own process, as the CLI runs it."""
    code = (
        "import json, sys; from consensuskit.server.commands import up_command; "
        "sys.exit(up_command(**json.loads(sys.argv[1])))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps({"data_dir": str(data_dir), **kwargs})],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} from `up`:\n{''.join(lines)}")


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def test_up_starts_stops_on_sigterm_and_recovers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base = free_base_port(6)
    up = run_up(data, nodes=3, base_port=base)
    try:
        wait_for_line(up, "endpoints:")
        endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]
        with Client(endpoints, timeout=1, deadline=10) as kv:
            kv.put("kept", "across ups")
            pids = [kv.status(f"http://{e}")["pid"] for e in endpoints]
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out
    assert "all nodes stopped" in out
    assert pids_alive(pids) == []
    assert {p.name for p in data.iterdir()} >= {
        "cluster.json",
        "cluster.secret",
        "admin.token",
        "n1.toml",
        "n1",
    }

    again = run_up(data)  # same data dir, no flags: the same cluster, recovered
    try:
        wait_for_line(again, "endpoints:")
        with Client(endpoints, timeout=1, deadline=10) as kv:
            assert kv.get("kept").value == "across ups"
        again.send_signal(signal.SIGINT)
        out, _ = again.communicate(timeout=30)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, out


@pytest.mark.parametrize("first_signal", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_up_exits_once_every_node_it_started_has_exited(tmp_path: Path, first_signal: signal.Signals) -> None:
    """Nodes stopped from outside leave `up` nothing to watch: it says how each ended and
    exits, 0 when every node stopped cleanly, 1 when one was killed."""
    base = free_base_port(6)
    up = run_up(tmp_path / "data", nodes=3, base_port=base, refresh=0.2)
    try:
        wait_for_line(up, "endpoints:")
        endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]
        with Client(endpoints, timeout=1, deadline=10) as kv:
            pids = [kv.status(f"http://{e}")["pid"] for e in endpoints]
        os.kill(pids[0], first_signal)
        time.sleep(0.5)
        assert up.poll() is None  # two nodes still run: still watching
        for pid in pids[1:]:
            os.kill(pid, signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    first = "exit 0" if first_signal == signal.SIGTERM else "killed by SIGKILL"
    assert f"every node has exited (n1 {first}, n2 exit 0, n3 exit 0): nothing left to watch" in out, out
    assert up.returncode == (0 if first_signal == signal.SIGTERM else 1), out
    assert "all nodes stopped" in out


def test_up_runs_a_protocol_without_a_leader(tmp_path: Path) -> None:
    """`consensuskit up --protocol fast-paxos`: as many nodes as its defaults need (4),
    ready once every node answers, any node takes writes."""
    base = free_base_port(8)
    up = run_up(tmp_path / "data", base_port=base, protocol="fast-paxos")
    try:
        lines = "".join(wait_for_line(up, "endpoints:"))
        assert "4 fast-paxos nodes" in lines and "fast-paxos has no leader" in lines
        endpoints = [f"127.0.0.1:{base + i}" for i in range(4)]
        with Client(endpoints, timeout=1, deadline=10) as kv:
            kv.put("anywhere", "ok")
        with Client(endpoints[-1:], timeout=1, deadline=10) as kv:
            assert kv.get("anywhere").value == "ok"
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out


def test_demo_script_passes(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    assert demo_script(Console(file=out, width=120), data_dir=str(tmp_path / "demo"), keys=5)
    text = out.getvalue()
    assert "kill the leader" in text and "new leader" in text and "all 5 writes are there" in text


def test_the_history_check_catches_a_stale_read(tmp_path: Path) -> None:
    """Negative control: with the ``stale-read`` bug a deposed leader answers reads from
    its own state; the recorded history must then fail the linearizability check."""
    options = {**NODE_OPTIONS, "options": {**NODE_OPTIONS["options"], "bugs": ["stale-read"]}}
    layout = ClusterLayout.prepare(tmp_path / "data", 3, free_base_port(6), node_options=options)
    recorder = HistoryRecorder()

    async def op(url: list[str], kind: str, seq: int, value: str | None = None) -> None:
        async with AsyncClient(url, timeout=1.0, deadline=10.0) as client:
            record = await recorded(recorder, client, "c1", seq, kind, "k", value=value)
        assert record.status == "ok", record

    with LocalCluster(layout) as cluster:
        cluster.start()
        old = cluster.wait_for_leader(30)
        asyncio.run(op(cluster.endpoints, "put", 1, "before"))
        rest = sorted(n for n in cluster.nodes if n != old)
        assert wait_applied(cluster, old, 2)
        partition(cluster, [[old], rest])
        cluster.wait_for_leader(20, exclude=[old])
        asyncio.run(op([cluster.url(n) for n in rest], "put", 2, "after"))
        asyncio.run(op([cluster.url(old)], "get", 3))
    assert recorder.dicts()[-1]["result"]["value"] == "before"
    with pytest.raises(AssertionError, match="not linearizable"):
        check_linearizable(recorder, tmp_path / "history.jsonl")


def test_the_history_check_catches_a_new_multipaxos_leader_that_does_not_wait_for_the_lease(
    tmp_path: Path,
) -> None:
    """Negative control for Multi-Paxos: with the ``lease-without-wait`` bug a new leader
    decides at once while the cut-off old leader (check-quorum off, a long lease) still
    serves lease reads from its own state; the history must fail the check."""
    protocol_options = {
        **NODE_OPTIONS["options"],
        "bugs": ["lease-without-wait"],
        "check_quorum": False,
        "lease_duration": 4.0,
    }
    options = {**NODE_OPTIONS, "options": protocol_options}
    layout = ClusterLayout.prepare(
        tmp_path / "data", 3, free_base_port(6), node_options=options, protocol="multipaxos"
    )
    recorder = HistoryRecorder()

    async def op(url: list[str], kind: str, seq: int, value: str | None = None) -> None:
        async with AsyncClient(url, timeout=1.0, deadline=10.0) as client:
            if kind == "get":
                record = OpRecord(process="c1", seq=seq, op="get", key="k", invoke=recorder.now())
                entry = await client.get("k", consistency="lease")
                record.status, record.complete = "ok", recorder.now()
                record.result = {"value": entry.value, "version": entry.version}
                recorder.add(record)
                return
            record = await recorded(recorder, client, "c1", seq, kind, "k", value=value)
        assert record.status == "ok", record

    with LocalCluster(layout) as cluster:
        cluster.start()
        old = cluster.wait_for_leader(30)
        asyncio.run(op([cluster.url(old)], "put", 1, "before"))
        rest = sorted(n for n in cluster.nodes if n != old)
        assert wait_applied(cluster, old, 1)
        partition(cluster, [[old], rest])
        cluster.wait_for_leader(20, exclude=[old])
        asyncio.run(op([cluster.url(n) for n in rest], "put", 2, "after"))
        asyncio.run(op([cluster.url(old)], "get", 3))
    assert recorder.dicts()[-1]["result"]["value"] == "before"
    with pytest.raises(AssertionError, match="not linearizable"):
        check_linearizable(recorder, tmp_path / "history.jsonl")
