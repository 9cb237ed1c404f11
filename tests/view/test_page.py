"""The page in Chromium (Playwright with Debian's chromium; never a downloaded browser).

Replay is a pure function of the records: the same point gives the same DOM text and
the same canvas pixels, however it was reached.  Each protocol draws its own panel
from the catalog's summaries.  Live mode, against a fake LiveSource, loses no record
at 1,000 records/s and round-trips actions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensuskit.view.app import make_app
from consensuskit.view.export import render_html
from consensuskit.view.summaries import view_meta
from tests.view.conftest import Page, read_records, served

pytestmark = pytest.mark.timeout(300)


def replay_url(records: list[dict[str, Any]], protocol: str | None = None):
    return served(make_app(view_meta(records, protocol), records=records))


def test_replay_is_the_same_at_the_same_point(browser, traces):
    records = read_records(traces["raft"])
    n = len(records)
    with replay_url(records) as url:
        first = Page(browser, url)
        try:
            assert first.js("consensusView.records") == n
            first.seek(n // 2)
            at_half = first.snapshot()
            # Reached from the other side (a checkpoint, then a replay): the same.
            first.seek(n)
            first.seek(n // 2)
            assert first.snapshot() == at_half
            first.seek(n // 2 + 1)
            assert first.snapshot() != at_half  # the snapshot does see a step
            # Loose sanity bounds only: timing is measured by benchmarks/view_load.py.
            assert first.js("consensusView.loadMs") < 30_000 and first.seek(n // 3) < 5_000
            assert first.problems == []
        finally:
            first.close()
        second = Page(browser, url)
        try:
            second.seek(n // 2)
            assert second.snapshot() == at_half
        finally:
            second.close()


def test_the_html_export_opens_from_disk_and_draws(browser, traces, tmp_path):
    records = read_records(traces["pbft"])
    path = tmp_path / "pbft.html"
    path.write_text(render_html(view_meta(records), records), encoding="utf-8")
    page = Page(browser, path.as_uri())
    try:
        blank = page.js("consensusView.hash()")
        page.seek(len(records) // 2)
        assert page.js("consensusView.hash()") != blank
        # Drawn: the canvas holds many non-white pixels.
        inked = page.js(
            """(() => { const c = document.getElementById('diagram');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; })()"""
        )
        assert inked > 2000
        assert [u for u in page.fetched if not u.startswith("file://")] == []
        assert page.problems == []
    finally:
        page.close()


def test_each_protocol_draws_its_own_panel(browser, traces):
    # raft: logs as RaftScope draws them, entries coloured by term.
    records = read_records(traces["raft"])
    with replay_url(records) as url:
        page = Page(browser, url)
        page.seek(len(records))
        text = page.js("document.getElementById('cluster').innerText")
        assert "term " in text and "leader n" in text
        assert page.js("document.querySelectorAll('.node.leader').length") == 1
        assert page.js("document.querySelectorAll('.log .entry').length") > 20
        page.close()
    # pbft: its generation is the view; three phases in the legend.
    records = read_records(traces["pbft"])
    with replay_url(records) as url:
        page = Page(browser, url)
        page.seek(len(records))
        assert "view " in page.js("document.getElementById('cluster').innerText")
        legend = page.js("document.getElementById('legend').innerText")
        assert all(p in legend for p in ("pre-prepare", "prepare", "commit"))
        page.close()
    # 2pc: votes and the decision per transaction.
    records = read_records(traces["2pc"])
    with replay_url(records) as url:
        page = Page(browser, url)
        page.seek(len(records))
        assert page.js("document.querySelectorAll('table.votes tr').length") > 3
        assert page.js("document.querySelectorAll('.vote.yes').length") > 0
        decisions = page.js("[...document.querySelectorAll('td.decision')].map(e => e.textContent)")
        assert set(decisions) & {"committed", "aborted"}
        page.close()
    # gossip: infection spreading over the members.
    records = read_records(traces["gossip"])
    first_rumour = next(i for i, r in enumerate(records) if r["ev"] == "deliver" and r["type"] == "Rumor")
    with replay_url(records) as url:
        page = Page(browser, url)
        page.seek(first_rumour + 1)
        infected_early = page.js("document.querySelectorAll('.node.infected').length")
        assert 1 <= infected_early < 5
        assert "infected by" in page.js("document.getElementById('cluster').innerText")
        page.close()


def test_jump_to_the_next_fault_and_violation(browser, traces):
    records = read_records(traces["raft"])
    at = len(records) // 2
    violation = {"t": records[at]["t"], "ev": "violation", "name": "election-safety", "detail": "two leaders"}
    records = [*records[:at], violation, *records[at:]]
    with replay_url(records, "raft") as url:
        page = Page(browser, url)
        try:
            page.page.click("#next-fault")
            side = page.js("document.getElementById('side').innerText")
            assert side.startswith("fault ")
            page.page.click("#next-violation")
            assert page.js("consensusView.pos") == at + 1
            side = page.js("document.getElementById('side').innerText")
            assert "violation election-safety" in side and "two leaders" in side
            assert page.js("document.querySelectorAll('#side li').length") > 10
            assert "1 violation" in page.js("document.getElementById('cluster').innerText")
            # Clicking a message line shows it in the side panel.
            box = page.page.locator("#diagram").bounding_box()
            shown = ""
            for dx in range(int(box["width"]) - 40, 60, -3):
                page.page.mouse.click(box["x"] + dx, box["y"] + 22 + 34 * 2.5)  # between lanes 2 and 3
                shown = page.js("document.querySelector('#side h3').textContent")
                if "→" in shown:
                    break
            assert "→" in shown and ("delivered" in shown or "dropped" in shown or "in flight" in shown)
            before = page.js("consensusView.hash()")
            page.page.click("#heartbeats")  # hide them: the diagram changes
            assert page.js("consensusView.hash()") != before
        finally:
            page.close()


# ------------------------------------------------------------------------ live mode
class FakeCluster:
    """A LiveSource for the page: three nodes, n1 leads; ``rate`` records/s for ``seconds``;
    killing the leader makes n2 lead."""

    def __init__(self, rate: int, seconds: float) -> None:
        self.node_ids = ["n1", "n2", "n3"]
        self.rate, self.seconds = rate, seconds
        self.seq = dict.fromkeys(self.node_ids, 0)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.actions: list[dict[str, Any]] = []
        self.t = 0.0

    def emit(self, node: str, **fields: Any) -> None:
        self.seq[node] += 1
        self.queue.put_nowait({"t": self.t, "node": node, "seq": self.seq[node], **fields})

    async def records(self):
        producer = asyncio.create_task(self._produce())
        try:
            while True:
                yield await self.queue.get()
        finally:
            producer.cancel()

    async def _produce(self) -> None:
        for node in self.node_ids:
            role = "leader" if node == "n1" else "follower"
            self.emit(node, ev="rec", kind="role", role=role, term=1, leader="n1")
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        total = int(self.rate * self.seconds)
        while sent < total:
            due = min(total, int((loop.time() - start) * self.rate))
            while sent < due:
                self.t = round(loop.time() - start, 6)
                self.emit(self.node_ids[sent % 3], ev="rec", kind="commit", index=sent // 3 + 1, term=1)
                sent += 1
            await asyncio.sleep(0.01)

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        self.actions.append(action)
        if action["action"] == "kill":
            self.queue.put_nowait({"t": self.t, "ev": "fault", "kind": "crash", "node": action["node"]})
            self.emit("n2", ev="rec", kind="role", role="leader", term=2, leader="n2")
            self.emit("n3", ev="rec", kind="role", role="follower", term=2, leader="n2")
        return {"ok": True, "detail": f"{action['action']} done"}

    async def close(self) -> None:
        pass


# What a live page has received, for a failed wait's message.
LIVE_STATE = (
    "({received: consensusView.received, gaps: consensusView.gaps, records: consensusView.records, "
    "state: document.getElementById('live-state').textContent})"
)


def live_meta() -> dict[str, Any]:
    return view_meta([], "raft", ["n1", "n2", "n3"], "live")


def test_live_loses_no_record_at_1000_per_second(browser):
    source = FakeCluster(rate=1000, seconds=3)
    with served(make_app(live_meta(), source=source)) as url:
        page = Page(browser, url)
        try:
            page.wait_until("consensusView.received >= 3003", LIVE_STATE)
            page.page.wait_for_timeout(300)
            assert page.js("consensusView.received") == 3003  # 3 role records + 3,000
            assert page.js("consensusView.gaps") == 0
            assert "3003 records · 0 gaps" in page.js("document.getElementById('live-count').textContent")
            assert page.problems == []
        finally:
            page.close()


def test_live_memory_is_bounded(browser):
    source = FakeCluster(rate=1000, seconds=1.5)
    with served(make_app(live_meta(), source=source)) as url:
        page = Page(browser, url, init_script="window.consensusViewMaxLive = 1000")
        try:
            page.wait_until("consensusView.received >= 1503", LIVE_STATE)
            assert page.js("consensusView.records") <= 1000 and page.js("consensusView.gaps") == 0
            assert page.js("consensusView.pos") == page.js("consensusView.records")  # still following
            page.seek(0)  # the kept records replay
            assert page.problems == []
        finally:
            page.close()


def test_a_page_closed_by_the_server_says_why(browser, monkeypatch):
    import consensuskit.view.app as app_module

    monkeypatch.setattr(app_module, "OUTBOX", 0)  # every page is too far behind at once
    with served(make_app(live_meta(), source=FakeCluster(rate=100, seconds=1))) as url:
        page = Page(browser, url)
        try:
            state = "document.getElementById('live-state').textContent"
            page.wait_until(f"{state} === 'disconnected: too far behind'", state)
            assert page.problems == []
        finally:
            page.close()


def test_killing_the_leader_from_the_page_shows_a_new_leader(browser):
    source = FakeCluster(rate=100, seconds=0.5)
    with served(make_app(live_meta(), source=source)) as url:
        page = Page(browser, url)
        try:
            page.page.wait_for_function("consensusView.received >= 53", timeout=60_000)
            leader = "document.querySelector('.node.leader')?.dataset.node"
            page.page.wait_for_function(f"{leader} === 'n1'")
            page.page.select_option("#act-node", "n1")
            page.page.click("button[data-act=kill]")
            page.page.wait_for_function(f"{leader} === 'n2'", timeout=30_000)
            assert "down" in page.js("document.querySelector('.node[data-node=n1]').innerText")
            page.page.wait_for_function("document.querySelectorAll('#replies li').length === 1")
            assert "kill done" in page.js("document.querySelector('#replies li').textContent")
            assert source.actions == [{"action": "kill", "node": "n1"}]
            # A malformed action from the page is answered, not dropped.
            page.js("consensusView.act({action: 'partition', groups: [['n1']]})")
            page.page.wait_for_function("document.querySelectorAll('#replies li').length === 2")
            assert "refused partition needs 'groups'" in page.js(
                "document.querySelector('#replies li').textContent"
            )
        finally:
            page.close()


class ListSource:
    """A LiveSource yielding given records, then nothing."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.node_ids = ["n1", "n2", "n3"]
        self._records = records

    async def records(self):
        for r in self._records:
            yield r
        await asyncio.Event().wait()

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False, "detail": "read-only"}

    async def close(self) -> None:
        pass


