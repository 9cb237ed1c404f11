"""Client commands and answers, shared by every replicated state machine.

Every command carries ``(client_id, seq)``.  A state machine with client sessions applies
each pair at most once and returns the cached result when a retry arrives (exactly-once
effects over at-least-once delivery; seed 004, stages 3 and 6 of a leader crash).

Tags 1-9 belong to core; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from consensuskit.core.messages import estimated_size, message

# Append-only: a kind's position never changes.  "auth" / "auth-read": users, roles and
# permissions (statemachines/auth.py; key = the action or what to read, value = arguments).
# "clock" is the leader's clock command (statemachines/sessions.py), written by the server
# runtime, never by a client.
# The client library's patience (client.py): one attempt, and the whole operation with
# its retries.  The simulator's clients use them too when a run takes the server's timers
# (``sim --server-options``).
CLIENT_ATTEMPT_TIMEOUT = 2.0
CLIENT_DEADLINE = 10.0

OP_KINDS = ("get", "put", "delete", "cas", "list", "auth", "auth-read", "clock")
READ_KINDS = ("get", "list", "auth-read")

# How a read may be served (``ClientRequest.consistency``; None = the protocol's default):
#   linearizable  confirm leadership with a quorum round first (ReadIndex, §6.4)
#   lease         serve from the leader's lease when it is safe, else as linearizable
#   stale         serve from any replica's local state, possibly behind the leader
#   cache         linearizable, and the leader may grant the client a cache lease on the
#                 key (Gray and Cheriton): the result then carries "lease" (seconds) and
#                 the leader holds back writes to the key until the lease has run out;
#                 a protocol without cache leases serves it as linearizable
LINEARIZABLE = "linearizable"
LEASE = "lease"
STALE_OK = "stale"
CACHE = "cache"
CONSISTENCY_LEVELS = (LINEARIZABLE, LEASE, STALE_OK, CACHE)


# Op and ClientRequest are msgspec Structs the collector never tracks (gc=False; they
# hold no cycle): every command in a log holds one of each (core/messages.py).
@message(1)
class Op(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One key-value operation.

    ``cas`` compares ``expected`` with the current value (``None`` = key absent), or,
    when ``expected_version`` is set, with the key's version; then writes ``value``.
    ``list`` reads every key starting with ``key`` (the prefix) in key order; ``value``,
    when an int, caps how many it returns.
    """

    kind: str
    key: str
    value: Any = None
    expected: Any = None
    expected_version: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}; valid: {', '.join(OP_KINDS)}")

    def is_read(self) -> bool:
        return self.kind in READ_KINDS

    def describe(self) -> str:
        if self.kind == "get":
            return f"get {self.key}"
        if self.kind == "put":
            return f"put {self.key}={self.value!r}"
        if self.kind == "delete":
            return f"delete {self.key}"
        if self.kind == "list":
            return f"list {self.key}*"
        if self.kind in ("auth", "auth-read"):
            return f"{self.kind} {self.key}"  # never the arguments: they may hold a password hash
        if self.expected_version is not None:
            return f"cas {self.key} v{self.expected_version}->{self.value!r}"
        return f"cas {self.key} {self.expected!r}->{self.value!r}"


# A Struct the collector never tracks, as Op: the etcd service's log holds one per command.
@message(4)
class ServiceOp(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One operation of a service other than kv (core/service.py).

    ``kind`` names one of the service's operations (the service validates it at the edge;
    its state machine refuses any other deterministically), ``key`` what it acts on ("" for
    nothing in particular), ``value`` its argument (any msgpack value).  ``read`` marks an
    operation that changes nothing: the service's ``op()`` sets it from its read kinds, and
    a state machine's ``read`` refuses a write kind whatever the flag says, so a client that
    lies about it gains nothing.  ``expected``/``expected_version`` are always None: they
    let histories and session digests treat every op alike.
    """

    kind: str
    key: str = ""
    value: Any = None
    read: bool = False

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("an operation needs a kind")

    @property
    def expected(self) -> None:
        return None

    @property
    def expected_version(self) -> None:
        return None

    def is_read(self) -> bool:
        return self.read

    def describe(self) -> str:
        text = f"{self.kind} {self.key}".rstrip()
        return text if self.value is None else f"{text} {self.value!r}"


# How the edge that admitted a command authenticated its sender (``Principal.via``).
VIA_TOKEN = "token"  # a bearer token: ``rev`` is the auth revision it was issued at
VIA_CERTIFICATE = "certificate"  # a verified client certificate whose CN names the user
VIA_ADMIN = "admin"  # the operator's admin token: counts as root everywhere
VIA_EDGE = "edge"  # a command of a release that judged auth only at the edge (module rules)
VIAS = (VIA_TOKEN, VIA_CERTIFICATE, VIA_ADMIN, VIA_EDGE)


@message(5)
@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who sent a command, as the edge that admitted it authenticated them: the user
    ``name`` ("" for the admin token), ``via`` one of ``VIAS``, and ``rev``, the auth
    revision the edge checked against (for a token, the revision it was issued at).
    The state machine that applies the command judges it again against its own state
    (statemachines/auth.py), so a lagging edge cannot let through what the log refuses."""

    name: str
    via: str
    rev: int = 0

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ValueError(f"unknown principal kind {self.via!r}; valid: {', '.join(VIAS)}")


