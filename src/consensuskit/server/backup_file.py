"""The backup file: one log service's whole state, as ``consensuskit backup save`` (or
``etcdctl snapshot save`` against the etcd service) writes it and ``backup restore``
reads it.

Format, version 1 (all integers big-endian):

    offset  size  field
    0       8     magic b"ckbackup"
    8       2     format version (1)
    10      4     header length H
    14      H     header: a msgpack map (below)
    14+H    S     the state: ``core.messages.encode`` of the state machine's snapshot
    14+H+S  P     zero bytes, P < 512, so the bytes before the checksum are whole
                  512-byte blocks (etcdctl's ``snapshot save`` takes a stream only when
                  its length is 32 more than a multiple of 512: bolt pages and a SHA-256)
    end-32  32    SHA-256 of every byte before it

The header names the ``service`` (a restore refuses another service's backup), and says
where the state came from: ``protocol``, ``cluster_id``, ``node`` (the node asked),
``index`` (the log position the read was served at), ``taken_at`` (Unix seconds),
``state_bytes`` (S) and ``codec`` (the codec version of the state).  A state is a
service's, not a protocol's: a kv backup of a Multi-Paxos cluster restores into Raft.

Rules this module owns:
  * ``parse`` trusts nothing: a short file, another magic, a version this release does
    not read, a header that is not a map of the fields above, a state length or padding
    that does not match, or a checksum that does not, each raise ``BackupError`` with
    one line saying which;
  * a later release reads every earlier version (a new one gets its own parser here).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

MAGIC = b"ckbackup"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")
DIGEST_BYTES = 32
BLOCK = 512
# Header fields and their types; every one is required.
HEADER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "service": str,
    "protocol": str,
    "cluster_id": str,
    "node": str,
    "index": int,
    "taken_at": (int, float),
    "state_bytes": int,
    "codec": int,
}
MAX_HEADER_BYTES = 64 * 1024


class BackupError(ValueError):
    """Not a backup this release can read (one line saying why)."""


@dataclass(frozen=True, slots=True)
class Backup:
    header: dict[str, Any]
    state: memoryview  # the encoded snapshot, not copied out of the file's bytes
    sha256: str  # the file's checksum, hex

    @property
    def data(self) -> bytes:
        """The whole file, as ``parse`` was given it."""
        return bytes(self.state.obj)  # type: ignore[arg-type]

    @property
    def service(self) -> str:
        return str(self.header["service"])


def build(header: dict[str, Any], state: bytes) -> bytes:
    """The file's bytes for ``state`` (an encoded snapshot) and ``header`` (the fields of
    HEADER_FIELDS but ``state_bytes``, which is filled in)."""
    fields = {**header, "state_bytes": len(state)}
    _check_header(fields)
    packed = msgpack.packb(fields, use_bin_type=True)
    digest = hashlib.sha256()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(packed))
    padding = bytes(-(len(prefix) + len(packed) + len(state)) % BLOCK)
    for part in (prefix, packed, state, padding):
        digest.update(part)
    return b"".join((prefix, packed, state, padding, digest.digest()))


def parse(data: bytes | bytearray | memoryview) -> Backup:
    """The backup in ``data``; BackupError (see the module rules)."""
    view = memoryview(data)
    if len(view) < _PREFIX.size + DIGEST_BYTES:
        raise BackupError(f"not a consensuskit backup: {len(view)} bytes is shorter than any backup")
    magic, version, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise BackupError("not a consensuskit backup (it does not start with b'ckbackup')")
    if version != FORMAT_VERSION:
        newer = " (the file was written by a newer release)" if version > FORMAT_VERSION else ""
        raise BackupError(
            f"backup format version {version}: this release reads version {FORMAT_VERSION}{newer}"
        )
    body_end = len(view) - DIGEST_BYTES
    actual = hashlib.sha256(view[:body_end]).digest()
    if actual != bytes(view[body_end:]):
        raise BackupError("backup checksum mismatch: the file is truncated or corrupt")
    start = _PREFIX.size
    if header_len > MAX_HEADER_BYTES or start + header_len > body_end:
        raise BackupError(f"backup header length {header_len} runs past the file")
    try:
        header = msgpack.unpackb(view[start : start + header_len], raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise BackupError(f"backup header does not decode: {exc}") from None
    _check_header(header)
    state_end = start + header_len + header["state_bytes"]
    padding = view[state_end:body_end] if state_end <= body_end else None
    if padding is None or len(padding) >= BLOCK or body_end % BLOCK or any(padding):
        raise BackupError(
            f"backup state of {header['state_bytes']} bytes (as its header says) does not fit the file"
        )
    state = view[start + header_len : state_end]
    return Backup(header=header, state=state, sha256=actual.hex())


def _check_header(header: Any) -> None:
    if not isinstance(header, dict):
        raise BackupError("backup header is not a map")
    for name, kind in HEADER_FIELDS.items():
        value = header.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BackupError(f"backup header: {name!r} is missing or not {_kind_name(kind)}")
        if isinstance(value, int) and value < 0:
            raise BackupError(f"backup header: {name!r} is negative")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