def test_a_gap_is_counted_and_a_snapshot_resets_a_nodes_sequence(browser):
    role = {"ev": "rec", "kind": "role", "role": "follower", "term": 1}
    records = [
        {"t": 0.1, "node": "n1", "seq": 1, **role},
        {"t": 0.2, "node": "n1", "seq": 2, **role},
        {"t": 0.3, "node": "n1", "seq": 4, **role},  # seq 3 never came: a gap
        {"t": 0.3, "node": "n1", "seq": 4, **role},  # a repeat: ignored
        {"t": 0.4, "node": "n2", "seq": 1, **role},
        # n2 restarted: its snapshot says where its stream goes on (no gap after it).
        {"t": 0.5, "ev": "snapshot", "node": "n2", "seq": 10, "status": {"role": "leader", "generation": 9}},
        {"t": 0.6, "node": "n2", "seq": 11, "ev": "rec", "kind": "commit", "index": 3, "term": 9},
        # A sampled status: log position, membership, lease (core/capabilities.py status_dict).
        {
            "t": 0.7,
            "node": "n2",
            "seq": 12,
            "ev": "status",
            "role": "leader",
            "generation": 9,
            "leader": "n2",
            "commit": 5,
            "applied": 4,
            "last_index": 7,
            "voters": ["n1", "n2", "n3"],
            "lease": True,
        },
    ]
    with served(make_app(live_meta(), source=ListSource(records))) as url:
        page = Page(browser, url)
        try:
            page.page.wait_for_function("consensusView.received >= 7", timeout=60_000)
            page.page.wait_for_timeout(300)
            assert page.js("consensusView.received") == 7 and page.js("consensusView.gaps") == 1
            n2 = page.js("document.querySelector('.node[data-node=n2]').innerText")
            assert (
                "term 9" in n2 and "commit 5" in n2 and "applied 4" in n2 and "last 7" in n2 and "lease" in n2
            )
            assert page.js("document.querySelectorAll('.node[data-node=n2] .log .entry').length") == 5
            assert "voters n1,n2,n3 · quorum 2" in page.js("document.getElementById('cluster').innerText")
            assert page.js("document.querySelector('.node.leader')?.dataset.node") == "n2"
        finally:
            page.close()


