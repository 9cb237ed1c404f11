"""Seed sweeps: Basic and Fast Paxos survive every fault; each deliberate bug is caught.

CI size: 100 seeds x two cluster sizes x all faults per protocol (Fast Paxos needs
n >= 4 for f = 1).  The long sweep (2000 seeds per size) is marked slow.
"""

from __future__ import annotations

import os

import pytest

from consensuskit.sim import NEMESIS_KINDS, SimConfig
from consensuskit.sweep import run_sweep

WORKERS = os.cpu_count() or 1


def config(protocol: str, nodes: int, **overrides) -> SimConfig:
    base = dict(
        protocol=protocol,
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        duration=2.0,
        clients=3,
        nemesis=NEMESIS_KINDS,
    )
    base.update(overrides)
    return SimConfig(**base)


def sweep(cfg: SimConfig, seeds: range):
    # Spawned workers do not see the test's registry until the protocols are wired in.
    return run_sweep(cfg, seeds, workers=WORKERS, progress=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "protocol, nodes, options",
    [
        ("basic-paxos", 3, {}),
        ("basic-paxos", 5, {}),
        ("fast-paxos", 4, {}),
        ("fast-paxos", 5, {"recovery": "uncoordinated"}),
    ],
)
def test_ci_sweep_all_faults_no_violation(protocol: str, nodes: int, options: dict):
    result = sweep(config(protocol, nodes, options=options), range(100))
    assert [(f.seed, f.reason) for f in result.failures] == []
    assert result.passed == 100


SEPARATE_ROLES = [
    ("basic-paxos", {"proposers": ["n1", "n2"], "acceptors": ["n3", "n4", "n5"], "learners": ["n5"]}),
    (
        "fast-paxos",
        {"proposers": ["n1", "n2", "n3"], "acceptors": ["n2", "n3", "n4", "n5"], "coordinator": "n4"},
    ),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol, roles", SEPARATE_ROLES)
def test_sweep_with_separate_roles(protocol: str, roles: dict):
    result = sweep(config(protocol, 5, options=roles), range(25))
    assert [(f.seed, f.reason) for f in result.failures] == []


# Each bug with the sweep that catches it and the properties allowed to report it.
SAFETY = {"agreement", "learned-not-chosen", "executed-divergence", "acknowledged-write"}
BUG_SWEEPS = [
    ("basic-paxos", "ignore-promise", 3),
    ("basic-paxos", "accept-lower-ballot", 5),
    ("fast-paxos", "ignore-promise", 4),
    ("fast-paxos", "accept-lower-ballot", 5),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol, bug, nodes", BUG_SWEEPS)
def test_every_bug_knob_is_caught_by_a_sweep(protocol: str, bug: str, nodes: int):
    # Unbatched: the sizes here were chosen for the one-input-per-batch simulator;
    # tests/check/test_bug_knobs.py holds every knob at default options (runtime random).
    cfg = config(protocol, nodes, bugs=frozenset({bug}), duration=3.0, runtime="unbatched")
    result = sweep(cfg, range(40))
    assert result.failures, f"{bug} went unnoticed in 40 seeds of {protocol}"
    for failure in result.failures:
        assert failure.reason.split(":")[0].removeprefix("invariant ") in SAFETY, failure.reason


@pytest.mark.slow
@pytest.mark.parametrize(
    "protocol, nodes", [("basic-paxos", 3), ("basic-paxos", 5), ("fast-paxos", 4), ("fast-paxos", 5)]
)
def test_long_sweep(protocol: str, nodes: int):
    result = sweep(config(protocol, nodes, duration=5.0), range(2000))
    assert [(f.seed, f.reason) for f in result.failures] == []
