"""Clients nobody here wrote, against ``consensuskit up --service etcd`` processes: Debian's
etcdctl (on Raft and Multi-Paxos) and a Python etcd v3 client from PyPI (pyetcd, the
``etcd-sdk-python`` package).  Each is skipped, saying why, when it is not installed
(.ci/run installs etcdctl; ``pip install -e '.[dev]'`` the Python client)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services.etcd_cluster import EtcdCluster, etcd_cluster

pytestmark = pytest.mark.timeout(180)

ETCDCTL = shutil.which("etcdctl")
needs_etcdctl = pytest.mark.skipif(
    ETCDCTL is None, reason="etcdctl is not installed (apt-get install etcd-client; .ci/run does)"
)


@pytest.fixture(scope="module", params=["raft", "multipaxos", "zab"])
def etcd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if ETCDCTL is None and request.param != "raft":
        pytest.skip("etcdctl is not installed")
    yield from etcd_cluster(tmp_path_factory, request.param)


class Ctl:
    def __init__(self, endpoints: str) -> None:
        self.endpoints = endpoints
        self.env = {**os.environ, "ETCDCTL_API": "3"}

    def args(self, *args: str) -> list[str]:
        assert ETCDCTL is not None
        return [ETCDCTL, "--endpoints", self.endpoints, "--command-timeout", "5s", *args]

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            self.args(*args), input=stdin, capture_output=True, text=True, timeout=20, env=self.env
        )
        assert done.returncode == 0, f"etcdctl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out


@pytest.fixture
def ctl(etcd: EtcdCluster) -> Ctl:
    return Ctl(etcd.grpc_address(etcd.follower()))  # a follower: every call is served anywhere


@needs_etcdctl
def test_etcdctl_put_get_del(ctl: Ctl) -> None:
    assert ctl("put", "ctl/a", "1").strip() == "OK"
    rev = json.loads(ctl("get", "ctl/a", "-w", "json"))["kvs"][0]["mod_revision"]
    ctl("put", "ctl/a", "2")
    ctl("put", "ctl/b", "3")
    assert ctl("get", "ctl/a", "--print-value-only").strip() == "2"
    assert ctl("get", "ctl/a", "--rev", str(rev), "--print-value-only").strip() == "1"
    assert ctl("get", "ctl/", "--prefix", "--keys-only").split() == ["ctl/a", "ctl/b"]
    assert ctl("get", "ctl/b", "--from-key", "--keys-only").split()[0] == "ctl/b"
    assert ctl("del", "ctl/", "--prefix").strip() == "2"
    assert ctl("get", "ctl/", "--prefix") == ""


@needs_etcdctl
def test_etcdctl_txn_from_a_file(ctl: Ctl, tmp_path: Path) -> None:
    ctl("put", "ctl/t", "old")
    script = 'value("ctl/t") = "old"\n\nput ctl/t new\nget ctl/t\n\nput ctl/t lost\n\n'
    out = ctl("txn", stdin=script)
    assert out.splitlines()[0] == "SUCCESS" and "new" in out
    assert ctl("txn", stdin=script).splitlines()[0] == "FAILURE"
    assert ctl("get", "ctl/t", "--print-value-only").strip() == "lost"


@needs_etcdctl
def test_etcdctl_watch_a_prefix_from_a_revision(ctl: Ctl) -> None:
    first = json.loads(ctl("put", "ctl/w/1", "a", "-w", "json"))["header"]["revision"]
    ctl("put", "ctl/w/2", "b")
    watcher = ctl.background("watch", "ctl/w/", "--prefix", "--rev", str(first))
    time.sleep(1.5)
    ctl("del", "ctl/w/1")
    time.sleep(1.0)
    lines = stop(watcher).split()
    assert lines == ["PUT", "ctl/w/1", "a", "PUT", "ctl/w/2", "b", "DELETE", "ctl/w/1"]


@needs_etcdctl
def test_etcdctl_leases(ctl: Ctl) -> None:
    lease = ctl("lease", "grant", "30").split()[1]
    ctl("put", "ctl/l", "x", f"--lease={lease}")
    ttl = ctl("lease", "timetolive", lease, "--keys")
    assert "granted with TTL(30s)" in ttl and "attached keys([ctl/l])" in ttl
    assert f"lease {lease} keepalived with TTL(30)" in ctl("lease", "keep-alive", "--once", lease)
    assert lease in ctl("lease", "list")
    assert "revoked" in ctl("lease", "revoke", lease)
    assert ctl("get", "ctl/l") == ""
    assert "already expired" in ctl("lease", "timetolive", lease)


@needs_etcdctl
def test_etcdctl_lock_and_elect(ctl: Ctl) -> None:
    assert ctl("lock", "ctl-mutex", "echo", "held").strip() == "held"
    candidate = ctl.background("elect", "ctl-election", "alice")
    try:
        time.sleep(2.0)
        observed = ctl.background("elect", "-l", "ctl-election")
        time.sleep(1.5)
        assert stop(observed).split()[-1] == "alice"
    finally:
        stop(candidate)


@needs_etcdctl
def test_etcdctl_endpoint_status_and_member_list(ctl: Ctl, etcd: EtcdCluster) -> None:
    everyone = ",".join(etcd.grpc_addresses())
    status = json.loads(Ctl(everyone)("endpoint", "status", "-w", "json"))
    assert len(status) == 3
    leaders = {s["Status"]["leader"] for s in status}
    assert len(leaders) == 1 and leaders.pop() in {s["Status"]["header"]["member_id"] for s in status}
    members = json.loads(ctl("member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["n1", "n2", "n3"]
    assert sorted(m["clientURLs"][0] for m in members) == sorted(f"http://{a}" for a in etcd.grpc_addresses())


@needs_etcdctl
def test_etcdctl_health_alarms_defrag_and_hashkv(ctl: Ctl, etcd: EtcdCluster) -> None:
    """The operator's checks: endpoint health (etcdctl 3.5 also lists alarms, and calls a
    member that cannot answer unhealthy), alarm list and disarm (none), defrag (nothing
    to do), and endpoint hashkv, where members that applied as far agree."""
    everyone = Ctl(",".join(etcd.grpc_addresses()))
    health = json.loads(everyone("endpoint", "health", "-w", "json"))
    assert len(health) == 3 and all(h["health"] for h in health), health
    assert ctl("alarm", "list") == "" and ctl("alarm", "disarm") == ""
    assert "Finished defragmenting" in ctl("defrag")
    revision = json.loads(ctl("put", "hk/a", "1", "-w", "json"))["header"]["revision"]
    ctl("put", "hk/b", "2")
    deadline = time.monotonic() + 10
    while True:  # the members apply the puts at their own pace
        hashes = json.loads(everyone("endpoint", "hashkv", "--rev", str(revision), "-w", "json"))
        if len({h["HashKV"]["hash"] for h in hashes}) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(hashes) == 3 and len({h["HashKV"]["hash"] for h in hashes}) == 1, hashes
    deadline = time.monotonic() + 10
    while True:  # this member may answer the second put before applying it
        newer = json.loads(ctl("endpoint", "hashkv", "-w", "json"))[0]["HashKV"]
        if newer["header"]["revision"] > revision or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert newer["header"]["revision"] > revision and newer["hash"] != hashes[0]["HashKV"]["hash"]


@needs_etcdctl
def test_etcdctl_snapshot_save_and_a_restore_into_a_new_cluster(
    ctl: Ctl, etcd: EtcdCluster, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """etcdctl keeps the snapshot stream as it came (a consensuskit backup file, not a
    bolt database); `consensuskit backup restore` puts it into a new cluster, where the
    keys come back with their revisions (docs/server.md, "Backup and restore")."""
    from consensuskit.client import Client
    from consensuskit.server.backup_commands import describe, load_file

    for i in range(3):
        ctl("put", f"snap/{i}", f"v{i}")
    before = json.loads(ctl("get", "snap/", "--prefix", "-w", "json"))
    path = tmp_path / "etcd.snapshot"
    out = ctl("snapshot", "save", str(path))
    assert f"Snapshot saved at {path}" in out
    described = describe(load_file(str(path)))
    assert described["service"] == "etcd" and described["entries"] > 0
    if etcd.layout.protocol != "raft":
        return  # one restore is enough: the state is the service's, whichever protocol
    fresh = etcd_cluster(tmp_path_factory, "multipaxos")
    target = next(fresh)
    try:
        token = target.layout.admin_token_path.read_text().strip()
        with Client(target.layout.endpoints, admin_token=token, timeout=30.0, deadline=60.0) as client:
            assert client.restore(path.read_bytes())["restored"] > 0
        follower = Ctl(target.grpc_address(target.follower()))
        after = json.loads(follower("get", "snap/", "--prefix", "-w", "json"))
        assert after["kvs"] == before["kvs"]  # keys, values, create and mod revisions, versions
    finally:
        fresh.close()


def refused(ctl: Ctl, *args: str) -> str:
    """etcdctl's error line for a call that must fail."""
    done = subprocess.run(ctl.args(*args), capture_output=True, text=True, timeout=20, env=ctl.env)
    assert done.returncode != 0, f"etcdctl {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr.strip().splitlines()[-1]


