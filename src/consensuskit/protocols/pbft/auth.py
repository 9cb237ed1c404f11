"""Authenticators: MACs for the normal case, signatures for proofs (Castro & Liskov §2).

Rules this module owns:
  * a MAC is HMAC-SHA256 over ``messages.payload(msg)`` with the key the two replicas
    share: where the runtime gives each node its own key pair (``Env.node_key`` and
    ``public_keys``, core/keys.py: the server with a ``keys_file``) the pair's X25519
    secret (``keys.pair_secret``), which no third replica can compute; elsewhere derived
    from a shared secret and the pair's ids (deterministic, so the simulator replays a
    seed exactly; every member could compute every pair's key);
  * a signature goes through a small ``Signer`` interface chosen by the ``signatures``
    option: ``token`` (the simulator's unforgeable tokens: an object only the signer's
    own ``TokenSigner`` can mint, checked by identity against the keyring of the run) or
    ``ed25519`` (``cryptography``; real mode, where messages cross a wire: each node's
    own key pair where the runtime gives one, so a member can sign only as itself; else
    keys derived from a shared secret, which prove nothing against a member);
  * verification never raises: anything malformed is simply not authentic.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, Protocol

# "auto": Ed25519 where the runtime offers a cluster key (the server), tokens elsewhere
# (the simulator: cheap, and unforgeable by construction).
SIGNATURE_KINDS = ("auto", "token", "ed25519")


def pair_key(secret: bytes, a: str, b: str) -> bytes:
    lo, hi = sorted((a, b))
    return hashlib.sha256(secret + b"/mac/" + lo.encode() + b"/" + hi.encode()).digest()


class Macs:
    """The MAC keys one replica shares with every other (and with itself)."""

    __slots__ = ("_keys",)

    def __init__(self, node_id: str, members: Iterable[str], secret: bytes) -> None:
        self._keys = {peer: pair_key(secret, node_id, peer) for peer in members}

    @classmethod
    def from_node_keys(
        cls, node_id: str, members: Iterable[str], node_key: bytes, public_keys: dict[str, dict[str, bytes]]
    ) -> Macs:
        """Pairwise keys from this node's own key and the others' public keys."""
        from consensuskit.core.keys import pair_secret

        macs = cls(node_id, (), b"")
        macs._keys = {
            peer: pair_secret(node_key, node_id, peer, _public(public_keys, peer), b"pbft-mac")
            for peer in members
        }
        return macs

    def mac(self, peer: str, data: bytes) -> bytes:
        key = self._keys.get(peer)
        if key is None:
            return b""
        return hmac.new(key, data, hashlib.sha256).digest()[:16]

    def check(self, peer: str, data: bytes, mac: Any) -> bool:
        if not isinstance(mac, bytes) or peer not in self._keys:
            return False
        return hmac.compare_digest(self.mac(peer, data), mac)


class Signer(Protocol):
    def sign(self, data: bytes) -> Any: ...

    def verify(self, signer: str, data: bytes, sig: Any) -> bool: ...


class Token:
    """A simulated signature: unforgeable because verification compares ``seal`` by
    identity with the one object the keyring gave the signer."""

    __slots__ = ("digest", "seal", "signer")

    def __init__(self, signer: str, digest: bytes, seal: object) -> None:
        self.signer = signer
        self.digest = digest
        self.seal = seal

    def __repr__(self) -> str:
        return f"sig:{self.signer}"

    def summary(self) -> str:
        return repr(self)


class TokenKeyring:
    """One per set of nodes that verify each other's tokens (one protocol spec)."""

    __slots__ = ("_seals",)

    def __init__(self) -> None:
        self._seals: dict[str, object] = {}

    def seal(self, node_id: str) -> object:
        seal = self._seals.get(node_id)
        if seal is None:
            seal = self._seals[node_id] = object()
        return seal

    def signer(self, node_id: str) -> TokenSigner:
        return TokenSigner(self, node_id)


class TokenSigner:
    __slots__ = ("_keyring", "_seal", "node_id")
    source = "token"

    def __init__(self, keyring: TokenKeyring, node_id: str) -> None:
        self._keyring = keyring
        self.node_id = node_id
        self._seal = keyring.seal(node_id)

    def sign(self, data: bytes) -> Token:
        return Token(self.node_id, hashlib.sha256(data).digest(), self._seal)

    def verify(self, signer: str, data: bytes, sig: Any) -> bool:
        return (
            isinstance(sig, Token)
            and sig.signer == signer
            and sig.seal is self._keyring.seal(signer)
            and sig.digest == hashlib.sha256(data).digest()
        )


class Ed25519Signer:
    """Real signatures: each node's own key pair (``from_node_keys``), or, without one,
    keys derived from the cluster secret and the node id (every replica can then derive
    every other's private key: no proof against a member; see README.md)."""

    __slots__ = ("_private", "_public", "node_id", "source")

    @classmethod
    def from_node_keys(
        cls, node_id: str, members: Iterable[str], node_key: bytes, public_keys: dict[str, dict[str, bytes]]
    ) -> Ed25519Signer:
        """This node's own signing key; every member's published verifying key."""
        from consensuskit.core.keys import signing_key, verifying_key

        signer = cls.__new__(cls)
        signer.source = "ed25519-node-keys"
        signer.node_id = node_id
        signer._private = signing_key(node_key)
        signer._public = {peer: verifying_key(peer, _public(public_keys, peer)) for peer in members}
        return signer

    def __init__(self, node_id: str, members: Iterable[str], secret: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        def key(peer: str) -> Any:
            seed = hashlib.sha256(secret + b"/ed25519/" + peer.encode()).digest()
            return Ed25519PrivateKey.from_private_bytes(seed)

        self.source = "ed25519-shared-secret"
        self.node_id = node_id
        self._private = key(node_id)
        self._public = {peer: key(peer).public_key() for peer in members}

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def verify(self, signer: str, data: bytes, sig: Any) -> bool:
        public = self._public.get(signer)
        if public is None or not isinstance(sig, bytes):
            return False
        try:
            public.verify(sig, data)
        except Exception:  # InvalidSignature, or a malformed one
            return False
        return True


def _public(public_keys: dict[str, dict[str, bytes]], peer: str) -> dict[str, bytes]:
    keys = public_keys.get(peer)
    if keys is None:
        raise ValueError(f"no public keys for member {peer}")
    return keys
