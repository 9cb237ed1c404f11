"""The answers a protocol gives its clients (``ClientResponse`` builders).

Rules this module owns:
  * ``ok``: the operation took effect (a read: was served linearizably, or as asked);
    it carries the result, the index it reflects (the log index or slot a command was
    applied at; the applied index for a read) and the node to send the next one to;
  * ``refused``: definitely not applied; it carries the error (``NOT_LEADER``, ``BUSY``,
    a session refusal, ...) and the protocol's best guess of the leader, None if it has
    none (each protocol decides what it may hint);
  * no refusal for a write the node may apply after all (``may_apply``: its session is
    at that seq, or a command of its id waits unapplied here, a copy appended or
    accepted earlier, from a duplicate of the message or an earlier attempt): the
    node leaves it unanswered, and the sender's timeout makes the outcome unknown;
  * ``command_answer``: a state machine's own refusal of a command (a stale, expired or
    reused session: nothing was applied) becomes a refusal, never an ``ok``;
  * ``read_answer``: a read served from the state machine; when its ``read`` raises (a
    bug), the read is refused ``READ_FAILED`` and recorded (``read-failed``, with the
    traceback: the server logs it, the simulator fails the run) instead of the exception
    halting the node.  A read changes nothing, so nothing is lost by going on, and one
    request retried at every node cannot halt the cluster.  A command's failure still
    halts: it may have changed half the state;
  * ``applied``: a log entry applied to the state machine; a *read* ordered through the
    log (a log read mode, PBFT's ordered fallback) whose execution raises is refused the
    same way, with the state machine's ``FAILED_READ`` refusal, which every replica
    reaches alike (the same read on the same state raises alike, and a refusal is never
    remembered in a session), so their states stay equal.
"""

from __future__ import annotations

import traceback
from collections.abc import Container, Iterable
from typing import Any

from consensuskit.core.client import READ_FAILED, ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.service import StateMachine
from consensuskit.statemachines.sessions import FAILED_READ, refusal


def ok(request: ClientRequest, result: Any, leader_hint: str | None, index: int) -> ClientResponse:
    return ClientResponse(
        client_id=request.client_id,
        seq=request.seq,
        ok=True,
        result=result,
        leader_hint=leader_hint,
        index=index,
    )


def refused(request: ClientRequest, error: str, leader_hint: str | None) -> ClientResponse:
    return ClientResponse(
        client_id=request.client_id, seq=request.seq, ok=False, error=error, leader_hint=leader_hint
    )


def may_apply(sm: Any, request: ClientRequest, unapplied: Container[tuple[str, int]]) -> bool:
    """Whether the write ``request`` may take effect here after all (module rules):
    ``sm``'s session of its client is at its seq or later, or its (client_id, seq) is
    among ``unapplied`` (those of the commands this node holds and has not applied:
    ``command_ids``).  Seed 11300007 of a 60 s Raft sweep: a duplicated ForwardRequest,
    the first copy appended just before a step-down, the second refused not-leader,
    and the write applied after all."""
    last_seq = getattr(getattr(sm, "sessions", None), "last_seq", None)
    if last_seq is not None:
        seen = last_seq(request.client_id)
        if seen is not None and seen >= request.seq:
            return True
    return (request.client_id, request.seq) in unapplied


def command_ids(items: Iterable[Any]) -> frozenset[tuple[str, int]]:
    """The (client_id, seq) of the client commands among ``items`` (others skipped)."""
    return frozenset((c.client_id, c.seq) for c in items if type(c) is ClientRequest)


class UnappliedIds:
    """The (client_id, seq) of the commands in a log's unapplied suffix, computed once per
    log state: ``in_log`` rebuilds the set only when its key changed.  The key names the
    suffix: (first unapplied index, last index, last term or zxid) does, since two
    logs that hold the same entry at their last index hold the same entries before it
    (Raft's Log Matching, ZAB's prefix property).  A node refusing many requests while a
    long tail waits unapplied (a deposed leader cut off) scans it once, not per request."""

    __slots__ = ("_ids", "_key")

    def __init__(self) -> None:
        self._key: Any = None
        self._ids: frozenset[tuple[str, int]] = frozenset()

    def in_log(self, log: Any, last_applied: int, tip: Any) -> frozenset[tuple[str, int]]:
        """Those of ``log``'s entries after ``last_applied`` (a log with ``first_index``,
        ``last_index`` and ``entry(i).data``); ``tip``: its last entry's term or zxid."""
        first = max(last_applied + 1, log.first_index)
        key = (first, log.last_index, tip)
        if key != self._key:
            self._ids = command_ids(log.entry(i).data for i in range(first, log.last_index + 1))
            self._key = key
        return self._ids


def command_answer(
    request: ClientRequest, result: Any, leader_hint: str | None, index: int
) -> ClientResponse:
    """The answer to a command applied at ``index`` with ``result``."""
    error = refusal(result)
    if error is not None:
        return refused(request, error, leader_hint)
    return ok(request, result, leader_hint, index)


def read_answer(
    sm: StateMachine,
    request: ClientRequest,
    env: Env,
    leader_hint: str | None,
    index: int,
    passing: tuple[type[Exception], ...] = (),
) -> ClientResponse:
    """The answer to a read served from ``sm`` at applied ``index`` (module rules).
    Exceptions of the ``passing`` kinds are the caller's to handle: they reach it."""
    try:
        result = sm.read(request)
    except passing:
        raise
    except Exception as exc:
        _record_failed_read(env, request, exc)
        return refused(request, READ_FAILED, leader_hint)
    return ok(request, result, leader_hint, index)


def applied(sm: StateMachine, command: Any, env: Env) -> Any:
    """``sm.apply(command)``, for a log entry's command (module rules): its result, or
    ``FAILED_READ`` when ``command`` is a read whose execution raised."""
    try:
        return sm.apply(command)
    except Exception as exc:
        op = getattr(command, "op", None)
        if op is None or not op.is_read():
            raise  # a command may have changed half the state: the node halts
        _record_failed_read(env, command, exc)
        return FAILED_READ


def _record_failed_read(env: Env, request: ClientRequest, exc: Exception) -> None:
    env.record(
        "read-failed",
        op=str(getattr(request.op, "kind", request.op)),
        error=f"{type(exc).__name__}: {exc}",
        trace="".join(traceback.format_exception(exc)),
    )
