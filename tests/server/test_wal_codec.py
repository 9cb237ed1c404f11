"""The WAL holds codec bytes (log records are ``encode()``d): the msgspec engine writes the
very files the msgpack reference wrote, so a directory of the release before the engine
opens unchanged, and one written now opens in that release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consensuskit.core import messages
from consensuskit.core.client import ClientRequest, Op, Principal
from consensuskit.protocols.raft.messages import COMMAND, CONFIG, ClusterConfig, HardState, LogEntry
from consensuskit.server import wal, wal_recovery
from consensuskit.server.wal import DiskStorage

pytestmark = pytest.mark.timeout(60)


def records() -> list[Any]:
    out: list[Any] = []
    for i in range(1, 200):
        op = Op(kind="put", key=f"k{i}", value=("v" * (i % 40), i, -(i**5), 1.5, b"\x00" * i, None, True))
        who = Principal(name="alice", via="token", rev=i) if i % 3 else None
        out.append(
            LogEntry(
                term=1 + i // 50,
                index=i,
                kind=COMMAND,
                data=ClientRequest(client_id=f"c{i % 7}", seq=i, op=op, principal=who),
            )
        )
    out.append(LogEntry(term=5, index=200, kind=CONFIG, data=ClusterConfig(voters=("a", "b", "c"))))
    return out


def write(directory: Path) -> None:
    s = DiskStorage.open(directory, fsync=False)
    s.put("hard_state", HardState(term=5, voted_for="a"))
    s.log_append(records()[:120])
    s.sync()
    s.log_truncate_from(100)
    s.log_append(records()[99:])
    s.sync()
    s.log_compact_to(10)
    s.sync()
    s.close()


def files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and "lock" not in p.name
    }


def contents(directory: Path) -> tuple[Any, ...]:
    s = DiskStorage.open(directory, fsync=False)
    try:
        return s.log_first(), s.log_last(), s.log_records(), s.get("hard_state")
    finally:
        s.close()


@pytest.fixture
def reference_codec(monkeypatch):
    """The codec of the release before the engine: msgpack alone."""
    monkeypatch.setattr(wal, "encode", messages._reference_encode)
    monkeypatch.setattr(wal_recovery, "decode", messages._reference_decode)
    return monkeypatch


def test_the_engine_writes_the_files_the_reference_wrote(tmp_path: Path, reference_codec):
    write(tmp_path / "reference")
    reference_codec.undo()
    assert wal.encode is messages.encode
    write(tmp_path / "engine")
    assert files(tmp_path / "engine") == files(tmp_path / "reference")
    assert sum(map(len, files(tmp_path / "engine").values())) > 20_000  # the records are in them


def test_a_directory_of_the_previous_release_opens_with_the_engine_and_back(tmp_path: Path, reference_codec):
    write(tmp_path / "old")
    old_view = contents(tmp_path / "old")
    reference_codec.undo()
    assert contents(tmp_path / "old") == old_view  # read by the engine
    assert old_view[:2] == (10, 200)
    assert old_view[2] == records()[9:] and old_view[3] == HardState(term=5, voted_for="a")
    write(tmp_path / "new")
    reference_codec.setattr(wal_recovery, "decode", messages._reference_decode)
    assert contents(tmp_path / "new") == old_view  # read by the previous release's codec