# ``ClientRequest.principal`` of a command written by a release before principals existed:
# its edge judged it against that node's state, and replaying it must not judge it again.
EDGE_JUDGED = Principal(name="", via=VIA_EDGE)


@message(2)
class ClientRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``consistency`` applies to reads only; see ``CONSISTENCY_LEVELS``.  ``op`` is a
    kv-shaped ``Op`` or another service's ``ServiceOp`` (core/service.py).

    ``principal`` (appended; see core/messages.py): who sent it, None for nobody (no
    credentials).  A frame of the release before it decodes with ``EDGE_JUDGED``."""

    client_id: str
    seq: int
    op: Op | ServiceOp
    consistency: str | None = None
    principal: Principal | None = None
    __appended__ = {"principal": EDGE_JUDGED}  # core/messages.py

    def size_hint(self) -> int:
        """``core.messages.estimated_size`` of this request, without the walk over its
        fields for the common kv ``Op``."""
        op = self.op
        if type(op) is Op:
            key_and_values = len(op.key) + estimated_size(op.value) + estimated_size(op.expected)
            return 16 + len(self.client_id) + key_and_values
        return 16 + len(self.client_id) + estimated_size(op)

    def renumbered(self, seq: int) -> ClientRequest:
        """The same request under another sequence number."""
        return msgspec.structs.replace(self, seq=seq)

    def __post_init__(self) -> None:
        if self.consistency is not None and self.consistency not in CONSISTENCY_LEVELS:
            raise ValueError(
                f"unknown consistency {self.consistency!r}; valid: {', '.join(CONSISTENCY_LEVELS)}"
            )


# Reasons a request was definitely not applied; the client may retry elsewhere.
NOT_LEADER = "not-leader"
STALE_SESSION = "stale-session"
BUSY = "busy"
REMOVED = "removed"
# Session refusals (statemachines/sessions.py): this command was not applied now.
# session-expired: the session was forgotten, so an earlier attempt with this
# (client_id, seq) may have been applied -- the write's outcome is unknown to the node.
SESSION_EXPIRED = "session-expired"
# request-id-reused: the session's last (client_id, seq) names a different command.
REQUEST_ID_REUSED = "request-id-reused"
# Auth refusals of the state machine that applied the command (statemachines/auth.py):
# unauthenticated: auth is enabled and the command names nobody (or a user who is gone);
# invalid-token: its token was retired (new password, user deleted, auth re-enabled);
# permission-denied: the user lacks the permission the op needs.
UNAUTHENTICATED = "unauthenticated"
INVALID_TOKEN = "invalid-token"
PERMISSION_DENIED = "permission-denied"

# read-failed: the state machine's read raised (a bug, the node's log has the traceback);
# a read changes nothing, so the node answers this instead of halting (protocols/common/
# replies.py).
READ_FAILED = "read-failed"

# "unsupported: <why>": the protocol never serves this request (an operation or a read
# consistency it does not offer, e.g. compare-and-swap on an eventually consistent store);
# definitely not applied, and no other node of the cluster would apply it either.
UNSUPPORTED = "unsupported"


def unsupported(reason: str) -> str:
    """The error of a request the protocol never serves, with the reason (one line)."""
    return f"{UNSUPPORTED}: {reason}"


@message(3)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientResponse:
    """The answer to ``ClientRequest(client_id, seq)``.

    ``ok`` means the op took effect (or, for a read, was served linearizably) and
    ``result`` holds its output.  ``ok=False`` carries ``error`` and means this attempt
    was definitely *not* applied (after ``session-expired`` an earlier attempt may have
    been); ``leader_hint`` names where to retry.  ``index`` is the
    log index the answer reflects (the applied index for reads), used by checkers.
    """

    client_id: str
    seq: int
    ok: bool
    result: Any = None
    error: str | None = None
    leader_hint: str | None = None
    index: int = 0
