"""The node interface of docs/server.md ("What a protocol must offer the server") as a
contract, checked for every protocol the server runs on nodes the simulator drove to a
steady leader; and refused, with a clear error, for those it cannot run."""

from __future__ import annotations

from typing import Any

import pytest

from consensuskit.server.main import EXIT_CONFIG, run, serve
from consensuskit.server.node_interface import (
    CONFIG_CHANGES,
    STATUS_FIELDS,
    change_visible,
    config_pending,
    status_problems,
    supported_changes,
)
from consensuskit.server.wal import DiskStorage
from consensuskit.sim.config import SimConfig
from consensuskit.sim.simulation import Simulation
from tests.server.runtime_harness import node_config

SERVED = ("raft", "multipaxos")
NOT_SERVED = ("basic-paxos", "fast-paxos")


def steady(protocol: str) -> tuple[Simulation, str]:
    sim = Simulation(SimConfig(protocol=protocol, seed=1, check_linearizability=False))

    def one_leader() -> bool:
        leaders = [
            n for n, node in sim.nodes.items() if node is not None and node.status()["role"] == "leader"
        ]
        return len(leaders) == 1

    assert sim.run_until_true(one_leader, 10.0)
    sim.run_until(sim.now + 1.0)
    [leader] = [n for n, node in sim.nodes.items() if node.status()["role"] == "leader"]
    return sim, leader


@pytest.mark.parametrize("protocol", SERVED)
def test_every_served_protocol_offers_the_status_fields(protocol: str) -> None:
    sim, leader = steady(protocol)
    for node_id, node in sim.nodes.items():
        assert status_problems(node) == [], (protocol, node_id, node.status())
        status = node.status()
        assert status["leader"] == leader
        assert status["term"] >= 1 and status["applied"] <= status["commit"]
        assert status["voters"] == ["n1", "n2", "n3"] and status["learners"] == []
        assert config_pending(status) is False
    leader_status = sim.nodes[leader].status()
    assert leader_status["role"] == "leader"
    assert sorted(leader_status["peers"]) == sorted(n for n in sim.nodes if n != leader)
    assert all(isinstance(p["match"], int) for p in leader_status["peers"].values())


@pytest.mark.parametrize("protocol", SERVED)
def test_membership_names_are_the_servers(protocol: str) -> None:
    sim, leader = steady(protocol)
    supported = supported_changes(sim.nodes[leader])
    assert supported and set(supported) <= set(CONFIG_CHANGES)
    assert "add-voter" in supported and "remove" in supported


@pytest.mark.parametrize("protocol", NOT_SERVED)
def test_protocols_without_the_interface_are_named(protocol: str) -> None:
    ids = ("n1", "n2", "n3", "n4")  # fast paxos needs n >= 3f+1
    sim = Simulation(SimConfig(protocol=protocol, node_ids=ids, seed=1, check_linearizability=False))
    node = next(iter(sim.nodes.values()))
    problems = status_problems(node)
    assert "status() lacks 'role'" in problems and "status() lacks 'leader'" in problems


class _Node:
    def __init__(self, status: dict[str, Any]) -> None:
        self._status = status

    def status(self) -> dict[str, Any]:
        return self._status


def test_status_problems_name_missing_and_mistyped_fields() -> None:
    good: dict[str, Any] = {name: types[0]() for name, types in STATUS_FIELDS.items() if types[0] is not None}
    good["leader"] = None
    assert status_problems(_Node(good)) == []
    assert status_problems(object()) == ["no status() method"]
    assert status_problems(_Node({**good, "term": "3"})) == ["status()['term'] is str"]
    assert status_problems(_Node({**good, "commit": True})) == ["status()['commit'] is bool"]
    del good["voters"]
    assert status_problems(_Node(good)) == ["status() lacks 'voters'"]


def test_pending_and_visible_changes() -> None:
    assert config_pending({"config_index": 5, "commit": 4}) is True  # Raft: no config_pending field
    assert config_pending({"config_index": 5, "commit": 5}) is False
    assert config_pending({"config_index": 0, "commit": 9, "config_pending": True}) is True
    status = {"voters": ["n1", "n2"], "learners": ["n3"]}
    assert change_visible("add-voter", "n2", status) and not change_visible("add-voter", "n3", status)
    assert change_visible("add-learner", "n3", status) and change_visible("remove", "n4", status)
    assert not change_visible("remove", "n3", status)
    assert supported_changes(object()) == ()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", NOT_SERVED)
def test_the_server_refuses_them_as_a_configuration_error(tmp_path, capsys, protocol: str) -> None:
    options = {"f": 0} if protocol == "fast-paxos" else {}
    config = node_config(tmp_path, "n1", ["n1"], protocol=protocol, options=options)
    assert run(serve(config)) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"error: protocol: {protocol} cannot run in the server (status() lacks 'role'")
    assert "What a protocol must offer the server" in err and err.count("\n") == 1
    # The data directory was let go: a served protocol can use it at once.
    assert DiskStorage.open(tmp_path / "n1").close() is None
