"""The live source (view/live.py): gaps and resyncs, merged node streams, actions; on
in-process clusters (real HTTP, websockets and TCP) and, last, on real node processes."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.view.live import ClusterControl, Launch, LiveCluster, PidControl, make_live_source
from consensuskit.view.source import LiveSource
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]


def drained(source: LiveCluster) -> list[dict[str, Any]]:
    out = []
    while not source._queue.empty():
        out.append(source._queue.get_nowait())
    return out


# ---------------------------------------------------------------------- stream rules
@async_test
async def test_a_gap_drops_the_rest_of_the_batch_and_a_resumed_snapshot_says_nothing():
    source = LiveCluster({"n1": "http://127.0.0.1:1"}, None)
    assert isinstance(source, LiveSource)
    snap = {
        "node": "n1",
        "incarnation": "a",
        "epoch": source.origin + 10.0,
        "t": 1.0,
        "seq": 4,
        "resumed": False,
    }
    source._on_snapshot("n1", {**snap, "status": {"role": "leader"}, "pid": 42})
    [hello] = drained(source)
    assert hello["ev"] == "snapshot" and hello["seq"] == 4 and hello["status"] == {"role": "leader"}
    assert hello["t"] == pytest.approx(11.0) and source.pids["n1"] == 42
    # 5 and 6 pass (on the source's clock, the node's t kept); 8 is a gap: it and the
    # rest of its batch wait for the resync.
    assert source._on_records("n1", [{"seq": 5, "t": 2.0, "ev": "rec"}, {"seq": 6, "t": 2.5, "ev": "rec"}])
    assert not source._on_records(
        "n1", [{"seq": 8, "t": 3.0, "ev": "rec"}, {"seq": 9, "t": 3.0, "ev": "rec"}]
    )
    passed = drained(source)
    assert [(r["seq"], r["node"], r["t"], r["t_node"]) for r in passed] == [
        (5, "n1", pytest.approx(12.0), 2.0),
        (6, "n1", pytest.approx(12.5), 2.5),
    ]
    assert source.last["n1"] == 6
    # The resync resumes right after 6: nothing new to tell the page.
    source._on_snapshot("n1", {**snap, "seq": 6, "resumed": True})
    assert drained(source) == []
    assert source._on_records("n1", [{"seq": 7, "t": 3.0, "ev": "rec"}])
    assert [r["seq"] for r in drained(source)] == [7]
    # The node was restarted: a new incarnation from its first event, announced.
    source.connected["n1"] = True
    source._down("n1", "connection refused")
    source._on_snapshot("n1", {**snap, "incarnation": "b", "seq": 0})
    down, again = drained(source)
    assert (down["ev"], down["kind"], down["node"]) == ("fault", "down", "n1") and "seq" not in down
    assert (again["ev"], again["seq"], again["incarnation"]) == ("snapshot", 0, "b")
    assert source._on_records("n1", [{"seq": 1, "t": 0.0, "ev": "start"}])


@async_test
async def test_actions_refuse_in_one_line():
    source = LiveCluster({"n1": "http://10.9.9.9:1"}, None)
    assert await source.act("kill") == {"ok": False, "detail": "an action is a JSON object"}
    assert (await source.act({"action": "explode"}))["detail"].startswith("unknown action 'explode'; valid:")
    assert await source.act({"action": "kill", "node": "n7"}) == {
        "ok": False,
        "detail": "no node 'n7'; nodes: n1",
    }
    for action in ({"action": "heal"}, {"action": "transfer", "to": "n1"}):
        answer = await source.act(action)
        assert not answer["ok"] and "admin token" in answer["detail"], answer
    answer = await source.act({"action": "kill", "node": "n1"})
    assert not answer["ok"] and "another host" in answer["detail"]
    answer = await source.act({"action": "restart", "node": "n1"})
    assert not answer["ok"] and "another host" in answer["detail"]
    await source.close()


@async_test
async def test_restart_without_a_known_launch_says_so():
    source = LiveCluster({"n1": "http://127.0.0.1:1"}, None)
    source.pids["n1"] = 2**22 + 12345
    assert await source.act({"action": "restart", "node": "n1"}) == {
        "ok": False,
        "detail": "n1's command line is unknown (/proc did not show it): restart it where it was "
        "started, or run the cluster with `consensuskit up --view`",
    }
    await source.close()


def test_launch_reads_a_process_command_directory_environment_and_log(tmp_path: Path) -> None:
    import os
    import subprocess

    log = tmp_path / "node.log"
    with open(log, "ab") as out:
        argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        process = subprocess.Popen([*argv, "--bootstrap"], cwd=tmp_path, env={"CK_MARK": "1"}, stdout=out)
    try:
        end = time.monotonic() + 5
        launch = Launch.of(process.pid)
        while (launch is None or launch.argv[:1] != (sys.executable,)) and time.monotonic() < end:
            time.sleep(0.01)  # between fork and exec /proc shows the parent's, or nothing
            launch = Launch.of(process.pid)
        assert launch is not None
        assert launch.argv == tuple(argv) and launch.cwd == str(tmp_path)
        assert launch.env == {"CK_MARK": "1"} and launch.output == str(log)
    finally:
        process.kill()
        process.wait()
    assert Launch.of(process.pid) is None  # gone
    assert Launch.of(os.getpid()) is not None


@async_test
async def test_partition_says_in_one_line_why_nodes_refused(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback") as c:  # no fault hooks
        await c.wait_leader()
        urls = {"n1": c.servers["n1"].config.client_url, "n2": "http://127.0.0.1:1"}
        source = LiveCluster(urls, ADMIN_TOKEN)
        answer = await source.act({"action": "partition", "groups": [["n1"], ["n2"]]})
        assert not answer["ok"] and "\n" not in answer["detail"]
        disabled = "n1: fault injection is disabled (enable_fault_injection; `up --view` turns it on)"
        assert answer["detail"].startswith(disabled + "; n2: unreachable ("), answer
        await source.close()


# ---------------------------------------------------------------------- in-process clusters
async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(0.02)


class Collector:
    """Reads a source's records in the background."""

    def __init__(self, source: LiveCluster) -> None:
        self.source = source
        self.records: list[dict[str, Any]] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for record in self.source.records():
            self.records.append(record)

    def of(self, ev: str, **fields: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if r["ev"] == ev and all(r.get(k) == v for k, v in fields.items())]

    async def close(self) -> None:
        await self.source.close()
        await asyncio.wait_for(self.task, 5)


