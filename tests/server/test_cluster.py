"""Cluster directory layout, port checks, and the kv/status commands against the fake cluster."""

from __future__ import annotations

import contextlib
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensuskit.cli_kv import kv_command
from consensuskit.server.cluster import (
    LOWEST_TEST_PORT,
    ClusterError,
    ClusterLayout,
    LocalCluster,
    ephemeral_port_range,
    free_base_port,
    free_port,
    parse_settings,
    port_is_free,
)
from consensuskit.server.commands import status_command, status_rows, up_command
from consensuskit.server.config import load_config
from tests.test_client import FakeCluster, running

pytestmark = pytest.mark.timeout(60)


def test_layout_ports_and_files(tmp_path: Path) -> None:
    layout = ClusterLayout.prepare(tmp_path / "data", 3, 7300)
    assert [(n.node_id, n.client_port, n.peer_port) for n in layout.nodes] == [
        ("n1", 7300, 7303),
        ("n2", 7301, 7304),
        ("n3", 7302, 7305),
    ]
    assert layout.endpoints == ["http://127.0.0.1:7300", "http://127.0.0.1:7301", "http://127.0.0.1:7302"]
    for path in (layout.secret_path, layout.admin_token_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 32
    manifest = json.loads((layout.root / "cluster.json").read_text())
    assert manifest == {"nodes": 3, "base_port": 7300, "protocol": "raft", "cluster_id": layout.cluster_id}
    assert layout.cluster_id and layout.cluster_id.startswith("c-")


def test_the_cluster_id_is_kept_and_an_earlier_manifest_gets_one(tmp_path: Path) -> None:
    first = ClusterLayout.prepare(tmp_path, 3, 7300)
    assert ClusterLayout.prepare(tmp_path).cluster_id == first.cluster_id
    assert load_config(first.nodes[0].config_path).cluster_id == first.cluster_id
    (tmp_path / "cluster.json").write_text('{"nodes": 3, "base_port": 7300, "protocol": "raft"}\n')
    migrated = ClusterLayout.prepare(tmp_path)
    assert migrated.cluster_id and migrated.cluster_id != first.cluster_id
    assert json.loads((tmp_path / "cluster.json").read_text())["cluster_id"] == migrated.cluster_id
    assert load_config(first.nodes[0].config_path).cluster_id == migrated.cluster_id


def test_up_bootstraps_only_a_cluster_that_never_ran(tmp_path: Path) -> None:
    layout = ClusterLayout.prepare(tmp_path, 3, 7300)
    assert layout.never_started()
    (layout.nodes[1].data_dir / "identity.json").write_text("{}")
    assert not layout.never_started()


def test_every_node_config_loads_and_names_the_others(tmp_path: Path) -> None:
    layout = ClusterLayout.prepare(
        tmp_path, 3, 7300, node_options={"max_value_bytes": 4096, "options": {"election_timeout": 0.5}}
    )
    secret = layout.secret_path.read_bytes().strip()
    for spec in layout.nodes:
        config = load_config(spec.config_path)
        assert config.node_id == spec.node_id
        assert config.client_address == ("127.0.0.1", spec.client_port)
        assert config.peer_address == ("127.0.0.1", spec.peer_port)
        assert config.data_dir == spec.data_dir
        assert config.secret == secret
        assert config.admin_token == layout.admin_token
        assert config.max_value_bytes == 4096
        assert config.options == {"election_timeout": 0.5}
        assert config.members == ("n1", "n2", "n3")
        others = {n.node_id: n for n in layout.nodes if n.node_id != spec.node_id}
        assert sorted(config.peers) == sorted(others)
        for peer_id, info in config.peers.items():
            assert info.peer_address == ("127.0.0.1", others[peer_id].peer_port)
            assert info.client_url == others[peer_id].client_url


def test_server_settings_reach_every_node_and_are_kept_for_later_starts(tmp_path: Path) -> None:
    """``up --set``: written into every node's config, kept in the manifest (falsy values
    too), given again over what was kept, the auth table merged key by key."""
    given = {"max_value_bytes": 4096, "fsync": False, "session_ttl": 0, "auth.token_ttl": 60}
    settings = parse_settings({**given, "log_level": "debug"})
    assert settings == {
        "max_value_bytes": 4096,
        "fsync": False,
        "session_ttl": 0,
        "auth": {"token_ttl": 60},
        "log_level": "debug",
    }

    def check(layout: ClusterLayout, value_bytes: int, status: str) -> None:
        for spec in layout.nodes:
            config = load_config(spec.config_path)
            assert (config.max_value_bytes, config.fsync, config.session_ttl) == (value_bytes, False, 0.0)
            assert (config.auth.token_ttl, config.auth.status, config.log_level) == (60, status, "debug")

    check(ClusterLayout.prepare(tmp_path, 3, 7300, node_options=settings), 4096, "authenticated")
    check(ClusterLayout.prepare(tmp_path), 4096, "authenticated")  # a later `up` without --set
    later = parse_settings({"max_value_bytes": 8192, "auth.status": "public"})
    check(ClusterLayout.prepare(tmp_path, node_options=later), 8192, "public")
    check(ClusterLayout.prepare(tmp_path), 8192, "public")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("peers", 1, "--set peers: not a setting up passes to its nodes; valid: max_value_bytes, "),
        ("auth", 1, "--set auth: not a setting up passes to its nodes"),
        ("options.alpha", 1, "--set options.alpha: not a setting up passes to its nodes"),
        ("enable_fault_injection", True, "--set enable_fault_injection: not a setting up passes"),
        ("max_value_bytes", "lots", "--set: max_value_bytes: expected a positive integer, got 'lots'"),
        ("fsync", 1, "--set: fsync: expected true or false, got 1"),
        ("log_level", "chatty", "--set: log_level: "),
        ("auth.token_ttl", 0, "--set: auth.token_ttl: expected seconds in (0, 604800], got 0"),
        ("auth.nope", 1, "--set: unknown setting 'nope' in auth; valid: token_ttl"),
    ],
)
def test_a_bad_server_setting_is_refused_naming_it(key: str, value: object, message: str) -> None:
    with pytest.raises(ClusterError) as refused:
        parse_settings({key: value})
    assert str(refused.value).startswith(message), str(refused.value)


