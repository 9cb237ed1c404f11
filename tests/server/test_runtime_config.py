"""server/config.py: the TOML file, flags over it, and one-line errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensuskit.server.config import ConfigError, PeerInfo, load_config, parse_address
from consensuskit.server.main import build_config, serve_command

GOOD = """
id = "n1"
peer_address = "127.0.0.1:7001"
client_address = "127.0.0.1:8001"
data_dir = "data/n1"
secret_file = "secret"
admin_token_file = "token"
max_value_bytes = 2048
fsync = false

[peers.n2]
peer_address = "127.0.0.1:7002"
client_url = "http://127.0.0.1:8002"

[peers.n3]
peer_address = "[::1]:7003"
client_url = "http://[::1]:8003/"

[options]
election_timeout = 0.5
read_mode = "lease"
"""


def write(tmp_path: Path, text: str = GOOD, *, secret: bool = True) -> Path:
    if secret:
        (tmp_path / "secret").write_text("s3cret\n")
        (tmp_path / "token").write_text("admin\n")
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_full_config_file(tmp_path):
    cfg = load_config(write(tmp_path))
    assert cfg.node_id == "n1"
    assert cfg.peer_address == ("127.0.0.1", 7001) and cfg.client_address == ("127.0.0.1", 8001)
    assert cfg.client_url == "http://127.0.0.1:8001"
    assert cfg.data_dir == tmp_path / "data/n1"  # relative to the file
    assert cfg.secret == b"s3cret" and cfg.admin_token == "admin"
    assert cfg.peers == {
        "n2": PeerInfo(peer_address=("127.0.0.1", 7002), client_url="http://127.0.0.1:8002"),
        "n3": PeerInfo(peer_address=("::1", 7003), client_url="http://[::1]:8003/"),
    }
    assert cfg.members == ("n1", "n2", "n3")
    assert cfg.max_value_bytes == 2048 and cfg.fsync is False and cfg.protocol == "raft"
    assert cfg.options == {"election_timeout": 0.5, "read_mode": "lease"}
    assert cfg.client_urls()["n3"] == "http://[::1]:8003/"
    assert "s3cret" not in repr(cfg) and "admin" not in repr(cfg).replace("admin_token", "")


def test_flags_override_the_file(tmp_path, monkeypatch):
    path = write(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = build_config(
        path,
        client_address="0.0.0.0:9000",
        client_url="http://node1.example:9000",
        data_dir=Path("elsewhere"),
        fsync=True,
        members="n1,n2",
        peer=["n4=127.0.0.1:7004,http://127.0.0.1:8004"],
        option=["heartbeat_interval=0.1", 'read_mode="read-index"'],
    )
    assert cfg.client_address == ("0.0.0.0", 9000) and cfg.client_url == "http://node1.example:9000"
    assert cfg.data_dir == Path("elsewhere") and cfg.fsync is True
    assert sorted(cfg.peers) == ["n2", "n3", "n4"] and cfg.members == ("n1", "n2")
    assert cfg.options == {"election_timeout": 0.5, "read_mode": "read-index", "heartbeat_interval": 0.1}


def test_flags_alone(tmp_path):
    (tmp_path / "secret").write_text("x")
    cfg = build_config(
        None,
        id="solo",
        peer_address="127.0.0.1:0",
        client_address="localhost:0",
        data_dir=tmp_path / "d",
        secret_file=tmp_path / "secret",
    )
    assert cfg.members == ("solo",) and cfg.peers == {} and cfg.admin_token is None
    assert cfg.client_url == "http://localhost:0"
    assert (cfg.session_ttl, cfg.max_sessions) == (3600.0, 100_000)


def test_session_settings_from_the_file_and_flags(tmp_path):
    path = write(tmp_path, "session_ttl = 90\nmax_sessions = 500\n" + GOOD)
    cfg = load_config(path)
    assert (cfg.session_ttl, cfg.max_sessions) == (90.0, 500)
    cfg = build_config(path, session_ttl=0.0, max_sessions=7)
    assert (cfg.session_ttl, cfg.max_sessions) == (0.0, 7)


def test_the_cluster_level_from_the_file_and_flags(tmp_path):
    assert load_config(write(tmp_path, GOOD)).cluster_level == 2  # this release's
    path = write(tmp_path, "cluster_level = 1\n" + GOOD)
    assert load_config(path).cluster_level == 1
    assert build_config(path, cluster_level=2).cluster_level == 2
    for bad in ("0", "3", '"2"', "true", "1.0"):
        with pytest.raises(ConfigError, match=r"cluster_level: expected an integer 1\.\.2 \(the levels this"):
            load_config(write(tmp_path, f"cluster_level = {bad}\n" + GOOD))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "bogus = 1\n" + t, "unknown setting 'bogus' in "),
        (
            lambda t: t.replace("[peers.n2]\n", "[peers.n2]\nweight = 3\n"),
            "unknown setting 'weight' in peers.n2",
        ),
        (lambda t: t.replace('"127.0.0.1:7001"', '"localhost"'), "peer_address: bad address 'localhost'"),
        (lambda t: t.replace('"127.0.0.1:8001"', '"127.0.0.1:99999"'), "client_address: bad address"),
        (
            lambda t: t.replace('"127.0.0.1:7002"', "7002"),
            "peers.n2.peer_address: expected a string HOST:PORT",
        ),
        (lambda t: t.replace('"http://127.0.0.1:8002"', '"ftp://x"'), "peers.n2.client_url: bad URL"),
        (lambda t: t.replace('secret_file = "secret"', 'secret_file = "missing"'), "secret_file: "),
        (lambda t: t.replace('id = "n1"', 'id = "n 1"'), "id: bad node id 'n 1'"),
        (lambda t: t.replace('id = "n1"', 'id = "n2"'), "peers.n2: a node is not its own peer"),
        (lambda t: t.replace('data_dir = "data/n1"\n', ""), "data_dir is required"),
        (
            lambda t: t.replace("max_value_bytes = 2048", "max_value_bytes = -1"),
            "max_value_bytes: expected a positive",
        ),
        (
            lambda t: t.replace("max_value_bytes = 2048", "max_value_bytes = 600000000"),
            "max_value_bytes: 600000000 is too large: a command (two values and keys, for a "
            "compare-and-set) must fit in one peer message of at most 1073741824 bytes; the "
            "largest allowed with max_key_bytes 4096 is 536342528",
        ),
        (lambda t: t.replace("fsync = false", 'fsync = "no"'), "fsync: expected true or false"),
        (lambda t: "inline_sync_bytes = -1\n" + t, "inline_sync_bytes: expected an integer >= 0, got -1"),
        (lambda t: "inline_sync_bytes = true\n" + t, "inline_sync_bytes: expected an integer >= 0"),
        (lambda t: 'protocol = "viewstamped"\n' + t, "protocol: unknown protocol 'viewstamped'; valid: "),
        (lambda t: t.replace('read_mode = "lease"', 'read_mode = "psychic"'), "options: unknown read mode"),
        (lambda t: 'members = ["n1", "n7"]\n' + t, "members: 'n7' is neither this node nor in [peers]"),
        (lambda t: t + '\n[tls]\ncert = "c.pem"\n', "tls: both cert and key are required"),
        (lambda t: t + '\n[tls]\ncert = "c.pem"\nkey = "k.pem"\n', "tls.cert: "),
        (lambda t: 'log_level = "loud"\n' + t, "log_level: 'loud' is not one of"),
        (lambda t: "session_ttl = -1\n" + t, "session_ttl: expected a number of seconds >= 0, got -1"),
        (lambda t: 'session_ttl = "1h"\n' + t, "session_ttl: expected a number of seconds >= 0"),
        (lambda t: "max_sessions = 0\n" + t, "max_sessions: expected a positive integer, got 0"),
        (lambda t: t + "\n[[broken\n", "is not valid TOML"),
    ],
)
def test_bad_settings_are_one_clear_line(tmp_path, edit, message):
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_empty_secret_file_is_refused(tmp_path):
    path = write(tmp_path)
    (tmp_path / "secret").write_text("  \n")
    with pytest.raises(ConfigError, match=r"secret_file: .* is empty"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .* not found"):
        load_config(tmp_path / "nope.toml")


def test_parse_address_forms():
    assert parse_address("h:1", "x") == ("h", 1)
    assert parse_address("[fe80::1]:0", "x") == ("fe80::1", 0)
    for bad in ("h", ":80", "h:-1", "h:port", "h:65536"):
        with pytest.raises(ConfigError):
            parse_address(bad, "x")


def test_serve_command_exits_2_with_one_line_on_a_bad_config(tmp_path, capsys):
    path = write(tmp_path, "bogus = 1\n" + GOOD)
    assert serve_command(path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown setting 'bogus'") and err.count("\n") == 1
    assert serve_command(None, peer=["garbage"]) == 2
    assert "--peer: expected ID=HOST:PORT,CLIENT_URL" in capsys.readouterr().err


def test_the_largest_value_limit_leaves_room_for_a_compare_and_set_in_one_peer_message(tmp_path):
    """A value limit above it would accept writes whose AppendEntries (one entry) outgrew
    the peer message limit: never sent, never committed, every later write stuck behind it."""
    from consensuskit.server.config import COMMAND_OVERHEAD_BYTES, largest_value_bytes
    from consensuskit.server.framing import PEER_MAX_MESSAGE_BYTES

    largest = largest_value_bytes(4096)
    assert 2 * (largest + 4096) + COMMAND_OVERHEAD_BYTES <= PEER_MAX_MESSAGE_BYTES
    budget = f"max_buffered_bytes = {2**31}\n"
    path = write(tmp_path, budget + GOOD.replace("max_value_bytes = 2048", f"max_value_bytes = {largest}"))
    assert load_config(path).max_value_bytes == largest
    path.write_text(budget + GOOD.replace("max_value_bytes = 2048", f"max_value_bytes = {largest + 1}"))
    with pytest.raises(ConfigError, match="is too large"):
        load_config(path)
