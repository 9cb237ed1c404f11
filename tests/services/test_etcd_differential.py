"""A differential probe of the etcd v3 API: the same etcdctl commands (and a few JSON
gateway requests) against a real etcd and against a 3-node ``--service etcd`` Raft
cluster of consensuskit processes, compared exit code, stdout and stderr alike once
what legitimately differs is normalised away (cluster and member ids, raft terms,
timestamps, lease ids, versions, endpoints).  Both start empty, so revisions, create
and mod revisions and versions must match exactly.

This module owns the command list, the normalisation and the comparison; skipped,
saying why, when ``etcd`` or ``etcdctl`` is not installed (.ci/run installs both)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import text_format
from google.protobuf.message import Message

from consensuskit.server.cluster import free_port
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from tests.services.etcd_cluster import etcd_cluster

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("etcd") is None or shutil.which("etcdctl") is None,
        reason="the real etcd and etcdctl are not installed (apt-get install etcd-server etcd-client; "
        ".ci/run does)",
    ),
]

ETCD = shutil.which("etcd") or "etcd"
ETCDCTL = shutil.which("etcdctl") or "etcdctl"
MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes, our default limit too


# A normalisation: a regex and what replaces each match (re.sub's replacement).
Rule = tuple[str, str | Callable[[re.Match[str]], str]]


@dataclass(frozen=True)
class Step:
    """One etcdctl call.  ``{name}`` in an argument is a value an earlier step captured
    (``capture``: a regex whose named groups are read from stdout); ``limit`` runs it
    under a deadline (watch, elect), its output being what came before it."""

    args: tuple[str, ...]
    stdin: bytes | None = None
    capture: str | None = None
    pause: float = 0.0
    limit: float | None = None
    normalise: tuple[Rule, ...] = ()  # this step's own (pattern, replacement)s, after the common ones
    protobuf: type[Message] | None = None  # -w protobuf: stdout is this message, compared as text
    ours_instead: str | None = None  # a difference kept on purpose: our last line of stderr


def ctl(*args: str, **options: object) -> Step:
    return Step(args=args, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Request:
    """One JSON gateway request: method, path, raw body."""

    method: str
    path: str
    body: bytes | None = None


@dataclass
class Target:
    """One server under test: its gRPC endpoint (for etcdctl) and HTTP base (the gateway)."""

    endpoint: str
    gateway: str
    captured: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


# ---------------------------------------------------------------------- the commands

LOCK_TTL_SCRIPT = "sleep 0.1; echo held"
# Values well over and well under the limit: ours is the value and key limits plus 512 KiB
# (1.5 MiB and 4 KiB), a little above etcd's 1.5 MiB (docs/server.md), so a value within
# 4 KiB under the limit is refused by etcd only.
BIG = MAX_REQUEST_BYTES
TXN_ON_VALUE = b'value("t/a") = "1"\n\nput t/b yes\nget t/a\n\nput t/b no\n\n'
TXN_ON_VERSION_FAILING = b'version("t/a") = "7"\n\nput t/b yes\n\nget t/a\ndel t/missing\n\n'
TXN_ON_REVISIONS = b'create("t/a") = "{t_a_create}"\nmod("t/a") > "1"\n\nget t/ --prefix\n\n\n'
TXN_ON_LEASE = b'lease("t/a") = "0"\n\nput t/c leased-ok\n\n\n'  # etcdctl 3.4 panics: the gateway asks
TXN_BAD_COMPARE = b'value("t/a") ~ "1"\n\nput t/b x\n\n\n'
TXN_SAME_KEY_TWICE = b"\nput t/d 1\nput t/d 2\n\n\n"
TXN_PUT_AND_DEL = b"\nput t/e 1\ndel t/e\n\n\n"
TXN_EMPTY = b"\n\n\n"
# 1,080 keys in nine txns of 120 puts (etcd's --max-txn-ops is 128): more than one watch
# read of ours holds (mvcc.WATCH_BATCH, 1,000), to delete in one revision
BIG_PUTS = tuple(
    b"\n" + b"".join(b"put big/%04d v\n" % (i * 120 + j) for j in range(120)) + b"\n\n" for i in range(9)
)
TXN_READS_ITS_OWN_WRITE = b"\nget t/f\nput t/f 1\nget t/f\ndel t/nothing\n\n\n"

# What a status names that differs between any two servers: sizes, indexes, the leader.
STATUS_RULES = ((r'"(dbSize|dbSizeInUse|raftIndex|raftAppliedIndex|leader|raftTerm)":\d+', r'"\1":N'),)
# etcd here is one member, ours three: only the call's outcome is compared.
MEMBERS_RULES = ((r'(?s)"members":\[.*\]', '"members":[...]'),)
# Kept on purpose (docs/server.md, "etcd's Auth service"): the role root is built in.
BUILT_IN_ROOT_ROLE = ((r"(?m)^root\n", ""),)
# etcd 3.4 answers Alarm without a header; 3.5 on fills it in, as we do.
ALARM_HEADER = ((r'^\{"header":\{[^}]*\}\}', "{}"),)
# etcd 3.4 and 3.5 answer a refused maintenance call (Defragment, HashKV, Snapshot) with
# the auth store's bare error, code Unknown; 3.6 with the usual code and text, as we do.
ROOT_ONLY_MAINTENANCE = (
    (
        r"code = Unknown desc = auth: permission denied",
        "code = PermissionDenied desc = etcdserver: permission denied",
    ),
    (
        r"code = Unknown desc = auth: user name is empty",
        "code = InvalidArgument desc = etcdserver: user name is empty",
    ),
    (r"\(rpc error: code = \w+ desc = (etcdserver: [^)]*)\)", r"(\1)"),
    (r"(?m)^Error: rpc error: code = \w+ desc = (etcdserver: .*)$", r"Error: \1"),
)
# The seconds a lease has left depend on when the call lands.
TTL_LEFT: tuple[Rule, ...] = ((r"remaining\(\d+s\)", "remaining(N)"), (r'"ttl":\d+', '"ttl":N'))
# etcd lists a lease's keys from a Go map, so in any order.
LEASE_KEYS_SORTED: tuple[Rule, ...] = (
    (r'"keys":\[([^\]]*)\]', lambda m: '"keys":[' + ",".join(sorted(m.group(1).split(","))) + "]"),
    (
        r"attached keys\(\[([^\]]*)\]\)",
        lambda m: "attached keys([" + " ".join(sorted(m.group(1).split())) + "])",
    ),
)
HASH_RULES = ((r'"hash":\d+', '"hash":H'),)

STEPS: tuple[Step, ...] = (
    # --- put and get: revisions, versions, options
    ctl("get", "a"),
    ctl("get", "a", "-w", "json"),
    ctl("put", "a", "1"),
    ctl("put", "a", "2", "-w", "json"),
    ctl("put", "a", "3", "--prev-kv"),
    ctl("put", "a", "4", "--prev-kv", "-w", "json"),
    ctl("put", "b", "x"),
    ctl("put", "c", "y"),
    ctl("put", "d/1", "p"),
    ctl("put", "d/2", "q"),
    ctl("put", "d/3", "r"),
    ctl("get", "a", "-w", "json"),
    ctl("get", "a", "-w", "fields"),
    ctl("get", "a", "--rev", "2"),
    ctl("get", "a", "--rev", "2", "-w", "json"),
    ctl("get", "a", "--rev", "999"),
    ctl("get", "a", "--rev", "-1"),
    ctl("get", "d/", "--prefix"),
    ctl("get", "d/", "--prefix", "-w", "json"),
    ctl("get", "d/", "--prefix", "--limit", "2", "-w", "json"),
    ctl("get", "d/", "--prefix", "--keys-only"),
    ctl("get", "d/", "--prefix", "--keys-only", "-w", "json"),
    ctl("get", "d/", "--prefix", "--print-value-only"),
    ctl("get", "d/", "--prefix", "--sort-by", "KEY", "--order", "DESCEND"),
    ctl("get", "d/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "-w", "json"),
    ctl("get", "d/", "--prefix", "--sort-by", "MODIFY", "--order", "ASCEND", "--limit", "1"),
    ctl("get", "", "--prefix", "--sort-by", "VERSION", "--order", "DESCEND", "--keys-only"),
    ctl("get", "", "--prefix", "--sort-by", "CREATE", "--keys-only"),
    ctl("get", "d/", "--prefix", "--sort-by", "NAME"),
    ctl("get", "d/", "--prefix", "--order", "UP"),
    ctl("get", "c", "--from-key", "--keys-only"),
    ctl("get", "c", "--from-key", "--limit", "1", "-w", "json"),
    ctl("get", "a", "d/2"),
    ctl("get", "a", "d/2", "--prefix"),
    ctl("get", "a", "--prefix", "--from-key"),
    ctl("get", "", "--from-key", "--keys-only", "-w", "json"),
    ctl("get"),
    ctl("get", ""),
    ctl("get", "a", "b", "c"),
    ctl("get", "zzz", "--prefix", "-w", "json"),
    ctl("get", "a", "--consistency", "s"),
    ctl("get", "a", "--consistency", "x"),
    ctl("get", "a", "-w", "protobuf", protobuf=pb.RangeResponse),
    ctl("get", "a", "-w", "table"),
    ctl("get", "a", "-w", "yaml"),
    ctl("put", "", "empty-key"),
    ctl("put", "novalue"),
    ctl("put", "a", "5", "--ignore-value"),
    ctl("put", "a", "--ignore-value"),
    ctl("get", "a", "-w", "json"),
    ctl("put", "nokey", "--ignore-value"),
    ctl("put", "a", "6", "--ignore-lease"),
    ctl("put", "a", "--ignore-value", "--ignore-lease"),
    ctl("put", "a", "x", "--lease", "zz"),
    ctl("put", "a", "x", "--lease", "1234abcd"),
    ctl("put", "dash", "--", "-v"),
    ctl("get", "dash", "--print-value-only"),
    ctl("put", "fromstdin", stdin=b"value from stdin"),
    ctl("get", "fromstdin", "--print-value-only"),
    ctl("put", "\u00e9t\u00e9", "\u00fcnicode"),
    ctl("get", "\u00e9t\u00e9", "-w", "json"),
    ctl("put", "sp ace", "v w"),
    ctl("get", "sp ace"),
    # --- delete
    ctl("del", "nothing"),
    ctl("del", "nothing", "-w", "json"),
    ctl("del", "b", "--prev-kv"),
    ctl("del", "b"),
    ctl("del", "d/", "--prefix", "--prev-kv", "-w", "json"),
    ctl("put", "d/1", "p2"),
    ctl("get", "d/1", "-w", "json"),
    ctl("del", "sp", "--from-key", "--prev-kv"),
    ctl("del", ""),
    ctl("del"),
    ctl("del", "a", "c", "--prefix"),
    ctl("get", "", "--prefix", "-w", "json"),
    # --- txn
    ctl("put", "t/a", "1"),
    ctl("get", "t/a", "-w", "json", capture=r'"create_revision":(?P<t_a_create>\d+)'),
    ctl("txn", stdin=TXN_ON_VALUE),
    ctl("txn", "-w", "json", stdin=TXN_ON_VALUE),
    ctl("txn", stdin=TXN_ON_VERSION_FAILING),
    ctl("txn", "-w", "json", stdin=TXN_ON_VERSION_FAILING),
    ctl("txn", stdin=TXN_ON_REVISIONS),
    ctl("txn", stdin=TXN_ON_LEASE),
    ctl("txn", stdin=TXN_BAD_COMPARE),
    ctl("txn", stdin=TXN_SAME_KEY_TWICE),
    ctl("txn", stdin=TXN_PUT_AND_DEL),
    ctl("txn", stdin=TXN_EMPTY),
    ctl("txn", "-w", "json", stdin=TXN_EMPTY),
    ctl("txn", "-w", "json", stdin=TXN_READS_ITS_OWN_WRITE),
    ctl("get", "t/", "--prefix", "-w", "json"),
    # --- compaction and reads below it
    ctl("get", "t/a", "-w", "json", capture=r'"revision":(?P<rev_now>\d+)'),
    ctl("compact", "0"),
    ctl("compact", "99999"),
    ctl("compact", "-1"),
    ctl("compact", "x"),
    ctl("compact", "5"),
    ctl("compact", "5"),
    ctl("compact", "4"),
    ctl("compact", "6", "--physical"),
    ctl("get", "a", "--rev", "3"),
    ctl("get", "a", "--rev", "6"),
    ctl("get", "t/a", "--rev", "6", "-w", "json"),
    ctl("get", "t/a", "--rev", "{rev_now}", "-w", "json"),
    ctl("watch", "a", "--rev", "3", limit=2.0),
    ctl("watch", "t/", "--prefix", "--rev", "6", limit=2.0),
    ctl("watch", "t/", "--prefix", "--rev", "7", "--prev-kv", limit=2.0),
    ctl("watch", "t/", "--prefix", "--rev", "7", "--prev-kv", "-w", "json", limit=2.0),
    ctl("watch", "t/a", "--rev", "{rev_now}", limit=2.0),
    ctl("watch", limit=2.0),
    ctl("watch", "t/a", "t/z", "--prefix", limit=2.0),
    # --- a delete of more keys than one watch read held: every delete is heard
    *(ctl("txn", stdin=puts) for puts in BIG_PUTS),
    ctl("del", "big/", "--prefix", "-w", "json", capture=r'"revision":(?P<rev_big_del>\d+)'),
    ctl("watch", "big/", "--prefix", "--rev", "{rev_big_del}", limit=3.0),
    # --- leases
    ctl("lease", "grant", "30", capture=r"lease (?P<lease_a>[0-9a-f]+) granted"),
    ctl("lease", "grant", "1", capture=r"lease (?P<lease_short>[0-9a-f]+) granted"),
    ctl("lease", "grant", "-5"),
    ctl("lease", "grant", "x"),
    ctl("lease", "grant", "9999999999"),
    ctl("lease", "grant"),
    ctl("put", "l/1", "v", "--lease", "{lease_a}"),
    ctl("put", "l/2", "v", "--lease", "{lease_a}", "-w", "json"),
    ctl("get", "l/1", "-w", "json"),
    ctl("lease", "timetolive", "{lease_a}", normalise=TTL_LEFT),
    ctl("lease", "timetolive", "{lease_a}", "--keys", normalise=TTL_LEFT + LEASE_KEYS_SORTED),
    ctl("lease", "timetolive", "{lease_a}", "--keys", "-w", "json", normalise=TTL_LEFT + LEASE_KEYS_SORTED),
    ctl("lease", "timetolive", "1234abcd"),
    ctl("lease", "timetolive", "1234abcd", "-w", "json"),
    ctl("lease", "timetolive", "zz"),
    ctl("lease", "keep-alive", "--once", "{lease_a}"),
    ctl("lease", "keep-alive", "--once", "{lease_a}", "-w", "json"),
    ctl("lease", "keep-alive", "--once", "1234abcd"),
    ctl("lease", "keep-alive", "1234abcd", limit=3.0),
    ctl("lease", "revoke", "1234abcd"),
    ctl("lease", "revoke", "zz"),
    ctl("put", "l/short", "v", "--lease", "{lease_short}"),
    ctl("lease", "timetolive", "{lease_short}", "--keys", pause=4.0),
    ctl("put", "l/late", "v", "--lease", "{lease_short}"),
    ctl("get", "l/", "--prefix", "--keys-only"),
    ctl("lease", "revoke", "{lease_a}"),
    ctl("lease", "revoke", "{lease_a}"),
    ctl("get", "l/", "--prefix", "-w", "json"),
    ctl("lease", "keep-alive", "--once", "{lease_a}"),
    ctl("lease", "list", "-w", "json"),
    # --- lock and elect
    ctl("lock", "mtx", "echo", "held"),
    ctl("lock", "--ttl", "5", "mtx", "--", "sh", "-c", LOCK_TTL_SCRIPT),
    ctl("lock", "--ttl", "0", "mtx", "echo", "held"),
    ctl("lock", "mtx", "false"),
    ctl("lock"),
    ctl("lock", "", "echo", "x"),
    ctl("lock", "mtx", limit=2.0, normalise=((r"mtx/[0-9a-f]+", "mtx/LEASE"),)),
    ctl("get", "mtx", "--prefix", "--keys-only"),
    ctl("elect", "ele", "alice", limit=2.0, normalise=((r"ele/[0-9a-f]+", "ele/LEASE"),)),
    ctl("elect", "ele", limit=2.0),
    ctl("elect", "-l", "ele", limit=2.0),
    ctl("elect"),
    ctl("elect", "ele", "bob", "carol"),
    # --- maintenance
    ctl("alarm", "list"),
    ctl("alarm", "list", "-w", "json", normalise=ALARM_HEADER),
    ctl("alarm", "disarm"),
    ctl("defrag"),
    ctl("endpoint", "health", normalise=((r"took = \S+", "took = T"),)),
    ctl("endpoint", "status", "-w", "json", normalise=STATUS_RULES),
    ctl("member", "list", "-w", "json", normalise=MEMBERS_RULES),
    ctl("endpoint", "hashkv", "--rev", "99999"),
    ctl("endpoint", "hashkv", "--rev", "3"),
    ctl("check", "perf", "--load", "nonsense"),
    # --- big values, binary keys
    ctl("put", "big", stdin=b"v" * (BIG + 8192)),
    ctl("put", "big", stdin=b"v" * (BIG - 4096)),
    ctl("get", "big", "--keys-only", "-w", "json"),
    ctl("put", "big", stdin=b"v" * (3 * 1024 * 1024)),
    ctl("del", "big"),
    ctl("put", "bin\x01\x7f", "v"),
    ctl("get", "bin", "--prefix", "-w", "json"),
    ctl("get", "bin", "--prefix", "--hex"),
    ctl("del", "bin", "--prefix"),
    # --- auth (last: it changes every later call)
    ctl("auth", "enable"),
    ctl("user", "add", "root:rootpw"),
    ctl("user", "add", "root:again"),
    ctl("user", "add", "alice:alicepw"),
    ctl("user", "add", "nopass", "--no-password"),
    ctl("user", "list"),
    ctl("user", "get", "alice"),
    ctl("user", "get", "ghost"),
    ctl("role", "add", "app"),
    ctl("role", "add", "app"),
    ctl("role", "add", ""),
    ctl("role", "grant-permission", "app", "readwrite", "app/", "--prefix"),
    ctl("role", "grant-permission", "app", "read", "cfg", "--from-key"),
    ctl("role", "grant-permission", "app", "write", "k1", "k5"),
    ctl("role", "grant-permission", "app", "readwrite", "k1", "--prefix", "--from-key"),
    ctl("role", "grant-permission", "app", "bogus", "x"),
    ctl("role", "grant-permission", "ghost", "read", "x"),
    ctl("role", "get", "app"),
    ctl("role", "get", "app", "-w", "json"),
    ctl("role", "get", "ghost"),
    ctl("role", "list", normalise=BUILT_IN_ROOT_ROLE),
    ctl("user", "grant-role", "alice", "app"),
    ctl("user", "grant-role", "alice", "ghost"),
    ctl("user", "grant-role", "ghost", "app"),
    ctl("user", "get", "alice"),
    ctl("auth", "enable"),
    ctl("user", "grant-role", "root", "root"),
    ctl("auth", "enable"),
    ctl("auth", "enable", "--user", "root:rootpw"),
    ctl("get", "app/x"),
    ctl("put", "app/x", "1", "--user", "alice:alicepw"),
    ctl("put", "app/x", "1", "--user", "alice:wrong"),
    ctl("put", "app/x", "1", "--user", "ghost:pw"),
    ctl("put", "other", "1", "--user", "alice:alicepw"),
    ctl("get", "app/", "--prefix", "--user", "alice:alicepw", "-w", "json"),
    ctl("get", "", "--prefix", "--keys-only", "--user", "alice:alicepw"),
    ctl("get", "cfg", "--user", "alice:alicepw"),
    ctl("get", "cfz", "--user", "alice:alicepw"),
    ctl("put", "cfz", "1", "--user", "alice:alicepw"),
    ctl("put", "k3", "1", "--user", "alice:alicepw"),
    ctl("get", "k3", "--user", "alice:alicepw"),
    ctl("put", "app/y", "1", "--prev-kv", "--user", "alice:alicepw"),
    ctl("del", "app/", "--prefix", "--user", "alice:alicepw"),
    # Kept on purpose (docs/server.md, "etcd's Auth service"): etcd lets anyone compact.
    ctl("compact", "7", "--user", "alice:alicepw", ours_instead="Error: etcdserver: permission denied"),
    ctl("compact", "8", ours_instead="Error: etcdserver: user name is empty"),
    ctl("compact", "9", "--user", "root:rootpw"),  # the same compacted revision on both again
    ctl("defrag", "--user", "alice:alicepw", normalise=ROOT_ONLY_MAINTENANCE),
    ctl("defrag", normalise=ROOT_ONLY_MAINTENANCE),
    ctl("endpoint", "hashkv", "--user", "alice:alicepw", "-w", "json", normalise=ROOT_ONLY_MAINTENANCE),
    ctl("endpoint", "hashkv", "-w", "json", normalise=ROOT_ONLY_MAINTENANCE),
    ctl("endpoint", "hashkv", "--user", "root:rootpw", "-w", "json", normalise=HASH_RULES),
    ctl("endpoint", "status", "-w", "json", normalise=STATUS_RULES),
    ctl("endpoint", "health", normalise=((r"took = \S+", "took = T"),)),
    ctl("alarm", "list"),
    ctl("member", "list", "-w", "json", normalise=MEMBERS_RULES),
    ctl("member", "list", "--user", "alice:alicepw", "-w", "json", normalise=MEMBERS_RULES),
    # Kept on purpose, as compaction: etcd lets a caller without a user use leases.
    ctl("lease", "grant", "30", ours_instead="Error: failed to grant lease (etcdserver: user name is empty)"),
    ctl("lease", "list", ours_instead="Error: etcdserver: user name is empty"),
    ctl("lease", "list", "--user", "alice:alicepw", normalise=((r"(?s)found \d+ leases.*", "found leases"),)),
    ctl("watch", "app/", "--prefix", limit=2.0),
    ctl("watch", "app/", "--prefix", "--user", "alice:alicepw", limit=2.0),
    ctl("watch", "other", "--user", "alice:alicepw", limit=2.0),
    ctl("lock", "mtx", "echo", "held"),
    ctl("lock", "app/mtx", "echo", "held", "--user", "alice:alicepw"),
    ctl("txn", "--user", "alice:alicepw", stdin=b'value("other") = "1"\n\nput app/t 1\n\n\n'),
    ctl("auth", "status"),
    ctl("user", "list", "--user", "alice:alicepw"),
    ctl("user", "get", "alice", "--user", "alice:alicepw"),
    ctl("role", "get", "app", "--user", "alice:alicepw"),
    ctl(
        "lease", "grant", "30", "--user", "alice:alicepw", capture=r"lease (?P<lease_alice>[0-9a-f]+) granted"
    ),
    ctl("put", "nopass-key", "1", "--user", "nopass:"),
    ctl("user", "passwd", "alice", "--interactive=false", "--user", "root:rootpw", stdin=b"newpw\n"),
    ctl("get", "app/x", "--user", "alice:alicepw"),
    ctl("get", "app/x", "--user", "alice:newpw"),
    ctl("role", "revoke-permission", "app", "app/", "--prefix", "--user", "root:rootpw"),
    ctl("role", "revoke-permission", "app", "nope", "--user", "root:rootpw"),
    ctl("get", "app/x", "--user", "alice:newpw"),
    ctl("user", "revoke-role", "alice", "app", "--user", "root:rootpw"),
    ctl("user", "revoke-role", "alice", "app", "--user", "root:rootpw"),
    ctl("user", "delete", "root", "--user", "root:rootpw"),
    ctl("role", "delete", "root", "--user", "root:rootpw"),
    ctl("user", "revoke-role", "root", "root", "--user", "root:rootpw"),
    ctl("role", "delete", "app", "--user", "root:rootpw"),
    ctl("user", "delete", "ghost", "--user", "root:rootpw"),
    ctl("auth", "disable", "--user", "alice:newpw"),
    ctl("auth", "disable", "--user", "root:rootpw"),
    ctl("auth", "disable"),
    ctl("get", "app/x", "-w", "json"),
    ctl("user", "list"),
)

REQUESTS: tuple[Request, ...] = (
    Request("POST", "/v3/kv/put", b'{"key": "Z3cvYQ==", "value": "MQ=="}'),
    Request("POST", "/v3/kv/put", b'{"key": "Z3cvYQ==", "value": "Mg==", "prev_kv": true}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ=="}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cv", "range_end": "Z3cw", "keys_only": true}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "revision": 99999}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "revision": "2"}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "count_only": true}'),
    Request("POST", "/v3/kv/range", b"{}"),
    Request("POST", "/v3/kv/range", b""),
    Request("POST", "/v3/kv/range", b"{not json"),
    Request("POST", "/v3/kv/range", b'{"key": "!!notbase64"}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "bogus_field": 1}'),
    Request("POST", "/v3/kv/range", b'{"key": 12}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "limit": "x"}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "sort_order": "DESCEND"}'),
    Request("POST", "/v3/kv/range", b'{"key": "Z3cvYQ==", "sort_order": "SIDEWAYS"}'),
    Request("POST", "/v3/kv/range", b"[]"),
    Request("GET", "/v3/kv/range"),
    Request("PUT", "/v3/kv/put", b'{"key": "Z3cvYQ==", "value": "Mg=="}'),
    Request("POST", "/v3/kv/nosuch", b"{}"),
    Request("POST", "/v3/kv/put", b'{"value": "Mg=="}'),
    Request("POST", "/v3/kv/deleterange", b'{"key": "Z3cvYQ==", "prev_kv": true}'),
    Request(
        "POST",
        "/v3/kv/txn",
        b'{"compare": [{"key": "Z3cvYQ==", "target": "VERSION", "version": 0}],'
        b' "success": [{"request_put": {"key": "Z3cvYQ==", "value": "Mw=="}}]}',
    ),
    Request(
        "POST",
        "/v3/kv/txn",
        b'{"success": [{"request_put": {"key": "Z3cvYg==", "value": "MQ=="}},'
        b' {"request_txn": {"success": [{"request_range": {"key": "Z3cvYg=="}}]}},'
        b' {"request_delete_range": {"key": "bm9uZQ=="}}, {"request_range": {"key": "Z3cvYg=="}}]}',
    ),
    Request(
        "POST",
        "/v3/kv/txn",
        b'{"success": [{"request_put": {"key": "Z3cvYg==", "value": "MQ=="}},'
        b' {"request_txn": {"success": [{"request_put": {"key": "Z3cvYg==", "value": "Mg=="}}]}}]}',
    ),
    Request(
        "POST",
        "/v3/kv/txn",
        b'{"compare": [{"key": "Z3cvYQ==", "target": "LEASE", "result": "EQUAL", "lease": "0"},'
        b' {"key": "Z3cvYQ==", "target": "MOD", "result": "LESS", "mod_revision": "99"}],'
        b' "success": [{"request_range": {"key": "Z3cvYQ==", "keys_only": true}}]}',
    ),
    Request("POST", "/v3/kv/compaction", b'{"revision": 99999}'),
    Request("POST", "/v3/lease/grant", b'{"TTL": 30}'),
    Request("POST", "/v3/lease/revoke", b'{"ID": 1234}'),
    Request("POST", "/v3/lease/timetolive", b'{"ID": 1234}'),
    Request("POST", "/v3/maintenance/alarm", b'{"action": "GET"}'),
    # Lock and Election errors: etcd's recipes run an in-process client, so every error is
    # code 2 (Unknown, HTTP 500) with its text.
    Request("POST", "/v3/election/leader", b'{"name": "bm9ib2R5"}'),
    Request("POST", "/v3/election/proclaim", b'{"value": "dg=="}'),
    Request("POST", "/v3/election/resign", b"{}"),
    Request(
        "POST",
        "/v3/election/proclaim",
        b'{"leader": {"name": "ZQ==", "key": "ZS8x", "rev": 5, "lease": 1}, "value": "dg=="}',
    ),
    Request("POST", "/v3/election/campaign", b'{"name": "ZQ==", "lease": 12345, "value": "dg=="}'),
    Request("POST", "/v3/lock/lock", b'{"name": "bQ==", "lease": 12345}'),
    Request("POST", "/v3/lock/unlock", b"{}"),
)


# ---------------------------------------------------------------------- running them


def fill(text: str, captured: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: captured.get(m.group(1), m.group(0)), text)


def etcdctl_env() -> dict[str, str]:
    """The environment without the caller's ETCDCTL_* settings, which would change output."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    return {**kept, "ETCDCTL_API": "3"}


