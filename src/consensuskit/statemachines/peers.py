"""The cluster's directory of member addresses, kept in the replicated state.

A node added with its addresses (``POST /v1/members`` with ``peer_address`` and
``client_url``, ``consensuskit member add --peer-address``, etcd's MemberAdd/MemberUpdate)
must stay reachable after the node that took the request stops leading or restarts:
every node needs its peer address, and every node must still know it after a restart.
So the address goes through the log, as an operation every log service's state machine
answers beside its own (statemachines/backup.py dispatches it here), and lives in the
state machine's snapshot.  No protocol needs to know about it.

Rules this module owns:
  * ``peer_op(node, peer_address, client_url)`` records a node's addresses,
    ``forget_peer_op(node)`` drops them: commands (``ServiceOp(kind="peer")``) applied on
    every replica alike, beside the client sessions (a retry records the same thing
    again).  A malformed one (``key`` not a node id, ``value`` neither None nor two
    strings "HOST:PORT" and a URL) is refused ``bad-command`` and changes nothing;
  * the directory is a state machine's ``peer_directory``: a ``dict`` node id ->
    ``(peer_address, client_url)`` that is replaced, never changed in place, so a server
    follows it by identity (server/main.py, through ``directory_of``);
  * a snapshot carries it under "peers" once it holds anything; a snapshot without it
    restores an empty directory (every earlier snapshot);
  * it belongs to the cluster, not to the service's data: a backup leaves it out, and a
    restore keeps the directory of the cluster it restores into.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ServiceOp

PEER = "peer"
MAX_ID_BYTES = 255  # as a peer connection's handshake (server/handshake.py)
MAX_FIELD = 2048  # characters of an address or a URL
SNAPSHOT_KEY = "peers"

Directory = dict[str, tuple[str, str]]
EMPTY: Directory = {}


def directory_of(node: Any) -> Directory | None:
    """The directory a protocol node's state machine keeps (None: its service keeps none)."""
    return getattr(getattr(node, "sm", None), "peer_directory", None)


def peer_op(node: str, peer_address: str, client_url: str) -> ServiceOp:
    """The command that records ``node``'s addresses (see the module rules)."""
    return ServiceOp(kind=PEER, key=node, value=(peer_address, client_url))


def forget_peer_op(node: str) -> ServiceOp:
    """The command that drops ``node``'s addresses."""
    return ServiceOp(kind=PEER, key=node, value=None)


def _is_node_id(node: Any) -> bool:
    return isinstance(node, str) and 0 < len(node.encode("utf-8", "replace")) <= MAX_ID_BYTES


def _entry(value: Any) -> tuple[str, str] | None:
    """``value`` as an entry, or None when it is not one."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    address, url = value
    if not isinstance(address, str) or not isinstance(url, str):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if len(address) > MAX_FIELD or len(url) > MAX_FIELD or not url:
        return None
    return (address, url)


def applied(directory: Directory, op: ServiceOp) -> Directory | None:
    """The directory after ``op``, or None when ``op`` is malformed (refused)."""
    node = op.key
    if not _is_node_id(node):
        return None
    if op.value is None:
        return {n: e for n, e in directory.items() if n != node} if node in directory else directory
    entry = _entry(op.value)
    if entry is None:
        return None
    return {**directory, node: entry}


def snapshot_part(directory: Directory) -> list[list[str]]:
    """The directory as it goes into a snapshot: ``[[node, peer_address, client_url], ...]``."""
    return [[node, *directory[node]] for node in sorted(directory)]


def restored(part: Any) -> Directory:
    """A snapshot's "peers" part (None: absent) as a directory; ValueError when malformed."""
    if part is None:
        return EMPTY
    if not isinstance(part, (list, tuple)):
        raise ValueError("'peers' must be a list of [node, peer_address, client_url]")
    directory: Directory = {}
    for item in part:
        if not isinstance(item, (list, tuple)) or len(item) != 3 or not _is_node_id(item[0]):
            raise ValueError(f"bad 'peers' entry {item!r}")
        entry = _entry(item[1:])
        if entry is None:
            raise ValueError(f"bad 'peers' entry {item!r}")
        directory[item[0]] = entry
    return directory