@needs_etcdctl
def test_etcdctl_auth_users_roles_and_permissions(ctl: Ctl, etcd: EtcdCluster) -> None:
    """etcd's auth as its documentation walks it, through a follower: a root user, a role
    with a prefix and a one-key permission, `auth enable` (etcdctl adds the root role to
    root itself), then what each user may do, with etcd's error texts; a new password
    retires the old one; `auth disable` opens the cluster again."""
    assert ctl("user", "add", "root:rootpw") == "User root created\n"
    assert ctl("role", "add", "app") == "Role app created\n"
    updated = "Role app updated\n"
    assert ctl("role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/") == updated
    assert ctl("role", "grant-permission", "app", "read", "/config") == "Role app updated\n"
    assert ctl("user", "add", "alice:alicepw") == "User alice created\n"
    assert ctl("user", "grant-role", "alice", "app") == "Role app is granted to user alice\n"
    assert ctl("role", "get", "app") == (
        "Role app\nKV Read:\n\t[/app/, /app0) (prefix /app/)\n\t/config\n"
        "KV Write:\n\t[/app/, /app0) (prefix /app/)\n"
    )
    ctl("put", "/config", "c1")
    ctl("put", "/other", "o1")
    assert ctl("auth", "enable") == "Authentication Enabled\n"
    root = ["--user", "root:rootpw"]
    alice = ["--user", "alice:alicepw"]
    try:
        assert refused(ctl, "get", "/other") == "Error: etcdserver: user name is empty"
        assert refused(ctl, "put", "/app/x", "1") == "Error: etcdserver: user name is empty"
        assert ctl(*alice, "put", "/app/x", "1") == "OK\n"
        assert ctl(*alice, "get", "/app/", "--prefix") == "/app/x\n1\n"
        assert ctl(*alice, "get", "/config") == "/config\nc1\n"
        denied = "Error: etcdserver: permission denied"
        assert refused(ctl, *alice, "put", "/config", "c2") == denied
        assert refused(ctl, *alice, "get", "/other") == denied
        assert refused(ctl, *alice, "get", "/", "--prefix") == denied  # reaches keys beyond /app/
        assert refused(ctl, *alice, "user", "list") == denied
        assert refused(ctl, *alice, "snapshot", "save", os.devnull).endswith(denied)
        wrong = "Error: etcdserver: authentication failed, invalid user ID or password"
        assert refused(ctl, "--user", "alice:nope", "get", "/config") == wrong
        assert ctl(*root, "get", "/other") == "/other\no1\n"
        assert ctl(*root, "user", "list") == "alice\nroot\n"
        assert ctl(*root, "user", "get", "alice") == "User: alice\nRoles: app\n"
        assert ctl(*alice, "lock", "/app/lock", "echo", "held") == "held\n"
        assert refused(ctl, *alice, "lock", "/elsewhere", "echo", "held") == denied
        ctl(*root, "user", "passwd", "alice", "--interactive=false", stdin="newpw\n")
        assert refused(ctl, *alice, "get", "/config") == wrong
        assert ctl("--user", "alice:newpw", "get", "/config") == "/config\nc1\n"
        assert refused(ctl, *root, "user", "delete", "root") == "Error: etcdserver: invalid auth management"
        assert refused(ctl, *root, "role", "add", "app") == "Error: etcdserver: role name already exists"
    finally:
        ctl(*root, "auth", "disable")
    assert ctl("put", "/other", "o2") == "OK\n"
    ctl("user", "delete", "alice")
    ctl("user", "delete", "root")
    ctl("role", "delete", "app")


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds (else its last)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