def run_step(target: Target, step: Step) -> Outcome:
    args = [fill(a, target.captured) for a in step.args]
    stdin = b""
    if step.stdin is not None:
        stdin = fill(step.stdin.decode("utf-8", "surrogateescape"), target.captured).encode(
            "utf-8", "surrogateescape"
        )
    command = [ETCDCTL, "--endpoints", target.endpoint, "--command-timeout", "5s", *args]
    if step.limit is not None:
        command = ["timeout", str(step.limit), *command]
    if step.pause:
        time.sleep(step.pause)
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=30, env=etcdctl_env())
    if step.protobuf is not None and done.returncode == 0:
        stdout = text_format.MessageToString(step.protobuf.FromString(done.stdout), as_one_line=True)
    else:
        stdout = done.stdout.decode("utf-8", "backslashreplace")
    if step.capture and (found := re.search(step.capture, stdout)):
        target.captured.update(found.groupdict())
    return Outcome(done.returncode, stdout, done.stderr.decode("utf-8", "backslashreplace"))


def run_request(target: Target, request: Request) -> Outcome:
    call = urllib.request.Request(
        target.gateway + request.path,
        data=request.body,
        method=request.method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            return Outcome(answer.status, answer.read().decode("utf-8", "backslashreplace"), "")
    except urllib.error.HTTPError as error:
        return Outcome(error.code, error.read().decode("utf-8", "backslashreplace"), "")


# ---------------------------------------------------------------------- normalisation

# What differs between any two clusters, as etcdctl prints it (JSON, fields, text, and
# protobuf's text format), and in etcdctl's own log lines and panic traces.
COMMON_RULES: tuple[Rule, ...] = (
    (
        r'"(cluster_id|member_id|raft_term|ID|leader|raftTerm|raftIndex|raftAppliedIndex)":\s*"?\d+"?',
        r'"\1":N',
    ),
    (r'"ts":"[^"]*"', '"ts":T'),
    (r'"target":"endpoint://client-[0-9a-f-]+/', '"target":"endpoint://client-ID/'),
    (r'"caller":"[^"]*"', '"caller":C'),
    (r'"(ClusterID|MemberID|RaftTerm)" : \d+', r'"\1" : N'),
    (r"(cluster_id|member_id|raft_term)[:=] ?\d+", r"\1:N"),
    (r'"(version|dbSize|dbSizeInUse)":\s*"[\w.]+"', r'"\1":V'),
    (r"0x[0-9a-f]+", "0xADDR"),
)


def normalise_text(target: Target, text: str, rules: tuple[Rule, ...]) -> str:
    text = text.replace(target.endpoint, "ENDPOINT").replace(target.gateway, "GATEWAY")
    for name, value in target.captured.items():
        if name.startswith("lease"):  # ids differ: etcd's are random, ours count from 1
            text = re.sub(rf"\blease {value}\b", f"lease <{name}>", text)
            text = re.sub(rf'"(ID|id|lease)":{int(value, 16)}\b', rf'"\1":<{name}>', text)
    for pattern, replacement in (*COMMON_RULES, *rules):
        text = re.sub(pattern, replacement, text)
    return text


def normalise_step(target: Target, step: Step, outcome: Outcome) -> Outcome:
    return Outcome(
        outcome.code,
        normalise_text(target, outcome.stdout, step.normalise),
        normalise_text(target, outcome.stderr, step.normalise),
    )


def normalise_answer(target: Target, outcome: Outcome) -> Outcome:
    """A gateway answer as JSON compares: keys in order, no spacing.  An error from
    decoding the body keeps its code, not its text (Go's JSON decoder words its errors
    its own way); a 404 or 405 keeps its status alone (etcd's mux answers them in plain
    text, the node's router in its JSON)."""
    if outcome.code in (404, 405):
        return Outcome(outcome.code, "", "")
    try:
        body = json.loads(outcome.stdout)
    except ValueError:
        return Outcome(outcome.code, normalise_text(target, outcome.stdout, ()), "")
    decode_error = isinstance(body, dict) and not str(body.get("error", "etcdserver:")).startswith(
        "etcdserver:"
    )
    if decode_error:
        body["error"] = body["message"] = "<the body does not decode>"
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return Outcome(outcome.code, normalise_text(target, text, ALARM_HEADER), "")


# ---------------------------------------------------------------------- comparing


def run_all(target: Target) -> list[Outcome]:
    return [normalise_step(target, step, run_step(target, step)) for step in STEPS]


def request_all(target: Target) -> list[Outcome]:
    return [normalise_answer(target, run_request(target, request)) for request in REQUESTS]


def step_differences(real: list[Outcome], ours: list[Outcome]) -> list[str]:
    """Each step whose answers differ, except a difference kept on purpose, where our
    answer's last line of stderr is checked instead (and etcd's call must succeed)."""
    found = []
    for step, expected, got in zip(STEPS, real, ours, strict=True):
        if step.ours_instead is not None:
            last = got.stderr.splitlines()[-1] if got.stderr else ""
            if expected.code == 0 and got.code != 0 and last == step.ours_instead:
                continue
        elif expected == got:
            continue
        found.append(f"$ etcdctl {' '.join(step.args)}\n  etcd:  {expected}\n  ours:  {got}")
    return found


def request_differences(real: list[Outcome], ours: list[Outcome]) -> list[str]:
    return [
        f"$ {request.method} {request.path} {request.body!r}\n  etcd:  {expected}\n  ours:  {got}"
        for request, expected, got in zip(REQUESTS, real, ours, strict=True)
        if expected != got
    ]


def on_both(
    real: Target, ours: Target, runner: Callable[[Target], list[Outcome]]
) -> tuple[list[Outcome], list[Outcome]]:
    """Run the same list on both at once, each in order: the pauses overlap."""
    results: dict[str, list[Outcome]] = {}

    def run(name: str, target: Target) -> None:
        results[name] = runner(target)

    workers = [threading.Thread(target=run, args=(name, t)) for name, t in (("real", real), ("ours", ours))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results["real"], results["ours"]


# ---------------------------------------------------------------------- the servers


def real_etcd(directory: Path) -> Iterator[Target]:
    """A one-member etcd on free ports, its data in ``directory``, until the generator closes."""
    client_port = free_port()
    peer_port = free_port()
    while peer_port == client_port:
        peer_port = free_port()
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    with (directory / "etcd.log").open("wb") as log:
        process = subprocess.Popen(
            [
                ETCD,
                "--name",
                "solo",
                "--data-dir",
                str(directory / "data"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"solo={peer}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while not healthy(client):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"etcd did not start; see {directory / 'etcd.log'}")
                time.sleep(0.1)
            yield Target(endpoint=f"127.0.0.1:{client_port}", gateway=client)
        finally:
            process.terminate()
            process.wait(timeout=10)


def healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=1) as answer:
            return json.loads(answer.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


@pytest.fixture(
    scope="module",
    params=[
        "raft",
        # The service is the same on every log protocol; these two run with `make sweep`.
        pytest.param("multipaxos", marks=pytest.mark.slow),
        pytest.param("zab", marks=pytest.mark.slow),
    ],
)
def targets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Target, Target]]:
    """(the real etcd, a follower of our 3-node cluster of the protocol), both empty at first."""
    for real in real_etcd(tmp_path_factory.mktemp("real-etcd")):
        for cluster in etcd_cluster(tmp_path_factory, request.param):
            follower = cluster.follower()  # a follower: every call is served anywhere
            yield real, Target(endpoint=cluster.grpc_address(follower), gateway=cluster.cluster.url(follower))


def test_etcdctl_answers_as_etcd_does(targets: tuple[Target, Target]) -> None:
    found = step_differences(*on_both(*targets, run_all))
    assert not found, f"{len(found)} differences:\n\n" + "\n\n".join(found)


def test_the_json_gateway_answers_as_etcd_does(targets: tuple[Target, Target]) -> None:
    found = request_differences(*on_both(*targets, request_all))
    assert not found, f"{len(found)} differences:\n\n" + "\n\n".join(found)
