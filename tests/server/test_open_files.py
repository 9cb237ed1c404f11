"""Client connections cannot take the descriptors a node's storage needs
(server/open_files.py, wal.py ``_FileOpener``).

The probe: a node under a 200-file limit, 260 idle client connections, then writes with
snapshots on one of them.  Before: every later connection was reset, and the node halted
at its first snapshot file (``[Errno 24] Too many open files``, status 70)."""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from consensuskit.server.open_files import RESERVED_FILES, connection_cap
from tests.server.test_conn_guard_process import write_config
from tests.server.test_runtime_process import http, stop, wait_leader

pytestmark = pytest.mark.timeout(120)


def test_the_cap_leaves_the_reserve_and_says_so(caplog):
    assert connection_cap(1024, None) == 1024  # unlimited or unknown
    assert connection_cap(1024, 1024 + RESERVED_FILES) == 1024
    with caplog.at_level(logging.WARNING):
        assert connection_cap(1024, 1024) == 1024 - RESERVED_FILES
    assert caplog.messages == [
        f"max_connections 1024 lowered to {1024 - RESERVED_FILES}: the open-file limit is 1024 and "
        f"{RESERVED_FILES} descriptors are kept for the node's storage and peers (raise the limit: "
        "ulimit -n, or LimitNOFILE= in a systemd unit)"
    ]
    assert connection_cap(1024, 200) == 50  # a limit below the reserve: a quarter of it
    assert connection_cap(10, 3) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # HTTP and gRPC share what the limit leaves
        assert connection_cap(1024, 1024 + RESERVED_FILES, listeners=2) == 512
    assert "lowered to 512" in caplog.text and "shared by its 2 client listeners" in caplog.text
    assert connection_cap(1024, 2 * 1024 + RESERVED_FILES, listeners=2) == 1024


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_soft_limit_is_raised_to_the_hard_one():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = run_python(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, {hard}))
        from consensuskit.server.open_files import raise_open_file_limit
        print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    assert out == f"{hard} {hard}"


def test_the_storage_opens_its_files_when_the_process_has_no_descriptor_left(tmp_path):
    # In a child process: it spends every descriptor, then writes a snapshot-sized record
    # (its own file) and rolls a segment; both need a new descriptor.
    out = run_python(
        f"""
        import errno, os, resource
        from consensuskit.server.wal import DiskStorage
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        storage = DiskStorage.open({str(tmp_path / "n")!r}, segment_bytes=4096, inline_limit=100)
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        for i in range(3):
            storage.put("snap", {{"data": bytes([i]) * 5000}})
            storage.log_append([b"x" * 3000])
            storage.sync()
        print(len(storage.segment_paths()) > 1, storage.get("snap")["data"][:1])
        """
    )
    assert out == "True b'\\x02'"


def test_a_node_under_a_small_limit_serves_and_snapshots_with_the_connections_full(tmp_path):
    config, port = write_config(tmp_path)
    config.write_text(config.read_text() + "snapshot_threshold = 20\n")  # under [options]
    url = f"http://127.0.0.1:{port}"

    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    proc = subprocess.Popen(
        [sys.executable, "-m", "consensuskit.server.main", "--config", str(config), "--bootstrap"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=small_limit,
    )
    idle: list[socket.socket] = []
    try:
        wait_leader(url, proc)
        first = socket.create_connection(("127.0.0.1", port))
        for _ in range(260):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.5)
        # Beyond the cap, answered 503 and closed, not left to starve the storage (those
        # the limit leaves no descriptor for meanwhile wait in the listen backlog).
        time.sleep(1.0)
        refused = 0
        for sock in idle:
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):
                refused += b" 503 " in sock.recv(200)
        assert refused >= 100
        stream = first.makefile("rb")
        for i in range(60):  # three snapshots, each its own file (above the inline limit)
            body = b"y" * 30_000
            head = b"PUT /v1/kv/k%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, len(body))
            first.sendall(head + body)
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 200"), (i, status)
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            stream.read(length)
        assert proc.poll() is None
        for sock in idle:
            sock.close()
        assert http("GET", url + "/v1/kv/k59")[0] == 200  # a new connection once they left
    finally:
        for sock in idle:
            sock.close()
        code, err = stop(proc)
    assert code == 0, err
    assert "max_connections 1024 lowered to 50: the open-file limit is 200" in err
    assert "Too many open files" not in err
    assert list((tmp_path / "data").glob("rec-*.bin")), "no snapshot file was written"
