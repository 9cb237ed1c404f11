"""Whose data a data directory holds, and what a node may do with an empty one.

A node's votes and acknowledgements live in its data directory.  A voter that comes back
with an empty one has forgotten them, and if it simply voted again it could elect a
leader that lacks acknowledged writes (issue 10: 12 of 20 writes lost).  So:

Rules this module owns (checked before the node is built):
  * every data directory holds ``identity.json``: ``{"format": 1, "cluster_id": ID or
    null, "node_id": ID, "protocol": NAME, "service": NAME, "incarnation": HEX,
    "origin": HOW, "founders": [ID, ...]}``, written atomically (temp file, fsync,
    rename, directory fsync, as the WAL writes its files).  ``protocol`` and ``service``
    (the *owner*), ``incarnation`` and ``origin``, and ``founders`` are optional: files
    of earlier releases lack them, and those releases read a file that has them
    (unknown keys are ignored);
  * ``incarnation`` names this directory (random, made with it: a wiped and re-created
    directory has another) and ``origin`` says how it began (peer_hello.py ORIGINS:
    bootstrap, rejoin, join, or earlier for a directory made before either was kept, which
    gets both at its next start).  Peers judge a node by them (server/incarnations.py);
  * ``founders``, written by ``--bootstrap`` only, is the configured ``members`` (sorted):
    the cluster this directory founded.  Peers founded with other members are refused
    (server/incarnations.py): nodes bootstrapped from configs whose member lists differ
    would form overlapping clusters, each able to elect its own leader (etcd derives its
    cluster id from ``--initial-cluster`` for the same reason).  Optional, as the others;
  * a directory with an identity must name this node and, when both sides know one, this
    cluster (``cluster_id`` in the config); otherwise the node refuses (exit 1).  A
    directory without a cluster id adopts the configured one.  An identity without a WAL
    means the log was lost: refused too;
  * a directory whose identity names an owner must be started by that protocol and
    service: another protocol misreads its log (a traceback at best), and another
    service applies the same log to another state machine (silently: its answers and,
    once it leads, its writes diverge from every other replica's).  Refused (exit 1),
    naming both and the way to move data between them (a backup restored into a new
    cluster).  A directory without an owner (an earlier release's) is owned by whoever
    first builds a node on it: ``adopt_owner``, called once the node was built from the
    directory's data, so a directory another protocol cannot read is never marked as
    that protocol's;
  * a directory with WAL data but no identity was written by the previous release: the
    identity is written (migration) and the node starts as before;
  * an empty directory (missing, or only a lock file; or a WAL holding nothing at all,
    left by a start that crashed at once) is
      - with ``--rejoin``: a replacement disk: REJOINING_KEY is put in the new storage and
        synced before the identity is written and before the node is built, so the node
        takes part in no quorum until the leader has caught it up and readmitted it;
      - with ``--bootstrap``: the first start of a new cluster (``consensuskit up`` passes
        it only when no node of the cluster has data yet);
      - for a node not in ``members`` (a learner to be added with POST /v1/members):
        started as before;
      - for a configured voter without either flag: refused (exit 1), naming both ways
        out.  Both flags are flags only, never config settings: one left in a file
        would silently undo the protection at the next disk loss.
    On a directory that holds data both flags are ignored (noted in the log).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consensuskit.core.storage import REJOINING_KEY
from consensuskit.server.peer_hello import (
    ORIGIN_BOOTSTRAP,
    ORIGIN_EARLIER,
    ORIGIN_JOIN,
    ORIGIN_REJOIN,
    ORIGINS,
)
from consensuskit.server.wal import DiskStorage, write_file_atomically
from consensuskit.server.wal_format import (
    IDENTITY_NAME,
    LOCK_NAME,
    NODE_KEY_NAME,
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    TMP_SUFFIX,
)

log = logging.getLogger("consensuskit.server")

IDENTITY_FORMAT = 1


class IdentityError(Exception):
    """The node must not start on this data directory; ``str()`` is one line saying why
    and what to do."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The protocol and service whose data a directory holds (their catalog names)."""

    protocol: str
    service: str

    def __str__(self) -> str:
        return f"protocol {self.protocol!r} with service {self.service!r}"


