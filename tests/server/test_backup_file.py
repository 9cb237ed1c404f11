"""The backup file (server/backup_file.py): what it holds, etcdctl's length rule, and a
one-line refusal for every way a file can be wrong."""

from __future__ import annotations

import hashlib
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.server.backup_file import BLOCK, DIGEST_BYTES, BackupError, build, parse

HEADER = {
    "service": "kv",
    "protocol": "raft",
    "cluster_id": "c-1",
    "node": "n2",
    "index": 42,
    "taken_at": 1796000000.5,
    "codec": 2,
}


def test_a_file_round_trips_and_satisfies_etcdctls_length_rule() -> None:
    state = b"\x02" + bytes(range(256)) * 3
    data = build(HEADER, state)
    assert len(data) % BLOCK == DIGEST_BYTES  # etcdctl snapshot save's check
    assert data[-DIGEST_BYTES:] == hashlib.sha256(data[:-DIGEST_BYTES]).digest()
    backup = parse(data)
    assert bytes(backup.state) == state
    assert backup.header == {**HEADER, "state_bytes": len(state)}
    assert backup.sha256 == data[-DIGEST_BYTES:].hex() and backup.service == "kv"


def _reframed(header: object, state: bytes = b"\x02\xc0", version: int = 1) -> bytes:
    """A file built by hand (a checksum that matches), for headers build() refuses."""
    packed = msgpack.packb(header, use_bin_type=True)
    body = struct.pack(">8sHI", b"ckbackup", version, len(packed)) + packed + state
    body += bytes(-len(body) % BLOCK)
    return body + hashlib.sha256(body).digest()


GOOD = build(HEADER, b"\x02\xc0")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than any backup"),
        (GOOD[:40], "shorter than any backup"),
        (b"x" * 600, "not a consensuskit backup"),
        (GOOD[:-1], "checksum mismatch"),
        (GOOD[:-33] + b"\x01" + GOOD[-32:], "checksum mismatch"),
        (
            _reframed({**HEADER, "state_bytes": 2}, version=2),
            "format version 2: this release reads version 1 (the file was written by a newer release)",
        ),
        (_reframed([1, 2]), "header is not a map"),
        (_reframed({**HEADER}), "'state_bytes' is missing"),
        (_reframed({**HEADER, "index": "42", "state_bytes": 2}), "'index' is missing or not int"),
        (_reframed({**HEADER, "index": -1, "state_bytes": 2}), "'index' is negative"),
        (_reframed({**HEADER, "state_bytes": 9999}), "does not fit the file"),
        (_reframed({**HEADER, "state_bytes": 1}), "does not fit the file"),  # the rest is not zeros
    ],
    ids=[
        "empty",
        "short",
        "other-magic",
        "truncated",
        "flipped",
        "newer-version",
        "header-list",
        "no-state-length",
        "index-str",
        "index-negative",
        "state-too-long",
        "state-too-short",
    ],
)
def test_every_bad_file_is_one_line_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(BackupError) as info:
        parse(data)
    assert message in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000), st.data())
def test_property_any_flipped_bit_is_refused(state: bytes, data: st.DataObject) -> None:
    good = build(HEADER, state)
    position = data.draw(st.integers(0, len(good) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(good)
    flipped[position] ^= 1 << bit
    with pytest.raises(BackupError):
        parse(bytes(flipped))


def test_build_refuses_a_header_without_the_fields() -> None:
    with pytest.raises(BackupError, match="'service' is missing"):
        build({k: v for k, v in HEADER.items() if k != "service"}, b"")
