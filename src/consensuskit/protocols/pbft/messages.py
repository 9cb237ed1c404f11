"""PBFT's wire messages (Castro & Liskov, OSDI 1999 / TOCS 2002), in the paper's terms.

Tags 160-189 belong to PBFT; append new ones, never reuse.

Rules this module owns:
  * the normal case (``Relay``, ``PrePrepare``, ``Prepare``, ``Commit``, ``FetchState``,
    ``StateReply``) is authenticated with a MAC for the one receiver (``mac``): the
    authenticator of the paper, one entry per send since every send has one receiver;
  * ``Checkpoint``, ``ViewChange`` and ``NewView`` are signed (``sig``): they travel as
    proofs inside other messages, and only a signature convinces a third replica;
  * ``payload(msg)`` is the canonical bytes a MAC or signature covers: every field but
    the authenticator itself, encoded with the one codec;
  * a batch is a tuple of client requests; its ``digest`` is ``batch_digest(batch)``;
    the empty batch is the paper's null request (a view change fills holes with it).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from consensuskit.core.client import ClientRequest
from consensuskit.core.messages import encode, message

Batch = tuple[ClientRequest, ...]


def batch_digest(batch: Batch) -> bytes:
    return hashlib.sha256(encode(tuple(batch))).digest()[:16]


def state_digest(snapshot: Any) -> bytes:
    return hashlib.sha256(encode(snapshot)).digest()[:16]


def short(digest: bytes) -> str:
    return digest[:3].hex() if isinstance(digest, bytes) else "?"


def payload(msg: Any) -> bytes:
    """The bytes an authenticator covers: every field except the message's own
    ``mac``/``sig``; proofs nested inside keep their signatures in canonical form."""
    values = tuple(
        _canon(getattr(msg, f.name)) for f in dataclasses.fields(msg) if f.name not in ("mac", "sig")
    )
    return encode((type(msg).__name__, values))


def _canon(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_canon(v) for v in value)
    if isinstance(value, Checkpoint | ViewChange):
        sig = value.sig
        if not isinstance(sig, bytes | None):
            # A simulated token: its signer and digest; the object is checked apart.
            sig = (str(getattr(sig, "signer", "")), getattr(sig, "digest", b""))
        return (payload(value), sig)
    return value


@message(160)
@dataclass(frozen=True, slots=True, kw_only=True)
class Relay:
    """A backup hands a client request it received to the primary (§4.1)."""

    request: ClientRequest
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"Relay {self.request.client_id}#{self.request.seq}"


@message(161)
@dataclass(frozen=True, slots=True, kw_only=True)
class PrePrepare:
    view: int
    seq: int
    digest: bytes
    batch: Batch
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        reqs = ",".join(f"{r.client_id}#{r.seq}" for r in self.batch) or "null"
        return f"PrePrepare v={self.view} n={self.seq} d={short(self.digest)} [{reqs}]"


@message(162)
@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    view: int
    seq: int
    digest: bytes
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"Prepare v={self.view} n={self.seq} d={short(self.digest)}"


@message(163)
@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    view: int
    seq: int
    digest: bytes
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"Commit v={self.view} n={self.seq} d={short(self.digest)}"


@message(164)
@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The state after executing ``seq`` has ``digest`` (signed: it is a proof)."""

    seq: int
    digest: bytes
    replica: str
    sig: Any = None

    def summary(self) -> str:
        return f"Checkpoint n={self.seq} d={short(self.digest)}"


@message(165)
@dataclass(frozen=True, slots=True, kw_only=True)
class Cert:
    """One entry of a view change's P or Q set: ``seq`` prepared (P) or pre-prepared (Q)
    with ``digest`` in ``view``; Q entries carry the batch so a new primary can
    re-issue it."""

    seq: int
    view: int
    digest: bytes
    batch: Batch = ()


@message(166)
@dataclass(frozen=True, slots=True, kw_only=True)
class ViewChange:
    """Replica ``replica`` moves to ``view``: its stable checkpoint (with 2f+1 signed
    checkpoint messages as proof) and what it prepared (P) and pre-prepared (Q) above it."""

    view: int
    replica: str
    stable_seq: int
    stable_digest: bytes
    proof: tuple[Checkpoint, ...]
    prepared: tuple[Cert, ...]
    preprepared: tuple[Cert, ...]
    sig: Any = None

    def summary(self) -> str:
        p = ",".join(str(c.seq) for c in self.prepared) or "-"
        return f"ViewChange v={self.view} h={self.stable_seq} P=[{p}]"


@message(167)
@dataclass(frozen=True, slots=True, kw_only=True)
class NewView:
    """The new primary's proof that ``view`` starts: the view changes it chose from.
    Every backup recomputes the same decisions from them (``selection.py``)."""

    view: int
    replica: str
    view_changes: tuple[ViewChange, ...]
    sig: Any = None

    def summary(self) -> str:
        who = ",".join(sorted(v.replica for v in self.view_changes))
        return f"NewView v={self.view} from=[{who}]"


@message(168)
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchState:
    """A replica that fell behind a stable checkpoint asks for the state at ``seq``."""

    seq: int
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"FetchState n={self.seq}"


@message(169)
@dataclass(frozen=True, slots=True, kw_only=True)
class StateReply:
    """The state (a state machine snapshot) at checkpoint ``seq``; the receiver checks it
    against the digest its stable-checkpoint proof certifies."""

    seq: int
    snapshot: Any
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"StateReply n={self.seq}"


@message(170)
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadOnly:
    """A replica hands a read-only request a client sent it to every other replica, each
    of which answers it from its executed state (TOCS §5.1.3: the client multicasts it;
    ours reach one replica first)."""

    request: ClientRequest
    replica: str
    mac: bytes = b""

    def summary(self) -> str:
        return f"ReadOnly {self.request.client_id}#{self.request.seq}"
