"""The data directory's identity and what an empty one means (server/identity.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consensuskit.core.storage import REJOINING_KEY
from consensuskit.server.config import ConfigError
from consensuskit.server.identity import (
    IDENTITY_FORMAT,
    Identity,
    IdentityError,
    Owner,
    adopt_owner,
    empty_voter_message,
    open_data_dir,
    owner_mismatch_message,
    read_identity,
    write_identity,
)
from consensuskit.server.main import EXIT_FAILED, build_config, run, serve
from consensuskit.server.wal import DiskStorage
from tests.server.runtime_harness import node_config


def opened(directory: Path, **kwargs) -> DiskStorage:
    args = dict(cluster_id="c-1", voter=True, fsync=False)
    args.update(kwargs)
    return open_data_dir(directory, "n1", **args)


def identity_of(directory: Path) -> dict:
    return json.loads((directory / "identity.json").read_text())


def test_a_configured_voter_refuses_an_empty_directory_naming_both_ways_out(tmp_path):
    data = tmp_path / "n1"
    with pytest.raises(IdentityError) as caught:
        opened(data)
    assert str(caught.value) == empty_voter_message("n1", data)
    assert "--rejoin" in str(caught.value) and "--bootstrap" in str(caught.value)
    assert not data.exists() or not any(data.iterdir())  # nothing written


def test_bootstrap_writes_the_identity_and_starts_fresh(tmp_path):
    data = tmp_path / "n1"
    storage = opened(data, bootstrap=True)
    assert storage.get(REJOINING_KEY) is None and storage.is_empty()
    storage.close()
    written = identity_of(data)
    assert re.fullmatch("[0-9a-f]{16}", written.pop("incarnation"))
    assert written == {"format": IDENTITY_FORMAT, "cluster_id": "c-1", "node_id": "n1", "origin": "bootstrap"}
    again = opened(data)  # a restart needs no flag
    assert again.recovery_notes == []  # the identity file is no stranger to the WAL
    again.close()


def test_rejoin_puts_the_key_durably_before_the_node_is_built(tmp_path):
    data = tmp_path / "n1"
    opened(data, rejoin=True).close()  # close drops unsynced writes: the key was synced
    storage = opened(data)
    assert storage.get(REJOINING_KEY) is True
    storage.close()


def test_a_node_outside_members_starts_on_an_empty_directory(tmp_path):
    storage = opened(tmp_path / "n4", voter=False)
    assert storage.get(REJOINING_KEY) is None
    storage.close()


def test_a_directory_of_another_node_or_cluster_is_refused(tmp_path):
    data = tmp_path / "n1"
    opened(data, bootstrap=True).close()
    with pytest.raises(IdentityError, match="belongs to cluster c-1, not c-2"):
        opened(data, cluster_id="c-2")
    with pytest.raises(IdentityError, match="belongs to node n1, not n2"):
        open_data_dir(data, "n2", cluster_id="c-1", voter=True, fsync=False)
    opened(data, cluster_id=None).close()  # no cluster id configured: only the node is checked


def test_a_directory_without_a_cluster_id_adopts_the_configured_one(tmp_path):
    data = tmp_path / "n1"
    opened(data, cluster_id=None, bootstrap=True).close()
    assert identity_of(data)["cluster_id"] is None
    opened(data, cluster_id="c-9").close()
    assert identity_of(data)["cluster_id"] == "c-9"


def test_a_directory_written_by_the_previous_release_is_migrated(tmp_path):
    data = tmp_path / "n1"
    old = DiskStorage.open(data, fsync=False)  # the previous release: a WAL, no identity
    old.put("raft/hard-state-like", {"term": 3})
    old.log_append(["entry-1", "entry-2"])
    old.sync()
    old.close()
    storage = opened(data)  # no flag needed: the directory holds the node's data
    assert storage.get("raft/hard-state-like") == {"term": 3}
    assert storage.log_records() == ["entry-1", "entry-2"]
    storage.close()
    assert identity_of(data)["node_id"] == "n1"


def test_a_wal_that_holds_nothing_counts_as_empty(tmp_path):
    data = tmp_path / "n1"
    DiskStorage.open(data, fsync=False).close()  # a first start that died at once
    with pytest.raises(IdentityError, match="is empty"):
        opened(data)
    opened(data, rejoin=True).close()
    storage = opened(data)
    assert storage.get(REJOINING_KEY) is True
    storage.close()


def test_a_crash_between_the_rejoin_key_and_the_identity_still_rejoins(tmp_path):
    data = tmp_path / "n1"
    opened(data, rejoin=True).close()
    (data / "identity.json").unlink()  # as if the process died before writing it
    storage = opened(data)  # migrated: the storage holds the key
    assert storage.get(REJOINING_KEY) is True
    storage.close()


def test_an_identity_without_a_wal_was_a_lost_log(tmp_path):
    data = tmp_path / "n1"
    data.mkdir()
    write_identity(data, Identity("n1", "c-1"), fsync=False)
    with pytest.raises(IdentityError, match="no write-ahead log"):
        opened(data)


def test_flags_are_ignored_on_a_directory_with_data(tmp_path):
    data = tmp_path / "n1"
    opened(data, bootstrap=True).close()
    storage = opened(data, rejoin=True)
    assert storage.get(REJOINING_KEY) is None
    storage.close()


def test_bad_or_newer_identity_files_are_refused(tmp_path):
    (tmp_path / "identity.json").write_text("not json")
    with pytest.raises(IdentityError, match="not an identity file"):
        read_identity(tmp_path)
    (tmp_path / "identity.json").write_text('{"format": 99, "node_id": "n1", "cluster_id": null}')
    with pytest.raises(IdentityError, match="newer than this release"):
        read_identity(tmp_path)


def test_the_flags_reach_the_config_and_exclude_each_other(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    path = tmp_path / "n1.toml"
    path.write_text(
        'id = "n1"\ncluster_id = "c-7"\npeer_address = "127.0.0.1:0"\n'
        'client_address = "127.0.0.1:0"\ndata_dir = "d"\nsecret_file = "secret"\n'
    )
    plain = build_config(path)
    assert (plain.cluster_id, plain.bootstrap, plain.rejoin) == ("c-7", False, False)
    assert build_config(path, rejoin=True).rejoin and build_config(path, bootstrap=True).bootstrap
    with pytest.raises(ConfigError, match="exclude each other"):
        build_config(path, bootstrap=True, rejoin=True)
    path.write_text(path.read_text() + "bootstrap = true\n")
    with pytest.raises(ConfigError, match="unknown setting 'bootstrap'"):
        build_config(path)  # a flag only: left in a file it would undo the protection


def test_serve_refuses_an_empty_voter_directory_with_one_line_and_status_1(tmp_path, capsys):
    import dataclasses

    config = dataclasses.replace(node_config(tmp_path, "n1", ["n1", "n2"]), bootstrap=False)
    assert run(serve(config)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err == f"error: {empty_voter_message('n1', config.data_dir)}\n"


def test_both_command_lines_offer_the_flags(capsys):
    from typer.testing import CliRunner

    from consensuskit.cli import app
    from consensuskit.server.main import main

    out = CliRunner().invoke(app, ["server", "--help"], env={"COLUMNS": "200"}).output
    assert all(flag in out for flag in ("--rejoin", "--bootstrap", "--cluster-id"))
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--rejoin", "--bootstrap", "--cluster-id"))


def test_rejoin_with_a_protocol_that_cannot_is_a_configuration_error(tmp_path, capsys):
    import dataclasses

    from consensuskit.server.main import EXIT_CONFIG

    config = dataclasses.replace(
        node_config(tmp_path, "n1", ["n1"], protocol="basic-paxos", options={}), bootstrap=False, rejoin=True
    )
    assert run(serve(config)) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("error: --rejoin: basic-paxos cannot rejoin")
    assert not config.data_dir.exists()  # refused before anything was written


def test_status_shows_a_rejoining_node():
    from rich.console import Console

    from consensuskit.server.commands import status_rows, status_table

    rows = status_rows({"n3": {"id": "n3", "role": "follower", "term": 4, "rejoining": True}})
    assert rows[0]["rejoining"] is True
    console = Console(record=True, width=200)
    console.print(status_table(rows))
    assert "rejoining (lost its disk; no vote yet)" in console.export_text()


RAFT_KV = Owner("raft", "kv")


def test_a_fresh_directory_records_its_owner_and_refuses_another(tmp_path):
    data = tmp_path / "n1"
    opened(data, bootstrap=True, owner=RAFT_KV).close()
    written = identity_of(data)
    del written["incarnation"]
    assert written == {
        "format": IDENTITY_FORMAT,
        "cluster_id": "c-1",
        "node_id": "n1",
        "protocol": "raft",
        "service": "kv",
        "origin": "bootstrap",
    }
    opened(data, owner=RAFT_KV).close()
    opened(data).close()  # no owner given: not checked
    for other in (Owner("multipaxos", "kv"), Owner("raft", "etcd")):
        with pytest.raises(IdentityError) as caught:
            opened(data, owner=other)
        assert str(caught.value) == owner_mismatch_message(data, RAFT_KV, other)
    message = owner_mismatch_message(data, RAFT_KV, Owner("zab", "etcd"))
    assert "protocol 'raft' with service 'kv'" in message and "protocol 'zab' with service 'etcd'" in message
    assert 'protocol = "raft" and service = "kv"' in message  # as the config file spells it
    assert "\n" not in message


def test_an_identity_without_an_owner_is_adopted_once_and_kept(tmp_path):
    data = tmp_path / "n1"
    opened(data, bootstrap=True).close()
    made = read_identity(data)
    assert made == Identity("n1", "c-1", None, made.incarnation, "bootstrap")  # no owner yet
    opened(data, owner=Owner("zab", "kv")).close()  # nothing recorded: nothing to check yet
    assert read_identity(data).owner is None  # opening does not adopt: building does
    assert adopt_owner(data, RAFT_KV, fsync=False) is True
    assert adopt_owner(data, Owner("zab", "kv"), fsync=False) is False  # owned already
    assert read_identity(data) == Identity("n1", "c-1", RAFT_KV, made.incarnation, "bootstrap")
    opened(data, cluster_id=None, owner=RAFT_KV).close()
    assert read_identity(data).owner == RAFT_KV
    assert adopt_owner(tmp_path / "none", RAFT_KV) is False  # no identity: nothing to adopt


def test_adopting_a_cluster_id_keeps_the_owner(tmp_path):
    data = tmp_path / "n1"
    opened(data, cluster_id=None, bootstrap=True, owner=RAFT_KV).close()
    made = read_identity(data).incarnation
    opened(data, cluster_id="c-9", owner=RAFT_KV).close()
    assert read_identity(data) == Identity("n1", "c-9", RAFT_KV, made, "bootstrap")


@pytest.mark.parametrize(
    ("flags", "origin"),
    [({"bootstrap": True}, "bootstrap"), ({"rejoin": True}, "rejoin"), ({"voter": False}, "join")],
)
def test_a_new_directory_gets_an_incarnation_of_its_own_and_its_origin(tmp_path, flags, origin):
    made = set()
    for attempt in range(2):  # the same node's directory, lost and made again
        data = tmp_path / f"n1-{attempt}"
        opened(data, **flags).close()
        identity = read_identity(data)
        assert identity.origin == origin and re.fullmatch("[0-9a-f]{16}", identity.incarnation)
        made.add(identity.incarnation)
        opened(data).close()  # a restart keeps both
        assert read_identity(data) == identity
    assert len(made) == 2


def test_an_earlier_release_directory_gets_an_incarnation_once(tmp_path):
    data = tmp_path / "n1"
    opened(data, bootstrap=True, owner=RAFT_KV).close()
    earlier = {k: v for k, v in identity_of(data).items() if k not in ("incarnation", "origin")}
    (data / "identity.json").write_text(json.dumps(earlier))  # as the previous release wrote it
    assert read_identity(data) == Identity("n1", "c-1", RAFT_KV)
    opened(data).close()
    given = read_identity(data)
    assert given.origin == "earlier" and given.incarnation and given.owner == RAFT_KV
    opened(data).close()
    assert read_identity(data) == given  # given once, then kept


def test_a_malformed_incarnation_is_refused(tmp_path):
    data = tmp_path / "n1"
    data.mkdir()
    for body in (
        {"incarnation": "ab"},
        {"origin": "bootstrap"},
        {"incarnation": "", "origin": "join"},
        {"incarnation": "ab", "origin": "restore"},
        {"incarnation": 7, "origin": "join"},
    ):
        fields = {"format": 1, "node_id": "n1", "cluster_id": None, **body}
        (data / "identity.json").write_text(json.dumps(fields))
        with pytest.raises(IdentityError, match="incarnation must be a non-empty string and origin one of"):
            read_identity(data)


def test_an_owner_field_that_is_half_there_or_not_a_string_is_refused(tmp_path):
    data = tmp_path / "n1"
    data.mkdir()
    for body in ({"protocol": "raft"}, {"protocol": "raft", "service": 3}, {"service": "kv"}):
        fields = {"format": 1, "node_id": "n1", "cluster_id": None, **body}
        (data / "identity.json").write_text(json.dumps(fields))
        with pytest.raises(IdentityError, match="protocol and service must be strings"):
            read_identity(data)


def _serve_briefly(config) -> int:
    import asyncio

    async def go() -> int:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        return await serve(config, stop=stop)

    return run(go())


def test_a_node_of_another_protocol_or_service_refuses_the_directory_with_one_line(tmp_path, capsys):
    import dataclasses

    from consensuskit.server.main import EXIT_OK

    raft = node_config(tmp_path, "n1", ["n1"])
    assert _serve_briefly(raft) == EXIT_OK  # a one-node Raft cluster: it leads, writes its log
    assert read_identity(raft.data_dir).owner == RAFT_KV
    capsys.readouterr()
    restart = dataclasses.replace(raft, bootstrap=False)
    multipaxos = dataclasses.replace(restart, protocol="multipaxos", options={})
    assert run(serve(multipaxos)) == EXIT_FAILED
    found = Owner("raft", "kv")
    assert capsys.readouterr().err == (
        f"error: {owner_mismatch_message(raft.data_dir, found, Owner('multipaxos', 'kv'))}\n"
    )
    etcd = dataclasses.replace(restart, service="etcd")
    assert run(serve(etcd)) == EXIT_FAILED
    refusal = owner_mismatch_message(raft.data_dir, found, Owner("raft", "etcd"))
    assert capsys.readouterr().err == f"error: {refusal}\n"
    assert read_identity(raft.data_dir).owner == RAFT_KV  # unchanged by the refusals
    assert _serve_briefly(restart) == EXIT_OK


def test_an_earlier_release_directory_another_protocol_cannot_read_is_refused_and_not_adopted(
    tmp_path, capsys
):
    import dataclasses

    from consensuskit.server.main import EXIT_OK

    raft = node_config(tmp_path, "n1", ["n1"])
    assert _serve_briefly(raft) == EXIT_OK
    write_identity(raft.data_dir, Identity("n1", raft.cluster_id), fsync=False)  # as an earlier release
    capsys.readouterr()
    restart = dataclasses.replace(raft, bootstrap=False)
    multipaxos = dataclasses.replace(restart, protocol="multipaxos", options={})
    assert run(serve(multipaxos)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: cannot build a node of protocol 'multipaxos' with service 'kv' from data directory "
        f"{raft.data_dir} ("
    ), err
    assert err.endswith(
        "if another protocol or service wrote it, start the node with those "
        "(the traceback is in the log above)\n"
    )
    assert err.count("\n") == 1
    assert read_identity(raft.data_dir).owner is None  # never marked as the protocol that failed
    assert _serve_briefly(restart) == EXIT_OK
    assert read_identity(raft.data_dir).owner == RAFT_KV  # adopted by the node built from it


@pytest.mark.parametrize(
    ("flags", "founders"),
    [({"bootstrap": True}, ("n1", "n2", "n3")), ({"rejoin": True}, None), ({"voter": False}, None)],
)
def test_only_a_bootstrapped_directory_records_the_members_it_founded(tmp_path, flags, founders):
    data = tmp_path / "n1"
    opened(data, members=("n3", "n1", "n2"), **flags).close()
    identity = read_identity(data)
    assert identity.founders == founders
    assert ("founders" in identity_of(data)) == (founders is not None)
    opened(data, members=("n1",)).close()  # a later start's members change nothing
    assert read_identity(data) == identity


def test_a_malformed_founders_list_is_refused(tmp_path):
    data = tmp_path / "n1"
    data.mkdir()
    for founders in ([], "n1,n2", [1, 2], ["n1", ""]):
        fields = {"format": 1, "node_id": "n1", "cluster_id": None, "founders": founders}
        (data / "identity.json").write_text(json.dumps(fields))
        with pytest.raises(IdentityError, match="founders must be a non-empty list of node ids"):
            read_identity(data)