@dataclass(frozen=True, slots=True)
class Identity:
    node_id: str
    cluster_id: str | None
    owner: Owner | None = None  # None: written by an earlier release, or not yet adopted
    incarnation: str | None = None  # None: written by an earlier release
    origin: str | None = None  # one of peer_hello.ORIGINS; None with incarnation None
    founders: tuple[str, ...] | None = None  # the members --bootstrap founded it with


def new_incarnation() -> str:
    return secrets.token_hex(8)


def read_identity(directory: Path) -> Identity | None:
    path = directory / IDENTITY_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise IdentityError(f"{path} is not an identity file (expected JSON with a format field)")
    if data["format"] > IDENTITY_FORMAT:
        raise IdentityError(
            f"{path} has format {data['format']}, newer than this release reads ({IDENTITY_FORMAT})"
        )
    node_id, cluster_id = data.get("node_id"), data.get("cluster_id")
    if not isinstance(node_id, str) or not (cluster_id is None or isinstance(cluster_id, str)):
        raise IdentityError(f"{path}: node_id must be a string and cluster_id a string or null")
    protocol, service = data.get("protocol"), data.get("service")
    owner = None
    if protocol is not None or service is not None:
        if not (isinstance(protocol, str) and isinstance(service, str)):
            raise IdentityError(f"{path}: protocol and service must be strings, both present or both absent")
        owner = Owner(protocol, service)
    incarnation, origin = data.get("incarnation"), data.get("origin")
    if (incarnation is not None or origin is not None) and not (
        isinstance(incarnation, str) and incarnation and origin in ORIGINS
    ):
        raise IdentityError(
            f"{path}: incarnation must be a non-empty string and origin one of {', '.join(ORIGINS)}, "
            "both present or both absent"
        )
    founders = data.get("founders")
    if founders is not None:
        if not (isinstance(founders, list) and founders and all(isinstance(f, str) and f for f in founders)):
            raise IdentityError(f"{path}: founders must be a non-empty list of node ids")
        founders = tuple(founders)
    return Identity(node_id, cluster_id, owner, incarnation, origin, founders)


def write_identity(directory: Path, identity: Identity, *, fsync: bool = True) -> None:
    """Atomically (re)write the identity file."""
    body: dict[str, str | int | list[str] | None] = {
        "format": IDENTITY_FORMAT,
        "cluster_id": identity.cluster_id,
        "node_id": identity.node_id,
    }
    if identity.owner is not None:
        body["protocol"] = identity.owner.protocol
        body["service"] = identity.owner.service
    if identity.incarnation is not None:
        body["incarnation"] = identity.incarnation
        body["origin"] = identity.origin
    if identity.founders is not None:
        body["founders"] = list(identity.founders)
    data = (json.dumps(body, sort_keys=True) + "\n").encode()
    write_file_atomically(directory / IDENTITY_NAME, data, fsync=fsync)


def adopt_owner(directory: Path, owner: Owner, *, fsync: bool = True) -> bool:
    """Record ``owner`` in a directory's identity that names none (an earlier release's,
    or one whose node was not built yet); True when it wrote.  Call it only once a node of
    ``owner`` was built from the directory's data (the rules above)."""
    identity = read_identity(directory)
    if identity is None or identity.owner is not None:
        return False
    write_identity(directory, dataclasses.replace(identity, owner=owner), fsync=fsync)
    return True


def owner_mismatch_message(directory: Path, found: Owner, configured: Owner) -> str:
    return (
        f"refusing to start: data directory {directory} holds the data of {found}, but this node "
        f"is configured for {configured}; it would misread that data. Start it with protocol = "
        f"{json.dumps(found.protocol)} and service = {json.dumps(found.service)}, or, to move the data "
        "to another protocol or service, back it up and restore it into a new cluster "
        "(docs/server.md, 'Backup and restore')"
    )


def _has_wal(directory: Path) -> bool:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return False
    return any(n.startswith(SEGMENT_PREFIX) and n.endswith(SEGMENT_SUFFIX) for n in names)


