"""The WAL's bytes on disk: segment files, framed records, named-record files.

Rules this module owns (docs/wal.md has the picture):
- A segment file is a 16-byte header (magic, segment number) then records back to back.
- A record is a 16-byte header (payload length, type, payload checksum, header checksum)
  then the payload padded with zeros to a multiple of 8 bytes; the payload checksum
  covers the padding too, so no byte of a segment goes unchecked.
- Reading a record either yields it, or classifies the failure as *torn* (the shape an
  interrupted, never-synced write leaves: the file ends inside the record, or a whole
  disk sector of it reads as zeros) or *corrupt* (anything else: a flipped bit, a bad
  header, garbage).  Only the caller knows whether a torn record may be discarded.
- A named-record file holds one value under one generation number, with its own checksum.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SEGMENT_MAGIC = b"ckwal\x00v1"
SEGMENT_HEADER = struct.Struct("<8sQ")  # magic, segment number
RECORD_HEADER = struct.Struct("<IB3xII")  # payload length, type, payload crc, header crc
RECORD_ALIGN = 8
SECTOR = 512  # the unit a torn write loses (etcd's minSectorSize)

RECORD_STATE = 1  # named records and log bounds at the start of a segment
RECORD_BATCH = 2  # one sync batch of writes
RECORD_TYPES = (RECORD_STATE, RECORD_BATCH)

# A BATCH payload is a msgpack array of operations, applied in order; values are
# consensuskit.core.messages.encode() bytes.  A STATE payload is a msgpack map
# {"first": int, "last": int, "named": {key: [OP_PUT, bytes] | [OP_PUT_FILE, generation]}}.
OP_APPEND = 1  # [1, first_position, count, encode(list_of_count_records)]
OP_TRUNCATE = 2  # [2, position]
OP_COMPACT = 3  # [3, position]
OP_PUT = 4  # [4, key, encode(value)]
OP_PUT_FILE = 5  # [5, key, generation]: the value is in file_name(generation)

FILE_MAGIC = b"ckrec\x00v1"
FILE_HEADER = struct.Struct("<8sQIIH")  # magic, generation, payload length, crc, key length

SEGMENT_PREFIX = "wal-"
SEGMENT_SUFFIX = ".log"
FILE_PREFIX = "rec-"
FILE_SUFFIX = ".bin"
TMP_SUFFIX = ".tmp"
LOCK_NAME = "LOCK"
# Which cluster and node the directory belongs to (server/identity.py); not the WAL's.
IDENTITY_NAME = "identity.json"
# The node's own secret key (server/node_keys.py); not the WAL's either.
NODE_KEY_NAME = "node.key"

_ZEROS = bytes(SECTOR)


class CorruptLogError(Exception):
    """The data directory holds bytes that are not what this storage wrote.

    The node must not start: names the file, the byte offset and what is wrong.
    """

    def __init__(self, path: Path | str, offset: int, what: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.what = what
        super().__init__(f"{self.path}: byte {offset}: {what}")


def segment_name(number: int) -> str:
    return f"{SEGMENT_PREFIX}{number:016x}{SEGMENT_SUFFIX}"


def file_name(generation: int) -> str:
    return f"{FILE_PREFIX}{generation:016x}{FILE_SUFFIX}"


def parse_number(name: str, prefix: str, suffix: str) -> int | None:
    """The number in ``<prefix><16 hex digits><suffix>``, or None for any other name."""
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix) : len(name) - len(suffix)]
    if len(digits) != 16:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def segment_header(number: int) -> bytes:
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, number)


MAX_PAYLOAD = 2**32 - 1 - RECORD_ALIGN


def frame_record(record_type: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a WAL record holds at most {MAX_PAYLOAD} bytes, this batch has {len(payload)}")
    padding = -len(payload) % RECORD_ALIGN
    body = payload + bytes(padding) if padding else payload
    head = struct.pack("<IB3xI", len(payload), record_type, zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    record_type: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """Every intact record, and where (and why) the first torn record starts, if any."""

    records: list[Record]
    torn_at: int | None = None
    torn_reason: str = ""


def scan_segment(path: Path, data: bytes, number: int) -> SegmentScan:
    """Read the records of one segment; raises CorruptLogError on anything not torn."""
    if len(data) < SEGMENT_HEADER.size:
        raise CorruptLogError(path, 0, f"segment header cut short ({len(data)} bytes)")
    magic, stored_number = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptLogError(path, 0, f"not a WAL segment (magic {magic!r})")
    if stored_number != number:
        raise CorruptLogError(path, 0, f"segment header says number {stored_number}, file name says {number}")
    records: list[Record] = []
    offset = SEGMENT_HEADER.size
    size = len(data)
    while offset < size:
        remaining = size - offset
        if remaining < RECORD_HEADER.size:
            return SegmentScan(records, offset, f"record header cut short ({remaining} bytes)")
        length, record_type, body_crc, head_crc = RECORD_HEADER.unpack_from(data, offset)
        head_end = offset + RECORD_HEADER.size
        if zlib.crc32(data[offset : head_end - 4]) != head_crc:
            if _zero_chunk(data, offset, head_end):
                return SegmentScan(records, offset, "record header reads as zeros")
            raise CorruptLogError(path, offset, "record header checksum mismatch")
        if record_type not in RECORD_TYPES:
            raise CorruptLogError(path, offset, f"unknown record type {record_type}")
        end = head_end + length + (-length % RECORD_ALIGN)
        if end > size:
            return SegmentScan(
                records, offset, f"record of {length} bytes runs past the end of the file ({size} bytes)"
            )
        if zlib.crc32(data[head_end:end]) != body_crc:
            if _zero_chunk(data, head_end, end):
                return SegmentScan(records, offset, "record has a sector that reads as zeros")
            raise CorruptLogError(path, offset, f"record checksum mismatch ({length}-byte payload)")
        records.append(Record(offset, record_type, data[head_end : head_end + length]))
        offset = end
    return SegmentScan(records)


def _zero_chunk(data: bytes, start: int, end: int) -> bool:
    """Whether some piece of ``data[start:end]`` that begins on a sector boundary (or at
    ``start``) and runs to the next boundary (or ``end``) is all zeros: the mark of a
    sector the disk never wrote.  Pieces are at least 8 bytes: records and sectors are
    8-byte aligned."""
    piece_start = start
    while piece_start < end:
        piece_end = min(end, (piece_start // SECTOR + 1) * SECTOR)
        if data[piece_start:piece_end] == _ZEROS[: piece_end - piece_start]:
            return True
        piece_start = piece_end
    return False


def file_header(generation: int, key: bytes, value: bytes) -> bytes:
    crc = zlib.crc32(value, zlib.crc32(key))
    return FILE_HEADER.pack(FILE_MAGIC, generation, len(value), crc, len(key))


def read_named_file(path: Path, generation: int) -> tuple[str, bytes]:
    """The key and encoded value in a named-record file; CorruptLogError if it is not whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptLogError(path, 0, "named-record file referenced by the WAL is missing") from None
    if len(data) < FILE_HEADER.size:
        raise CorruptLogError(path, 0, f"named-record file header cut short ({len(data)} bytes)")
    magic, stored_generation, length, crc, key_length = FILE_HEADER.unpack_from(data, 0)
    if magic != FILE_MAGIC:
        raise CorruptLogError(path, 0, f"not a named-record file (magic {magic!r})")
    if stored_generation != generation:
        raise CorruptLogError(path, 8, f"file says generation {stored_generation}, name says {generation}")
    key_end = FILE_HEADER.size + key_length
    if len(data) != key_end + length:
        raise CorruptLogError(
            path, FILE_HEADER.size, f"expected {key_end + length} bytes, the file holds {len(data)}"
        )
    key, value = data[FILE_HEADER.size : key_end], data[key_end:]
    if zlib.crc32(value, zlib.crc32(key)) != crc:
        raise CorruptLogError(path, FILE_HEADER.size, "named-record file checksum mismatch")
    try:
        return key.decode(), value
    except UnicodeDecodeError:
        raise CorruptLogError(path, FILE_HEADER.size, "named-record key is not UTF-8") from None


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