@async_test
async def test_every_node_streams_and_partition_heal_transfer_put_get_act_on_the_cluster(tmp_path):
    async with Cluster(tmp_path, IDS, enable_fault_injection=True) as c:
        leader = await c.wait_leader()
        urls = {n: s.config.client_url for n, s in c.servers.items()}
        # (make_live_source would ask the nodes who they are, blocking this loop: theirs.)
        source = LiveCluster(urls, ADMIN_TOKEN)
        seen = Collector(source)
        try:
            assert await source.wait_connected()
            await until(lambda: {r["node"] for r in seen.of("snapshot")} == set(IDS), what="snapshots")
            assert (await source.act({"action": "put", "key": "k", "value": "v1"}))["ok"]
            assert await source.act({"action": "get", "key": "k"}) == {
                "ok": True,
                "detail": "'k' = 'v1' (version 1)",
            }
            assert await source.act({"action": "get", "key": "nope"}) == {
                "ok": False,
                "detail": "'nope' not found",
            }

            target = next(n for n in IDS if n != leader)
            answer = await source.act({"action": "transfer", "to": target})
            assert answer == {"ok": True, "detail": f"leader is now {target}"}
            await until(lambda: seen.of("status", node=target, role="leader"), what="the new leader's status")

            others = [n for n in IDS if n != target]
            answer = await source.act({"action": "partition", "groups": [[target], others]})
            assert answer == {"ok": True, "detail": f"partitioned: {target} | {','.join(others)}"}
            await until(lambda: len(seen.of("fault", kind="block")) == 3, what="three block faults")
            assert {tuple(r["peers"]) for r in seen.of("fault", kind="block", node=target)} == {tuple(others)}
            # The majority side elects a leader of its own.
            await until(
                lambda: any(seen.of("status", node=n, role="leader") for n in others), what="a leader"
            )
            assert (await source.act({"action": "heal"}))["ok"]
            await until(lambda: len(seen.of("fault", kind="block")) == 6, what="three heals")
            # Each action is a fault on the timeline, with no seq of any node.
            await until(lambda: seen.of("fault", kind="heal"), what="the heal's mark")
            marks = [r for r in seen.of("fault") if r["kind"] in ("partition", "heal")]
            assert [(r["kind"], r.get("groups"), "seq" in r) for r in marks] == [
                ("partition", f"{target} | {','.join(others)}", False),
                ("heal", None, False),
            ]
            # Every node's records, in seq order without a gap after its snapshot.
            for node in IDS:
                mine = [r for r in seen.records if r.get("node") == node]
                seqs = [r["seq"] for r in mine if r["ev"] != "snapshot" and "seq" in r]
                first = seen.of("snapshot", node=node)[0]["seq"]
                assert seqs == list(range(first + 1, first + 1 + len(seqs))), node
                assert {"send", "deliver", "status", "rec"} <= {r["ev"] for r in mine}
            assert source.gaps == dict.fromkeys(IDS, 0)
        finally:
            await seen.close()


