"""``consensuskit backup save|status|restore``: outputs and exit codes, against in-process
clusters (the CLI runs in a worker thread, the clusters on the loop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.server.runtime_harness import Cluster, async_test
from tests.test_cli import run

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["backup", "frob"], "No such command 'frob'"),
        (["backup", "restore", "/nonexistent/backup"], "cannot read backup /nonexistent/backup"),
        (["backup", "status", "/nonexistent/backup"], "cannot read backup /nonexistent/backup"),
        (["backup", "save", "/nonexistent/dir/backup"], "no directory /nonexistent/dir"),
        (["backup", "save"], "Missing argument 'file'"),
        (["up", "--restore", "/nonexistent/backup"], "--restore: cannot read backup"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


def test_a_file_that_is_not_a_backup_exits_2(capsys, tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"ckbackup\x00\x01" + bytes(600))
    for verb in ("status", "restore"):
        code, _, err = run(capsys, "backup", verb, str(path))
        assert code == 2 and "checksum mismatch" in err and len(err.strip().splitlines()) == 1


@async_test
async def test_save_status_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kv.ckbackup"
    token_file = str(tmp_path / "a" / "admin-token")  # runtime_harness writes it

    async def cli(c: Cluster, *args: str) -> tuple[int, str, str]:
        eps = ",".join(c.url(i) for i in IDS)
        return await asyncio.to_thread(run, capsys, *args, "--endpoints", eps)

    async with Cluster(tmp_path / "a", IDS) as c:
        leader = await c.wait_leader()
        for i in range(3):
            await c.call("PUT", leader, f"/v1/kv/k{i}", data=f"v{i}")
        code, _, err = await cli(c, "backup", "save", str(path))  # no admin token
        assert code == 1 and "unauthorized" in err and not path.exists()
        code, out, err = await cli(c, "backup", "save", str(path), "--admin-token-file", token_file)
        assert code == 0, err
        assert out.startswith(f"saved {path}: service kv from node ") and "(raft) at index" in out
        assert path.exists() and not path.with_name(path.name + ".part").exists()
        assert path.stat().st_mode & 0o777 == 0o600  # it holds every key and password hash

    code, out, _ = await asyncio.to_thread(run, capsys, "backup", "status", str(path))
    assert code == 0 and out.splitlines()[0].split() == ["service", "kv"]
    assert out.splitlines()[1].split() == ["entries", "3"]
    code, out, _ = await asyncio.to_thread(run, capsys, "backup", "status", str(path), "--json")
    doc = json.loads(out)
    assert (doc["service"], doc["entries"], doc["protocol"]) == ("kv", 3, "raft")

    async with Cluster(tmp_path / "b", IDS) as c:
        leader = await c.wait_leader()
        token_b = str(tmp_path / "b" / "admin-token")
        code, out, err = await cli(c, "backup", "restore", str(path), "--admin-token-file", token_b)
        assert code == 0, err
        assert out.startswith(f"restored {path}: 3 entries of service kv")
        _, body, _ = await c.call("GET", leader, "/v1/kv?prefix=k")
        assert [i["value"] for i in body["items"]] == ["v0", "v1", "v2"]
        code, _, err = await cli(c, "backup", "restore", str(path), "--admin-token-file", token_b)
        assert code == 1 and "not-empty: the cluster already holds data" in err
