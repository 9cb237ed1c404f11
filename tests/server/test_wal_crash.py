"""DiskStorage in a real process killed with SIGKILL mid-write: every batch whose sync
returned survives, and each batch survives whole (the hard state written with a batch
always matches its last entry)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from consensuskit.protocols.raft.messages import HardState
from consensuskit.server.wal import DiskStorage

pytestmark = pytest.mark.timeout(120)

WRITER = textwrap.dedent(
    """
    import random, sys
    from consensuskit.protocols.raft.messages import HardState
    from consensuskit.server.wal import DiskStorage

    storage = DiskStorage.open(sys.argv[1], segment_bytes=4096, inline_limit=64)
    rng = random.Random(int(sys.argv[2]))
    position = storage.log_last()
    print("ready", position, flush=True)
    while True:
        for _ in range(rng.randint(1, 8)):
            position += 1
            storage.log_append([("e", position, b"x" * 16)])
        storage.put("hard", HardState(term=position, voted_for=None))
        if rng.random() < 0.05:
            storage.put("snap", ("s", position, b"y" * 100))  # a file of its own
        if position % 40 < 8:
            storage.log_compact_to(position - 20)
        storage.sync()
        print(position, flush=True)
    """
)


def run_and_kill(directory: Path, seed: int, after_acks: int) -> int:
    """Start a writer, SIGKILL it after ``after_acks`` synced batches; the last acked position."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline().split()
        assert first and first[0] == "ready", proc.stderr.read() if proc.stderr else ""
        acked = int(first[1])
        for _ in range(after_acks):
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        # Lines already printed were acknowledged too: read what the pipe still holds.
        for line in proc.stdout:
            acked = int(line)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return acked


def test_sigkill_mid_load_loses_no_acknowledged_batch(tmp_path: Path):
    directory = tmp_path / "n"
    acked_so_far = 0
    for round_, acks in enumerate((30, 5, 120, 60)):
        start = time.monotonic()
        acked = run_and_kill(directory, round_, acks)
        assert acked >= acked_so_far
        acked_so_far = acked
        s = DiskStorage.open(directory, inline_limit=64)
        try:
            last = s.log_last()
            assert last >= acked, f"round {round_}: acknowledged {acked}, recovered up to {last}"
            records = s.log_records()
            assert [r[1] for r in records] == list(range(s.log_first(), last + 1))
            assert s.get("hard") == HardState(term=last, voted_for=None)  # batches are whole
            snap = s.get("snap")
            assert snap is None or snap[1] <= last
        finally:
            s.close()
        assert time.monotonic() - start < 60