@async_test
async def test_no_event_is_lost_at_1000_events_per_second(tmp_path):
    """A burst of protocol records, 1,000 a second on every node for 3 s: every one
    arrives through the websockets and the merge, in order, with no gap."""
    async with Cluster(tmp_path, IDS, transport="loopback") as c:
        await c.wait_leader()
        urls = {n: s.config.client_url for n, s in c.servers.items()}
        source = LiveCluster(urls, ADMIN_TOKEN)
        seen = Collector(source)
        try:
            assert await source.wait_connected()
            rate, seconds = 1000, 3.0
            start = time.monotonic()
            sent = 0
            while sent < rate * seconds:
                due = int((time.monotonic() - start) * rate)
                for _ in range(min(due - sent, 100)):
                    for server in c.servers.values():
                        server.runtime.record("burst", n=sent)
                    sent += 1
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - start
            await until(
                lambda: all(len(seen.of("rec", kind="burst", node=n)) == sent for n in IDS), what="all"
            )
            for node in IDS:
                assert [r["n"] for r in seen.of("rec", kind="burst", node=node)] == list(range(sent))
            assert source.gaps == dict.fromkeys(IDS, 0)
            assert elapsed < seconds * 1.5  # the burst really was about 1,000 a second
            for server in c.servers.values():
                assert server.events is not None and server.events.lost == 0
        finally:
            await seen.close()


# ---------------------------------------------------------------------- real processes
def test_a_killed_leader_gives_a_new_leader_in_the_stream_and_a_restart_comes_back(tmp_path: Path) -> None:
    options = {
        "enable_fault_injection": True,
        "options": {"election_timeout": 0.3, "heartbeat_interval": 0.05},
    }
    layout = ClusterLayout.prepare(tmp_path / "data", 3, free_base_port(6), node_options=options)
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_for_leader(30)

        async def run() -> None:
            source = make_live_source(cluster.endpoints, layout.admin_token, control=ClusterControl(cluster))
            assert source.node_ids == ["n1", "n2", "n3"] and source.protocol == "raft"
            assert source.urls == {n: cluster.url(n) for n in source.node_ids}
            seen = Collector(source)
            try:
                assert await source.wait_connected(20)
                await until(lambda: len(seen.of("snapshot")) == 3, what="snapshots")
                # The leader, as its own status says (in its snapshot, or a status event since).
                await until(lambda: seen.of("snapshot", role="leader") or seen.of("status", role="leader"))
                leading = [r for r in seen.records if r["ev"] in ("snapshot", "status")]
                leader = [r["node"] for r in leading if (r.get("status") or r).get("role") == "leader"][-1]
                pid = cluster.nodes[leader].pid
                answer = await source.act({"action": "kill", "node": leader})
                assert answer == {"ok": True, "detail": f"{leader} (pid {pid}) killed with SIGKILL"}
                await until(lambda: seen.of("fault", kind="down", node=leader), what="the kill")
                await until(lambda: seen.of("fault", kind="crash", node=leader), what="the kill's own mark")
                await until(
                    lambda: [r for r in seen.of("status", role="leader") if r["node"] != leader],
                    20,
                    "a new leader",
                )
                answer = await source.act({"action": "restart", "node": leader})
                assert answer["ok"] and answer["detail"].startswith(f"{leader} started again"), answer
                # Back: a new incarnation, streamed from its first event (start).
                await until(lambda: len(seen.of("snapshot", node=leader)) == 2, 20, "the restarted node")
                await until(lambda: seen.of("start", node=leader), 10, "its start event")
                assert seen.of("snapshot", node=leader)[1]["seq"] == 0
                assert source.gaps == dict.fromkeys(source.node_ids, 0)
                # Pause and resume act on the process too.
                other = next(n for n in source.node_ids if n != leader)
                assert (await source.act({"action": "pause", "node": other}))["ok"]
                assert cluster.nodes[other].paused
                assert (await source.act({"action": "resume", "node": other}))["ok"]
                assert not cluster.nodes[other].paused
            finally:
                await seen.close()

        asyncio.run(run())


