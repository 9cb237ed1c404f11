"""Mutual challenge-response authentication of a peer connection with the cluster secret.

It runs once at the start of every peer connection, before any frame (all integers are
unsigned bytes, nonces and MACs 32 bytes, ``lp(x)`` is ``len(x)`` as one byte then ``x``):

    acceptor -> dialer    HELLO    b"CKIT" | min_version | max_version | acceptor_nonce
    dialer   -> acceptor  PROOF    version | lp(dialer_id) | dialer_nonce | dialer_mac
    acceptor -> dialer    VERDICT  status  [status 0 only: lp(acceptor_id) | acceptor_mac]

    dialer_mac   = HMAC-SHA256(secret, "consensuskit-v1" | "dialer"   | acceptor_nonce
                                       | dialer_nonce | lp(dialer_id))
    acceptor_mac = HMAC-SHA256(secret, "consensuskit-v1" | "acceptor" | acceptor_nonce
                                       | dialer_nonce | lp(dialer_id) | lp(acceptor_id))

Rules this module owns: each side's proof covers a nonce the other side just drew, so a
recorded handshake cannot be replayed; the role label keeps one side's proof from being
reflected back as the other's; ids are length-prefixed so no two field lists concatenate
to the same bytes.

Versions (the HELLO states the range the acceptor speaks, the PROOF the one chosen):

  * version 1, plain TCP: the MACs above, byte for byte as the first release;
  * version 2, over TLS, *channel-bound*: the label is ``"consensuskit-v2"`` and each MAC
    message ends with the channel binding of the TLS connection (``peer_tls.py``:
    tls-unique and both certificates' SHA-256, as each side sees them).  A relay that
    terminates TLS itself sees different values on its two legs, so the proofs it
    forwards fail.  A node offers and accepts exactly one version, the one its
    transport calls for: a TLS node never falls back to the unbound version 1.

The acceptor refuses a dialer whose id it does not know or whose MAC
is wrong; the dialer refuses an acceptor whose MAC is wrong or which is not the node it
meant to reach.  MACs are compared with ``hmac.compare_digest``.  Timeouts are the
caller's job (the whole exchange runs under one deadline).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import os
from collections.abc import Callable

MAGIC = b"CKIT"
PROTOCOL_LABEL = b"consensuskit-v1"
BOUND_LABEL = b"consensuskit-v2"
MIN_VERSION = 1  # the versions this build knows (each node offers one of them)
MAX_VERSION = 2
PLAIN_VERSION = 1  # plain TCP: no channel binding
BOUND_VERSION = 2  # over TLS: the MACs cover the TLS channel binding
NONCE_BYTES = 32
MAC_BYTES = 32
MAX_ID_BYTES = 255


class Verdict(enum.IntEnum):
    ACCEPTED = 0
    BAD_PROOF = 1
    UNKNOWN_PEER = 2
    BAD_VERSION = 3
    MALFORMED = 4


class HandshakeError(Exception):
    """The other side failed authentication or does not speak this handshake.

    ``claimed_id`` is the node id the other side said it was (or, for a dialer, the node
    it was trying to reach), when there is one; it is a claim, not a proven identity.
    """

    def __init__(self, reason: str, *, claimed_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed_id = claimed_id


def node_id_bytes(node_id: str) -> bytes:
    """The wire form of a node id; raises ValueError for ids the handshake cannot carry."""
    raw = node_id.encode("utf-8")
    if not 1 <= len(raw) <= MAX_ID_BYTES:
        raise ValueError(f"node id {node_id!r} must be 1..{MAX_ID_BYTES} bytes of UTF-8")
    return raw


def _lp(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def _version_for(binding: bytes | None) -> int:
    return PLAIN_VERSION if binding is None else BOUND_VERSION


def _label(binding: bytes | None) -> bytes:
    # The binding goes last: every field before it has a fixed length or a length prefix.
    return PROTOCOL_LABEL if binding is None else BOUND_LABEL


def dialer_mac(
    secret: bytes,
    acceptor_nonce: bytes,
    dialer_nonce: bytes,
    dialer_id: bytes,
    binding: bytes | None = None,
) -> bytes:
    message = _label(binding) + b"dialer" + acceptor_nonce + dialer_nonce + _lp(dialer_id) + (binding or b"")
    return hmac.new(secret, message, hashlib.sha256).digest()


def acceptor_mac(
    secret: bytes,
    acceptor_nonce: bytes,
    dialer_nonce: bytes,
    dialer_id: bytes,
    acceptor_id: bytes,
    binding: bytes | None = None,
) -> bytes:
    message = (
        _label(binding)
        + b"acceptor"
        + acceptor_nonce
        + dialer_nonce
        + _lp(dialer_id)
        + _lp(acceptor_id)
        + (binding or b"")
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


async def _read(reader: asyncio.StreamReader, n: int, what: str, claimed_id: str | None = None) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise HandshakeError(
            f"connection closed during the handshake (waiting for {what}, got {len(exc.partial)}/{n} bytes)",
            claimed_id=claimed_id,
        ) from None


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_id: str,
    secret: bytes,
    is_known_peer: Callable[[str], bool],
    random_bytes: Callable[[int], bytes] = os.urandom,
    binding: bytes | None = None,
) -> str:
    """Acceptor side; returns the dialer's authenticated node id or raises HandshakeError.

    ``binding``: the TLS channel binding (``peer_tls.channel_binding``) when the
    connection runs over TLS, which makes this a version-2 handshake; None on plain TCP."""
    own_id = node_id_bytes(node_id)
    own_version = _version_for(binding)
    acceptor_nonce = random_bytes(NONCE_BYTES)
    writer.write(MAGIC + bytes([own_version, own_version]) + acceptor_nonce)
    await writer.drain()

    version, id_length = await _read(reader, 2, "the dialer's proof")
    if version != own_version:
        await _refuse(writer, Verdict.BAD_VERSION)
        raise HandshakeError(f"dialer asked for handshake version {version}, this node speaks {own_version}")
    if id_length == 0:
        await _refuse(writer, Verdict.MALFORMED)
        raise HandshakeError("dialer sent an empty node id")
    rest = await _read(reader, id_length + NONCE_BYTES + MAC_BYTES, "the dialer's proof")
    raw_id = rest[:id_length]
    dialer_nonce = rest[id_length : id_length + NONCE_BYTES]
    mac = rest[id_length + NONCE_BYTES :]
    try:
        dialer_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        await _refuse(writer, Verdict.MALFORMED)
        raise HandshakeError("dialer's node id is not UTF-8") from None

    expected = dialer_mac(secret, acceptor_nonce, dialer_nonce, raw_id, binding)
    proof_ok = hmac.compare_digest(mac, expected)
    if not is_known_peer(dialer_id):
        await _refuse(writer, Verdict.UNKNOWN_PEER)
        proven = "with a valid proof" if proof_ok else "and a wrong proof"
        raise HandshakeError(f"dialer claims node id {dialer_id!r}, which is not a peer ({proven})")
    if not proof_ok:
        await _refuse(writer, Verdict.BAD_PROOF)
        raise HandshakeError(
            f"dialer claiming to be {dialer_id!r} failed the secret check (wrong cluster secret?)",
            claimed_id=dialer_id,
        )

    answer = acceptor_mac(secret, acceptor_nonce, dialer_nonce, raw_id, own_id, binding)
    writer.write(bytes([Verdict.ACCEPTED]) + _lp(own_id) + answer)
    await writer.drain()
    return dialer_id


async def _refuse(writer: asyncio.StreamWriter, verdict: Verdict) -> None:
    """Tell the dialer why, best effort: the connection is closed right after anyway."""
    try:
        writer.write(bytes([verdict]))
        await writer.drain()
    except (ConnectionError, OSError):
        pass


async def dial(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_id: str,
    secret: bytes,
    expected_peer: str,
    random_bytes: Callable[[int], bytes] = os.urandom,
    binding: bytes | None = None,
) -> None:
    """Dialer side; returns once the acceptor has proven it is ``expected_peer``.

    ``binding`` as for ``accept``: the TLS channel binding, or None on plain TCP."""
    own_id = node_id_bytes(node_id)
    hello = await _read(reader, len(MAGIC) + 2 + NONCE_BYTES, "the acceptor's hello", expected_peer)
    if hello[: len(MAGIC)] != MAGIC:
        raise HandshakeError("the acceptor is not a consensuskit peer (bad magic)", claimed_id=expected_peer)
    low, high = hello[len(MAGIC)], hello[len(MAGIC) + 1]
    version = _version_for(binding)
    if not low <= version <= high:
        needs = "a TLS channel-bound" if binding is not None else "the plain-TCP"
        raise HandshakeError(
            f"no common handshake version (acceptor {low}..{high}, "
            f"this node needs {needs} version {version})",
            claimed_id=expected_peer,
        )
    acceptor_nonce = hello[len(MAGIC) + 2 :]
    dialer_nonce = random_bytes(NONCE_BYTES)
    mac = dialer_mac(secret, acceptor_nonce, dialer_nonce, own_id, binding)
    writer.write(bytes([version]) + _lp(own_id) + dialer_nonce + mac)
    await writer.drain()

    (status,) = await _read(reader, 1, "the acceptor's verdict", expected_peer)
    if status != Verdict.ACCEPTED:
        try:
            why = Verdict(status).name.lower().replace("_", " ")
        except ValueError:
            why = f"unknown status {status}"
        raise HandshakeError(f"refused by the acceptor: {why}", claimed_id=expected_peer)
    (id_length,) = await _read(reader, 1, "the acceptor's id", expected_peer)
    rest = await _read(reader, id_length + MAC_BYTES, "the acceptor's proof", expected_peer)
    raw_id, answer = rest[:id_length], rest[id_length:]
    expected = acceptor_mac(secret, acceptor_nonce, dialer_nonce, own_id, raw_id, binding)
    if not hmac.compare_digest(answer, expected):
        raise HandshakeError(
            "the acceptor failed the secret check (wrong cluster secret?)", claimed_id=expected_peer
        )
    if raw_id != node_id_bytes(expected_peer):
        shown = raw_id.decode("utf-8", errors="replace")
        raise HandshakeError(
            f"reached node {shown!r} instead of {expected_peer!r} (stale peer address?)",
            claimed_id=expected_peer,
        )
