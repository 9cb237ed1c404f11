"""The browser view on a big trace: how long a 100,000-record trace takes to load, and a
seek, in headless Chromium (Debian's; Playwright drives it).

A Raft simulation (5 nodes, every fault) runs until its trace holds --events records
(its first --events are kept).  The page then loads it twice — served by the view's
aiohttp app (``consensuskit view TRACE``) and as the ``--html`` export opened from disk —
and seeks --seeks times to seeded random positions (the server runs in its own process,
as ``consensuskit view`` does).  Measured: wall time from
navigation to the page being ready (the data fetched, parsed and indexed, first frame
drawn), the page's own time for building its index, each seek's time inside the page
(state from the nearest checkpoint plus the replay, the cluster panel and the canvas
redrawn), the JS heap after loading, and the export's size.  Targets (issue 17): load
< 3 s, seek < 100 ms.

    python benchmarks/view_load.py [--events 100000] [--seeks 30] [--json-out PATH]

Times are wall-clock on this machine (noisy when it is shared); exit status 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consensuskit.cli import build_config, build_simulation
from consensuskit.view.export import render_html
from consensuskit.view.summaries import view_meta
from consensuskit.view.trace_io import load_trace

LOAD_TARGET_S = 3.0
SEEK_TARGET_MS = 100.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def make_trace(path: Path, events: int, progress: Progress) -> list[dict[str, Any]]:
    task = progress.add_task(f"simulating raft until {events:,} records", total=None)
    duration = max(5.0, events / 3000)
    while True:
        config = build_config("raft", 5, 1, duration, 3, "all", None)
        config.trace_path = str(path)
        sim = build_simulation(config)
        sim.run()
        sim.close()
        records = load_trace(path)
        if len(records) >= events:
            progress.update(task, completed=1, total=1)
            return records[:events]
        duration *= 1.5 * events / max(len(records), 1)


@contextlib.contextmanager
def serving(trace: Path) -> Iterator[str]:
    """``consensuskit view TRACE --port 0`` in its own process, as a user runs it."""
    code = "from consensuskit.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, "view", str(trace), "--port", "0", "--protocol", "raft"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://\S+", line)
        if match is None:
            raise RuntimeError(f"consensuskit view said {line!r}")
        yield match.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def measure(browser: Any, url: str, seeks: int, n: int) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function("window.consensusView && window.consensusView.ready", timeout=120_000)
    wall = time.perf_counter() - started
    rng = random.Random(0)
    times = [float(page.evaluate(f"consensusView.seek({rng.randrange(n + 1)})")) for _ in range(seeks)]
    heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
    index_ms = float(page.evaluate("consensusView.loadMs"))
    timings = page.evaluate("consensusView.timings")
    page.close()
    return {
        "load_s": round(wall, 3),
        "index_ms": round(index_ms, 1),
        "page_ms": {k: round(v, 1) for k, v in timings.items()},
        "seek_ms_median": round(statistics.median(times), 2),
        "seek_ms_p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
        "seek_ms_max": round(max(times), 2),
        "heap_mb": round(heap / 2**20, 1) if heap else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seeks", type=int, default=30)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--trace", type=Path, default=None, help="Use this trace instead of simulating one.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console()
    with tempfile.TemporaryDirectory(prefix="view-load-") as tmp:
        if args.trace:
            records = load_trace(args.trace)[: args.events]
        else:
            with Progress(console=console, transient=True) as progress:
                records = make_trace(Path(tmp) / "raft.jsonl", args.events, progress)
        meta = view_meta(records, "raft")
        html = Path(tmp) / "raft.html"
        html.write_text(render_html(meta, records), encoding="utf-8")
        results: dict[str, Any] = {"events": len(records), "html_mb": round(html.stat().st_size / 2**20, 1)}
        with sync_playwright() as p:
            args_ = ["--no-sandbox", "--enable-precise-memory-info"]
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args_)
            trace = Path(tmp) / "trace.jsonl"
            trace.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            with serving(trace) as url:
                results["served"] = measure(browser, url, args.seeks, len(records))
            results["html"] = measure(browser, html.as_uri(), args.seeks, len(records))
            browser.close()
    title = f"view: {results['events']:,} records of a raft trace (html export {results['html_mb']} MB)"
    table = Table(title=title)
    for column in ("mode", "load s", "index ms", "seek ms median", "p95", "max", "JS heap MB"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode in ("served", "html"):
        r = results[mode]
        table.add_row(
            mode,
            f"{r['load_s']:.2f}",
            f"{r['index_ms']:.0f}",
            f"{r['seek_ms_median']:.1f}",
            f"{r['seek_ms_p95']:.1f}",
            f"{r['seek_ms_max']:.1f}",
            str(r["heap_mb"]),
        )
    console.print(table)
    ok = all(
        results[m]["load_s"] < LOAD_TARGET_S and results[m]["seek_ms_p95"] < SEEK_TARGET_MS
        for m in ("served", "html")
    )
    console.print(
        f"targets: load < {LOAD_TARGET_S:g} s, seek < {SEEK_TARGET_MS:g} ms (p95): "
        + ("[green]met[/]" if ok else "[red]missed[/]")
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
