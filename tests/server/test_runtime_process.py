"""``python -m consensuskit.server.main`` as a real process: serve, SIGTERM, restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from consensuskit.catalog import default_registry
from consensuskit.server.cluster import free_port

pytestmark = pytest.mark.timeout(60)

# Protocol options of a one-node cluster, by protocol (default: Raft's timers).
OPTIONS = {
    "basic-paxos": [],
    "fast-paxos": ["f = 0"],  # one acceptor: no failure to survive
    "zab": ["election_timeout = 0.2", "tick = 0.05"],
    "pbft": [],  # n = 1, f = 0; Ed25519 by default on a server (the cluster key)
}
TIMERS = ["election_timeout = 0.2", "heartbeat_interval = 0.05"]


def write_config(tmp_path: Path, data_dir: str = "data", protocol: str = "raft") -> tuple[Path, str]:
    (tmp_path / "secret").write_text("secret")
    port = free_port()
    path = tmp_path / f"node-{port}.toml"
    path.write_text(
        "\n".join(
            [
                'id = "solo"',
                f'peer_address = "127.0.0.1:{free_port()}"',
                f'client_address = "127.0.0.1:{port}"',
                f'data_dir = "{data_dir}"',
                'secret_file = "secret"',
                f'protocol = "{protocol}"',
                "[options]",
                *OPTIONS.get(protocol, TIMERS),
            ]
        )
        + "\n"
    )
    return path, f"http://127.0.0.1:{port}"


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # --bootstrap: a fresh directory is a first start; ignored once it holds data.
        [sys.executable, "-m", "consensuskit.server.main", "--config", str(config), "--bootstrap"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_leader(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> dict:
    """The node serves: it leads with its log committed, or, in a protocol without a
    leader, it committed something (the session clock's first command)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            _, body = http("GET", url + "/v1/status")
            leads = body.get("role") == "leader" or "has-leader" not in body.get("capabilities", [])
            if leads and body["commit"] >= body["last_index"] >= 1:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise AssertionError("the node did not become leader")


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    return proc.returncode, err.decode()


# The kv service's write survives a restart: the protocols serving kv (the log ones).
@pytest.mark.parametrize("protocol", [p for p in default_registry().names() if default_registry().get(p).log])
def test_serve_until_sigterm_then_recover_from_the_data_dir(tmp_path, protocol):
    config, url = write_config(tmp_path, protocol=protocol)
    proc = start(config)
    try:
        status = wait_leader(url, proc)
        assert status["pid"] == proc.pid and status["id"] == "solo" and status["protocol"] == protocol
        assert http("PUT", url + "/v1/kv/k", b"durable")[0] == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "ready" in err and "stopped" in err
    proc = start(config)
    try:
        wait_leader(url, proc)
        status, body = http("GET", url + "/v1/kv/k")
        assert (status, body["value"]) == (200, "durable")
    finally:
        assert stop(proc)[0] == 0


def test_a_second_process_on_the_same_data_dir_refuses_to_start(tmp_path):
    config, url = write_config(tmp_path)
    proc = start(config)
    try:
        wait_leader(url, proc)
        other_config, _ = write_config(tmp_path)  # other ports, same data_dir
        other = subprocess.run(
            [sys.executable, "-m", "consensuskit.server.main", "--config", str(other_config)],
            capture_output=True,
            timeout=20,
        )
        assert other.returncode == 1
        assert "refuses to start" in other.stderr.decode()
    finally:
        stop(proc)


def test_bad_config_exits_2(tmp_path):
    config, _ = write_config(tmp_path)
    config.write_text("nonsense = true\n" + config.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "consensuskit.server.main", "--config", str(config)],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.decode().startswith("error: unknown setting 'nonsense'")