def test_view_endpoints_kills_and_restarts_a_node_it_did_not_start(tmp_path: Path) -> None:
    """``consensuskit view --endpoints`` (``PidControl``): the node's command is read from
    /proc when its stream opens, so a killed node starts again, its output appended to
    its log, and streams from its first event; the restart drops ``--bootstrap``."""
    layout = ClusterLayout.prepare(tmp_path / "data", 3, free_base_port(6))
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30, every_node=True)
        killed = cluster.nodes["n2"].pid

        async def run() -> PidControl:
            source = make_live_source(cluster.endpoints, layout.admin_token)
            assert isinstance(source.control, PidControl)
            seen = Collector(source)
            try:
                assert await source.wait_connected(20)
                await until(lambda: len(seen.of("snapshot")) == 3, what="snapshots")
                assert source.launches["n2"].argv[-2:] == ("--config", str(layout.node("n2").config_path))
                assert "--bootstrap" not in source.launches["n2"].argv
                answer = await source.act({"action": "kill", "node": "n2"})
                assert answer == {"ok": True, "detail": f"n2 (pid {killed}) killed with SIGKILL"}
                await until(lambda: seen.of("fault", kind="down", node="n2"), what="the kill")
                answer = await source.act({"action": "restart", "node": "n2"})
                assert answer["ok"] and answer["detail"].startswith("n2 started again (pid "), answer
                await until(lambda: len(seen.of("snapshot", node="n2")) == 2, 30, "the restarted node")
                assert seen.of("snapshot", node="n2")[1]["seq"] == 0
                assert source.pids["n2"] != killed
                # A restart of a running node stops it first.
                running = source.pids["n2"]
                answer = await source.act({"action": "restart", "node": "n2"})
                assert answer["ok"], answer
                await until(lambda: len(seen.of("snapshot", node="n2")) == 3, 30, "the second restart")
                assert source.pids["n2"] not in (killed, running)
                return source.control
            finally:
                await seen.close()

        control = asyncio.run(run())
        try:
            log = layout.node("n2").log_path.read_text()
            assert log.count("--- consensuskit view: starting again") == 2
            assert cluster.wait_ready(30, every_node=True)
            with cluster.client() as kv:
                kv.put("after", "restart")
                assert kv.get("after").value == "restart"
        finally:
            for process in control.started:
                process.terminate()
                process.wait(10)


def test_pid_control_pauses_resumes_and_kills_the_pid_a_local_node_reports() -> None:
    import subprocess

    process = subprocess.Popen(["sleep", "60"])
    try:
        source = LiveCluster({"n1": "http://127.0.0.1:1"}, None)
        source.pids["n1"] = process.pid

        def state(wanted: Callable[[str], bool]) -> str:
            """The process's state once ``wanted`` (a signal lands asynchronously)."""
            end = time.monotonic() + 5
            while True:
                now = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if wanted(now) or time.monotonic() > end:
                    return now
                time.sleep(0.01)

        async def run(name: str) -> dict[str, Any]:
            return await source.act({"action": name, "node": "n1"})

        assert asyncio.run(run("pause")) == {
            "ok": True,
            "detail": f"n1 (pid {process.pid}) paused with SIGSTOP",
        }
        assert state(lambda s: s == "T") == "T"
        assert asyncio.run(run("resume"))["ok"] and state(lambda s: s != "T") != "T"
        assert asyncio.run(run("kill")) == {
            "ok": True,
            "detail": f"n1 (pid {process.pid}) killed with SIGKILL",
        }
        assert process.wait(10) == -9
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_pid_control_signals_the_pid_a_local_node_reports() -> None:
    source = LiveCluster({"n1": "http://127.0.0.1:1"}, None)
    assert isinstance(source.control, PidControl)  # no process control given: by pid
    source.pids["n1"] = 2**22 + 12345  # beyond any pid: no such process

    async def run() -> dict[str, Any]:
        return await source.act({"action": "pause", "node": "n1"})

    answer = asyncio.run(run())
    assert answer == {"ok": False, "detail": f"n1 (pid {2**22 + 12345}) is not running"}


def test_up_view_serves_the_live_page_with_the_fault_hooks_on(tmp_path: Path) -> None:
    """``consensuskit up --view`` (up_command in its own process, as the CLI runs it)."""
    import json
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    base = free_base_port(6)
    code = (
        "import json, sys; from consensuskit.server.commands import up_command; "
        "sys.exit(up_command(**json.loads(sys.argv[1])))"
    )
    args = {"data_dir": str(tmp_path / "data"), "nodes": 3, "base_port": base, "view": True, "view_port": 0}
    up = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        lines: list[str] = []
        end = time.monotonic() + 60
        while time.monotonic() < end and not any(line.startswith("view: ") for line in lines):
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
        found = re.search(r"^view: (http://127\.0\.0\.1:\d+/)", "".join(lines), re.M)
        assert found, "".join(lines)
        with urllib.request.urlopen(found.group(1) + "view.json", timeout=60) as response:
            meta = json.loads(response.read())["meta"]
        assert meta["live"] is True and meta["protocol"] == "raft" and meta["nodes"] == ["n1", "n2", "n3"]
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{base}/v1/debug/faults",
            data=b'{"block": []}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200  # --view turned the fault hooks on
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=30)
        assert up.returncode == 0 and "all nodes stopped" in out, out
    finally:
        if up.poll() is None:  # a failure above: SIGTERM first, so `up` stops its nodes
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
