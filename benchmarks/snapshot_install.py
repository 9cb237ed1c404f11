"""What a follower's event loop holds when the leader sends it the whole state: decoding
the snapshot's bytes and restoring the state machine from them (issue 18), for the kv
store and the etcd service's MVCC store, in this process.

Each store is loaded with ``--keys`` puts of ``--value-bytes`` random bytes (random
bytes, as users' values are: they decide whether the codec's slow paths trigger), in a
shuffled key order; its snapshot is encoded once.  Then, with a node's collector settings
(everything alive then, the loaded store included, frozen; first threshold
``gc_watch.YOUNG_THRESHOLD``: as ``serve`` sets them), the bytes are decoded and a fresh
store restored from them, ``--repeat`` times; the table gives the best and worst wall
time of each step.  The restored store's digest is checked against the original's.

    python benchmarks/snapshot_install.py                     # a million keys, both stores
    python benchmarks/snapshot_install.py --keys 200000 --store kv --json-out /tmp/si.json

Compare code versions by running this file with ``PYTHONPATH`` pointing at another
checkout's ``src``.  No anchor: etcd's followers do the same in Go, not measurable here.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import consensuskit
from consensuskit.core.client import Op
from consensuskit.core.messages import decode, encode
from consensuskit.server import gc_watch
from consensuskit.services.etcd import make_op
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.mvcc import MVCCStore
from results_file import write_json

STORES = ("kv", "mvcc")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "snapshot_install.json"


def loaded(store: str, keys: int, value_bytes: int, seed: int) -> Any:
    """A store holding ``keys`` keys, put in a shuffled order."""
    rng = random.Random(seed)
    order = list(range(keys))
    rng.shuffle(order)
    if store == "kv":
        kv = KVStateMachine()
        for i in order:
            kv.execute(Op(kind="put", key=f"key{i:08d}", value=rng.randbytes(value_bytes)))
        return kv
    mvcc = MVCCStore()
    for i in order:
        mvcc.execute(make_op("put", "", {"key": b"key%08d" % i, "value": rng.randbytes(value_bytes)}))
    return mvcc


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(store: str, keys: int, value_bytes: int, repeat: int, progress: Progress) -> dict[str, Any]:
    task = progress.add_task(f"{store}: loading {keys:,} keys", total=None)
    original = loaded(store, keys, value_bytes, seed=1)
    blob = encode(original.snapshot())
    factory = KVStateMachine if store == "kv" else MVCCStore
    decodes: list[float] = []
    restores: list[float] = []
    progress.update(task, description=f"{store}: decode + restore", total=repeat, completed=0)
    expected = original.digest()
    saved = gc.get_threshold()
    gc_watch.freeze_startup()  # the original and its bytes: what the node held before
    gc_watch.raise_young_threshold()
    try:
        for _ in range(repeat):
            decode_s, snapshot = timed(lambda: decode(blob))
            fresh = factory()
            restore_s, _ = timed(lambda s=snapshot, f=fresh: f.restore(s))  # type: ignore[misc]
            if fresh.digest() != expected:
                raise SystemExit(f"{store}: the restored store differs from the original")
            decodes.append(decode_s)
            restores.append(restore_s)
            del snapshot, fresh
            progress.advance(task)
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()
    progress.remove_task(task)
    return {
        "store": store,
        "keys": keys,
        "value_bytes": value_bytes,
        "snapshot_bytes": len(blob),
        "decode_s": {"best": round(min(decodes), 3), "worst": round(max(decodes), 3)},
        "restore_s": {"best": round(min(restores), 3), "worst": round(max(restores), 3)},
        "repeat": repeat,
    }


def code_version() -> str:
    """The commit of the consensuskit being measured (``PYTHONPATH`` may point elsewhere)."""
    package = Path(consensuskit.__file__).resolve().parent
    command = ["git", "-C", str(package), "rev-parse", "--short", "HEAD"]
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_stores(text: str) -> tuple[str, ...]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in items if s not in STORES]
    if unknown or not items:
        named = ", ".join(unknown) or "(none)"
        raise argparse.ArgumentTypeError(f"unknown store {named}; valid: {', '.join(STORES)}")
    return tuple(s for s in STORES if s in items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=parse_stores, default=STORES, help="comma list: kv, mvcc")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.keys < 1 or args.repeat < 1 or args.value_bytes < 0:
        parser.error("--keys and --repeat must be at least 1, --value-bytes at least 0")
    console = Console(highlight=False, width=110)
    rows = []
    with Progress(console=console, transient=True) as progress:
        for store in args.store:
            rows.append(measure(store, args.keys, args.value_bytes, args.repeat, progress))
    title = f"installing a snapshot, {args.keys:,} keys x {args.value_bytes} B, one core, wall time"
    table = Table(title=title)
    for column in ("store", "snapshot", "decode best / worst", "restore best / worst"):
        table.add_column(column, justify="left" if column == "store" else "right")
    for row in rows:
        table.add_row(
            row["store"],
            f"{row['snapshot_bytes'] / 1e6:.0f} MB",
            f"{row['decode_s']['best']:.3f} / {row['decode_s']['worst']:.3f} s",
            f"{row['restore_s']['best']:.3f} / {row['restore_s']['worst']:.3f} s",
        )
    console.print(table)
    doc = {
        "benchmark": "snapshot_install",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
        "collector": f"a node's: frozen startup, first threshold {gc_watch.YOUNG_THRESHOLD}",
        "rows": rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
