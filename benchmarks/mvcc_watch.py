"""What one write costs a watch over a large prefix of the etcd service's MVCC store
(statemachines/mvcc.py): the store's read of the events since the watch's start
revision, from its recent changes (what a woken watch does now) against a look at every
key of the range (what it did before), the same store, the same answers (checked here).
Each figure is the best of ``--repeat`` timings of ``--number`` reads, microseconds of
this process's CPU per read.

    python benchmarks/mvcc_watch.py                         # 100,000 keys, a table
    python benchmarks/mvcc_watch.py --keys 10000 --json-out /tmp/mvcc_watch.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.services.etcd import make_op
from consensuskit.statemachines.mvcc import MVCCStore, prefix_end
from results_file import write_json


def measure(keys: int, number: int, repeat: int) -> dict[str, Any]:
    store = MVCCStore()
    for i in range(keys):
        store.execute(make_op("put", "", {"key": b"k%07d" % i, "value": b"v"}))
    start = store.revision + 1
    store.execute(make_op("put", "", {"key": b"k%07d" % (keys // 2), "value": b"w"}))  # the write
    watch = make_op("watch", "", {"key": b"k", "range_end": prefix_end(b"k"), "start_revision": start})

    def best() -> tuple[float, Any]:
        timings = []
        for _ in range(repeat):
            t0 = time.process_time()
            for _ in range(number):
                answer = store.execute(watch)
            timings.append((time.process_time() - t0) / number)
        return min(timings), answer

    recent, answer = best()
    kept, store._recent_from = store._recent_from, 2**62  # every key looked at, as before
    scan, scanned = best()
    store._recent_from = kept
    assert answer == scanned and len(answer["events"]) == 1
    return {"keys": keys, "recent_changes_us": recent * 1e6, "every_key_us": scan * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--number", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    result = measure(args.keys, args.number, args.repeat)
    table = Table(title=f"a watch over {args.keys:,} keys woken by one write (CPU per read)")
    for column in ("keys", "from the recent changes", "every key looked at", "ratio"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result['keys']:,}",
        f"{result['recent_changes_us']:,.1f} us",
        f"{result['every_key_us']:,.0f} us",
        f"{result['every_key_us'] / max(result['recent_changes_us'], 1e-9):,.0f}x",
    )
    Console().print(table)
    if args.json_out:
        print(f"wrote {write_json(args.json_out, {'benchmark': 'mvcc_watch', **result})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
