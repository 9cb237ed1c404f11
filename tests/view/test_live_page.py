"""The live page in Debian's Chromium (Playwright) on real node processes, served as
``consensuskit up --view`` serves it (view/live.py ``ClusterView``): kill the leader
from the page's own button, and the page shows the node down and a new leader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.view.live import ClusterView
from tests.view.conftest import Page

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def viewed(tmp_path: Path) -> Iterator[tuple[LocalCluster, str]]:
    options = {
        "enable_fault_injection": True,
        "options": {"election_timeout": 0.3, "heartbeat_interval": 0.05},
    }
    layout = ClusterLayout.prepare(tmp_path / "data", 3, free_base_port(6), node_options=options)
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_for_leader(30)
        viewer = ClusterView(cluster)
        url = viewer.start()
        try:
            yield cluster, url
        finally:
            viewer.stop()


def test_killing_the_leader_from_the_live_page_shows_a_new_leader(browser: Any, viewed: Any) -> None:
    cluster, url = viewed
    page = Page(browser, url)
    try:
        p = page.page
        p.wait_for_selector("#live-state:text('connected')", timeout=30_000)
        p.wait_for_selector(".node.leader", timeout=30_000)
        leader = p.get_attribute(".node.leader", "data-node")
        assert leader in cluster.nodes
        p.select_option("#act-node", leader)
        p.click('#live button[data-act="kill"]')
        p.wait_for_selector("#replies li", timeout=30_000)
        reply = p.inner_text("#replies li")
        assert "killed with SIGKILL" in reply and reply.count("refused") == 0, reply
        assert not cluster.nodes[leader].running
        p.wait_for_selector(f'.node.down[data-node="{leader}"]', timeout=30_000)
        p.wait_for_function(
            "(old) => [...document.querySelectorAll('.node.leader')].some((b) => b.dataset.node !== old)",
            arg=leader,
            timeout=30_000,
        )
        new = p.get_attribute(".node.leader", "data-node")
        assert new != leader and new == cluster.wait_for_leader(10, exclude=[leader])
        assert page.js("consensusView.gaps") == 0 and page.js("consensusView.received") > 0
        assert page.problems == []
    finally:
        page.close()
