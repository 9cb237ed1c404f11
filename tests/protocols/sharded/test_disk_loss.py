"""A sharded host that lost its disk: every group's replica rejoins by its protocol's
rule (Raft: as a learner, readmitted once caught up), the host says it is rejoining until
all are readmitted, and its session gets a fresh incarnation (node.py's module rules)."""

from __future__ import annotations

import pytest

from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.sharded.node import REJOIN_INCARNATIONS
from consensuskit.sim import Simulation
from tests.protocols.sharded.test_simulation import bank


def test_a_wiped_host_rejoins_in_every_group_and_the_bank_stays_whole() -> None:
    sim = Simulation(bank(1, nemesis=()))
    sim.run_for(1.5)
    sim.wipe("n2")
    host = sim.nodes["n2"]
    assert host.rejoining and all(g.rejoining for g in host.groups)
    assert host.node_status().details["rejoining"] is True
    # A fresh session: the lost disk's count is gone, and "n2.1" would be taken for the
    # old session, its commands for repeats.
    assert host.incarnation > REJOIN_INCARNATIONS and host.session != "n2.1"
    assert sim.run_until_true(lambda: not host.rejoining, 5.0)
    assert not any(g.rejoining for g in host.groups)
    assert sim.storage_of("n2").get(REJOINING_KEY) is False
    assert all(sim.storage_of("n2").get(f"g{g}/{REJOINING_KEY}") is False for g in range(host.shards))
    result = sim.run()
    assert result.ok, result.invariant_violations
    assert result.metrics["serializability"]["ok"]


def test_a_restarted_host_keeps_each_groups_own_word() -> None:
    # Restarted while rejoining, the host hands the key only to groups that never had
    # it: a group readmitted already stays readmitted.
    sim = Simulation(bank(1, nemesis=()))
    sim.run_for(1.5)
    sim.wipe("n2")
    storage = sim.storage_of("n2")
    storage.durable.put(f"g0/{REJOINING_KEY}", False)  # as if group 0 were readmitted
    sim.restart("n2")
    host = sim.nodes["n2"]
    assert not host.groups[0].rejoining and host.groups[1].rejoining and host.rejoining


@pytest.mark.parametrize("seed", [3, 4])
def test_the_bank_under_wipes_and_partitions_conserves_and_is_serializable(seed: int) -> None:
    result = Simulation(bank(seed, nemesis=("partition", "wipe"), duration=6.0)).run()
    assert result.ok, result.invariant_violations
    assert result.faults.get("wipe", 0) >= 1, result.faults
