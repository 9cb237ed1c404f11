"""The --html page: structure and escaping (pure Python), then the page in headless Chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from consensuskit.check.linearizability import (
    UNKNOWN,
    Call,
    Operation,
    check_history,
    check_operations,
    get_model,
    model_for,
    read_history,
)
from consensuskit.check.linearizability import html as page_module
from consensuskit.check.linearizability.html import OP_FIELDS, render_html
from consensuskit.check.linearizability.synthetic import generate_kv_history

DATA = Path(__file__).resolve().parents[1] / "data" / "porcupine"
HOSTILE = "</script><img src=x onerror=alert(1)><!--"
FIELD = {name: n for n, name in enumerate(OP_FIELDS)}


def checked(path: str, fmt: str, model: str) -> tuple[Any, Any]:
    the_model = model_for(model, fmt)
    return check_operations(read_history(DATA / path, fmt), the_model, workers=1), the_model


def embedded(page: str) -> dict[str, Any]:
    found = re.findall(r'<script type="application/json" id="check-data">(.*?)</script>', page, re.S)
    assert len(found) == 1
    return json.loads(found[0])


def op(
    n: int, client: str, call: float, ret: float, kind: str, key: Any, value: Any = None, output: Any = None
):
    return Operation(n, client, call, ret, Call(kind=kind, key=key, value=value), output)


def slot_invariants(part: dict[str, Any]) -> None:
    """Compressed time keeps the order of events: a call before its return, each
    linearization point inside its operation and after the one before."""
    ops = part["ops"]
    for row in ops:
        assert row[FIELD["call_slot"]] < row[FIELD["ret_slot"]] <= part["slots"]
        if row[FIELD["ret"]] is None:
            assert row[FIELD["ret_slot"]] == part["slots"]
    assert len(part["slot_times"]) == part["slots"]
    assert part["slot_times"] == sorted(part["slot_times"])
    previous = -1
    for index, slot, time, k in part["points"]:
        row = ops[index]
        assert row[FIELD["pos"]] == k
        assert row[FIELD["call_slot"]] <= slot < row[FIELD["ret_slot"]]
        assert row[FIELD["call"]] <= time
        assert row[FIELD["ret"]] is None or time <= row[FIELD["ret"]]
        assert slot > previous
        previous = slot


# -- structure ---------------------------------------------------------------------


def test_failing_kv_page_embeds_the_failing_part_first_and_open():
    result, model = checked("kv/c01-bad.txt", "porcupine-kv", "kv")
    page = render_html(result, model, title="c01-bad")
    data = embedded(page)
    failing = result.failing
    first = data["parts"][0]
    assert first["verdict"] == "illegal" and first["key"] == "7"
    assert first["total"] == len(failing.ops) == len(first["ops"])
    assert first["linearized"] == len(failing.linearization) == len(first["points"])
    assert [k for _, _, _, k in first["points"]] == list(range(1, len(failing.linearization) + 1))
    (bad_index, why), *_ = failing.unplaced
    bad_row = first["ops"][data["first_offender"][1]]
    assert data["first_offender"][0] == 0
    assert bad_row[FIELD["text"]] == model.describe_operation(
        failing.ops[bad_index].input, failing.ops[bad_index].output
    )
    assert bad_row[FIELD["bad"]] == why
    assert bad_row[FIELD["pos"]] is None
    assert [a[0] for a in first["attempts"]] == [data["first_offender"][1]]
    assert first["states"][str(first["linearized"])] == failing.states[-1] == first["prefix_state"]
    assert first["initial_state"] == model.describe_state(model.init())
    slot_invariants(first)
    # Failing part open, the linearizable ones closed, the unchecked ones listed.
    sections = re.findall(r'<details class="part part-(\w+)" id="part-(\d+)" data-part="\d+"( open)?>', page)
    assert sections[0] == ("illegal", "0", " open")
    assert all(verdict == "ok" and not is_open for verdict, _, is_open in sections[1:])
    skipped = [p for p in result.partitions if p.verdict == "skipped"]
    assert skipped and f"{len(skipped)} parts not checked" in page
    assert '<li class="offender">' in page and "line 59" in page
    assert 'id="verdict">NOT linearizable<' in page


def test_linearizable_page_has_no_offender():
    result, model = checked("kv/c01-ok.txt", "porcupine-kv", "kv")
    data = embedded(render_html(result, model))
    assert data["verdict"] == "ok" and data["first_offender"] is None
    for part in data["parts"]:
        assert part["attempts"] == []
        assert all(row[FIELD["bad"]] is None and row[FIELD["pos"]] is not None for row in part["ops"])
        slot_invariants(part)


@pytest.mark.parametrize("name", ["etcd_000.log", "etcd_002.log", "etcd_040.log", "etcd_100.log"])
def test_etcd_pages_keep_event_order(name: str):
    result, model = checked(f"jepsen/{name}", "porcupine-etcd", "cas-register")
    data = embedded(render_html(result, model))
    (part,) = data["parts"]
    assert part["key"] == "(whole history)"
    assert any(row[FIELD["ret"]] is None for row in part["ops"])  # :info ops never return
    slot_invariants(part)


@pytest.mark.parametrize("seed", range(5))
def test_synthetic_pages_keep_event_order(seed: int):
    records = generate_kv_history(
        300, 3, 8, seed, inject="stale-read" if seed % 2 else None, unknown_rate=0.05
    )
    result = check_history(records, workers=1)
    data = embedded(render_html(result, get_model("kv")))
    for part in data["parts"]:
        if part is not None:
            slot_invariants(part)


def test_page_is_self_contained():
    result, model = checked("jepsen/etcd_000.log", "porcupine-etcd", "cas-register")
    page = render_html(result, model)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert not re.search(r"\ssrc=", page)
    # The only URL is the SVG namespace, which is a name, not a fetch.
    assert set(re.findall(r"https?://[^\s'\"<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_hostile_keys_values_and_title_are_escaped():
    ops = [
        op(0, HOSTILE, 0, 1, "put", HOSTILE, value=HOSTILE, output={}),
        op(1, "c2", 2, 3, "get", HOSTILE, output="not what was written"),
        op(2, "c3", 0, 5, "get", "k&<>", output=None),
    ]
    model = get_model("kv")
    result = check_operations(ops, model, workers=1, stop_at_first_failure=False)
    assert result.verdict == "illegal"
    page = render_html(result, model, title=HOSTILE)
    assert "<img" not in page
    assert page.count("</script>") == 2 and page.count("<!--") == 0
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # title, key, reason
    data = embedded(page)
    assert data["title"] == HOSTILE
    keys = {part["key"] for part in data["parts"]}
    assert keys == {HOSTILE, "k&<>"}
    texts = [row[FIELD["text"]] for part in data["parts"] for row in part["ops"]]
    assert any(HOSTILE in text for text in texts)
    clients = [c for part in data["parts"] for c in part["clients"]]
    assert HOSTILE in clients


def test_a_large_part_is_drawn_as_a_window_around_the_failure(monkeypatch):
    monkeypatch.setattr(page_module, "MAX_DRAWN_OPS", 60)
    ops = [op(i, f"c{i % 3}", 2 * i, 2 * i + 1, "put", "k", value=i, output={}) for i in range(300)]
    ops.append(op(300, "c9", 1000, 1001, "get", "k", output=5))  # stale read
    ops += [op(301 + i, "c1", 1002 + 2 * i, 1003 + 2 * i, "get", "k", output=299) for i in range(50)]
    model = get_model("kv")
    result = check_operations(ops, model, workers=1)
    assert result.verdict == "illegal"
    data = embedded(render_html(result, model))
    (part,) = data["parts"]
    assert part["total"] == 351 and len(part["ops"]) == 60
    assert part["note"].startswith("Showing 60 of 351 operations")
    bad = part["ops"][data["first_offender"][1]]
    assert bad[FIELD["text"]].startswith("get k") and bad[FIELD["call"]] == 1000
    # The window ends a quarter past the failure and numbers count every operation.
    assert [row[FIELD["call"]] for row in part["ops"]] == sorted(row[FIELD["call"]] for row in part["ops"])
    assert max(k for _, _, _, k in part["points"]) == 300
    assert min(k for _, _, _, k in part["points"]) > 1
    slot_invariants(part)


def test_the_page_budget_leaves_ok_parts_undrawn_but_never_a_failing_one(monkeypatch):
    monkeypatch.setattr(page_module, "MAX_EMBEDDED_OPS", 50)
    records = generate_kv_history(400, 4, 8, seed=3, inject="stale-read")
    result = check_history(records, workers=1)
    page = render_html(result, get_model("kv"))
    data = embedded(page)
    assert data["parts"][0]["verdict"] == "illegal"  # more than 50 ops, embedded anyway
    assert all(part is None for part in data["parts"][1:])
    assert "Not drawn: the page holds at most 50 operations" in page


def test_pending_operations_run_to_the_end():
    ops = [
        op(0, "c1", 0, math.inf, "put", "k", value=1, output=UNKNOWN),
        op(1, "c2", 1, 2, "get", "k", output={"value": 1, "version": 1}),
    ]
    model = get_model("kv")
    data = embedded(render_html(check_operations(ops, model, workers=1), model))
    (part,) = data["parts"]
    pending = part["ops"][0]
    assert pending[FIELD["ret"]] is None and pending[FIELD["ret_slot"]] == part["slots"]
    assert part["t_end"] > 2
    assert [k for _, _, _, k in part["points"]] == [1, 2]


def test_unknown_and_empty_results_render():
    model = get_model("kv")
    empty = render_html(check_operations([], model, workers=1), model)
    assert "No operations." in empty and embedded(empty)["parts"] == []
    records = generate_kv_history(200, 2, 6, seed=1)
    undecided = check_history(records, workers=1, timeout=0)
    undecided.partitions[0].verdict = "unknown"  # as if the budget ran out in the search
    undecided.verdict = "unknown"
    page = render_html(undecided, model)
    assert 'id="verdict">Unknown<' in page
    assert embedded(page)["parts"][0]["verdict"] == "unknown"


def test_long_states_are_cut_in_the_middle():
    long_value = "x" * 5000
    ops = [
        op(0, "c1", 0, 1, "put", "k", value=long_value, output={}),
        op(1, "c1", 2, 3, "get", "k", output="y"),
    ]
    model = get_model("kv")
    data = embedded(render_html(check_operations(ops, model, workers=1), model))
    state = data["parts"][0]["states"]["1"]
    assert len(state) < 400 and "characters) …" in state


# -- in a browser --------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium binary (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Loaded:
    def __init__(self, browser, page_html: str, tmp_path: Path) -> None:
        path = tmp_path / "page.html"
        path.write_text(page_html, encoding="utf-8")
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.on(
            "request",
            lambda r: None if r.url.startswith("file://") else self.problems.append(f"fetch {r.url}"),
        )
        self.page.goto(path.as_uri())

    def close(self) -> None:
        self.page.close()


@pytest.fixture()
def open_page(browser, tmp_path):
    pages: list[Loaded] = []

    def load(page_html: str) -> Loaded:
        loaded = Loaded(browser, page_html, tmp_path)
        pages.append(loaded)
        return loaded

    yield load
    for loaded in pages:
        loaded.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "path, fmt, model",
    [("kv/c01-bad.txt", "porcupine-kv", "kv"), ("jepsen/etcd_000.log", "porcupine-etcd", "cas-register")],
)
def test_browser_shows_the_offending_operation(open_page, path: str, fmt: str, model: str):
    result, the_model = checked(path, fmt, model)
    bad_index, why = result.failing.unplaced[0]
    bad_op = result.failing.ops[bad_index]
    text = the_model.describe_operation(bad_op.input, bad_op.output)
    loaded = open_page(render_html(result, the_model, title=path))
    page = loaded.page
    assert page.locator("#verdict").inner_text() == "NOT linearizable"
    offending = page.locator(".op.offending").first
    offending.wait_for(state="visible", timeout=10_000)
    assert offending.is_visible()
    assert text in offending.inner_text()
    assert offending.get_attribute("data-offending") == "true"
    assert page.locator(".offender").first.is_visible()
    assert why in page.locator(".offender").first.inner_text()
    # Hover: the tooltip tells why; the red attempt tick and the numbered points are drawn.
    offending.hover()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert "Cannot be placed next" in tooltip.inner_text() and text in tooltip.inner_text()
    assert page.locator("line.try-tick").count() == len(result.failing.unplaced)
    assert page.locator("line.lp-tick").count() == len(result.failing.linearization)
    # Jump pins the offending operation in the part's detail panel.
    page.mouse.move(0, 0)
    page.locator("#jump").click()
    detail = page.locator(".detail").first
    assert text in detail.inner_text() and why in detail.inner_text()
    assert page.locator(".op.selected").count() == 1
    # A linearized bar says where it stands and the state after it.
    page.locator(".op.linearized").first.click()
    assert "linearized #" in detail.inner_text() and "state after" in detail.inner_text()
    # Real time and zoom relayout without errors; the offender stays visible.
    page.locator('input[value="real"]').check()
    page.locator("#zoom-in").click()
    page.locator("#zoom-out").click()
    page.locator('input[value="compressed"]').check()
    assert offending.is_visible()
    assert loaded.problems == []


@pytest.mark.timeout(120)
def test_browser_linearizable_page(open_page):
    result, model = checked("kv/c01-ok.txt", "porcupine-kv", "kv")
    loaded = open_page(render_html(result, model))
    page = loaded.page
    assert page.locator("#verdict").inner_text() == "Linearizable"
    assert page.locator("#jump").is_hidden()
    assert page.locator(".op").count() == 0  # every part closed, nothing built yet
    parts = sorted(result.partitions, key=lambda p: len(p.ops))
    page.locator("details.part > summary").first.click()
    bars = page.locator("#part-0 .op")
    bars.first.wait_for(state="visible")
    assert bars.count() == len(parts[0].ops)
    assert page.locator(".op.offending").count() == 0
    assert page.locator("#part-0 line.lp-tick").count() == len(parts[0].ops)
    bars.first.hover()
    assert "linearized #" in page.locator("#tooltip").inner_text()
    assert loaded.problems == []


@pytest.mark.timeout(120)
def test_browser_hostile_page_runs_no_injected_markup(open_page):
    ops = [
        op(0, HOSTILE, 0, 1, "put", HOSTILE, value=HOSTILE, output={}),
        op(1, "c2", 2, 3, "get", HOSTILE, output="not what was written"),
    ]
    model = get_model("kv")
    loaded = open_page(render_html(check_operations(ops, model, workers=1), model, title=HOSTILE))
    page = loaded.page
    assert page.title() == HOSTILE
    assert page.locator("img").count() == 0
    offending = page.locator(".op.offending").first
    assert offending.is_visible() and "not what was written" in offending.inner_text()
    page.locator(".op").first.hover()
    assert HOSTILE in page.locator("#tooltip").inner_text()
    assert page.locator("img").count() == 0
    assert loaded.problems == []


@pytest.mark.timeout(180)
def test_browser_large_part_is_windowed(open_page):
    records = generate_kv_history(3000, 1, 16, seed=2, inject="stale-read")
    result = check_history(records, workers=1)
    assert result.verdict == "illegal"
    loaded = open_page(render_html(result, get_model("kv")))
    page = loaded.page
    assert page.locator(".op").count() <= page_module.MAX_DRAWN_OPS + 5
    assert "Showing 2000 of 3000 operations" in page.locator("#part-0 .note").inner_text()
    offending = page.locator(".op.offending").first
    offending.wait_for(state="visible")
    page.locator("#jump").click()
    assert "Cannot be placed next" in page.locator(".detail").first.inner_text()
    assert loaded.problems == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_browser_opens_a_100k_operation_page(open_page):
    records = generate_kv_history(100_000, 100, 16, seed=0)
    result = check_history(records)
    assert result.verdict == "ok"
    page_html = render_html(result, get_model("kv"))
    assert embedded(page_html)["parts"][-1] is not None  # all 100 parts fit the budget
    loaded = open_page(page_html)
    page = loaded.page
    assert page.locator("#verdict").inner_text() == "Linearizable"
    assert page.locator(".op").count() == 0  # nothing drawn until a part opens
    page.locator("details.part > summary").last.click()
    page.locator(".op").first.wait_for(state="visible")
    assert page.locator(".op").count() == len(max(result.partitions, key=lambda p: len(p.ops)).ops)
    assert loaded.problems == []