def _looks_empty(directory: Path) -> bool:
    """Missing, or holding nothing but a lock file, a node key and unfinished temp files."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return True
    # A node key (server/node_keys.py) made before the first start is no data.
    return all(n in (LOCK_NAME, NODE_KEY_NAME) or n.endswith(TMP_SUFFIX) for n in names)


def empty_voter_message(node_id: str, directory: Path) -> str:
    return (
        f"refusing to start: data directory {directory} is empty but {node_id} is a configured "
        "voter; if its disk was lost, start it with --rejoin (it rejoins as a learner and votes "
        "again once the leader has caught it up); if this is the first start of a new cluster, "
        "start it with --bootstrap"
    )


def open_data_dir(
    directory: Path,
    node_id: str,
    *,
    cluster_id: str | None,
    voter: bool,
    bootstrap: bool = False,
    rejoin: bool = False,
    fsync: bool = True,
    owner: Owner | None = None,
    members: Sequence[str] = (),
) -> DiskStorage:
    """Apply the rules above and return the opened storage (raises IdentityError, or the
    WAL's CorruptLogError / DirectoryInUseError).  ``owner``: the configured protocol and
    service (None: not checked); a fresh directory's identity records it.  ``members``:
    the configured initial voters, which a ``bootstrap`` directory records as its
    founders."""
    identity = read_identity(directory)
    if identity is not None:
        if identity.node_id != node_id:
            raise IdentityError(
                f"refusing to start: data directory {directory} belongs to node {identity.node_id}, "
                f"not {node_id} (wrong data_dir?)"
            )
        if identity.cluster_id is not None and cluster_id is not None and identity.cluster_id != cluster_id:
            raise IdentityError(
                f"refusing to start: data directory {directory} belongs to cluster {identity.cluster_id}, "
                f"not {cluster_id} (wrong data_dir or cluster_id?)"
            )
        if identity.owner is not None and owner is not None and identity.owner != owner:
            raise IdentityError(owner_mismatch_message(directory, identity.owner, owner))
        if not _has_wal(directory):
            raise IdentityError(
                f"refusing to start: data directory {directory} has an identity but no write-ahead "
                "log (its data was lost); move it aside and start the node with --rejoin"
            )
        storage = DiskStorage.open(directory, fsync=fsync)
        updated = identity
        if identity.cluster_id is None and cluster_id is not None:
            updated = dataclasses.replace(updated, cluster_id=cluster_id)
        if identity.incarnation is None:  # an earlier release's directory
            updated = dataclasses.replace(updated, incarnation=new_incarnation(), origin=ORIGIN_EARLIER)
        if updated != identity:
            write_identity(directory, updated, fsync=fsync)
        _ignored_flags(node_id, bootstrap, rejoin)
        return storage

    storage: DiskStorage | None = None
    if not _looks_empty(directory):
        # WAL data from the previous release, or a directory that is not ours (the WAL
        # refuses that one); a WAL holding nothing at all is an empty directory.
        storage = DiskStorage.open(directory, fsync=fsync)
        if not storage.is_empty():
            migrated = Identity(node_id, cluster_id, None, new_incarnation(), ORIGIN_EARLIER)
            write_identity(directory, migrated, fsync=fsync)
            log.info("node %s: wrote %s into %s (an earlier release's)", node_id, IDENTITY_NAME, directory)
            _ignored_flags(node_id, bootstrap, rejoin)
            return storage
    if not (rejoin or bootstrap or not voter):
        if storage is not None:
            storage.close()
        raise IdentityError(empty_voter_message(node_id, directory))
    if storage is None:
        storage = DiskStorage.open(directory, fsync=fsync)
    if rejoin:
        # Durable before the identity, so a crash in between leaves a directory the next
        # start still treats as rejoining (data, no identity: migrated as it is).
        storage.put(REJOINING_KEY, True)
        storage.sync()
        log.warning("node %s: rejoining on an empty data directory; it will vote once readmitted", node_id)
    origin = ORIGIN_REJOIN if rejoin else ORIGIN_BOOTSTRAP if bootstrap else ORIGIN_JOIN
    founders = tuple(sorted(set(members))) if origin == ORIGIN_BOOTSTRAP and members else None
    write_identity(
        directory, Identity(node_id, cluster_id, owner, new_incarnation(), origin, founders), fsync=fsync
    )
    return storage


def _ignored_flags(node_id: str, bootstrap: bool, rejoin: bool) -> None:
    for name, given in (("--bootstrap", bootstrap), ("--rejoin", rejoin)):
        if given:
            log.info("node %s: %s ignored: the data directory holds the node's data", node_id, name)
