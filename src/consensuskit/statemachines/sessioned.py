"""Exactly-once client sessions for any service's state machine.

``Sessioned(inner, read_kinds)`` turns a plain deterministic executor into a
``StateMachine`` with the client sessions of ``sessions.py`` (at most once per
``(client_id, seq)``, command digests, expiry by the log clock, the LRU cap): a new
service writes only what its operations do.  The kv state machine uses the same
``SessionTable`` directly (its snapshot format predates this wrapper).

Rules this module owns:
  * an op whose kind the service does not know, or a write kind marked read, is refused
    as ``bad-command`` and changes nothing (a peer or client cannot crash a replica with
    one, and every replica refuses it alike);
  * ``read`` serves read kinds only, from the current state, without touching sessions;
  * a snapshot is ``{"state": inner.snapshot(), **SessionTable.snapshot()}``, and the
    peer directory under "peers" once it holds anything (statemachines/peers.py);
  * a backup, a restore or a peer op (statemachines/backup.py) is answered beside the
    service's kinds, unless the service names one of those kinds itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from consensuskit.core.client import ClientRequest
from consensuskit.core.compiled import mypyc_attr
from consensuskit.statemachines import levels
from consensuskit.statemachines.backup import is_platform_op, platform_command, platform_result
from consensuskit.statemachines.peers import SNAPSHOT_KEY as PEERS_KEY
from consensuskit.statemachines.peers import Directory, restored, snapshot_part
from consensuskit.statemachines.sessions import BAD_COMMAND, CLOCK, SessionTable


class Executor(Protocol):
    """What a service writes: its operations on its state, nothing about sessions."""

    def execute(self, op: Any) -> Any:
        """The op's result (a msgpack value), the same on every replica."""
        ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None:
        """Replace the state; raise ValueError (changing nothing) on a bad snapshot."""
        ...

    def digest(self) -> Any: ...

    def __len__(self) -> int: ...


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed by interpreted code
class Sessioned:
    """A ``core.service.StateMachine`` made of an executor and a session table."""

    __slots__ = ("_inner", "_kinds", "_reads", "_sessions", "cluster_level", "peer_directory")

    def __init__(self, inner: Executor, kinds: tuple[str, ...], read_kinds: tuple[str, ...]) -> None:
        self._inner = inner
        self._kinds = frozenset(kinds) | {CLOCK}
        self._reads = frozenset(read_kinds)
        self._sessions = SessionTable()
        # The cluster's member addresses (statemachines/peers.py).
        self.peer_directory: Directory = {}
        self.cluster_level = levels.BASE_LEVEL  # which rules every replica applies (levels.py)

    @property
    def inner(self) -> Executor:
        return self._inner

    @property
    def sessions(self) -> SessionTable:
        return self._sessions

    def apply(self, command: ClientRequest) -> Any:
        op = command.op
        if op.kind not in self._kinds or (op.is_read() and op.kind not in self._reads):
            return platform_command(self, command) if is_platform_op(op) else BAD_COMMAND
        return self._sessions.apply(command, self._inner.execute)

    def read(self, request: ClientRequest) -> Any:
        kind = request.op.kind
        if kind not in self._reads:
            if is_platform_op(request.op) and request.op.is_read():
                return platform_result(self, request.op)
            raise ValueError(f"read() serves only {', '.join(sorted(self._reads))}, not {kind}")
        return self._inner.execute(request.op)

    def snapshot(self) -> Any:
        snap = {"state": self._inner.snapshot(), **self._sessions.snapshot()}
        if self.peer_directory:
            snap[PEERS_KEY] = snapshot_part(self.peer_directory)
        snap.update(levels.snapshot_part(self.cluster_level))
        return snap

    def restore(self, snapshot: Any) -> None:
        if not isinstance(snapshot, dict) or "state" not in snapshot or "sessions" not in snapshot:
            raise ValueError("not a snapshot of this service: expected a map with 'state' and 'sessions'")
        try:
            sessions = SessionTable.restore(snapshot)
            peers = restored(snapshot.get(PEERS_KEY))
            level = levels.restored(snapshot.get(levels.SNAPSHOT_KEY))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a snapshot of this service: {exc}") from exc
        self._inner.restore(snapshot["state"])
        self._sessions, self.peer_directory = sessions, peers
        self.cluster_level = level

    def digest(self) -> Any:
        return self._inner.digest()

    def __len__(self) -> int:
        return len(self._inner)
