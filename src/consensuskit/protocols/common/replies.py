"""The answers a protocol gives its clients (``ClientResponse`` builders).

Rules this module owns:
  * ``ok``: the operation took effect (a read: was served linearizably, or as asked);
    it carries the result, the index it reflects (the log index or slot a command was
    applied at; the applied index for a read) and the node to send the next one to;
  * ``refused``: definitely not applied; it carries the error (``NOT_LEADER``, ``BUSY``,
    a session refusal, ...) and the protocol's best guess of the leader, None if it has
    none (each protocol decides what it may hint);
  * ``command_answer``: a state machine's own refusal of a command (a stale, expired or
    reused session: nothing was applied) becomes a refusal, never an ``ok``;
  * ``read_answer``: a read served from the state machine; when its ``read`` raises (a
    bug), the read is refused ``READ_FAILED`` and recorded (``read-failed``, with the
    traceback: the server logs it, the simulator fails the run) instead of the exception
    halting the node.  A read changes nothing, so nothing is lost by going on, and one
    request retried at every node cannot halt the cluster.  A command's failure still
    halts: it may have changed half the state.
"""

from __future__ import annotations

import traceback
from typing import Any

from consensuskit.core.client import READ_FAILED, ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.service import StateMachine
from consensuskit.statemachines.sessions import refusal


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


def command_answer(
    request: ClientRequest, result: Any, leader_hint: str | None, index: int
) -> ClientResponse:
    """The answer to a command applied at ``index`` with ``result``."""
    error = refusal(result)
    if error is not None:
        return refused(request, error, leader_hint)
    return ok(request, result, leader_hint, index)


def read_answer(
    sm: StateMachine, request: ClientRequest, env: Env, leader_hint: str | None, index: int
) -> ClientResponse:
    """The answer to a read served from ``sm`` at applied ``index`` (module rules)."""
    try:
        result = sm.read(request)
    except Exception as exc:
        env.record(
            "read-failed",
            op=str(getattr(request.op, "kind", request.op)),
            error=f"{type(exc).__name__}: {exc}",
            trace="".join(traceback.format_exception(exc)),
        )
        return refused(request, READ_FAILED, leader_hint)
    return ok(request, result, leader_hint, index)
