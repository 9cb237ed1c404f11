"""Sealed packets for the membership agent: AES-GCM under one shared 256-bit key.

Rules this module owns:
  * a packet is ``VERSION (1 byte) | nonce (12 bytes) | AES-GCM(ciphertext + tag)``, the
    version byte authenticated as associated data; the plaintext is the msgpack array
    ``[sender, boot, counter, payload]``: the sender's member id, its boot stamp (wall
    clock nanoseconds at start: later boots have larger stamps), a per-boot counter and
    the codec-encoded SWIM message;
  * ``open`` refuses, with a reason it counts: garbage or a packet sealed under another
    key (``undecryptable``), a plaintext of the wrong shape (``malformed``), a replay
    (``replayed``: a boot older than the newest seen from that sender, or a counter
    already seen or older than the 1024 before the newest);
  * a key file holds the key as 64 hex digits (``generate_key``); anything else is a
    one-line ``KeyError``-free ``ValueError``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE = 12
WINDOW = 1024


def generate_key() -> str:
    return os.urandom(32).hex()


def load_key(path: str | Path) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read key file {path}: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"key file {path} must hold 64 hex digits (consensuskit agent-keygen > {path})")
    return key


@dataclass(slots=True)
class _Seen:
    boot: int
    newest: int
    recent: set[int] = field(default_factory=set)


class Keyring:
    def __init__(self, key: bytes, sender: str) -> None:
        self.aead = AESGCM(key)
        self.sender = sender
        self.boot = time.time_ns()
        self.counter = 0
        self.seen: dict[str, _Seen] = {}
        self.dropped: Counter[str] = Counter()

    def seal(self, payload: bytes) -> bytes:
        self.counter += 1
        plain = msgpack.packb([self.sender, self.boot, self.counter, payload], use_bin_type=True)
        nonce = os.urandom(NONCE)
        header = bytes([VERSION])
        return header + nonce + self.aead.encrypt(nonce, plain, header)

    def open(self, packet: bytes) -> tuple[str, bytes] | None:
        """(sender, payload), or None after counting why the packet was refused."""
        if len(packet) < 1 + NONCE + 16 or packet[0] != VERSION:
            self.dropped["undecryptable"] += 1
            return None
        header, nonce, sealed = packet[:1], packet[1 : 1 + NONCE], packet[1 + NONCE :]
        try:
            plain = self.aead.decrypt(nonce, sealed, header)
        except InvalidTag:
            self.dropped["undecryptable"] += 1
            return None
        try:
            sender, boot, counter, payload = msgpack.unpackb(plain, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            self.dropped["malformed"] += 1
            return None
        if not (
            isinstance(sender, str)
            and type(boot) is int
            and type(counter) is int
            and isinstance(payload, bytes)
        ):
            self.dropped["malformed"] += 1
            return None
        if not self._fresh(sender, boot, counter):
            self.dropped["replayed"] += 1
            return None
        return sender, payload

    def _fresh(self, sender: str, boot: int, counter: int) -> bool:
        seen = self.seen.get(sender)
        if seen is None or boot > seen.boot:
            self.seen[sender] = _Seen(boot=boot, newest=counter, recent={counter})
            return True
        if boot < seen.boot or counter in seen.recent or counter <= seen.newest - WINDOW:
            return False
        seen.recent.add(counter)
        if counter > seen.newest:
            seen.newest = counter
            if len(seen.recent) > 2 * WINDOW:
                seen.recent = {c for c in seen.recent if c > counter - WINDOW}
        return True

    def stats(self) -> dict[str, Any]:
        return dict(self.dropped)
