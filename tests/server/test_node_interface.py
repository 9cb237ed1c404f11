"""The node interface of docs/server.md ("What a protocol must offer the server") as a
contract over every protocol of the catalog: each offers ``node_status()`` and exactly
the capabilities it claims, on nodes the simulator drove to a steady state; a node
without ``node_status()`` is refused at start with a clear error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensuskit.catalog import default_registry
from consensuskit.core.capabilities import (
    CAPABILITIES,
    CONFIG_CHANGES,
    HAS_LEADER,
    LEADER_TRANSFER,
    LEASE_READS,
    MEMBERSHIP_CHANGE,
    REPLICATED_LOG,
    Membership,
    NodeStatus,
    capabilities,
    leader_of,
    status_dict,
)
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.server.config import ConfigError
from consensuskit.server.main import EXIT_CONFIG, NodeServer, run, serve
from consensuskit.server.node_interface import (
    change_visible,
    clock_writer,
    missing,
    status_problems,
    supported_changes,
)
from consensuskit.server.wal import DiskStorage
from consensuskit.sim.config import SimConfig
from consensuskit.sim.simulation import Simulation
from tests.server.runtime_harness import node_config

EXPECTED = {
    "raft": (HAS_LEADER, REPLICATED_LOG, MEMBERSHIP_CHANGE, LEADER_TRANSFER, LEASE_READS),
    "multipaxos": (HAS_LEADER, REPLICATED_LOG, MEMBERSHIP_CHANGE, LEASE_READS),
    "basic-paxos": (REPLICATED_LOG,),
    "fast-paxos": (REPLICATED_LOG,),
    "zab": (HAS_LEADER, REPLICATED_LOG),
    # Atomic commit: no leader, no log; a NodeStatus only (in-doubt and blocked
    # transactions in its details).
    "2pc": (),
    "3pc": (),
    "paxos-commit": (),
    "gossip": (),
    "gossip-kv": (),  # an AP store: every node a replica, no leader, no log
    "swim": (),  # a membership protocol: no leader, no log
    "pbft": (HAS_LEADER, REPLICATED_LOG),
    # S Raft groups per node, each with its own leader: the node itself has none.
    "sharded-raft": (),
}
WITH_LEADER = ("raft", "multipaxos")
# pbft: a primary, zab: a leader; neither changes membership
LEADS = (*WITH_LEADER, "pbft", "zab")
IDS = ("n1", "n2", "n3", "n4")  # fast paxos needs n >= 3f+1


def test_every_catalog_protocol_is_listed_here() -> None:
    assert sorted(EXPECTED) == default_registry().names()


def steady(protocol: str) -> Simulation:
    """A simulation whose leader (if the protocol has one) is settled, with a few
    client operations executed."""
    config = SimConfig(protocol=protocol, node_ids=IDS, seed=1, clients=2, check_linearizability=False)
    sim = Simulation(config)
    sim.start_workload()
    if protocol in LEADS:
        assert sim.run_until_true(lambda: len(leader_of(sim.nodes.items())) == 1, 10.0)
    sim.run_until(sim.now + 2.0)
    return sim


@pytest.mark.parametrize("protocol", sorted(EXPECTED))
def test_every_protocol_offers_its_capabilities(protocol: str) -> None:
    sim = steady(protocol)
    leaders = leader_of(sim.nodes.items())
    assert len(leaders) == (1 if protocol in LEADS else 0)
    for node_id, node in sim.nodes.items():
        assert status_problems(node) == [], (protocol, node_id)
        assert capabilities(node) == EXPECTED[protocol]
        status = node.node_status()
        assert isinstance(status, NodeStatus) and status.id == node_id
        assert status.generation_name in ("term", "round", "incarnation", "counter", "view", "epoch", "hlc")
        has_log = REPLICATED_LOG in EXPECTED[protocol]
        if has_log:
            pos = node.log_position()
            assert pos.snapshot_index <= pos.applied <= pos.commit and pos.applied <= pos.last_index
        if protocol in WITH_LEADER:
            assert status.leader == leaders[0] and status.generation >= 1
            assert node.current_leader() == leaders[0]
            assert node.is_leader() == (node_id == leaders[0]) == (status.role == "leader")
        if protocol in WITH_LEADER:
            membership = node.membership()
            assert membership.voters == IDS and not membership.config_pending
        elif protocol in LEADS:
            assert status.leader == leaders[0] and node.current_leader() == leaders[0]
            assert node.is_leader() == (node_id == leaders[0]) == (status.role == "leader")
            assert pos.commit >= 1
        else:
            assert status.leader is None and status.role != "leader"
            if has_log:
                assert pos.commit >= 1  # the workload's commands went through the log


@pytest.mark.parametrize("protocol", WITH_LEADER)
def test_the_served_status_is_a_superset_of_the_old_one(protocol: str) -> None:
    """/v1/status keeps every field clients and tests read today, with the same values."""
    sim = steady(protocol)
    for node in sim.nodes.values():
        old, new = node.status(), status_dict(node)
        assert {k: new.get(k) for k in old} == old
        assert new["capabilities"] == list(EXPECTED[protocol])
        assert new["generation"] == old["term"]


@pytest.mark.parametrize("protocol", WITH_LEADER)
def test_membership_names_are_the_servers(protocol: str) -> None:
    sim = steady(protocol)
    [leader] = leader_of(sim.nodes.items())
    supported = supported_changes(sim.nodes[leader])
    assert supported and set(supported) <= set(CONFIG_CHANGES)
    assert "add-voter" in supported and "remove" in supported


def test_a_node_lacking_a_capability_is_named() -> None:
    sim = steady("basic-paxos")
    node = sim.nodes["n1"]
    assert supported_changes(node) == ()
    for capability in (HAS_LEADER, MEMBERSHIP_CHANGE, LEADER_TRANSFER, LEASE_READS):
        refusal = missing(node, capability)
        assert refusal is not None and capability in refusal
    assert missing(node, REPLICATED_LOG) is None
    assert set(CAPABILITIES) == set(EXPECTED["raft"])


class _Node:
    def __init__(self, status: Any) -> None:
        self._status = status

    def node_status(self) -> Any:
        return self._status


def test_status_problems_name_a_missing_or_mistyped_status() -> None:
    good = NodeStatus(id="n1", role="follower", leader=None, generation_name="term", generation=3)
    assert status_problems(_Node(good)) == []
    assert status_problems(object()) == ["no node_status() method (core/capabilities.py)"]
    assert status_problems(_Node({"role": "x"})) == ["node_status() returned dict, not a NodeStatus"]
    bad = NodeStatus(id="n1", role="x", leader=None, generation_name="term", generation=True)
    assert status_problems(_Node(bad)) == ["node_status().generation is bool"]
    assert capabilities(_Node(good)) == ()
    assert status_dict(_Node(good))["capabilities"] == []


def test_visible_changes() -> None:
    membership = Membership(voters=("n1", "n2"), learners=("n3",))
    assert change_visible("add-voter", "n2", membership) and not change_visible("add-voter", "n3", membership)
    assert change_visible("add-learner", "n3", membership) and change_visible("remove", "n4", membership)
    assert not change_visible("remove", "n3", membership)
    assert supported_changes(object()) == ()


def test_the_session_clock_runs_on_the_leader_or_on_one_fixed_node() -> None:
    sim = steady("raft")
    [leader] = leader_of(sim.nodes.items())
    assert [n for n, node in sim.nodes.items() if clock_writer(node, n, IDS)] == [leader]
    sim = steady("basic-paxos")
    assert [n for n, node in sim.nodes.items() if clock_writer(node, n, ("n3", "n2", "n4"))] == ["n2"]


# ---------------------------------------------------------------------- refusals at start
class _Mute:
    """A node with the input contract and nothing to say about itself."""

    def __init__(self, *args: Any) -> None:
        pass

    def on_start(self) -> None:
        pass

    def on_message(self, src: str, msg: Any) -> None:
        pass

    def on_timer(self, key: str) -> None:
        pass

    def on_request(self, request: Any) -> None:
        pass


@pytest.mark.timeout(30)
def test_the_server_refuses_a_node_without_a_status(tmp_path) -> None:
    registry = Registry()
    registry.add(ProtocolSpec(name="raft", description="mute", make_node=_Mute))
    config = node_config(tmp_path, "n1", ["n1"], options={})
    server = NodeServer(config, registry=registry)
    with pytest.raises(ConfigError) as err:
        asyncio.run(server.start())
    assert str(err.value) == (
        "protocol: raft cannot run in the server (no node_status() method (core/capabilities.py)); "
        "see docs/server.md, 'What a protocol must offer the server'"
    )
    # The data directory was let go: another node can use it at once.
    assert DiskStorage.open(tmp_path / "n1").close() is None


@pytest.mark.timeout(30)
def test_too_few_fast_paxos_acceptors_is_a_configuration_error(tmp_path, capsys) -> None:
    config = node_config(tmp_path, "n1", ["n1", "n2", "n3"], protocol="fast-paxos", options={})
    assert run(serve(config)) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: protocol: fast-paxos: fast paxos with f=1 needs n >= 3f+1")
    assert err.count("\n") == 1
    assert DiskStorage.open(tmp_path / "n1").close() is None
