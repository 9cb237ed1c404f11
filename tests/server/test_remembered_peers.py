"""The member addresses a node keeps beside its log (server/remembered_peers.py) and how
the server holds them over the directory it recovered (server/main.py ``follow_peers``).

The whole story -- a cluster whose members were all replaced, stopped and started again
-- is tests/server/test_http_api.py
``test_a_cluster_whose_members_were_replaced_restarts_from_its_disks``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from consensuskit.core.capabilities import LogPosition
from consensuskit.server.config import PeerInfo
from consensuskit.server.main import NodeServer
from consensuskit.server.remembered_peers import (
    REMEMBERED_NAME,
    Remembered,
    read_remembered,
    write_remembered,
)
from tests.server.runtime_harness import node_config

N4 = ("127.0.0.1:7004", "http://127.0.0.1:8004")
N5 = ("127.0.0.1:7005", "http://127.0.0.1:8005")
N5_MOVED = ("127.0.0.1:9005", "http://127.0.0.1:9105")


def test_what_is_written_is_read_back(tmp_path: Path) -> None:
    write_remembered(tmp_path, Remembered(applied=12, peers={"n5": N5, "n4": N4}))
    assert read_remembered(tmp_path) == Remembered(applied=12, peers={"n4": N4, "n5": N5})
    assert json.loads((tmp_path / REMEMBERED_NAME).read_text()) == {
        "format": 1,
        "applied": 12,
        "peers": [["n4", *N4], ["n5", *N5]],
    }
    assert [p.name for p in tmp_path.iterdir()] == [REMEMBERED_NAME]  # no temp file left


def test_a_missing_file_is_nothing_remembered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert read_remembered(tmp_path) is None
    assert read_remembered(tmp_path / "never-made") is None
    assert not caplog.records


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "expected JSON with a format field"),
        ('{"format": 2, "applied": 1, "peers": []}', "format 2 is newer than this release reads (1)"),
        ('{"format": 1, "applied": -1, "peers": []}', "'applied' must be a non-negative integer"),
        ('{"format": 1, "applied": true, "peers": []}', "'applied' must be a non-negative integer"),
        ('{"format": 1, "applied": 3, "peers": [["n4", "no-port", "http://x"]]}', "bad 'peers' entry"),
        ('{"format": 1, "applied": 3, "peers": {"n4": 1}}', "'peers' must be a list"),
    ],
)
def test_a_bad_file_is_ignored_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, reason: str
) -> None:
    (tmp_path / REMEMBERED_NAME).write_text(text)
    with caplog.at_level(logging.WARNING, logger="consensuskit.server"):
        assert read_remembered(tmp_path) is None
    [record] = caplog.records
    assert f"ignoring {tmp_path / REMEMBERED_NAME}: " in record.getMessage()
    assert reason in record.getMessage()


# ---------------------------------------------------------------------- the server's use
@dataclass
class FakeNode:
    """What follow_peers reads of a node: its state machine's directory and how far it
    applied (core/capabilities.py ReplicatedLog)."""

    applied: int = 0
    sm: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(peer_directory={}))

    def log_position(self) -> LogPosition:
        return LogPosition(commit=self.applied, applied=self.applied, last_index=self.applied)

    def apply(self, index: int, directory: dict[str, tuple[str, str]]) -> None:
        self.applied, self.sm.peer_directory = index, dict(directory)


def server_on(tmp_path: Path, node: FakeNode) -> NodeServer:
    """A NodeServer that is not started: only its peer table is exercised."""
    config = node_config(tmp_path, "n1", ["n1", "n2", "n3"], fsync=False)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    server = NodeServer(config)
    server.runtime = SimpleNamespace(node=node)  # type: ignore[assignment]
    server._remembered = read_remembered(config.data_dir)  # as start() does
    server._written = server._remembered.peers if server._remembered is not None else {}
    return server


def addresses(server: NodeServer) -> dict[str, str]:
    return {p: f"{a[0]}:{a[1]}" for p, a in ((p, i.peer_address) for p, i in server.directory().items())}


def test_a_node_keeps_each_directory_it_applies(tmp_path: Path) -> None:
    node = FakeNode()
    server = server_on(tmp_path, node)
    server.follow_peers()
    data_dir = server.config.data_dir
    assert read_remembered(data_dir) is None  # nothing recorded: nothing to keep
    node.apply(7, {"n4": N4})
    server.follow_peers()
    assert read_remembered(data_dir) == Remembered(applied=7, peers={"n4": N4})
    assert server.directory()["n4"] == PeerInfo(peer_address=("127.0.0.1", 7004), client_url=N4[1])
    node.apply(9, {})  # n4 removed: dropped from the table and from the file
    server.follow_peers()
    assert read_remembered(data_dir) == Remembered(applied=9, peers={})
    assert "n4" not in server.directory()


def test_after_a_restart_the_remembered_addresses_hold_until_the_node_applied_as_far(tmp_path: Path) -> None:
    """The node recovers an older directory (its snapshot's: n5 at an old address, no n4)
    than the one it remembers (n4, and n5 moved).  The remembered one is used, and the
    file is not overwritten with the older one, until the node applied index 20."""
    data_dir = node_config(tmp_path, "n1", ["n1"]).data_dir
    data_dir.mkdir(parents=True)
    write_remembered(data_dir, Remembered(applied=20, peers={"n4": N4, "n5": N5_MOVED}), fsync=False)
    node = FakeNode()
    node.apply(5, {"n5": N5})
    server = server_on(tmp_path, node)
    server.follow_peers()
    assert addresses(server) == {"n2": "127.0.0.1:1", "n3": "127.0.0.1:1", "n4": N4[0], "n5": N5_MOVED[0]}
    node.apply(12, {"n4": N4, "n5": N5, "n6": N4})  # on its way through older changes
    server.follow_peers()
    assert addresses(server)["n5"] == N5_MOVED[0]
    assert read_remembered(data_dir) == Remembered(applied=20, peers={"n4": N4, "n5": N5_MOVED})
    node.apply(20, {"n4": N4, "n5": N5_MOVED})  # caught up: the state machine's alone
    server.follow_peers()
    assert addresses(server) == {"n2": "127.0.0.1:1", "n3": "127.0.0.1:1", "n4": N4[0], "n5": N5_MOVED[0]}
    assert read_remembered(data_dir) == Remembered(applied=20, peers={"n4": N4, "n5": N5_MOVED})
    node.apply(25, {"n5": N5_MOVED})
    server.follow_peers()
    assert "n4" not in server.directory()
    assert read_remembered(data_dir) == Remembered(applied=25, peers={"n5": N5_MOVED})


def test_a_node_that_recovered_past_what_it_remembers_drops_it_at_once(tmp_path: Path) -> None:
    data_dir = node_config(tmp_path, "n1", ["n1"]).data_dir
    data_dir.mkdir(parents=True)
    write_remembered(data_dir, Remembered(applied=3, peers={"n4": N4}), fsync=False)
    node = FakeNode()
    node.apply(8, {"n5": N5})  # its snapshot is newer: n4 was removed since
    server = server_on(tmp_path, node)
    server.follow_peers()
    assert "n4" not in server.directory() and "n5" in server.directory()
    assert read_remembered(data_dir) == Remembered(applied=8, peers={"n5": N5})