def test_a_second_prepare_reuses_secret_token_and_ports(tmp_path: Path) -> None:
    first = ClusterLayout.prepare(tmp_path, 5, 7400)
    secret, token = first.secret_path.read_text(), first.admin_token
    (first.nodes[0].data_dir / "wal-marker").write_text("kept")
    again = ClusterLayout.prepare(tmp_path)  # no --nodes/--base-port: as before
    assert again == first
    assert (again.secret_path.read_text(), again.admin_token) == (secret, token)
    assert (again.nodes[0].data_dir / "wal-marker").read_text() == "kept"
    assert ClusterLayout.prepare(tmp_path, 5, 7400) == first


@pytest.mark.parametrize(
    ("nodes", "port", "protocol", "flag"),
    [
        (3, None, None, "--nodes 3"),
        (None, 7000, None, "--base-port 7000"),
        (None, None, "multipaxos", "--protocol multipaxos"),
    ],
)
def test_a_contradicting_second_prepare_is_refused(
    tmp_path: Path, nodes: int | None, port: int | None, protocol: str | None, flag: str
) -> None:
    ClusterLayout.prepare(tmp_path, 5, 7400)
    with pytest.raises(ClusterError, match=f"5-node cluster on base port 7400; {flag} contradicts"):
        ClusterLayout.prepare(tmp_path, nodes, port, protocol=protocol)


def test_the_protocol_is_written_to_every_config_and_kept(tmp_path: Path) -> None:
    layout = ClusterLayout.prepare(tmp_path, 3, 7400, protocol="multipaxos")
    assert layout.protocol == "multipaxos"
    for spec in layout.nodes:
        assert load_config(spec.config_path).protocol == "multipaxos"
    assert ClusterLayout.prepare(tmp_path).protocol == "multipaxos"  # recovered as it was
    assert ClusterLayout.prepare(tmp_path, protocol="multipaxos") == layout
    assert ClusterLayout.prepare(tmp_path / "fresh", 3, 7400).protocol == "raft"


