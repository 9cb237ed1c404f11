"""etcd, the anchor some benchmarks measure in the same run: started with
../shared/bench/start_etcd_cluster.sh on its own ports and data directory, stopped (and
its data removed) however the measuring ends, even when the start failed halfway."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kv_throughput import SHARED_BENCH

SCRIPT = SHARED_BENCH / "start_etcd_cluster.sh"


@dataclass(frozen=True)
class EtcdCluster:
    leader_url: str  # http://HOST:PORT of the leader's client listener
    pids: dict[str, int]  # m1.. -> the members' process ids

    @property
    def leader_address(self) -> str:
        return self.leader_url.removeprefix("http://")


@contextlib.contextmanager
def etcd_cluster(members: int, base_port: int, console: Console) -> Iterator[EtcdCluster | None]:
    """A running etcd of ``members`` members (ETCD_BASE_PORT, else ``base_port``), or None
    when etcd is not installed or did not start (said on ``console``)."""
    if not SCRIPT.exists() or shutil.which("etcd") is None:
        console.print("[yellow]etcd is not installed: its rows are left out[/]")
        yield None
        return
    env = {
        **os.environ,
        "ETCD_BASE_PORT": os.environ.get("ETCD_BASE_PORT", str(base_port)),
        "ETCD_DATA_ROOT": tempfile.mkdtemp(prefix="etcd-anchor-"),
    }
    subprocess.run([str(SCRIPT), "stop"], capture_output=True, env=env)
    try:
        started = subprocess.run([str(SCRIPT), str(members)], capture_output=True, text=True, env=env)
        if started.returncode != 0:
            console.print(f"[red]etcd did not start:[/] {started.stderr.strip() or started.stdout.strip()}")
            yield None
            return
        leader = subprocess.run([str(SCRIPT), "leader"], capture_output=True, text=True, env=env)
        pid_file = Path(env["ETCD_DATA_ROOT"]) / "pids"
        pids = {f"m{i + 1}": int(p) for i, p in enumerate(pid_file.read_text().split())}
        yield EtcdCluster(leader.stdout.strip().splitlines()[0], pids)
    finally:  # a start that failed halfway leaves members running too
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, env=env)
        shutil.rmtree(env["ETCD_DATA_ROOT"], ignore_errors=True)
