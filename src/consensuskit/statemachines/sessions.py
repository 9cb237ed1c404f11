"""Client sessions of a replicated state machine: at-most-once commands, sessions that
expire through the log (Raft dissertation §6.3), and honest idempotency.

A command ``(client_id, seq, op)`` belongs to the session ``client_id``.  Everything here
is decided by what is in the log alone, so every replica (and every restart replaying the
log) reaches the same table (the one exception, digests after an upgrade, is below).

Rules this module owns:
  * at most once: a session remembers its last seq, that command's result and a digest of
    that command (blake2b over a canonical msgpack form of the op: identical in every
    process, unlike ``hash()``).  A retry of the last seq with the same command gets the
    cached result; with a different command it is refused as ``request-id-reused`` (the
    id names another write: answering it with the first write's result would report a
    success that did not happen).  An older seq is refused as ``stale-session``.  A
    refusal changes nothing, not even the session's place in the eviction order, and
    neither does an answer from the cache (a retry is not new activity).  The executor
    may refuse too (an auth refusal, judged where the command is applied): that is not
    recorded either, so the same id may be retried with better credentials;
  * the log clock: time exists for the table only through clock commands (op kind
    ``clock``) that the leader's runtime writes into the log every so often.  A clock
    command carries an epoch (one per leader process) and that process's monotonic clock
    in milliseconds; two consecutive commands of one epoch advance the log clock by their
    difference, and a command of another epoch only starts a new epoch.  So the log clock
    counts time measured by one process at a time: it never goes back, never depends on
    two machines' clocks agreeing, and across a change of leader it stands still for a
    moment (sessions live a little longer, never shorter).  A clock command also carries
    the settings ``ttl`` and ``max_sessions``: replicas cannot disagree on them;
  * expiry: a session records the log clock of its last applied command.  At each clock
    command, sessions idle for more than ``ttl`` are forgotten (oldest first: the table is
    kept in order of last activity, so this costs O(expired)).  A new session beyond
    ``max_sessions`` evicts the least recently active one.  Until the first clock command
    nothing expires and nothing is capped (the previous release's behaviour, which the
    simulator keeps); the first one puts the table in a canonical order (by client id),
    so a replica that restored the previous release's snapshot and one that replayed the
    log from further back evict and expire alike from there on.  (They may still differ
    in the digests of sessions last used before the upgrade -- the old snapshot has
    none, and a session without a digest answers any retry of its last seq from the
    cache -- which changes answers to misused ids, never the state);
  * after a session is forgotten: a write of an unknown client is refused as
    ``session-expired`` if its client id is in the record of recently forgotten ids (the
    last ``max_sessions // 4``), or if its seq is above 1 once any session has ever been
    forgotten -- it may be a retry of a command that was applied.  So a new session must
    start at seq 1, and a retry is never re-applied after its session was forgotten,
    except a retry of a session's *first* command (seq 1) whose id has also dropped out
    of the record (see docs/server.md, "Client sessions").  Reads are never refused as
    expired (executing a read twice is harmless), nor are writes of the server's own
    anonymous sessions (client ids ``anon.``: nobody can retry them).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack

from consensuskit.core.client import (
    INVALID_TOKEN,
    PERMISSION_DENIED,
    READ_FAILED,
    REQUEST_ID_REUSED,
    SESSION_EXPIRED,
    STALE_SESSION,
    UNAUTHENTICATED,
    ClientRequest,
    Op,
)

CLOCK = "clock"  # the op kind of a clock command
ANON_PREFIX = "anon."  # the server's own sessions for writes without a request id
SESSION_FORMAT = 2  # the snapshot's sessions section (1: (client, seq, result) triples)
DIGEST_BYTES = 8

# Refusals: results that mean "not applied, nothing changed".  Protocols turn them into
# a ClientResponse with ok=False (``refusal``); they are never cached in a session.
STALE = {"error": STALE_SESSION}
EXPIRED = {"error": SESSION_EXPIRED}
REUSED = {"error": REQUEST_ID_REUSED}
BAD_COMMAND = {"error": "bad-command"}
# A restore (statemachines/backup.py) into a state that holds data, or of a bad snapshot.
NOT_EMPTY = {"error": "not-empty"}
BAD_BACKUP = {"error": "bad-backup"}
# An executor's auth refusals (statemachines/auth.py ``AuthState.judge``).
NOBODY = {"error": UNAUTHENTICATED}
TOKEN_RETIRED = {"error": INVALID_TOKEN}
DENIED = {"error": PERMISSION_DENIED}
# A read ordered through the log whose execution raised (protocols/common/replies.applied).
FAILED_READ = {"error": READ_FAILED}
_REFUSALS = {
    id(r): r["error"]
    for r in (
        STALE,
        EXPIRED,
        REUSED,
        BAD_COMMAND,
        NOT_EMPTY,
        BAD_BACKUP,
        NOBODY,
        TOKEN_RETIRED,
        DENIED,
        FAILED_READ,
    )
}

Session = tuple[int, Any, bytes | None, int]  # (last seq, its result, its digest, last active)


def refusal(result: Any) -> str | None:
    """The error code if ``result`` is a refusal (the command changed nothing), else None."""
    return _REFUSALS.get(id(result)) if type(result) is dict else None


def clock_op(epoch: str, now_ms: int, ttl_ms: int, max_sessions: int) -> Op:
    """The clock command a leader writes (see the module rules)."""
    return Op(kind=CLOCK, key=epoch, value={"now": now_ms, "ttl": ttl_ms, "max_sessions": max_sessions})


def _canonical_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return repr(obj)  # a registered message or another object: its repr is deterministic enough


def _packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, default=_canonical_default)


def command_digest(op: Op, packer: msgpack.Packer | None = None) -> bytes:
    """8 bytes naming the op's content, the same in every process and on every replica:
    blake2b over msgpack ``[kind, key, value, expected, expected_version]``.  ``packer``
    (from ``_packer()``, one per thread) saves building one per call."""
    fields = (op.kind, op.key, op.value, op.expected, op.expected_version)
    try:
        packed = (packer or _packer()).pack(fields)
    except (TypeError, ValueError, OverflowError):  # e.g. an int beyond 64 bits
        packed = repr(fields).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(packed, digest_size=DIGEST_BYTES).digest()


def _is_int(value: Any, least: int) -> bool:
    return type(value) is int and value >= least


class SessionTable:
    """The sessions of one state machine (see the module rules)."""

    __slots__ = (
        "_epoch",
        "_forgotten",
        "_mono",
        "_packer",
        "_sessions",
        "clock",
        "forgotten_total",
        "max_sessions",
        "ttl",
    )

    def __init__(self) -> None:
        # client_id -> Session, least recently active first.
        # Invariant: last-active values never decrease from front to back.
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # ids of recently forgotten sessions, oldest first; at most max_sessions // 4
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self.clock = 0  # milliseconds; moved only by clock commands
        self._epoch: str | None = None  # None: no clock command applied yet
        self._mono = 0  # the epoch's last monotonic reading
        self.ttl = 0  # milliseconds; 0: sessions do not expire by time
        self.max_sessions = 0  # 0: no cap
        self.forgotten_total = 0  # sessions ever forgotten (expired or evicted)
        self._packer = _packer()  # a state machine is applied by one thread at a time

    def __deepcopy__(self, memo: dict[int, Any]) -> SessionTable:
        """A copy with a packer of its own: a msgpack Packer cannot be copied, and a copy
        (PBFT's twin replica deep-copies its state machine) may be applied apart from
        the original.  Written out because a compiled class exposes no ``__slots__``."""
        table = SessionTable()
        memo[id(self)] = table
        table._sessions = copy.deepcopy(self._sessions, memo)
        table._forgotten = OrderedDict(self._forgotten)
        table.clock, table._epoch, table._mono = self.clock, self._epoch, self._mono
        table.ttl, table.max_sessions = self.ttl, self.max_sessions
        table.forgotten_total = self.forgotten_total
        return table

    # -- commands ---------------------------------------------------------------------
    def apply(self, command: ClientRequest, execute: Callable[[Op], Any]) -> Any:
        op: Any = command.op  # an Op, or a service's own op (ServiceOp)
        if op.kind == CLOCK:
            return self._tick(op)
        client, seq = command.client_id, command.seq
        sessions = self._sessions
        session = sessions.get(client)
        digest = command_digest(op, self._packer)
        if session is not None:
            last_seq, cached, last_digest, _ = session
            if seq == last_seq:
                if last_digest is None or last_digest == digest:
                    return cached
                return REUSED
            if seq < last_seq:
                return STALE
        elif (
            self.forgotten_total
            and (seq > 1 or client in self._forgotten)
            and not op.is_read()
            and not client.startswith(ANON_PREFIX)
        ):
            return EXPIRED
        result = execute(op)
        if result.__class__ is dict and id(result) in _REFUSALS:
            return result  # the executor refused it: nothing changed, nothing to remember
        self._record(client, session is not None, seq, result, digest)
        return result

    def _record(self, client: str, known: bool, seq: int, result: Any, digest: bytes) -> None:
        sessions = self._sessions
        if known:
            sessions.move_to_end(client)
        else:
            if self._forgotten:
                self._forgotten.pop(client, None)
            cap = self.max_sessions
            while cap and len(sessions) >= cap:
                self._forget(next(iter(sessions)))
        sessions[client] = (seq, result, digest, self.clock)

    def first_answer(self, command: ClientRequest) -> Any | None:
        """The result ``command`` got when it was applied, if this table remembers it as
        its session's last command; None otherwise."""
        session = self._sessions.get(command.client_id)
        if session is None or session[0] != command.seq:
            return None
        op: Any = command.op  # an Op, or a service's own op (ServiceOp)
        if session[2] is not None and session[2] != command_digest(op, self._packer):
            return None
        return session[1]

    def remember(self, command: ClientRequest, result: Any) -> None:
        """Record ``result`` as ``command``'s answer without applying anything: for a
        command that replaced this table's whole state machine, this table included (a
        restore, statemachines/backup.py), so that a retry of it gets its first answer."""
        op: Any = command.op  # an Op, or a service's own op (ServiceOp)
        client = command.client_id
        digest = command_digest(op, self._packer)
        self._record(client, client in self._sessions, command.seq, result, digest)

    def _tick(self, op: Op) -> Any:
        value = op.value
        if type(value) is not dict:
            return BAD_COMMAND
        now: Any = value.get("now")
        ttl: Any = value.get("ttl")
        cap: Any = value.get("max_sessions")
        if not (_is_int(now, 0) and _is_int(ttl, 0) and _is_int(cap, 1)):
            return BAD_COMMAND
        first = self._epoch is None
        if op.key == self._epoch:
            if now > self._mono:
                self.clock += now - self._mono
                self._mono = now
        else:
            self._epoch, self._mono = op.key, now
        self.ttl, self.max_sessions = ttl, cap
        if first:
            # The canonical start (module rules): order by id, all active now.
            clock = self.clock
            self._sessions = OrderedDict(
                (c, (s[0], s[1], s[2], clock)) for c, s in sorted(self._sessions.items())
            )
        forgotten = self.forgotten_total
        sessions = self._sessions
        if ttl:
            cutoff = self.clock - ttl
            while sessions:
                client = next(iter(sessions))
                if sessions[client][3] >= cutoff:
                    break
                self._forget(client)
        while len(sessions) > cap:
            self._forget(next(iter(sessions)))
        return {"clock": self.clock, "sessions": len(sessions), "forgotten": self.forgotten_total - forgotten}

    def _forget(self, client: str) -> None:
        del self._sessions[client]
        record = self._forgotten
        record[client] = None
        limit = max(1, self.max_sessions // 4)
        while len(record) > limit:
            record.popitem(last=False)
        self.forgotten_total += 1

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The sessions section of a snapshot: flat (client, seq, result, digest, last
        active) groups in order of last activity, the clock and the forgotten ids."""
        flat: list[Any] = []
        for client, (seq, result, digest, active) in self._sessions.items():
            flat += (client, seq, result, digest, active)
        return {
            "session_format": SESSION_FORMAT,
            "sessions": tuple(flat),
            "session_clock": (
                self.clock,
                self._epoch,
                self._mono,
                self.ttl,
                self.max_sessions,
                self.forgotten_total,
            ),
            "forgotten": tuple(self._forgotten),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> SessionTable:
        """The table of a snapshot's sessions section, this release's or the previous one's
        (``sessions`` as (client, seq, result) triples in client order, nothing else).
        Raises ValueError or TypeError on anything else."""
        table = cls()
        sessions = table._sessions
        fmt = snapshot.get("session_format", 1)
        if fmt == 1:
            for client, seq, result in snapshot["sessions"]:
                sessions[_client(client)] = (_seq(seq), result, None, 0)
            return table
        if fmt != SESSION_FORMAT:
            raise ValueError(f"unknown session_format {fmt!r} (this release reads 1 and {SESSION_FORMAT})")
        flat = snapshot["sessions"]
        if len(flat) % 5:
            raise ValueError("'sessions' must hold client, seq, result, digest, last-active groups")
        it = iter(flat)
        previous = 0
        for client, seq, result, digest, active in zip(it, it, it, it, it, strict=True):
            if not (digest is None or type(digest) is bytes) or not _is_int(active, previous):
                raise ValueError(f"bad session {client!r}: digest or last activity out of order")
            sessions[_client(client)] = (_seq(seq), result, digest, active)
            previous = active
        clock, epoch, mono, ttl, cap, total = snapshot["session_clock"]
        if not (
            _is_int(clock, 0)
            and (epoch is None or type(epoch) is str)
            and _is_int(mono, 0)
            and _is_int(ttl, 0)
            and _is_int(cap, 0)
            and _is_int(total, 0)
        ):
            raise ValueError(f"bad session_clock {snapshot['session_clock']!r}")
        table.clock, table._epoch, table._mono = clock, epoch, mono
        table.ttl, table.max_sessions, table.forgotten_total = ttl, cap, total
        table._forgotten = OrderedDict((_client(c), None) for c in snapshot["forgotten"])
        return table

    # -- inspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._sessions

    def last_seq(self, client_id: str) -> int | None:
        session = self._sessions.get(client_id)
        return None if session is None else session[0]

    def forgotten(self) -> tuple[str, ...]:
        """The record of recently forgotten ids, oldest first."""
        return tuple(self._forgotten)


def _client(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"a session's client id must be a string, got {type(value).__name__}")
    return value


def _seq(value: Any) -> int:
    if not _is_int(value, 0):
        raise ValueError(f"a session's seq must be an integer >= 0, got {value!r}")
    return value