@pytest.mark.slow  # eleven simulations and pages: about 15 s on a quiet machine
def test_every_catalog_protocol_replays_without_a_complaint(browser, tmp_path):
    """A short run of each catalog protocol: the page draws it, its panel included."""
    from consensuskit.catalog import default_catalog
    from tests.view.conftest import write_trace

    panel_marks = {"log": ".log", "members": ".node .facts, .members", "votes": "table.votes"}
    for entry in default_catalog().protocols():
        records = read_records(write_trace(tmp_path / f"{entry.name}.jsonl", entry.name, 0.3))
        assert view_meta(records)["protocol"] == entry.name  # guessed from its messages
        path = tmp_path / f"{entry.name}.html"
        path.write_text(render_html(view_meta(records, entry.name), records), encoding="utf-8")
        page = Page(browser, path.as_uri())
        try:
            page.seek(len(records))
            assert page.problems == [], entry.name
            mark = panel_marks[entry.spec.view.panel]
            assert page.js(f"document.querySelectorAll({mark!r}).length") > 0, entry.name
        finally:
            page.close()


def test_an_empty_trace_opens_without_a_complaint(browser, tmp_path):
    path = tmp_path / "empty.html"
    path.write_text(render_html(view_meta([], "raft", ["n1", "n2", "n3"]), []), encoding="utf-8")
    page = Page(browser, path.as_uri())
    try:
        page.page.click("#play")
        page.page.click("#step")
        page.page.click("#next-fault")
        assert "no fault after this point" in page.js("document.getElementById('current').textContent")
        assert page.js("consensusView.pos") == 0 and page.problems == []
    finally:
        page.close()