@needs_etcdctl
def test_etcdctl_move_leader_member_remove_add_promote_and_update(etcd: EtcdCluster) -> None:
    """etcd's runbook for replacing a member, on Raft: move-leader, member remove, member
    add --learner (the node is known by its peer URL), member promote once in sync, and
    member update; Multi-Paxos and ZAB answer what they lack with the platform's text."""
    everyone = Ctl(",".join(etcd.grpc_addresses()))
    members = {m["name"]: m for m in json.loads(everyone("member", "list", "-w", "json"))["members"]}
    cluster_id = json.loads(everyone("member", "list", "-w", "json"))["header"]["cluster_id"]
    leader = etcd.cluster.wait_for_leader(30)
    other = sorted(n for n in members if n != leader)[-1]
    hex_id = {name: format(m["ID"], "x") for name, m in members.items()}
    if etcd.layout.protocol != "raft":
        # etcdctl prints a text etcd does not have with its gRPC code.
        unimplemented = "Error: rpc error: code = Unimplemented desc = etcdserver: protocol"
        message = refused(everyone, "move-leader", hex_id[other])
        assert message.startswith(f"{unimplemented} {etcd.layout.protocol}"), message
        if etcd.layout.protocol == "multipaxos":  # no learners: a member goes and comes back a voter
            at_leader, url = Ctl(etcd.grpc_address(leader)), members[other]["peerURLs"][0]
            at_leader("member", "remove", hex_id[other])
            message = refused(at_leader, "member", "add", other, f"--peer-urls={url}", "--learner")
            assert message == f"{unimplemented} multipaxos has no add-learner (it supports add-voter, remove)"

            def add() -> bool:  # refused until alpha more commands were decided
                at_leader("put", "mp/filler", "x")
                done = subprocess.run(
                    at_leader.args("member", "add", other, f"--peer-urls={url}"),
                    capture_output=True,
                    text=True,
                )
                return done.stdout.startswith(f"Member {members[other]['ID']:16x} added")

            assert wait_for(add)
            listed = json.loads(at_leader("member", "list", "-w", "json"))["members"]
            assert sorted(m["name"] for m in listed) == sorted(members)
        else:
            message = refused(everyone, "member", "remove", hex_id[other])
            assert message.startswith(f"{unimplemented} {etcd.layout.protocol}"), message
        return
    out = everyone("move-leader", hex_id[other])
    assert out == f"Leadership transferred from {hex_id[leader]} to {hex_id[other]}\n"
    assert etcd.cluster.wait_for_leader(30) == other
    at_leader = Ctl(etcd.grpc_address(other))
    victim, url = leader, members[leader]["peerURLs"][0]
    assert at_leader("member", "remove", hex_id[victim]) == (
        f"Member {members[victim]['ID']:16x} removed from cluster {cluster_id:16x}\n"
    )
    listed = json.loads(at_leader("member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in listed) == sorted(n for n in members if n != victim)
    out = at_leader("member", "add", victim, f"--peer-urls={url}", "--learner")
    assert out.startswith(f"Member {members[victim]['ID']:16x} added to cluster {cluster_id:16x}"), out
    assert f'ETCD_NAME="{victim}"' in out and f"{victim}={url}" in out
    listed = {m["name"]: m for m in json.loads(at_leader("member", "list", "-w", "json"))["members"]}
    assert listed[victim].get("isLearner") is True
    promoted = f"Member {members[victim]['ID']:16x} promoted in cluster {cluster_id:16x}\n"

    def promote() -> bool:
        done = subprocess.run(
            at_leader.args("member", "promote", hex_id[victim]), capture_output=True, text=True
        )
        return done.stdout == promoted

    assert wait_for(promote), "the learner never came in sync"
    listed = {m["name"]: m for m in json.loads(at_leader("member", "list", "-w", "json"))["members"]}
    assert sorted(listed) == sorted(members) and not any(m.get("isLearner") for m in listed.values())
    assert at_leader("member", "update", hex_id[victim], f"--peer-urls={url}") == (
        f"Member {members[victim]['ID']:16x} updated in cluster {cluster_id:16x}\n"
    )
    assert at_leader("put", "after/replace", "1") == "OK\n"
    assert wait_for(lambda: Ctl(etcd.grpc_address(victim))("get", "after/replace", "--consistency=s") != "")


PYPI_CLIENT = """
import sys
import pyetcd

host, port = sys.argv[1].split(":")
client = pyetcd.client(host=host, port=int(port), timeout=5)
client.put("py/a", "1")
value, meta = client.get("py/a")
assert value == b"1" and meta.version == 1, (value, meta)
ok, _ = client.transaction(
    compare=[client.transactions.value("py/a") == "1"],
    success=[client.transactions.put("py/a", "2")],
    failure=[],
)
assert ok and client.get("py/a")[0] == b"2"
lease = client.lease(30)
client.put("py/l", "x", lease=lease)
assert lease.remaining_ttl > 0 and lease.keys == [b"py/l"], lease.keys
lease.refresh()
lease.revoke()
assert client.get("py/l")[0] is None
events, cancel = client.watch_prefix("py/")
client.put("py/w", "seen")
event = next(events)
cancel()
assert event.key == b"py/w" and event.value == b"seen", event
with client.lock("py-lock", ttl=10) as lock:
    assert lock.is_acquired()
assert sorted(m.name for m in client.members) == ["n1", "n2", "n3"]
client.close()
print("ok")
"""


def test_a_pypi_etcd_client(etcd: EtcdCluster) -> None:
    """etcd-sdk-python's own put/get/txn/lease/watch/lock helpers.  In a process of its
    own: its generated modules and ours define the same protobuf names (mvccpb.KeyValue),
    which one process's default descriptor pool takes only once."""
    if importlib.util.find_spec("pyetcd") is None:  # not imported here: see the docstring
        pytest.skip("the etcd-sdk-python package is not installed ('.[dev]')")
    if etcd.layout.protocol != "raft":
        pytest.skip("one protocol is enough for this client")
    done = subprocess.run(
        [sys.executable, "-c", PYPI_CLIENT, etcd.grpc_address(etcd.follower())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
