"""Signatures for SM(m): a ``Signer`` interface, real Ed25519 and simulated tokens.

Rules this module owns (LSP82 §4, assumption A4):
  * (a) a loyal general's signature cannot be forged: a ``Signer`` signs only as the
    generals whose keys it holds (a loyal general: itself; the traitors, who may
    collude, share theirs), and ``sign`` for any other id raises ``KeyError`` (local
    misuse, a bug in the caller);
  * (b) anyone can verify anyone's signature: ``verify`` needs only public material;
  * ``forge`` is what a traitor can do with a key it lacks: bytes that ``verify``
    rejects (an unforgeable scheme makes every forgery one of these);
  * keys come from a seed, so the same seed signs the same bytes (Ed25519 is
    deterministic), which keeps runs reproducible;
  * ``Ed25519Keys`` is the real scheme (``cryptography``); ``TokenKeys`` is the
    simulator's: a keyed BLAKE2b tag whose secret never leaves the authority, with a
    CPU cost per operation charged to the signer (``cpu_seconds``) so a simulated node
    can spend that time before its messages leave;
  * the payload a signer signs binds the instance, the value and every earlier
    signature (``payload``): "v:0:j1" is j1's signature on "v:0".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgpack

# Measured on this project's machine (research/wave2.md §4.2: Ed25519 sign 40-45 µs,
# verify 126 µs with cryptography 48, Python 3.11): the default simulated costs.
SIGN_COST = 45e-6
VERIFY_COST = 126e-6


def payload(instance: int, value: str, signers: Sequence[str], signatures: Sequence[bytes]) -> bytes:
    """What the next signer signs: the value and the chain of signatures so far."""
    return msgpack.packb([instance, value, list(signers), list(signatures)], use_bin_type=True)


class Signer(Protocol):
    """What a general holds: its own key (a traitor: every traitor's), everyone's public."""

    scheme: str
    cpu_seconds: float  # CPU time the operations so far cost (0 for the real scheme)

    def can_sign(self, signer: str) -> bool: ...

    def sign(self, signer: str, data: bytes) -> bytes: ...

    def verify(self, signer: str, data: bytes, signature: bytes) -> bool: ...

    def forge(self, signer: str, data: bytes) -> bytes: ...


class Keys(Protocol):
    """Every general's keys; hands each general the ``Signer`` it may hold."""

    scheme: str

    def signer(self, holders: Iterable[str]) -> Signer: ...


def _forgery(signer: str, data: bytes) -> bytes:
    # A plausible-looking but wrong signature: the hash of what was meant to be signed.
    return hashlib.sha512(b"forged|" + signer.encode() + b"|" + data).digest()


# ---------------------------------------------------------------------- Ed25519
class Ed25519Keys:
    """Real Ed25519 keys for ``generals``, derived from ``seed``."""

    scheme = "ed25519"

    def __init__(self, generals: Iterable[str], seed: int | str = 0) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._private = {
            g: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"ed25519|{seed}|{g}".encode()).digest())
            for g in generals
        }
        self._public = {g: key.public_key() for g, key in self._private.items()}

    def signer(self, holders: Iterable[str]) -> Ed25519Signer:
        return Ed25519Signer({g: self._private[g] for g in holders}, self._public)


class Ed25519Signer:
    scheme = "ed25519"

    def __init__(self, private: dict[str, object], public: dict[str, object]) -> None:
        self._private = private
        self._public = public
        self.cpu_seconds = 0.0

    def can_sign(self, signer: str) -> bool:
        return signer in self._private

    def sign(self, signer: str, data: bytes) -> bytes:
        if signer not in self._private:
            raise KeyError(f"no key for {signer!r}: only a forgery can stand for it")
        return self._private[signer].sign(data)  # type: ignore[attr-defined, no-any-return]

    def verify(self, signer: str, data: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = self._public.get(signer)
        if key is None:
            return False
        try:
            key.verify(signature, data)  # type: ignore[attr-defined]
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def forge(self, signer: str, data: bytes) -> bytes:
        return _forgery(signer, data)


# ---------------------------------------------------------------------- tokens
class TokenKeys:
    """Simulated unforgeable tokens: a BLAKE2b tag under a per-general secret that only
    this authority knows.  ``sign_cost``/``verify_cost`` seconds of CPU per operation."""

    scheme = "token"

    def __init__(
        self,
        generals: Iterable[str],
        seed: int | str = 0,
        *,
        sign_cost: float = SIGN_COST,
        verify_cost: float = VERIFY_COST,
    ) -> None:
        self._secrets = {g: hashlib.sha256(f"token|{seed}|{g}".encode()).digest() for g in generals}
        self.sign_cost = sign_cost
        self.verify_cost = verify_cost

    def _tag(self, signer: str, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._secrets[signer], digest_size=32).digest()

    def signer(self, holders: Iterable[str]) -> TokenSigner:
        return TokenSigner(self, frozenset(holders))


class TokenSigner:
    scheme = "token"

    def __init__(self, keys: TokenKeys, holders: frozenset[str]) -> None:
        self._keys = keys
        self._holders = holders
        self.cpu_seconds = 0.0

    def can_sign(self, signer: str) -> bool:
        return signer in self._holders

    def sign(self, signer: str, data: bytes) -> bytes:
        if signer not in self._holders:
            raise KeyError(f"no key for {signer!r}: only a forgery can stand for it")
        self.cpu_seconds += self._keys.sign_cost
        return self._keys._tag(signer, data)

    def verify(self, signer: str, data: bytes, signature: bytes) -> bool:
        self.cpu_seconds += self._keys.verify_cost
        if signer not in self._keys._secrets or type(signature) is not bytes:
            return False
        return hmac.compare_digest(self._keys._tag(signer, data), signature)

    def forge(self, signer: str, data: bytes) -> bytes:
        return _forgery(signer, data)[:32]


SCHEMES = ("ed25519", "token")


def make_keys(scheme: str, generals: Iterable[str], seed: int | str = 0) -> Keys:
    """``ed25519`` (real) or ``token`` (simulated); ValueError naming both otherwise."""
    if scheme == "ed25519":
        return Ed25519Keys(generals, seed)
    if scheme == "token":
        return TokenKeys(generals, seed)
    raise ValueError(f"unknown signature scheme {scheme!r}; valid: ed25519, token")
