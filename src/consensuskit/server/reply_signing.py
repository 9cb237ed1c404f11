"""Client answers signed with the node's own key (core/keys.py, "signed answers").

Rules this module owns:
  * a node signs its client answers only when it has a node key (``keys_file``) and its
    protocol's clients need a reply quorum (``ProtocolSpec.reply_quorum``: nodes that
    may lie); any other node signs nothing (no cost);
  * every answer of the HTTP API is signed, errors included, on both fronts (aiohttp's
    middleware and the fast path), over ``keys.reply_message(request id, status, body)``,
    in the header ``X-Node-Signature: NODE_ID HEX``.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core import keys


class ReplySigner:
    __slots__ = ("_key", "node_id")

    def __init__(self, node_id: str, node_key: bytes) -> None:
        self.node_id = node_id
        self._key = keys.signing_key(node_key)

    def header(self, request_id: str | None, status: int, body: bytes) -> str:
        sig = self._key.sign(keys.reply_message(request_id or "", status, body))
        return f"{self.node_id} {sig.hex()}"


def reply_signer(node_id: str, node_key: bytes | None, spec: Any) -> ReplySigner | None:
    if node_key is None or getattr(spec, "reply_quorum", None) is None:
        return None
    return ReplySigner(node_id, node_key)
