"""A node's own key pair: what lets a protocol prove to a third node who sent a message,
which a secret every member shares (``Env.cluster_key``) cannot -- any member could sign
as any other with it.  The derivations live here, once, because the runtime that makes
and publishes the keys and the protocol that uses them must agree on them.

Rules this module owns:
  * a node key is 32 random bytes (``new_node_key``); its Ed25519 signing key is that
    seed itself (RFC 8032 private key) and its X25519 key-agreement key is SHA-256 over a
    domain tag and the seed, so one secret stands for both;
  * a node's public keys are ``{"ed25519": 32 bytes, "x25519": 32 bytes}``
    (``public_keys``); a cluster's are one such map per node id (the runtime's
    ``Env.public_keys``);
  * ``pair_secret`` is the key two nodes share and nobody else can compute: HKDF-SHA256
    over their X25519 shared secret, its info naming the pair (ids sorted) and a purpose,
    so both ends derive the same bytes and each purpose gets its own key;
  * a malformed public key is a ``ValueError`` with one line naming the node.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

KEY_BYTES = 32
_X25519_TAG = b"consensuskit x25519 v1/"


def new_node_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes) or len(seed) != KEY_BYTES:
        raise ValueError(f"a node key is {KEY_BYTES} bytes")
    return seed


def signing_key(seed: bytes) -> Any:
    """The Ed25519 private key of the node key ``seed``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(_check_seed(seed))


def agreement_key(seed: bytes) -> Any:
    """The X25519 private key of the node key ``seed``."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(hashlib.sha256(_X25519_TAG + _check_seed(seed)).digest())


def _raw(public: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_keys(seed: bytes) -> dict[str, bytes]:
    return {"ed25519": _raw(signing_key(seed).public_key()), "x25519": _raw(agreement_key(seed).public_key())}


def verifying_key(node: str, keys: dict[str, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(keys["ed25519"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"node {node}: not an Ed25519 public key") from None


def pair_secret(seed: bytes, me: str, peer: str, peer_keys: dict[str, bytes], purpose: bytes) -> bytes:
    """The 32 bytes ``me`` and ``peer`` share (see the module rules); with itself a node
    shares a key derived from its own seed alone."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    try:
        public = X25519PublicKey.from_public_bytes(peer_keys["x25519"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"node {peer}: not an X25519 public key") from None
    shared = agreement_key(seed).exchange(public)
    lo, hi = sorted((me, peer))
    info = b"consensuskit pair v1/" + purpose + b"/" + lo.encode() + b"/" + hi.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


# ---------------------------------------------------------------------- signed answers
# A node whose clients need a reply quorum signs each client answer with its own key
# (server/reply_signing.py); the client counts answers by the verified signer, not by the
# endpoint that gave them.  The header is "NODE_ID HEX_SIGNATURE".
REPLY_SIGNATURE_HEADER = "X-Node-Signature"


def reply_message(request_id: str, status: int, body: bytes) -> bytes:
    """What a node signs for an answer: the request id (empty without one), the HTTP
    status and the body's bytes."""
    # surrogateescape: a header's undecodable bytes (a request refused at the edge) must
    # not make signing its refusal fail.
    rid = request_id.encode("utf-8", "surrogateescape")
    return b"consensuskit reply v1\n%s\n%d\n%s" % (rid, status, body)


def verify_reply(
    header: str | None, request_id: str, status: int, body: bytes, public_keys: dict[str, bytes]
) -> str | None:
    """The node id whose valid signature ``header`` carries for this answer, else None
    (never raises).  ``public_keys``: node id -> raw Ed25519 public key."""
    if not header:
        return None
    node, _, sig = header.strip().partition(" ")
    public = public_keys.get(node)
    if public is None:
        return None
    try:
        key = verifying_key(node, {"ed25519": public})
        key.verify(bytes.fromhex(sig), reply_message(request_id, status, body))
    except Exception:  # InvalidSignature, bad hex, a malformed key
        return None
    return node
