"""The member addresses a node last applied, kept beside its log so a restart finds its peers.

Member addresses go through the log (statemachines/peers.py), and a node restarted from
its disk knows them again only once it has applied its log -- which needs a leader, which
needs the addresses.  A cluster whose members were replaced one by one, stopped, and
started again with the files each node was first started with, had no node that knew a
quorum's addresses: it never elected a leader again.  etcd keeps its member list in its
backend for the same reason.

Rules this module owns:
  * ``peers.json`` in the data directory: ``{"format": 1, "applied": N, "peers": [[node,
    peer_address, client_url], ...]}``: the state machine's directory as it stood when the
    node had applied index N (the form a snapshot carries, statemachines/peers.py); written
    atomically (temp file, fsync, rename, directory fsync, as identity.json);
  * read at start: a missing file (a fresh directory, or one an earlier release wrote) is
    nothing remembered; an unreadable, malformed or newer-format one is ignored with a
    warning naming it: it is a hint, and without it a node is no worse off than under the
    previous release;
  * the server (server/main.py) holds the remembered addresses over its [peers] and over
    the directory the node recovered until the node has applied index N, and only then
    rewrites the file: it never holds a directory older than one it held before.  From
    then on the state machine's directory alone is followed, removals included.  (A
    node that tells no log position, core/capabilities.py ReplicatedLog, neither keeps
    nor uses the file: every protocol whose services keep a directory tells one.)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from consensuskit.server.wal import write_file_atomically
from consensuskit.statemachines.peers import Directory, restored, snapshot_part

log = logging.getLogger("consensuskit.server")

REMEMBERED_NAME = "peers.json"
REMEMBERED_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Remembered:
    applied: int  # the node's applied index when ``peers`` was its directory
    peers: Directory


def read_remembered(directory: Path) -> Remembered | None:
    """What ``directory`` remembers, or None (see the module rules)."""
    path = Path(directory) / REMEMBERED_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring %s: cannot read it: %s", path, exc.strerror)
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("format"), int):
            raise ValueError("expected JSON with a format field")
        if data["format"] > REMEMBERED_FORMAT:
            newer = data["format"]
            raise ValueError(f"format {newer} is newer than this release reads ({REMEMBERED_FORMAT})")
        applied = data.get("applied")
        if not isinstance(applied, int) or isinstance(applied, bool) or applied < 0:
            raise ValueError("'applied' must be a non-negative integer")
        return Remembered(applied=applied, peers=restored(data.get("peers")))
    except ValueError as exc:  # json's errors are ValueErrors too
        log.warning("ignoring %s: %s", path, exc)
        return None


def write_remembered(directory: Path, remembered: Remembered, *, fsync: bool = True) -> None:
    body = {
        "format": REMEMBERED_FORMAT,
        "applied": remembered.applied,
        "peers": snapshot_part(remembered.peers),
    }
    data = (json.dumps(body, sort_keys=True) + "\n").encode()
    write_file_atomically(Path(directory) / REMEMBERED_NAME, data, fsync=fsync)