def test_bad_numbers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="--nodes must be at least 1"):
        ClusterLayout.prepare(tmp_path / "a", 0, 7000)
    with pytest.raises(ClusterError, match="--base-port must be in"):
        ClusterLayout.prepare(tmp_path / "b", 3, 80)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cluster.json").write_text("{not json")
    with pytest.raises(ClusterError, match="not a cluster manifest"):
        ClusterLayout.prepare(tmp_path / "c")


@contextlib.contextmanager
def listening_holder(port: int) -> Iterator[socket.socket]:
    """A listener that takes ``port``.  With SO_REUSEADDR, as the servers bind: without it
    the bind fails on a port free_base_port found free that an earlier test's connection
    still holds in TIME_WAIT (a CI flake: EADDRINUSE in the holder itself)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield holder


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    base = free_base_port(6)
    layout = ClusterLayout.prepare(tmp_path, 3, base)
    layout.check_ports_free()
    with listening_holder(base + 4):
        assert not port_is_free(base + 4)
        with pytest.raises(ClusterError, match=f"port {base + 4} \\(n2 peer TCP\\) is already in use"):
            layout.check_ports_free()


def test_up_exits_2_with_a_message_when_a_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_base_port(6)
    with listening_holder(base + 1):
        code = up_command(3, str(tmp_path), base)
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {base + 1} (n2 client HTTP) is already in use" in err
    assert "--base-port" in err


def test_up_exits_2_on_an_unknown_protocol_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert up_command(3, str(tmp_path / "data"), free_base_port(6), protocol="zab-ish") == 2
    err = capsys.readouterr().err
    assert "unknown protocol 'zab-ish'" in err and "multipaxos" in err and "raft" in err
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------- commands (fake server)
def test_kv_command_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    with running(FakeCluster()) as fake:
        eps = ",".join(fake.urls)
        assert kv_command("put", "greeting", "hello", endpoints=eps) == 0
        assert "version 1" in capsys.readouterr().out
        assert kv_command("get", "greeting", endpoints=eps) == 0
        assert capsys.readouterr().out == "hello\n"
        assert kv_command("cas", "greeting", "bye", expected="hello", endpoints=eps) == 0
        capsys.readouterr()
        assert kv_command("cas", "greeting", "x", expected_version=1, endpoints=eps) == 1
        assert "holds 'bye' (version 2)" in capsys.readouterr().err
        assert kv_command("list", "", endpoints=eps, as_json=True) == 0
        assert json.loads(capsys.readouterr().out) == [{"key": "greeting", "value": "bye", "version": 2}]
        assert kv_command("delete", "greeting", endpoints=eps) == 0
        assert capsys.readouterr().out == "deleted\n"
        assert kv_command("get", "greeting", endpoints=eps) == 1
        assert "no key 'greeting'" in capsys.readouterr().err
        assert kv_command("get", "greeting", endpoints=eps, as_json=True) == 1
        assert json.loads(capsys.readouterr().out)["error"] == "not-found"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("frob", "k"), {}, "unknown action 'frob'; valid: get, put, delete, cas, list"),
        (("get",), {}, "kv get needs a KEY"),
        (("put", "k"), {}, "kv put needs a VALUE"),
        (("cas", "k", "v"), {}, "exactly one of --expected VALUE or --expected-version"),
        (("get", "k"), {"consistency": "eventual"}, "unknown consistency 'eventual'"),
        (("get", "k"), {"endpoints": " , "}, "bad --endpoints"),
    ],
)
def test_kv_command_bad_input_exits_2(
    args: tuple[str, ...], kwargs: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kv_command(*args, **kwargs) == 2  # type: ignore[arg-type]
    assert message in capsys.readouterr().err


def test_kv_command_with_no_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_base_port(1)
    assert kv_command("put", "k", "v", endpoints=f"127.0.0.1:{port}", timeout=0.2, deadline=0.5) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_status_command(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"127.0.0.1:{free_base_port(1)}"
    with running(FakeCluster()) as fake:
        fake.status_override = {"commit": 7, "applied": 6, "pid": 4242}
        eps = ",".join([*fake.urls, dead])
        assert status_command(eps, as_json=True) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["role"] for r in rows] == ["leader", "follower", "follower", None]
        assert rows[0]["commit"] == 7 and rows[0]["applied"] == 6 and rows[0]["pid"] == 4242
        assert "cannot connect" in rows[3]["error"]
        assert status_command(eps) == 0
        out = capsys.readouterr().out
        assert "leader" in out and "4242" in out
        fake.leader = None
        assert status_command(eps, as_json=True) == 1


def test_status_rows_mark_dead_and_paused_processes() -> None:
    class Proc:
        def __init__(self, code: int | None, paused: bool) -> None:
            self.pid, self.popen, self.paused, self.returncode = 11, object(), paused, code

        @property
        def running(self) -> bool:
            return self.returncode is None

    from consensuskit.client import Unavailable

    gone = Unavailable("x", maybe_applied=False, attempts=1, last_error="refused")
    rows = status_rows({"n1": gone, "n2": gone}, {"n1": Proc(-9, False), "n2": Proc(None, True)})  # type: ignore[dict-item]
    assert rows[0]["error"] == "exited with code -9" and rows[0]["pid"] == 11
    assert rows[1]["error"] == "paused (SIGSTOP)"


def test_the_status_table_says_when_the_cluster_waits_below_a_nodes_level() -> None:
    from rich.console import Console

    from consensuskit.server.commands import status_table

    def note(applied: int | None, offered: int) -> str:
        status = {"id": "n1", "role": "leader", "cluster_level": {"applied": applied, "offered": offered}}
        console = Console(record=True, width=300)
        console.print(status_table(status_rows({"n1": status})))
        return console.export_text()

    waits = "cluster level 1 (offers 2: a member runs an earlier release, or a lower cluster_level)"
    assert waits in note(1, 2)
    for applied, offered in ((2, 2), (1, 1), (None, 2)):
        assert "cluster level" not in note(applied, offered)


def test_test_ports_come_from_below_the_ephemeral_range(tmp_path: Path) -> None:
    """A port inside the kernel's ephemeral range can be taken by any outgoing connection
    between the check and the bind (a real EADDRINUSE flake): tests draw below it."""
    low, _ = ephemeral_port_range()
    for _ in range(50):
        base = free_base_port(6)
        assert base >= LOWEST_TEST_PORT and base + 6 <= low
    assert LOWEST_TEST_PORT <= free_port() < low
    (tmp_path / "range").write_text("32768\t60999\n")
    assert ephemeral_port_range(tmp_path / "range") == (32768, 60999)
    assert ephemeral_port_range(tmp_path / "missing") == (49152, 65535)


def test_status_command_without_a_leader_capability(capsys: pytest.CaptureFixture[str]) -> None:
    """A protocol without a leader (basic-paxos) is healthy when its nodes answer; the
    generation column shows its own number (a ballot round here)."""
    with running(FakeCluster()) as fake:
        fake.leader = None
        eps = ",".join(fake.urls)
        fake.status_override = {
            "role": "proposer+acceptor+learner",
            "capabilities": ["replicated-log"],
            "generation_name": "round",
            "generation": 5,
        }
        assert status_command(eps, as_json=True) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["term"] for r in rows] == [5, 5, 5] and not any(r["has_leader"] for r in rows)
        fake.status_override["capabilities"] = ["has-leader", "replicated-log"]
        assert status_command(eps, as_json=True) == 1  # has a leader, and none leads


class _Running:
    """A stand-in node process: running, never paused, never exited."""

    running, paused, popen = True, False, None


def test_wait_ready_every_node_waits_for_the_last_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A majority elects before the last process listens: with ``every_node`` a leader
    alone is not ready (a request to n3 would be refused), and it is once n3 answers."""
    cluster = LocalCluster(ClusterLayout.prepare(tmp_path / "data", 3, 7300))
    cluster.nodes = {n: _Running() for n in ("n1", "n2", "n3")}  # type: ignore[misc]
    leader = {"role": "leader", "term": 1}
    follower = {"role": "follower", "term": 1}
    answers = iter(
        [
            {"n1": leader, "n2": follower, "n3": ClusterError("refused")},
            {"n1": leader, "n2": follower, "n3": ClusterError("refused")},
            {"n1": leader, "n2": follower, "n3": follower},
        ]
    )
    seen: list[int] = []

    def statuses(timeout: float = 0.5) -> dict[str, object]:
        seen.append(1)
        return next(answers)

    monkeypatch.setattr(cluster, "statuses", statuses)
    monkeypatch.setattr("consensuskit.server.cluster.time.sleep", lambda s: None)
    assert cluster.wait_ready(5, every_node=True) == "n1"
    assert len(seen) == 3
    answers = iter([{"n1": leader, "n2": follower, "n3": ClusterError("refused")}])
    assert cluster.wait_ready(5) == "n1"  # without it, the leader is enough


def test_a_second_prepare_that_changes_the_service_is_refused(tmp_path: Path) -> None:
    ClusterLayout.prepare(tmp_path / "kv", 3, 7400)  # the protocol's default: kv
    with pytest.raises(ClusterError) as caught:
        ClusterLayout.prepare(tmp_path / "kv", node_options={"service": "etcd"})
    assert str(caught.value) == (
        f"{tmp_path / 'kv'} holds a cluster that serves kv; --service etcd contradicts it (its nodes "
        "hold that service's data; omit --service to recover that cluster, or choose another --data-dir)"
    )
    assert ClusterLayout.prepare(tmp_path / "kv", node_options={"service": "kv"}).protocol == "raft"
    ClusterLayout.prepare(tmp_path / "etcd", 3, 7500, node_options={"service": "etcd"})
    with pytest.raises(ClusterError, match="serves etcd; --service kv contradicts it"):
        ClusterLayout.prepare(tmp_path / "etcd", node_options={"service": "kv"})
    for spec in ClusterLayout.prepare(tmp_path / "etcd").nodes:  # recovered as it was
        assert load_config(spec.config_path).service == "etcd"
