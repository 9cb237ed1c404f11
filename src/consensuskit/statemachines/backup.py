"""Backing up a log service's whole state, and restoring it into an empty cluster: two
operations every log service's state machine answers beside its own.

They are operations, not a side door, so every log protocol orders them as it orders
any other (Raft's ReadIndex, Multi-Paxos's leader, ZAB, Basic Paxos's slots), in the
simulator and on the server alike, and no protocol needs to know about them.

Rules this module owns:
  * ``backup_op()`` is a read (``ServiceOp(kind="backup", read=True)``).  Served like a
    linearizable read, its result is the state machine's ``snapshot()`` at that point:
    every write acknowledged before the backup was asked for is in it.  A state machine
    answers it from ``read`` and, where a protocol orders reads through its log, from
    ``apply``; it never touches sessions;
  * ``restore_op(snapshot)`` is a command whose value is the snapshot as encoded bytes
    (``core.messages.encode``, one value however large the state).  Applied, it
    replaces the whole state (data, auth, client sessions) with the snapshot's, on
    every replica alike, and only in a state machine that holds nothing (``len()`` is
    0): otherwise it is refused ``not-empty`` and changes nothing, so a restore cannot
    overwrite a cluster's data by mistake.  Bytes that do not decode, or a snapshot the
    state machine's ``restore`` refuses (another service's), are refused
    ``bad-backup``.  The snapshot brings its own client sessions, and the restore is
    then remembered in them as its client's last command (``platform_command``): a
    retry of a restore that was applied (its answer lost, or too late) gets the first
    answer, not ``not-empty``;
  * the cluster's directory of member addresses (statemachines/peers.py) is not the
    service's state: a backup leaves it out, a restore keeps the restoring cluster's;
  * the cluster's level (statemachines/levels.py) is not the service's state either: a
    backup leaves it out, a restore keeps the restoring cluster's;
  * ``platform_result(machine, op)``: what a state machine answers to either of them,
    to a ``peer`` op (statemachines/peers.py: ``machine.peer_directory``) and to a
    ``level`` op (statemachines/levels.py: ``machine.cluster_level``);
    ``platform_command(machine, command)`` the same for one applied from the log (it
    needs ``machine.sessions``); ``is_platform_op(op)`` tells them from the service's
    own.  A state machine calls them before its own kinds (statemachines/kv.py,
    statemachines/sessioned.py).
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines import levels, peers
from consensuskit.statemachines.sessions import BAD_BACKUP, BAD_COMMAND, NOT_EMPTY, refusal

BACKUP = "backup"
RESTORE = "restore"
# What a snapshot holds about the cluster rather than the service's data.
_CLUSTER_KEYS = frozenset((peers.SNAPSHOT_KEY, levels.SNAPSHOT_KEY))
PLATFORM_KINDS = frozenset((BACKUP, RESTORE, peers.PEER, levels.LEVEL))


def backup_op() -> ServiceOp:
    """The read whose result is the whole state (see the module rules)."""
    return ServiceOp(kind=BACKUP, read=True)


def restore_op(snapshot: Any) -> ServiceOp:
    """The command that restores ``snapshot`` into an empty state machine."""
    return restore_op_of_encoded(encode(snapshot))


def restore_op_of_encoded(encoded: bytes) -> ServiceOp:
    """``restore_op`` of a snapshot already encoded (a backup file's state section)."""
    return ServiceOp(kind=RESTORE, value=bytes(encoded))


def is_platform_op(op: Any) -> bool:
    return op.__class__ is ServiceOp and op.kind in PLATFORM_KINDS


def platform_command(machine: Any, command: ClientRequest) -> Any:
    """``machine``'s answer to a backup, restore or peer op applied as a command; a
    restore's is remembered in the sessions it restored (see the module rules)."""
    op = command.op
    if op.kind != RESTORE:
        return platform_result(machine, op)
    first = machine.sessions.first_answer(command)
    if first is not None:
        return first
    result = platform_result(machine, op)
    if refusal(result) is None:
        machine.sessions.remember(command, result)  # the restored table, not the one before
    return result


def platform_result(machine: Any, op: Any) -> Any:
    """``machine``'s answer to a backup, restore, peer or level op (see the module rules)."""
    if op.kind == BACKUP:
        snapshot = machine.snapshot()
        if isinstance(snapshot, dict) and _CLUSTER_KEYS.intersection(snapshot):
            snapshot = {k: v for k, v in snapshot.items() if k not in _CLUSTER_KEYS}
        return snapshot
    if op.kind == levels.LEVEL:
        level = None if op.is_read() else levels.applied(machine.cluster_level, op)
        if level is None:
            return BAD_COMMAND
        machine.cluster_level = level
        return {"level": level}
    if op.kind == peers.PEER:
        if op.is_read():
            return BAD_COMMAND
        directory = peers.applied(machine.peer_directory, op)
        if directory is None:
            return BAD_COMMAND
        machine.peer_directory = directory
        return {"peer": op.key, "known": op.key in directory}
    if len(machine):
        return NOT_EMPTY
    if not isinstance(op.value, bytes):
        return BAD_BACKUP
    try:
        snapshot = decode(op.value)
        # The cluster's, not the backup's (module rules).
        directory, level = machine.peer_directory, machine.cluster_level
        machine.restore(snapshot)  # builds before it replaces: a refusal changes nothing
    except Exception:  # a crafted value must not halt a replica, and changed nothing
        return BAD_BACKUP
    machine.peer_directory, machine.cluster_level = directory, level
    return {"restored": len(machine)}
