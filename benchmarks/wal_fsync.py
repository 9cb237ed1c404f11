"""DiskStorage group commit: log records per second and fsync latency by batch size.

Workload: Raft log entries carrying a put of a 16-byte value (what the KV server
appends), one ``log_append`` per entry as the runtime makes one per proposal, then one
``sync()`` per batch of 1, 16 or 256 entries, for ``--seconds`` each, fsync on.  The log
is compacted as it grows, so segment rollover and deletion are part of the cost.

    python benchmarks/wal_fsync.py [--seconds S] [--dir DIR] [--no-fsync] [--json-out PATH]

Columns: records/s end to end; batches/s; fsync p50/p99 (the fdatasync of the WAL
segment alone); sync p50/p99 (begin_sync + complete: write + fsync); loop µs/record (what
the event-loop thread pays per record: encode + append + begin_sync); CPU µs/record.
After each run the directory is reopened and the recovery time printed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.raft.messages import COMMAND, LogEntry
from consensuskit.server.wal import DiskStorage
from results_file import write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "wal_fsync.json"
BATCH_SIZES = (1, 16, 256)
KEEP_ENTRIES = 5_000  # compact the log down to this many whenever it doubles
VALUE = b"0123456789abcdef"


def entry(index: int) -> LogEntry:
    request = ClientRequest(
        client_id="bench", seq=index, op=Op(kind="put", key=f"k{index % 1000}", value=VALUE)
    )
    return LogEntry(term=1, index=index, kind=COMMAND, data=request)


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(directory: Path, batch: int, seconds: float, fsync: bool) -> dict[str, Any]:
    storage = DiskStorage.open(directory, fsync=fsync)
    fsync_latencies: list[float] = []
    sync_latencies: list[float] = []
    loop_seconds = 0.0
    records = 0
    batches = 0
    index = storage.log_last()
    entries = [entry(index + 1 + i) for i in range(batch)]  # built outside the timed part
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        t0 = time.perf_counter()
        for e in entries:
            storage.log_append([e])
        sync_batch = storage.begin_sync()
        t1 = time.perf_counter()
        fsyncs = storage.stats.fsync_count
        sync_batch.complete()
        now = time.perf_counter()
        loop_seconds += t1 - t0
        sync_latencies.append(now - t1)
        if storage.stats.fsync_count > fsyncs:
            fsync_latencies.append(storage.stats.last_fsync_seconds)
        records += batch
        batches += 1
        index += batch
        entries = [entry(index + 1 + i) for i in range(batch)]
        if storage.log_last() - storage.log_first() + 1 > 2 * KEEP_ENTRIES:
            storage.log_compact_to(storage.log_last() - KEEP_ENTRIES + 1)
    elapsed = now - start
    cpu = time.process_time() - cpu0
    stats = storage.stats
    live_bytes = sum(p.stat().st_size for p in storage.segment_paths())
    storage.close()
    t0 = time.perf_counter()
    reopened = DiskStorage.open(directory, fsync=fsync)
    reopen_seconds = time.perf_counter() - t0
    live_records = len(reopened.log_records())
    reopened.close()
    return {
        "batch": batch,
        "fsync": fsync,
        "seconds": round(elapsed, 3),
        "records": records,
        "batches": batches,
        "records_per_second": round(records / elapsed),
        "batches_per_second": round(batches / elapsed),
        "fsync_p50_ms": round(1000 * percentile(fsync_latencies, 0.50), 3),
        "fsync_p99_ms": round(1000 * percentile(fsync_latencies, 0.99), 3),
        "fsync_mean_ms": round(1000 * statistics.fmean(fsync_latencies), 3) if fsync_latencies else 0.0,
        "sync_p50_ms": round(1000 * percentile(sync_latencies, 0.50), 3),
        "sync_p99_ms": round(1000 * percentile(sync_latencies, 0.99), 3),
        "loop_us_per_record": round(1e6 * loop_seconds / records, 2),
        "cpu_us_per_record": round(1e6 * cpu / records, 2),
        "bytes_written": stats.bytes_written,
        "bytes_per_record": round(stats.bytes_written / records, 1),
        "fsync_count": stats.fsync_count,
        "segments_created": stats.segments_created,
        "segments_deleted": stats.segments_deleted,
        "reopen_seconds": round(reopen_seconds, 3),
        "reopen_live_records": live_records,
        "reopen_segment_bytes": live_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (page cache only)")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    fsync = not args.no_fsync

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wal-bench-", dir=args.dir) as root:
        for batch in BATCH_SIZES:
            rows.append(measure(Path(root) / f"batch{batch}", batch, args.seconds, fsync))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DiskStorage group commit, 16-byte puts, fsync {'on' if fsync else 'off'}")
    columns = (
        "batch",
        "records/s",
        "batches/s",
        "fsync p50 ms",
        "fsync p99 ms",
        "sync p50 ms",
        "sync p99 ms",
        "loop µs/rec",
        "CPU µs/rec",
        "bytes/rec",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch"]),
            f"{r['records_per_second']:,}",
            f"{r['batches_per_second']:,}",
            f"{r['fsync_p50_ms']:.3f}",
            f"{r['fsync_p99_ms']:.3f}",
            f"{r['sync_p50_ms']:.3f}",
            f"{r['sync_p99_ms']:.3f}",
            f"{r['loop_us_per_record']:.1f}",
            f"{r['cpu_us_per_record']:.1f}",
            f"{r['bytes_per_record']:.0f}",
        )
    console = Console()
    console.print(table)
    for r in rows:
        console.print(
            f"batch {r['batch']}: reopen took {r['reopen_seconds']:.3f} s "
            f"({r['reopen_segment_bytes']:,} bytes of segments, {r['reopen_live_records']:,} live records)"
        )

    doc = {
        "benchmark": "wal_fsync",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "directory": str(args.dir or tempfile.gettempdir()),
        "seconds_per_batch_size": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "results": rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
