"""Peer TLS that authenticates: who may be on the other end, and the channel binding.

Rules this module owns:
  * TLS between peers always verifies both directions: the acceptor requires a client
    certificate, the dialer verifies the acceptor's, each against the cluster CA
    (``tls.ca``) or the pinned certificates (``tls.pinned``, certificate files).  With
    pinning, the certificate shown must also be one of the pinned ones exactly
    (its SHA-256), not merely one they signed.  No trust anchor = a config error;
  * the HMAC handshake (``handshake.py``, version 2) covers a channel binding made of
    ``tls-unique`` (Python's ``ssl`` offers no RFC 5705 exporter; under TLS 1.3 with
    OpenSSL 3 tls-unique is the client's Finished message, the same on both ends of one
    connection and different on every other) and the SHA-256 of both certificates *as
    each side sees them*.  A relay terminates TLS on each leg: its legs have different
    tls-unique values and show its certificate, not the real peers', so the proofs it
    forwards do not verify, even when its certificate is signed by the cluster CA.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from consensuskit.server.handshake import HandshakeError

FINGERPRINT_BYTES = 32
BINDING_LABEL = b"tls-unique"


def der_fingerprint(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def certificate_fingerprint(path: Path | str) -> bytes:
    """SHA-256 of the first certificate (DER) in a PEM file; ValueError if there is none."""
    pem = Path(path).read_text(encoding="ascii", errors="replace")
    begin = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ValueError(f"{path}: no PEM certificate")
    return der_fingerprint(ssl.PEM_cert_to_DER_cert(pem[begin : end + len("-----END CERTIFICATE-----")]))


def format_fingerprint(fingerprint: bytes) -> str:
    return "sha256:" + fingerprint.hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerIdentity:
    """What the transport needs beyond the SSL contexts: this node's own certificate
    fingerprint (the ``ssl`` module cannot tell us which certificate we showed) and, when
    certificates are pinned, the fingerprints a peer may show."""

    fingerprint: bytes
    pins: frozenset[bytes] | None = None


def channel_binding(ssl_object: ssl.SSLObject | None, identity: PeerIdentity, *, dialer: bool) -> bytes:
    """The bytes both ends of one TLS connection compute alike (see the module rules);
    raises HandshakeError when the peer showed no certificate or one that is not pinned."""
    if ssl_object is None:
        raise HandshakeError("the peer connection is not TLS, but this node requires it")
    peer_der = ssl_object.getpeercert(binary_form=True)
    if not peer_der:
        raise HandshakeError("the peer showed no TLS certificate")
    peer = der_fingerprint(peer_der)
    if identity.pins is not None and peer not in identity.pins:
        raise HandshakeError(f"the peer's certificate {format_fingerprint(peer)} is not pinned")
    unique = ssl_object.get_channel_binding("tls-unique")
    if not unique or len(unique) > 255:
        raise HandshakeError("no tls-unique channel binding for this TLS connection")
    dialer_fp, acceptor_fp = (identity.fingerprint, peer) if dialer else (peer, identity.fingerprint)
    return BINDING_LABEL + bytes([len(unique)]) + unique + dialer_fp + acceptor_fp
