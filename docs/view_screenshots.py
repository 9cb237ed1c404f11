"""Make the README's screenshots of the browser view (docs/img/view-*.png).

Each shot is a short simulation (5 nodes, every fault, seed 1) replayed in headless
Chromium (Debian's; Playwright drives it) and stopped part-way:

    python docs/view_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from consensuskit.catalog import default_registry
from consensuskit.cli import build_config, build_simulation
from consensuskit.view.app import make_app, running
from consensuskit.view.summaries import view_meta
from consensuskit.view.trace_io import load_trace

# name -> (protocol, virtual seconds, where to stop as a fraction of the records)
SHOTS = {
    "raft": ("raft", 3.0, 0.74),
    "pbft": ("pbft", 1.0, 0.5),
    "2pc": ("2pc", 2.0, 0.5),
    "gossip": ("gossip", 2.0, 0.3),
}


def trace(path: Path, protocol: str, duration: float) -> list[dict]:
    spec = default_registry().get(protocol)
    config = build_config(protocol, 5, 1, duration, 3, "all", None, flags={f.key: f.default for f in spec.flags})
    config.trace_path = str(path)
    sim = build_simulation(config)
    sim.run()
    sim.close()
    return load_trace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for name, (protocol, duration, at) in SHOTS.items():
            records = trace(Path(tmp) / f"{name}.jsonl", protocol, duration)
            meta = view_meta(records, protocol, title=f"{protocol} · 5 nodes · every fault · seed 1")
            with running(make_app(meta, records=records)) as url:
                page = browser.new_page(viewport={"width": 1280, "height": 620})
                page.goto(url)
                page.wait_for_function("window.consensusView && window.consensusView.ready")
                page.evaluate(f"consensusView.seek({int(len(records) * at)})")
                out = args.out / f"view-{name}.png"
                page.screenshot(path=str(out))
                page.close()
                print(f"wrote {out}")
        browser.close()


if __name__ == "__main__":
    main()
