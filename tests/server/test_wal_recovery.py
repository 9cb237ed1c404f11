"""DiskStorage recovery from damaged directories (docs/wal.md, "Recovery rules").

A torn final record of the last segment (file cut short, or a sector that reads as
zeros) is discarded; every other damage refuses to open with CorruptLogError naming the
file and the byte offset, and leaves the directory untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.protocols.raft.messages import HardState
from consensuskit.server.wal import CorruptLogError, DiskStorage
from consensuskit.server.wal_format import FILE_HEADER, SECTOR, Record, scan_segment

pytestmark = pytest.mark.timeout(120)

OPTIONS: dict[str, Any] = {"fsync": False, "inline_limit": 200}


def snapshot_of(s: DiskStorage) -> tuple[Any, ...]:
    return s.log_first(), s.log_last(), s.log_records(), s.get("hard"), s.get("snap")


def records(path: Path) -> list[Record]:
    number = int(path.name[4:20], 16)
    return scan_segment(path, path.read_bytes(), number).records


def directory_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "LOCK"}


def build(directory: Path, batches: int = 6, segment_bytes: int = 64 * 2**20) -> list[tuple[Any, ...]]:
    """A storage after ``batches`` synced batches; returns the state after each one.

    The last batch mixes a truncate, an append of a record spanning several sectors and a
    put, so "all of it or none of it" is visible.
    """
    s = DiskStorage.open(directory, segment_bytes=segment_bytes, **OPTIONS)
    states = [snapshot_of(s)]
    for i in range(1, batches):
        s.log_append([("entry", i, b"x" * 16)])
        s.put("hard", HardState(term=i, voted_for=None))
        if i == 3:
            s.put("snap", b"s" * 500)  # a file of its own
        s.sync()
        states.append(snapshot_of(s))
    s.log_truncate_from(s.log_last())
    s.log_append([("big", n, bytes(range(1, 256)) * 3) for n in range(3)])
    s.put("hard", HardState(term=99, voted_for="z"))
    s.sync()
    states.append(snapshot_of(s))
    s.close()
    return states


def last_segment(directory: Path) -> Path:
    return sorted(directory.glob("wal-*.log"))[-1]


def open_and_close(directory: Path) -> tuple[tuple[Any, ...], list[str]]:
    s = DiskStorage.open(directory, **OPTIONS)
    try:
        return snapshot_of(s), s.recovery_notes
    finally:
        s.close()


def expect_corrupt(directory: Path, path: Path, offset: int, match: str) -> CorruptLogError:
    before = directory_bytes(directory)
    with pytest.raises(CorruptLogError, match=match) as info:
        DiskStorage.open(directory, **OPTIONS)
    err = info.value
    assert (err.path, err.offset) == (path, offset)
    assert str(path) in str(err) and f"byte {offset}" in str(err)
    assert directory_bytes(directory) == before, "a refused open must change nothing"
    return err


def flip(path: Path, offset: int, mask: int = 0x10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------- torn tails
def test_tail_cut_at_every_byte_of_the_last_record_recovers_the_previous_batch(tmp_path: Path):
    directory = tmp_path / "n"
    states = build(directory)
    segment = last_segment(directory)
    data = segment.read_bytes()
    start = records(segment)[-1].offset
    assert len(data) - start > 2 * SECTOR, "the last record should span several sectors"
    for cut in range(start, len(data)):
        segment.write_bytes(data[:cut])
        recovered, notes = open_and_close(directory)
        assert recovered == states[-2], f"cut at {cut}"
        if cut == start:
            assert notes == []
        else:
            assert len(notes) == 1 and f"torn final record at byte {start}" in notes[0], notes
            assert segment.stat().st_size == start  # the torn bytes are gone for good
    segment.write_bytes(data)
    assert open_and_close(directory)[0] == states[-1]


def test_a_power_cut_anywhere_in_unsynced_batches_keeps_a_prefix_of_whole_batches(tmp_path: Path):
    """Several batches written by one complete() and cut at any byte, or zero-filled from
    any sector boundary on (unwritten blocks read back as zeros): recovery keeps exactly
    the batches whose record is whole, each one all or nothing."""
    directory = tmp_path / "n"
    s = DiskStorage.open(directory, **OPTIONS)
    s.log_append([("synced", 0)])
    s.sync()
    synced_size = last_segment(directory).stat().st_size
    states = [snapshot_of(s)]
    for i in range(1, 6):
        s.log_truncate_from(s.log_last())
        s.log_append([("batch", i, b"p" * 150 * i), ("more", i)])
        s.put("hard", HardState(term=i, voted_for=None))
        last_batch = s.begin_sync()
        states.append(snapshot_of(s))
    last_batch.complete()  # writes all five records, one fsync
    s.close()
    segment = last_segment(directory)
    data = segment.read_bytes()
    ends = [r.offset for r in records(segment)[1:]] + [len(data)]
    ends = ends[ends.index(synced_size) :]
    assert len(ends) == 6 and len(data) - synced_size > 4 * SECTOR
    # Every byte near a record boundary (headers), every 5th elsewhere, every sector start.
    near_ends = {end + d for end in ends for d in range(-8, 24)}
    sectors = set(range(0, len(data), SECTOR))
    cuts = sorted(
        c
        for c in {*range(synced_size, len(data) + 1, 5), *near_ends, *sectors}
        if synced_size <= c <= len(data)
    )
    for cut in cuts:
        whole = sum(1 for end in ends[1:] if end <= cut)
        damaged = [data[:cut]]
        if cut % SECTOR == 0:
            damaged.append(data[:cut] + bytes(len(data) - cut))
        for version in damaged:
            segment.write_bytes(version)
            recovered, _ = open_and_close(directory)
            assert recovered == states[whole], f"cut at {cut}"


def test_after_discarding_a_torn_tail_new_writes_follow_the_good_records(tmp_path: Path):
    directory = tmp_path / "n"
    states = build(directory)
    segment = last_segment(directory)
    segment.write_bytes(segment.read_bytes()[:-100])
    s = DiskStorage.open(directory, **OPTIONS)
    assert snapshot_of(s) == states[-2]
    s.log_append(["after"])
    s.sync()
    expected = snapshot_of(s)
    s.close()
    assert open_and_close(directory) == (expected, [])


def test_a_zeroed_sector_in_the_final_record_is_a_torn_write(tmp_path: Path):
    directory = tmp_path / "n"
    states = build(directory)
    segment = last_segment(directory)
    data = bytearray(segment.read_bytes())
    start = records(segment)[-1].offset
    sector = (start // SECTOR + 1) * SECTOR  # a whole sector inside the last record
    data[sector : sector + SECTOR] = bytes(SECTOR)
    segment.write_bytes(bytes(data))
    recovered, notes = open_and_close(directory)
    assert recovered == states[-2]
    assert "reads as zeros" in notes[0]


def test_zeros_after_the_last_record_are_discarded(tmp_path: Path):
    directory = tmp_path / "n"
    states = build(directory)
    segment = last_segment(directory)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(bytes(4096))
    recovered, notes = open_and_close(directory)
    assert recovered == states[-1]
    assert f"torn final record at byte {size}" in notes[0]


def test_a_few_stray_bytes_after_the_last_record_are_a_cut_short_header(tmp_path: Path):
    directory = tmp_path / "n"
    states = build(directory)
    segment = last_segment(directory)
    with segment.open("ab") as f:
        f.write(b"\xff" * 7)
    recovered, notes = open_and_close(directory)
    assert recovered == states[-1]
    assert "record header cut short (7 bytes)" in notes[0]


def test_garbage_the_size_of_a_header_after_the_last_record_is_corruption(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory)
    segment = last_segment(directory)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(b"\xff" * 40)
    expect_corrupt(directory, segment, size, "record header checksum mismatch")


# ---------------------------------------------------------------------------- bit flips
def test_bit_flip_in_a_middle_record_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory)
    segment = last_segment(directory)
    middle = records(segment)[3]
    flip(segment, middle.offset + 20)
    expect_corrupt(directory, segment, middle.offset, "record checksum mismatch")


def test_bit_flip_in_a_record_header_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory)
    segment = last_segment(directory)
    middle = records(segment)[2]
    flip(segment, middle.offset)  # the length field
    expect_corrupt(directory, segment, middle.offset, "record header checksum mismatch")


def test_bit_flip_in_the_final_record_refuses_to_start(tmp_path: Path):
    """Our rule (as etcd's): a torn write leaves a short file or zeroed sectors, never a
    flipped bit in a whole-length record, so the final record may have been synced and
    dropping it could lose an acknowledged write.  Refuse instead."""
    directory = tmp_path / "n"
    build(directory)
    segment = last_segment(directory)
    final = records(segment)[-1]
    flip(segment, final.offset + 16 + 100)
    expect_corrupt(directory, segment, final.offset, "record checksum mismatch")
    flip(segment, final.offset + 16 + 100)  # undo
    flip(segment, final.offset + 2)  # the final record's length field
    expect_corrupt(directory, segment, final.offset, "record header checksum mismatch")


def test_bit_flip_in_an_earlier_segment_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory, batches=30, segment_bytes=300)
    segments = sorted(directory.glob("wal-*.log"))
    assert len(segments) >= 4
    victim = segments[1]
    record = records(victim)[-1]
    flip(victim, record.offset + 18)
    expect_corrupt(directory, victim, record.offset, "record checksum mismatch")


def test_bad_segment_header_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory)
    segment = last_segment(directory)
    flip(segment, 1)
    expect_corrupt(directory, segment, 0, "not a WAL segment")


def test_cut_in_a_segment_followed_by_others_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory, batches=30, segment_bytes=300)
    victim = sorted(directory.glob("wal-*.log"))[1]
    last = records(victim)[-1]
    victim.write_bytes(victim.read_bytes()[:-5])
    expect_corrupt(directory, victim, last.offset, "in a segment followed by others")


def test_records_lost_at_a_boundary_of_an_earlier_segment_are_caught_by_the_next_state(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory, batches=30, segment_bytes=300)
    segments = sorted(directory.glob("wal-*.log"))
    victim = segments[1]
    victim.write_bytes(victim.read_bytes()[: records(victim)[-1].offset])  # a clean cut
    expect_corrupt(directory, segments[2], 16, "disagrees with the segments before it")


def test_a_missing_middle_segment_with_needed_entries_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory, batches=30, segment_bytes=300)
    segments = sorted(directory.glob("wal-*.log"))
    segments[2].unlink()
    expect_corrupt(directory, segments[3], 16, r"log positions 1\.\.\d+ are in no segment")


def test_a_damaged_or_missing_named_record_file_refuses_to_start(tmp_path: Path):
    directory = tmp_path / "n"
    build(directory)
    (snap_file,) = directory.glob("rec-*.bin")
    flip(snap_file, snap_file.stat().st_size - 3)
    err = expect_corrupt(directory, snap_file, FILE_HEADER.size, "named-record file checksum mismatch")
    assert "rec-" in str(err)
    snap_file.unlink()
    expect_corrupt(directory, snap_file, 0, "referenced by the WAL is missing")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_bit_flip_is_refused_or_only_drops_an_unsynced_looking_tail(tmp_path: Path, data: Any):
    """Never a silently different state: every byte of every segment is checksummed.  The
    one flip recovery accepts is one that leaves a whole sector-piece of the final record
    zeroed (indistinguishable from a torn write); then exactly that batch goes."""
    directory = tmp_path / "fresh"
    shutil.rmtree(directory, ignore_errors=True)
    states = build(directory, batches=10, segment_bytes=600)
    segments = sorted(directory.glob("wal-*.log"))
    victim = data.draw(st.sampled_from(segments), label="segment")
    offset = data.draw(st.integers(0, victim.stat().st_size - 1), label="offset")
    bit = data.draw(st.integers(0, 7), label="bit")
    flip(victim, offset, 1 << bit)
    try:
        recovered, notes = open_and_close(directory)
    except CorruptLogError as err:
        assert err.path == victim
        return
    assert victim == segments[-1] and notes and "reads as zeros" in notes[0]
    assert recovered == states[-2]
