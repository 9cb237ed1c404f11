"""Rebuilding DiskStorage's state from its data directory.

Rules this module owns (the user-facing statement is in docs/wal.md):
- Segments are replayed in number order from the oldest of the newest consecutive run;
  older segments before a gap are leftovers of an interrupted clean-up and are removed.
- Each segment opens with a STATE record.  The first one replayed is the base (log
  positions it names but no remaining segment holds are *missing*); every later one must
  agree with the replay so far, which catches a segment lost from the middle.
- Only the last segment may end in a torn record: it and every byte after it are
  discarded (it was never synced: a completed fsync would have made it whole, and
  nothing after it can have been synced before it).  Anything else that fails a check,
  and a checksum-valid record whose contents make no sense, is CorruptLogError.
- At the end no position between log_first and log_last may be missing.
- Nothing on disk is changed until every check has passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from consensuskit.core.messages import CodecError, decode
from consensuskit.server.wal_format import (
    FILE_PREFIX,
    FILE_SUFFIX,
    IDENTITY_NAME,
    LOCK_NAME,
    NODE_KEY_NAME,
    OP_APPEND,
    OP_COMPACT,
    OP_PUT,
    OP_PUT_FILE,
    OP_TRUNCATE,
    RECORD_BATCH,
    RECORD_STATE,
    SEGMENT_HEADER,
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    TMP_SUFFIX,
    CorruptLogError,
    Record,
    file_name,
    parse_number,
    read_named_file,
    scan_segment,
    segment_name,
)

NamedForm = tuple[int, Any]  # (OP_PUT, encoded value) or (OP_PUT_FILE, generation)


@dataclass(slots=True)
class _Chunk:
    """Positions ``start .. start+count-1`` hold ``decode(blob)[skip : skip+count]``;
    ``blob`` None means missing: named by a STATE record, held by no remaining segment."""

    start: int
    count: int
    skip: int
    blob: bytes | None
    path: Path
    offset: int


@dataclass(slots=True)
class SegmentInfo:
    number: int
    path: Path
    # Highest log position any record in this segment (its STATE included) covers: once
    # log_first is above it, the segment holds nothing recovery needs.
    max_position: int


@dataclass(slots=True)
class Recovered:
    first: int
    records: list[Any]
    values: dict[str, Any]
    forms: dict[str, NamedForm]
    segments: list[SegmentInfo]
    tail_size: int  # bytes of the last segment that recovery kept
    next_generation: int
    notes: list[str] = field(default_factory=list)


class _Bad(Exception):
    """A checksum-valid record whose contents are wrong (re-raised with its location)."""


def list_directory(directory: Path) -> tuple[dict[int, str], dict[int, str], list[str], list[str]]:
    """(segments by number, named-record files by generation, tmp files, unknown names)."""
    segments: dict[int, str] = {}
    files: dict[int, str] = {}
    tmps: list[str] = []
    unknown: list[str] = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(TMP_SUFFIX):
            tmps.append(name)
        elif (number := parse_number(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)) is not None:
            segments[number] = name
        elif (number := parse_number(name, FILE_PREFIX, FILE_SUFFIX)) is not None:
            files[number] = name
        elif name not in (LOCK_NAME, IDENTITY_NAME, NODE_KEY_NAME):
            unknown.append(name)
    return segments, files, tmps, unknown


def recover(directory: Path, *, fsync: bool) -> Recovered:
    """Replay the segments of an existing data directory (it must hold at least one)."""
    segment_names, file_names, tmps, unknown = list_directory(directory)
    numbers = sorted(segment_names)
    start = len(numbers) - 1
    while start > 0 and numbers[start - 1] == numbers[start] - 1:
        start -= 1
    stale, run = numbers[:start], numbers[start:]

    replay = _Replay()
    infos: list[SegmentInfo] = []
    torn: tuple[Path, int, str, int] | None = None
    tail_size = 0
    for i, number in enumerate(run):
        path = directory / segment_name(number)
        data = path.read_bytes()
        scan = scan_segment(path, data, number)
        last = i == len(run) - 1
        if scan.torn_at is not None and not last:
            raise CorruptLogError(path, scan.torn_at, f"{scan.torn_reason}, in a segment followed by others")
        records = scan.records
        if not records or records[0].offset != SEGMENT_HEADER.size or records[0].record_type != RECORD_STATE:
            where = scan.torn_at if not records and scan.torn_at is not None else SEGMENT_HEADER.size
            raise CorruptLogError(path, where, "segment does not start with a STATE record")
        replay.state(path, records[0], base=i == 0)
        for record in records[1:]:
            if record.record_type != RECORD_BATCH:
                raise CorruptLogError(path, record.offset, "STATE record after the start of a segment")
            replay.batch(path, record)
        infos.append(SegmentInfo(number, path, replay.segment_max))
        if scan.torn_at is not None:
            torn = (path, scan.torn_at, scan.torn_reason, len(data))
            tail_size = scan.torn_at
        elif last:
            tail_size = len(data)

    missing = [c for c in replay.chunks if c.blob is None]
    if missing:
        lo, hi = missing[0].start, missing[-1].start + missing[-1].count - 1
        raise CorruptLogError(
            infos[0].path,
            SEGMENT_HEADER.size,
            f"log positions {lo}..{hi} are in no segment (is a segment file missing?)",
        )
    records: list[Any] = []
    for chunk in replay.chunks:
        records.extend(_decode_chunk(chunk))

    values: dict[str, Any] = {}
    for key, (op, arg) in replay.forms.items():
        if op == OP_PUT:
            path, offset = replay.origins[key]
            values[key] = _decode_or_corrupt(path, offset, arg, f"named record {key!r}")
            continue
        path = directory / file_name(arg)
        stored_key, blob = read_named_file(path, arg)
        if stored_key != key:
            raise CorruptLogError(path, 0, f"file holds record {stored_key!r}, the WAL expects {key!r}")
        values[key] = _decode_or_corrupt(path, 0, blob, f"named record {key!r}")

    live = {generation for op, generation in replay.forms.values() if op == OP_PUT_FILE}
    notes: list[str] = []
    # Every check passed: now tidy the directory.
    if torn is not None:
        path, offset, reason, size = torn
        _truncate(path, offset, fsync)
        notes.append(
            f"{path}: discarded a torn final record at byte {offset} ({reason}); {size - offset} bytes"
        )
    for number in stale:
        os.unlink(directory / segment_names[number])
        notes.append(f"removed {segment_names[number]}: left before a gap by an interrupted clean-up")
    for generation, name in sorted(file_names.items()):
        if generation not in live:
            os.unlink(directory / name)
            notes.append(f"removed {name}: no longer referenced by the WAL")
    for name in tmps:
        os.unlink(directory / name)
        notes.append(f"removed {name}: an unfinished write")
    if unknown:
        notes.append(f"ignored files that are not ours: {', '.join(unknown)}")
    next_generation = max([*file_names, *live, 0]) + 1
    return Recovered(
        first=replay.first,
        records=records,
        values=values,
        forms=replay.forms,
        segments=infos,
        tail_size=tail_size,
        next_generation=next_generation,
        notes=notes,
    )


def _truncate(path: Path, size: int, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _decode_or_corrupt(path: Path, offset: int, blob: Any, what: str) -> Any:
    if not isinstance(blob, bytes):
        raise CorruptLogError(path, offset, f"{what}: expected encoded bytes, found {type(blob).__name__}")
    try:
        return decode(blob)
    except CodecError as exc:
        raise CorruptLogError(path, offset, f"{what} does not decode: {exc}") from None


def _decode_chunk(chunk: _Chunk) -> tuple[Any, ...]:
    records = _decode_or_corrupt(chunk.path, chunk.offset, chunk.blob, f"log records at {chunk.start}")
    if not isinstance(records, tuple) or len(records) < chunk.skip + chunk.count:
        raise CorruptLogError(
            chunk.path, chunk.offset, f"log records at {chunk.start} are not an array of the recorded length"
        )
    return records[chunk.skip : chunk.skip + chunk.count]


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(f"{what} is {value!r}, expected a non-negative integer")
    return value


class _Replay:
    """The log and named records as the records replayed so far leave them."""

    __slots__ = ("chunks", "first", "forms", "origins", "segment_max")

    def __init__(self) -> None:
        self.first = 1
        self.chunks: list[_Chunk] = []  # in position order, contiguous from first
        self.forms: dict[str, NamedForm] = {}
        self.origins: dict[str, tuple[Path, int]] = {}  # where each inline form was written
        self.segment_max = 0

    @property
    def last(self) -> int:
        if not self.chunks:
            return self.first - 1
        tail = self.chunks[-1]
        return tail.start + tail.count - 1

    def state(self, path: Path, record: Record, *, base: bool) -> None:
        try:
            first, last, forms = self._parse_state(record.payload)
        except _Bad as exc:
            raise CorruptLogError(path, record.offset, f"STATE record: {exc}") from None
        if base:
            self.first = first
            count = last - first + 1
            self.chunks = [_Chunk(first, count, 0, None, path, record.offset)] if count else []
            self.forms = forms
            self.origins = {key: (path, record.offset) for key in forms}
        elif (first, last, forms) != (self.first, self.last, self.forms):
            differ = sorted(k for k in forms.keys() | self.forms.keys() if forms.get(k) != self.forms.get(k))
            raise CorruptLogError(
                path,
                record.offset,
                f"STATE record (log {first}..{last}) disagrees with the segments before it "
                f"(log {self.first}..{self.last}); named records that differ: {differ}",
            )
        self.segment_max = last

    @staticmethod
    def _parse_state(payload: bytes) -> tuple[int, int, dict[str, NamedForm]]:
        try:
            state = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises assorted errors on garbage
            raise _Bad(f"does not parse: {type(exc).__name__}: {exc}") from None
        if not isinstance(state, dict) or set(state) != {"first", "last", "named"}:
            raise _Bad("expected a map of first, last, named")
        first, last = _int(state["first"], "first"), _int(state["last"], "last")
        if last < first - 1:
            raise _Bad(f"last {last} is below first {first} - 1")
        named = state["named"]
        if not isinstance(named, dict):
            raise _Bad("named is not a map")
        forms: dict[str, NamedForm] = {}
        for key, form in named.items():
            if not isinstance(key, str) or not isinstance(form, list) or len(form) != 2:
                raise _Bad(f"malformed named record {key!r}")
            op, arg = form
            if op == OP_PUT and isinstance(arg, bytes):
                forms[key] = (OP_PUT, arg)
            elif op == OP_PUT_FILE:
                forms[key] = (OP_PUT_FILE, _int(arg, f"generation of {key!r}"))
            else:
                raise _Bad(f"malformed named record {key!r}")
        return first, last, forms

    def batch(self, path: Path, record: Record) -> None:
        try:
            ops = msgpack.unpackb(record.payload, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises assorted errors on garbage
            raise CorruptLogError(
                path, record.offset, f"batch record does not parse: {type(exc).__name__}: {exc}"
            ) from None
        try:
            if not isinstance(ops, list) or not ops:
                raise _Bad("expected a non-empty array of operations")
            for op in ops:
                self._apply(path, record.offset, op)
        except _Bad as exc:
            raise CorruptLogError(path, record.offset, f"batch record: {exc}") from None

    def _apply(self, path: Path, offset: int, op: Any) -> None:
        if not isinstance(op, list) or not op:
            raise _Bad(f"malformed operation {op!r:.80}")
        code = op[0]
        if code == OP_APPEND and len(op) == 4 and isinstance(op[3], bytes):
            position = _int(op[1], "append position")
            count = _int(op[2], "append count")
            if position != self.last + 1 or count == 0:
                raise _Bad(f"append of {count} at position {position}, the log ends at {self.last}")
            self.chunks.append(_Chunk(position, count, 0, op[3], path, offset))
            self.segment_max = max(self.segment_max, self.last)
        elif code == OP_TRUNCATE and len(op) == 2:
            position = _int(op[1], "truncate position")
            if position < self.first:
                raise _Bad(f"truncate at {position}, before the log start {self.first}")
            chunks = self.chunks
            while chunks and chunks[-1].start >= position:
                chunks.pop()
            if chunks:
                tail = chunks[-1]
                tail.count = min(tail.count, position - tail.start)
        elif code == OP_COMPACT and len(op) == 2:
            position = _int(op[1], "compact position")
            if position <= self.first:
                if not self.chunks and position >= 1:
                    self.first = position  # an empty log restarted earlier (core/storage.py)
                return
            chunks = self.chunks
            drop = 0
            while drop < len(chunks) and chunks[drop].start + chunks[drop].count <= position:
                drop += 1
            del chunks[:drop]
            if chunks and chunks[0].start < position:
                head, cut = chunks[0], position - chunks[0].start
                head.start, head.skip, head.count = position, head.skip + cut, head.count - cut
            self.first = position
        elif code == OP_PUT and len(op) == 3 and isinstance(op[1], str) and isinstance(op[2], bytes):
            self.forms[op[1]] = (OP_PUT, op[2])
            self.origins[op[1]] = (path, offset)
        elif code == OP_PUT_FILE and len(op) == 3 and isinstance(op[1], str):
            self.forms[op[1]] = (OP_PUT_FILE, _int(op[2], "generation"))
        else:
            raise _Bad(f"malformed operation {op!r:.80}")
