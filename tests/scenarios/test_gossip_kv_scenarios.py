"""cap-partition (scenarios/gossip_kv.py): Raft's minority refuses writes, the gossip kv
takes them all, converges after the heal and loses acknowledged writes to concurrent
ones; the table prints both side by side. With a bug knob that breaks convergence the
scenario fails."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.scenarios import gossip_kv
from consensuskit.scenarios.base import run_scenario

pytestmark = pytest.mark.timeout(300)

SCENARIO = gossip_kv.SCENARIOS[0]


def test_cap_partition_is_in_the_catalog_under_gossip_kv() -> None:
    assert default_catalog().scenario("cap-partition").protocol == "gossip-kv"


@pytest.mark.parametrize("seed", [0, 1])
def test_cap_partition_outcomes(seed: int) -> None:
    run = run_scenario(SCENARIO, seed=seed)
    assert run.passed, [(e.text, e.detail) for e in run.expectations if not e.passed]
    texts = {e.text: e.detail for e in run.expectations}
    assert texts["raft: the minority side gets no write acknowledged (refused or timed out)"].startswith(
        "0/30"
    )
    assert texts["gossip-kv: both sides get every write acknowledged"] == "30/30 acked; 30/30 acked"
    lost = int(
        texts["gossip-kv: acknowledged writes were overwritten by concurrent ones (measured)"].split()[0]
    )
    assert lost >= 10  # each key's losing side loses its partition-time writes
    table = run.notes
    assert "raft kv (CP)" in table[0] and "gossip-kv (AP)" in table[0]
    assert table[-1].split()[3] == "0" and int(table[-1].split()[4]) == lost


def test_cap_partition_fails_when_the_gossip_kv_does_not_converge() -> None:
    run = run_scenario(SCENARIO, seed=0, options={"bugs": ["missing-keys-only"]})
    assert not run.passed
    failed = [e.text for e in run.expectations if not e.passed]
    assert "gossip-kv: every replica holds the same map after the heal" in failed
