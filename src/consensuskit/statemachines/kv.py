"""Key-value state machine with per-key versions and client sessions.

Operations: get, put, delete, compare-and-swap on value or on version, and list (every
key with a prefix, in key order).  Values are opaque: str or bytes as the client sent them.

Rules this module owns:
  * versions: a key's version starts at 1 when created and increases by one per write;
    a deleted key has no version (``cas`` with ``expected_version=0`` means "absent");
  * sessions: a command ``(client_id, seq)`` takes effect at most once, through
    ``sessions.SessionTable`` (retries, expiry by the log clock, digests of commands:
    the rules are in statemachines/sessions.py);
  * results are plain msgpack-able values, identical on every replica;
  * memory: a key at version 1 holding str or bytes is stored as the bare value, any
    other as a ``Versioned`` (statemachines/kv_entry.py: 32 bytes, and never tracked by
    the collector, so neither is a store of str/bytes values); snapshots list keys,
    values and versions flat, in the store's order (not sorted: see ``snapshot``),
    flattened only when encoded (``core.messages.LazyArray``) from the store as it was
    frozen, which copies nothing (statemachines/store.py);
  * auth: users, roles and permissions live in an ``AuthState`` (statemachines/auth.py,
    its own rules) that ``auth``/``auth-read`` ops reach; while auth is enabled every
    write command (kv and ``auth``) is judged against it by ``AuthState.judge`` with the
    command's principal before it runs; a snapshot carries it under
    "auth" only once it was used, and one without "auth" restores the empty state;
  * a ``ServiceOp`` is a backup, a restore or a peer op (statemachines/backup.py and
    statemachines/peers.py, their rules), or refused ``bad-command`` whatever its kind,
    changing nothing; a snapshot carries the peer directory under "peers" once it holds
    anything.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from consensuskit.core.client import ClientRequest, Op, ServiceOp
from consensuskit.core.messages import LazyArray
from consensuskit.statemachines import levels
from consensuskit.statemachines.auth import AUTH_KINDS, AuthState
from consensuskit.statemachines.backup import is_platform_op, platform_command, platform_result
from consensuskit.statemachines.kv_entry import Versioned
from consensuskit.statemachines.peers import SNAPSHOT_KEY as PEERS_KEY
from consensuskit.statemachines.peers import Directory, restored, snapshot_part
from consensuskit.statemachines.sessions import BAD_COMMAND, STALE, SessionTable
from consensuskit.statemachines.store import FrozenStore, ShardedStore, shard_of

__all__ = ["STALE", "KVStateMachine"]


_BARE = (str, bytes)  # value types stored without a tuple at version 1


def _pack(value: Any, version: int) -> Any:
    return value if version == 1 and type(value) in _BARE else Versioned(value, version)


def _unpack(entry: Any) -> tuple[Any, int]:
    return (entry.value, entry.version) if type(entry) is Versioned else (entry, 1)


def _flat_slice(store: FrozenStore, start: int, stop: int) -> tuple[Any, ...]:
    """Keys [start, stop) of a frozen store as (key, value, version, key, ...)."""
    keys, entries = store.slice(start, stop)
    flat: list[Any] = [None] * (3 * len(keys))
    flat[0::3] = keys
    i = 1
    for entry in entries:
        if type(entry) is Versioned:
            flat[i] = entry.value
            flat[i + 1] = entry.version
        else:
            flat[i] = entry
            flat[i + 1] = 1
        i += 3
    return tuple(flat)


class KVStateMachine:
    __slots__ = ("_auth", "_data", "_sessions", "cluster_level", "peer_directory")

    def __init__(self) -> None:
        # key -> _pack(value, version): a Versioned, or the bare value at version 1
        self._data = ShardedStore()
        self._sessions = SessionTable()
        self._auth = AuthState()
        # The cluster's member addresses (statemachines/peers.py).
        self.peer_directory: Directory = {}
        self.cluster_level = levels.BASE_LEVEL  # which rules every replica applies (levels.py)

    @property
    def auth(self) -> AuthState:
        """Users, roles, permissions (read by the HTTP edge to authorize requests)."""
        return self._auth

    # -- commands -------------------------------------------------------------------
    def apply(self, command: ClientRequest) -> Any:
        """The command's result, or a refusal (``sessions.refusal`` names it)."""
        if command.op.__class__ is ServiceOp:  # kv's own ops are Ops: a backup or restore
            return platform_command(self, command) if is_platform_op(command.op) else BAD_COMMAND
        if not self._auth.enabled:
            return self._sessions.apply(command, self.execute)
        principal = command.principal

        def judged(op: Op) -> Any:
            # Judged here, where the command is applied, not only at the edge that admitted
            # it (statemachines/auth.py): after the session's dedup, so a retry of a write
            # that was applied still gets its first answer.
            if not op.is_read():  # reads are judged at the edge (auth.py)
                refused = self._auth.judge(principal, op)
                if refused is not None:
                    return refused
            return self.execute(op)

        return self._sessions.apply(command, judged)

    def read(self, request: ClientRequest) -> Any:
        op = request.op
        if is_platform_op(op) and op.is_read():
            return platform_result(self, op)
        if not isinstance(op, Op) or not op.is_read():  # kv's edge admits Ops only
            raise ValueError(f"read() serves only get, not {op.kind} (reads: get, list)")
        return self.execute(op)

    def execute(self, op: Op) -> Any:
        """Apply one op ignoring sessions; the result dict depends only on the state."""
        if op.kind == "list":
            return self._list(op.key, op.value)
        if op.kind in AUTH_KINDS:
            return self._auth.execute(op)
        data, shard = self._data, shard_of(op.key)  # one CRC for the read and the write
        entry = data.get_in(shard, op.key)
        current = None if entry is None else _unpack(entry)
        if op.kind == "get":
            if current is None:
                return {"value": None, "version": 0}
            return {"value": current[0], "version": current[1]}
        if op.kind == "put":
            version = (current[1] if current else 0) + 1
            data.set_in(shard, op.key, _pack(op.value, version))
            return {"version": version}
        if op.kind == "delete":
            existed = data.pop_in(shard, op.key) is not None
            return {"deleted": existed}
        if op.kind != "cas":  # a clock command: SessionTable.apply takes those
            raise ValueError(f"execute() does not take {op.kind} commands")
        if op.expected_version is not None:
            matches = (current[1] if current else 0) == op.expected_version
        else:
            matches = (current[0] if current else None) == op.expected
        if not matches:
            return {
                "swapped": False,
                "value": current[0] if current else None,
                "version": current[1] if current else 0,
            }
        version = (current[1] if current else 0) + 1
        data.set_in(shard, op.key, _pack(op.value, version))
        return {"swapped": True, "version": version}

    def _list(self, prefix: str, limit: Any) -> Any:
        keys = sorted(k for k in self._data if k.startswith(prefix))
        truncated = False
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(keys):
            keys, truncated = keys[:limit], True
        data = self._data
        return {"items": tuple((k, *_unpack(data.get(k))) for k in keys), "truncated": truncated}

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> Any:
        """``{"flat": (key, value, version, key, ...), "sessions": ..., ...}`` (one tuple,
        not one per key: a third of the memory); the sessions section is
        ``SessionTable.snapshot``'s.  ``restore`` also takes the older
        ``{"data": ((key, value, version), ...), ...}`` and the older sessions section.

        Keys come in the store's own order, not sorted: a protocol takes a snapshot on
        its event loop, and sorting a million keys there costs up to a second (a leader
        that long silent loses its followers).  The order is still the same on every
        replica at the same point of the log: the store's order (statemachines/store.py)
        is a function of the commands applied, and ``restore`` rebuilds it.  (A snapshot
        of an earlier release, in insertion or key order, restores just as well.)"""
        # Nothing is copied here: the store is frozen (its shards are copied as later
        # writes reach them); the flattening into (key, value, version) triples happens
        # a chunk at a time when the snapshot is encoded, off the loop (LazyArray), and no
        # (key, entry) pair per key is made.
        frozen = self._data.freeze()
        flat = LazyArray(len(frozen), 3, partial(_flat_slice, frozen))
        snap = {"flat": flat, **self._sessions.snapshot()}
        if self._auth:
            snap["auth"] = self._auth.snapshot()
        if self.peer_directory:
            snap[PEERS_KEY] = snapshot_part(self.peer_directory)
        snap.update(levels.snapshot_part(self.cluster_level))
        return snap

    def restore(self, snapshot: Any) -> None:
        if (
            not isinstance(snapshot, dict)
            or "sessions" not in snapshot
            or not ("data" in snapshot or "flat" in snapshot)
        ):
            raise ValueError("not a KV snapshot: expected a map with 'flat' (or 'data') and 'sessions'")
        try:  # build both before replacing anything: a bad snapshot changes nothing
            if "flat" in snapshot:
                flat = snapshot["flat"]
                if len(flat) % 3:
                    raise ValueError("'flat' must hold key, value, version triples")
                it = iter(flat)
                triples: Any = zip(it, it, it, strict=True)
            else:
                triples = snapshot["data"]
            data = ShardedStore.from_items((k, _pack(v, ver)) for k, v, ver in triples)
            sessions = SessionTable.restore(snapshot)
            auth = AuthState.restored(snapshot.get("auth"))
            peers = restored(snapshot.get(PEERS_KEY))
            level = levels.restored(snapshot.get(levels.SNAPSHOT_KEY))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a KV snapshot: {exc}") from exc
        self._data, self._sessions, self._auth, self.peer_directory = data, sessions, auth, peers
        self.cluster_level = level

    def digest(self) -> Any:
        return tuple((k, *_unpack(entry)) for k, entry in sorted(self._data.items()))

    # -- inspection -----------------------------------------------------------------
    @property
    def sessions(self) -> SessionTable:
        return self._sessions

    def __len__(self) -> int:
        """Keys held (what a snapshot copies)."""
        return len(self._data)

    def get(self, key: str) -> Any:
        entry = self._data.get(key)
        return None if entry is None else _unpack(entry)[0]

    def items(self) -> dict[str, Any]:
        return {k: _unpack(entry)[0] for k, entry in sorted(self._data.items())}
