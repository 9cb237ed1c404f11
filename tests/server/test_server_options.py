"""ProtocolSpec.server_options: defaults for real processes (issue 18).

A real node shares its CPU and waits on fsyncs, so the simulator's 300 ms election
timeout is too tight there; the server runs etcd's timings unless the operator says
otherwise, and the simulator never sees them.  Raft's server also sends up to 1,024
entries an AppendEntries (the simulator: 64), so a loaded leader's batch leaves as one
message per follower."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_registry
from consensuskit.core.registry import ProtocolSpec
from consensuskit.server.config import ConfigError
from tests.server.runtime_harness import Cluster, async_test, node_config

SERVER_DEFAULTS = {
    "raft": {"election_timeout": 1.0, "heartbeat_interval": 0.1, "max_batch_entries": 1024},
    "multipaxos": {"election_timeout": 1.0, "heartbeat_interval": 0.1, "pre_vote": True},
    "zab": {"election_timeout": 1.0, "tick": 0.1},
}


@pytest.mark.parametrize("protocol", sorted(SERVER_DEFAULTS))
def test_server_timers_sit_under_the_operators_options(protocol):
    spec = default_registry().get(protocol)
    assert spec.node_options({}) == SERVER_DEFAULTS[protocol]
    assert spec.node_options({"election_timeout": 0.5})["election_timeout"] == 0.5  # the operator wins


def test_a_spec_without_server_options_runs_the_operators_options_unchanged():
    spec = ProtocolSpec(name="toy", description="", make_node=lambda *a: None)
    assert spec.node_options({"x": 1}) == {"x": 1}


@pytest.mark.parametrize("protocol", sorted(SERVER_DEFAULTS))
def test_the_simulator_keeps_the_protocols_own_defaults(protocol):
    from consensuskit.sim.config import SimConfig
    from consensuskit.sim.simulation import Simulation

    sim = Simulation(SimConfig(protocol=protocol, seed=1))
    try:
        node = next(iter(sim.nodes.values()))
        assert node.opts.election_timeout == 0.3
        if protocol == "raft":
            assert node.opts.max_batch_entries == 64
        if protocol == "multipaxos":
            assert not node.opts.pre_vote  # Chubby's plain phase 1, the seeds' story
    finally:
        sim.close()


def test_a_timeout_below_the_server_heartbeat_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^options: need 0 < heartbeat_interval < election_timeout$"):
        node_config(tmp_path, "n1", ["n1"], options={"election_timeout": 0.08})


@async_test
async def test_a_server_node_runs_the_server_timers(tmp_path):
    async with Cluster(tmp_path, ["n1"], transport="loopback", options={}) as cluster:
        opts = cluster.servers["n1"].runtime.node.opts
        assert (opts.election_timeout, opts.heartbeat_interval) == (1.0, 0.1)
        assert opts.max_batch_entries == 1024
    async with Cluster(
        tmp_path / "b", ["n1"], transport="loopback", options={"election_timeout": 0.4}
    ) as cluster:
        opts = cluster.servers["n1"].runtime.node.opts
        assert (opts.election_timeout, opts.heartbeat_interval) == (0.4, 0.1)


def test_server_options_sit_under_the_operators_options():
    spec = ProtocolSpec(
        name="toy", description="", make_node=lambda *a: None, server_options={"t": 1.0, "h": 0.1}
    )
    assert spec.node_options({}) == {"t": 1.0, "h": 0.1}
    assert spec.node_options({"t": 0.5}) == {"t": 0.5, "h": 0.1}
