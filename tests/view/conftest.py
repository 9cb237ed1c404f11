"""Fixtures of the view's tests: small simulator traces, a served app, a browser."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensuskit.catalog import default_registry
from consensuskit.cli import build_config, build_simulation

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# protocol -> virtual seconds: long enough for each protocol panel to have something.
TRACED = {"raft": 2.0, "pbft": 1.0, "2pc": 2.0, "gossip": 2.0}


def write_trace(path: Path, protocol: str, duration: float, seed: int = 1, nemesis: str = "all") -> Path:
    spec = default_registry().get(protocol)
    flags = {f.key: f.default for f in spec.flags}
    config = build_config(protocol, 5, seed, duration, 3, nemesis, None, flags=flags)
    config.trace_path = str(path)
    sim = build_simulation(config)
    try:
        sim.run()
    finally:
        sim.close()
    return path


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("view-traces")
    return {p: write_trace(root / f"{p}.jsonl", p, d) for p, d in TRACED.items()}


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def served(app: Any) -> Any:
    """Run an aiohttp app on a free port in a thread; yields its base URL."""
    from consensuskit.view.app import running

    return running(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium binary (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Page:
    """A page of the view, with what it complained about and what it fetched."""

    def __init__(
        self, browser: Any, url: str, width: int = 1280, height: int = 800, init_script: str | None = None
    ) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        if init_script is not None:
            self.page.add_init_script(init_script)
        self.problems: list[str] = []
        self.fetched: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.fetched.append(r.url))
        self.page.goto(url)
        self.page.wait_for_function("window.consensusView && window.consensusView.ready", timeout=60_000)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait_until(self, expression: str, show: str, timeout: float = 60_000) -> None:
        """Wait for ``expression`` to hold; if it never does, fail with what ``show``
        evaluates to then, and the page's problems (a bare timeout says nothing of why)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(expression, timeout=timeout)
        except PlaywrightTimeout:
            raise AssertionError(
                f"{expression} still false after {timeout / 1000:g} s: {show} = {self.js(show)!r}; "
                f"problems: {self.problems}"
            ) from None

    def seek(self, pos: int) -> float:
        return float(self.js(f"consensusView.seek({pos})"))

    def snapshot(self) -> tuple[str, str]:
        """The page's text and its canvas hash (sha256 of toDataURL)."""
        return self.js("consensusView.text()"), self.js("consensusView.hash()")

    def close(self) -> None:
        self.page.close()
