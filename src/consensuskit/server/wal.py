"""DiskStorage: the Storage protocol on disk, with group commit.

Rules this module owns (docs/wal.md has the on-disk format and the recovery rules):
- A write changes the in-memory working view at once (reads never touch the disk) and is
  queued, already encoded, for the next batch.  No WAL byte reaches the OS before a batch
  completes, so unsynced writes are exactly what a crash loses.  The one early write is a
  large named record's file, streamed to a ``*.tmp`` as it is encoded (no copy of a
  100 MB snapshot in memory); it is referenced by nothing until its batch is durable, and
  open() removes any temp file it finds.
- A large named record whose class is registered streamed (``core.messages``: a whole
  state, immutable once made: a snapshot) is encoded only as far as ``inline_limit`` by
  put(); the rest of its encoding, and its temp file, are written by its batch's
  ``complete`` (the sync worker thread), so the event loop never holds a snapshot's
  encoding (a million keys: about 0.6 s).  An error in that encoding fails the storage.
- ``begin_sync`` (event-loop thread, cheap) seals the queued writes into a SyncBatch.
  ``SyncBatch.complete`` (any thread) writes every sealed batch up to and including its
  own, oldest first, then makes them durable with one fsync: group commit.
- A batch is one WAL record, so a crash keeps all of a batch or none of it: the
  simulator's model (sim/storage.py), which protocol code may rely on.
- A named record whose encoding exceeds ``inline_limit`` (a snapshot) goes to a file of
  its own, written as a temp file by ``put`` and made durable (fsync, rename, fsync dir)
  before the WAL record that refers to it; the file it replaces is removed only once
  that reference is durable.
- Segments roll over at a batch boundary once they reach ``segment_bytes``; each new one
  opens with a STATE record (named records, log bounds), so every segment wholly before
  ``log_first()`` can be, and is, deleted.
- After any I/O error the storage is failed: later syncs raise StorageFailedError (an
  fsync error cannot be retried safely: the kernel may have dropped the dirty pages).
  Running out of file descriptors is kept from being one: the storage opens its files
  with a descriptor of its own in reserve (``_FileOpener``; server/open_files.py caps
  client connections below the process's limit).
- A compaction drops its log records from the working view at once, but frees them
  ``RELEASE_PER_SYNC`` at a time, one slice per ``begin_sync`` (the event loop's batch
  boundary): a compaction after a snapshot of a large state drops 100,000 entries, half
  a million objects, and freeing them in one go held the loop 55-105 ms (Raft at 400k-
  570k keys under load, 2026-12-05), a write stall as long as a collector pause.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from consensuskit.core.messages import encode, is_streamed, iter_encode
from consensuskit.core.storage import MemoryStorage
from consensuskit.server.wal_format import (
    FILE_HEADER,
    FILE_MAGIC,
    LOCK_NAME,
    OP_APPEND,
    OP_COMPACT,
    OP_PUT,
    OP_PUT_FILE,
    OP_TRUNCATE,
    RECORD_BATCH,
    RECORD_STATE,
    TMP_SUFFIX,
    CorruptLogError,
    file_name,
    frame_record,
    segment_header,
    segment_name,
    write_all,
)
from consensuskit.server.wal_recovery import NamedForm, SegmentInfo, list_directory, recover

__all__ = ["CorruptLogError", "DirectoryInUseError", "DiskStorage", "StorageFailedError", "SyncBatch"]

DEFAULT_SEGMENT_BYTES = 64 * 2**20
DEFAULT_INLINE_LIMIT = 64 * 2**10
# What the named-record file header can say (u16 key length, u32 value length).
MAX_FILE_KEY = 2**16 - 1
MAX_FILE_VALUE = 2**32 - 1

_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
# Dropped log records freed per begin_sync (the module rules): about a millisecond.
RELEASE_PER_SYNC = 2048


class StorageFailedError(RuntimeError):
    """A write or fsync failed earlier; the node must stop (restart recovers the synced state)."""


class DirectoryInUseError(RuntimeError):
    """Another DiskStorage (in this or another process) holds the data directory."""


@dataclass(slots=True)
class WalStats:
    """Counters for metrics; updated by whichever thread completes a batch."""

    fsync_count: int = 0
    bytes_written: int = 0
    last_fsync_seconds: float = 0.0
    fsync_seconds_total: float = 0.0
    batches: int = 0
    segments_created: int = 0
    segments_deleted: int = 0


@dataclass(slots=True)
class _FileWrite:
    """A named record's file: written whole to ``tmp`` by put(), or, for a streamed
    value, still to be written from ``pieces`` (the rest of its encoding) by complete()."""

    generation: int
    tmp: Path
    size: int  # bytes in the file, header included (0 until written)
    key: str = ""
    pieces: Iterator[bytes] | None = None


class SyncBatch:
    """The writes made before one ``begin_sync``; durable once ``complete`` returns."""

    __slots__ = ("_storage", "done", "files", "first", "forms", "last", "max_appended", "ops", "seq")

    def __init__(
        self,
        storage: DiskStorage,
        seq: int,
        ops: list[list[Any]],
        files: list[_FileWrite],
        forms: dict[str, NamedForm] | None,
        first: int,
        last: int,
        max_appended: int,
    ) -> None:
        self._storage = storage
        self.seq = seq
        self.ops = ops
        self.files = files
        self.forms = forms  # the named records after this batch (None when empty)
        self.first = first
        self.last = last
        self.max_appended = max_appended
        self.done = False

    @property
    def empty(self) -> bool:
        return not self.ops

    @property
    def nbytes(self) -> int:
        """Bytes of WAL records this batch appends, or ``sys.maxsize`` when it also writes
        a named-record file (a snapshot: its fsync may take long)."""
        if self.files:
            return sys.maxsize
        return sum(len(op[-1]) for op in self.ops if type(op[-1]) is bytes)

    def complete(self) -> None:
        """Write and fsync this batch and every earlier one; safe in a worker thread."""
        if not self.done:
            self._storage._complete(self)


class DiskStorage:
    """Durable ``Storage``: a write-ahead log of segment files in one directory."""

    __slots__ = (
        "_closed",
        "_dir_fd",
        "_directory",
        "_failed",
        "_files",
        "_forms",
        "_fsync",
        "_graveyard",
        "_inline_limit",
        "_io_lock",
        "_live_files",
        "_lock_fd",
        "_max_appended",
        "_next_generation",
        "_next_seq",
        "_opener",
        "_ops",
        "_queue",
        "_queue_lock",
        "_segment_bytes",
        "_segment_fd",
        "_segment_size",
        "_segments",
        "_working",
        "get",
        "log_first",
        "log_last",
        "log_records",
        "recovery_notes",
        "stats",
    )

    def __init__(self) -> None:
        raise TypeError("use DiskStorage.open(directory)")

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> DiskStorage:
        """Create ``directory`` if new, else recover it (see docs/wal.md for the rules).

        Raises CorruptLogError when the directory holds damage recovery must not paper
        over (or is not a data directory at all), DirectoryInUseError when another
        DiskStorage has it open.
        """
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if inline_limit < 0:
            raise ValueError(f"inline_limit must not be negative, got {inline_limit}")
        directory = Path(directory)
        new_directory = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        if new_directory and fsync:
            fsync_directory(directory.parent)
        self = object.__new__(cls)
        self._directory = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._inline_limit = inline_limit
        self._lock_fd = _lock_directory(directory)
        self._opener = _FileOpener()
        self._dir_fd = -1
        self._segment_fd = -1
        try:
            self._dir_fd = os.open(directory, os.O_RDONLY)
            self._load()
        except BaseException:
            self._release_fds()
            raise
        return self

    def _load(self) -> None:
        directory = self._directory
        segments, files, tmps, unknown = list_directory(directory)
        self.stats = WalStats()
        self._closed = False
        self._failed: BaseException | None = None
        self._io_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: deque[SyncBatch] = deque()
        self._ops: list[list[Any]] = []
        self._files: list[_FileWrite] = []
        self._max_appended = 0
        self._next_seq = 1
        self._graveyard: list[list[Any]] = []  # compacted records not yet freed
        if segments:
            recovered = recover(directory, fsync=self._fsync)
            working = MemoryStorage(recovered.first, log=recovered.records, records=recovered.values)
            self._forms = recovered.forms
            self._segments: list[SegmentInfo] = recovered.segments
            self._next_generation = recovered.next_generation
            self.recovery_notes: list[str] = recovered.notes
            tail = self._segments[-1]
            self._segment_fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)
            self._segment_size = recovered.tail_size
        else:
            if files or unknown:
                # Refuse to start, as for corruption: the wrong directory, or one whose
                # segments were lost; writing a fresh log into it would hide either.
                names = ", ".join(sorted([*files.values(), *unknown])[:5])
                raise CorruptLogError(
                    directory,
                    0,
                    f"not empty but holds no WAL segment ({names}): "
                    "not a consensuskit data directory, refusing to write into it",
                )
            for name in tmps:
                os.unlink(directory / name)
            working = MemoryStorage()
            self._forms = {}
            self._segments = []
            self._next_generation = 1
            self.recovery_notes = []
            self._segment_size = 0
            self._roll(1, 1, {}, 0)
        self._live_files = {key: arg for key, (op, arg) in self._forms.items() if op == OP_PUT_FILE}
        self._working = working
        self.get: Callable[..., Any] = working.get
        self.log_first: Callable[[], int] = working.log_first
        self.log_last: Callable[[], int] = working.log_last
        self.log_records: Callable[[], list[Any]] = working.log_records

    @property
    def directory(self) -> Path:
        return self._directory

    def is_empty(self) -> bool:
        """No named record and no log record: nothing was ever written (or all of it is
        gone), e.g. a directory whose first start crashed at once."""
        return not self._forms and not self._ops and self.log_last() < self.log_first()

    # ------------------------------------------------------------ Storage: writes
    def put(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"record key must be a str, got {type(key).__name__}")
        self._check_open()
        # Raises before anything changes, the temp file of a large value included; a
        # large streamed value is encoded here only up to the inline limit (module rules).
        pieces = iter_encode(value)
        head: list[bytes] = []
        size = 0
        for piece in pieces:
            head.append(piece)
            size += len(piece)
            if size > self._inline_limit:
                break
        else:
            blob = b"".join(head)
            self._working.put(key, value)
            self._ops.append([OP_PUT, key, blob])
            self._forms[key] = (OP_PUT, blob)
            return
        generation = self._next_generation
        tmp = self._directory / (file_name(generation) + TMP_SUFFIX)
        rest = itertools.chain(head, pieces)
        if is_streamed(value):
            _check_file_key(key)  # raises before anything changes
            written = _FileWrite(generation, tmp, 0, key, rest)
        else:
            written = _FileWrite(generation, tmp, self._write_temp_file(tmp, generation, key, rest))
        self._next_generation += 1
        self._working.put(key, value)
        self._files.append(written)
        self._ops.append([OP_PUT_FILE, key, generation])
        self._forms[key] = (OP_PUT_FILE, generation)

    def _write_temp_file(self, tmp: Path, generation: int, key: str, pieces: Iterable[bytes]) -> int:
        """Stream an encoding into ``tmp``, the temp file of named-record file
        ``generation``; return the file's size.  On any error the temp file is gone and
        the error raised."""
        key_bytes = _check_file_key(key)
        fd = self._opener.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            # The header needs the length and checksum: zeros until they are known.  A
            # crash meanwhile leaves only a temp file, which open() removes.
            write_all(fd, bytes(FILE_HEADER.size) + key_bytes)
            crc = zlib.crc32(key_bytes)
            length = 0
            for piece in pieces:
                write_all(fd, piece)
                crc = zlib.crc32(piece, crc)
                length += len(piece)
            if length > MAX_FILE_VALUE:
                raise ValueError(f"a named record holds at most {MAX_FILE_VALUE} bytes, got {length}")
            header = FILE_HEADER.pack(FILE_MAGIC, generation, length, crc, len(key_bytes))
            if os.pwrite(fd, header, 0) != len(header):  # 26 bytes at offset 0: never short in practice
                raise OSError(f"{tmp}: short write of the header")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return FILE_HEADER.size + len(key_bytes) + length

    def log_append(self, records: list[Any]) -> None:
        if not records:
            return
        self._check_open()
        records = list(records)
        blob = encode(records)  # raises before anything changes
        working = self._working
        position = working.log_last() + 1
        working.log_append(records)
        self._ops.append([OP_APPEND, position, len(records), blob])
        self._max_appended = position + len(records) - 1

    def log_truncate_from(self, position: int) -> None:
        self._check_open()
        working = self._working
        last = working.log_last()
        working.log_truncate_from(position)  # raises before a position below the start
        if position <= last:
            self._ops.append([OP_TRUNCATE, position])

    def log_compact_to(self, position: int) -> None:
        self._check_open()
        working = self._working
        first = working.log_first()
        dropped = working.log_detach_to(position)  # MemoryStorage owns the rule (core/storage.py)
        if dropped:
            self._graveyard.append(dropped)
        if working.log_first() != first:  # logged only when it moved the start
            self._ops.append([OP_COMPACT, position])

    def _free_dropped(self) -> None:
        """Free up to RELEASE_PER_SYNC compacted records (the module rules)."""
        graveyard = self._graveyard
        budget = RELEASE_PER_SYNC
        while graveyard and budget > 0:
            records = graveyard[-1]
            n = min(budget, len(records))
            del records[len(records) - n :]  # from the end: no move of what stays
            budget -= n
            if not records:
                graveyard.pop()

    # ------------------------------------------------------------------- syncing
    def begin_sync(self) -> SyncBatch:
        """Seal every write made so far into a batch (event-loop thread; does no I/O)."""
        self._check_open()
        if self._failed is not None:
            raise StorageFailedError(f"{self._directory}: storage failed earlier") from self._failed
        if self._graveyard:
            self._free_dropped()
        ops = self._ops
        if not ops:
            return SyncBatch(self, self._next_seq - 1, ops, [], None, 0, 0, 0)
        working = self._working
        batch = SyncBatch(
            self,
            self._next_seq,
            ops,
            self._files,
            dict(self._forms),
            working.log_first(),
            working.log_last(),
            self._max_appended,
        )
        self._next_seq += 1
        self._ops = []
        self._files = []
        self._max_appended = 0
        with self._queue_lock:
            self._queue.append(batch)
        return batch

    def sync(self) -> None:
        """Make every write so far durable."""
        self.begin_sync().complete()

    def _complete(self, batch: SyncBatch) -> None:
        with self._io_lock:
            if batch.done:
                return  # a later batch's completion wrote it
            if self._failed is not None:
                raise StorageFailedError(f"{self._directory}: storage failed earlier") from self._failed
            if self._closed:
                raise ValueError(f"{self._directory}: storage is closed")
            with self._queue_lock:
                sealed: list[SyncBatch] = []
                while self._queue and self._queue[0].seq <= batch.seq:
                    sealed.append(self._queue.popleft())
            if not sealed:
                batch.done = True
                return
            try:
                self._write(sealed)
            except BaseException as exc:
                self._failed = exc
                raise
            for done in sealed:
                done.done = True
            batch.done = True

    def _write(self, sealed: list[SyncBatch]) -> None:
        """Under the io lock: files, then WAL records, one fsync, then tidy up."""
        stats = self.stats
        files = [f for b in sealed for f in b.files]
        if files:
            for f in files:
                self._write_named_file(f)
            if self._fsync:
                self._timed_fsync(self._dir_fd, os.fsync)
        data = b"".join(frame_record(RECORD_BATCH, msgpack.packb(b.ops, use_bin_type=True)) for b in sealed)
        write_all(self._segment_fd, data)
        self._segment_size += len(data)
        stats.bytes_written += len(data)
        stats.batches += len(sealed)
        if self._fsync:
            self._timed_fsync(self._segment_fd, _datasync)
        current = self._segments[-1]
        for b in sealed:
            current.max_position = max(current.max_position, b.max_appended)
        self._drop_replaced_files(sealed)
        newest = sealed[-1]
        assert newest.forms is not None
        if self._segment_size >= self._segment_bytes:
            self._roll(current.number + 1, newest.first, newest.forms, newest.last)
        self._delete_old_segments(newest.first)

    def _write_named_file(self, f: _FileWrite) -> None:
        """Make a named record's file durable under its final name, writing its temp file
        first when put() left that to this thread (a streamed value)."""
        if f.pieces is not None:
            pieces, f.pieces = f.pieces, None
            f.size = self._write_temp_file(f.tmp, f.generation, f.key, pieces)
        if self._fsync:
            fd = self._opener.open(f.tmp, os.O_WRONLY)
            try:
                self._timed_fsync(fd, _datasync)
            finally:
                os.close(fd)
        os.replace(f.tmp, self._directory / file_name(f.generation))
        # Counted here, by the thread that counts the rest, once the file is the batch's.
        self.stats.bytes_written += f.size

    def _drop_replaced_files(self, sealed: list[SyncBatch]) -> None:
        """Remove files whose record a now-durable write replaced (no dir fsync needed:
        a file that reappears after a crash is unreferenced and recovery removes it)."""
        live = self._live_files
        for b in sealed:
            for op in b.ops:
                code = op[0]
                if code in (OP_PUT_FILE, OP_PUT):
                    old = live.pop(op[1], None)
                    if code == OP_PUT_FILE:
                        live[op[1]] = op[2]
                    if old is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._directory / file_name(old))

    def _roll(self, number: int, first: int, forms: dict[str, NamedForm], last: int) -> None:
        """Start segment ``number`` with a STATE record; it appears whole or not at all."""
        state = {"first": first, "last": last, "named": {k: list(v) for k, v in forms.items()}}
        data = segment_header(number) + frame_record(RECORD_STATE, msgpack.packb(state, use_bin_type=True))
        final = self._directory / segment_name(number)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        fd = self._opener.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, data)
            if self._fsync:
                self._timed_fsync(fd, _datasync)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        if self._fsync:
            self._timed_fsync(self._dir_fd, os.fsync)
        fd = self._opener.open(final, os.O_WRONLY | os.O_APPEND)
        if self._segment_fd >= 0:
            os.close(self._segment_fd)
        self._segment_fd = fd
        self._segment_size = len(data)
        self._segments.append(SegmentInfo(number, final, last))
        self.stats.bytes_written += len(data)
        self.stats.segments_created += 1

    def _delete_old_segments(self, durable_first: int) -> None:
        segments = self._segments
        while len(segments) > 1 and segments[0].max_position < durable_first:
            # The next segment's STATE carries the named records; no entry here is needed.
            os.unlink(segments.pop(0).path)
            self.stats.segments_deleted += 1

    def _timed_fsync(self, fd: int, how: Callable[[int], None]) -> None:
        t0 = time.perf_counter()
        how(fd)
        elapsed = time.perf_counter() - t0
        stats = self.stats
        stats.fsync_count += 1
        stats.last_fsync_seconds = elapsed
        stats.fsync_seconds_total += elapsed

    # ------------------------------------------------------------------- closing
    def close(self) -> None:
        """Release the directory.  Writes not yet synced are dropped, as in a crash:
        call ``sync()`` first to keep them."""
        with self._io_lock:
            if self._closed:
                return
            self._closed = True
            self._graveyard.clear()
            self._release_fds()
            # Temp files of writes that will never complete: recovery would remove them
            # too, but a closed storage should not leave a 100 MB file behind.
            with self._queue_lock:
                pending = [f for b in self._queue for f in b.files]
            for f in [*pending, *self._files]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.tmp)

    def _release_fds(self) -> None:
        for fd in (self._segment_fd, self._dir_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)  # closing the lock fd releases the flock
        self._segment_fd = self._dir_fd = self._lock_fd = -1
        self._opener.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self._directory}: storage is closed")

    def segment_paths(self) -> list[Path]:
        """The live segment files, oldest first (for tests and tooling)."""
        with self._io_lock:
            return [s.path for s in self._segments]

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FileOpener:
    """Opens the storage's files with one descriptor held in reserve (``/dev/null``): a
    process out of descriptors (client connections took them: server/open_files.py)
    gives it up to open the file, rather than fail the storage and halt the node.  The
    reserve is taken again at the next open that finds a free descriptor."""

    __slots__ = ("_lock", "_spare")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the loop thread (put) and the sync thread open files
        self._spare = _take_spare()

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        with self._lock:
            if self._spare < 0:
                self._spare = _take_spare()
            try:
                return os.open(path, flags, mode)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE) or self._spare < 0:
                    raise
            os.close(self._spare)
            self._spare = -1
            return os.open(path, flags, mode)

    def close(self) -> None:
        with self._lock:
            if self._spare >= 0:
                os.close(self._spare)
                self._spare = -1


def _take_spare() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return -1


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryInUseError(f"{directory} is already open (another node process?)") from None
    return fd


def _check_file_key(key: str) -> bytes:
    """``key`` as UTF-8, if a named-record file's header can hold it (else ValueError)."""
    key_bytes = key.encode()
    if len(key_bytes) > MAX_FILE_KEY:
        raise ValueError(
            f"a record key kept in a file has at most {MAX_FILE_KEY} bytes, got {len(key_bytes)}"
        )
    return key_bytes


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one,
    never a part: a temp file beside it, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_directory(path.parent)
