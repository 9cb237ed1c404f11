"""The one interface between a protocol node and the world.

A protocol node is a plain object that reacts to three inputs — ``on_message``,
``on_timer`` and ``on_request`` — and produces effects only through the ``Env`` it was
given.  The simulator and the real server are two implementations of ``Env``.

Rules the runtime (not the protocol) enforces:
  * durability barrier: everything a handler sends or delivers is released only after
    the storage writes made so far are durable (persist -> send -> apply);
  * timers fire by the node's own clock (``now()``), which may be skewed or drifting;
  * ``rng`` is the only source of randomness, seeded by the runtime.

Optional attributes a runtime may offer (read with ``getattr(env, name, default)``):
  * ``cluster_key`` (bytes): a secret every node of the cluster shares, for protocol-level
    authentication (MACs, signing keys).  The server derives it from the cluster secret
    (never the secret itself, which guards the peer handshake); the simulator offers
    none, so a protocol falls back to its deterministic test keys there.
  * ``node_key`` (bytes) and ``public_keys`` (node id -> ``{"ed25519": bytes, "x25519":
    bytes}``): this node's own secret key and every member's public keys (core/keys.py),
    for a protocol that must prove to a third node who signed (Byzantine fault
    tolerance), and for keys two nodes share alone (``keys.pair_secret``).  The server
    offers them when its config names a ``keys_file``; the simulator offers none.
"""

from __future__ import annotations

import random
from typing import Any, Protocol, runtime_checkable

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.storage import Storage

NodeId = str


class Env(Protocol):
    """Effects available to a protocol node."""

    node_id: NodeId
    rng: random.Random

    @property
    def storage(self) -> Storage:
        """The node's durable storage (read-only here so a runtime may hold a subclass)."""
        ...

    def now(self) -> float:
        """The node's own clock in seconds (virtual in the simulator, monotonic for real)."""
        ...

    def send(self, dst: NodeId, msg: Any) -> None:
        """Queue ``msg`` for ``dst``; released once prior storage writes are durable."""
        ...

    def set_timer(self, key: str, delay: float) -> None:
        """(Re)arm the timer ``key`` to fire after ``delay`` seconds of the node's clock."""
        ...

    def cancel_timer(self, key: str) -> None:
        """Disarm ``key``; a no-op if it is not armed."""
        ...

    def deliver(self, response: ClientResponse) -> None:
        """Answer a client request (released after the durability barrier, like sends)."""
        ...

    def record(self, kind: str, **fields: Any) -> None:
        """Note a protocol event (role/term change, commit, apply) in the trace.

        Observational only: runtimes may drop it; protocols must not depend on it.
        """
        ...


@runtime_checkable
class ProtocolNode(Protocol):
    """The node contract every protocol implements."""

    def on_start(self) -> None:
        """Called once after construction (fresh or after a restart from storage)."""
        ...

    def on_message(self, src: NodeId, msg: Any) -> None: ...

    def on_timer(self, key: str) -> None: ...

    def on_request(self, request: ClientRequest) -> None: ...
