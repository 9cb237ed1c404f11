"""PBFT under the Byzantine nemesis: with at most f faulty replicas every strategy keeps
every invariant and a linearizable history; with f+1 colluding liars the checker finds
a violation; the monitor measures how long a faulty primary holds the system up."""

from __future__ import annotations

from typing import Any

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.pbft import STRATEGIES, replica_of
from consensuskit.protocols.pbft.messages import Commit, PrePrepare
from consensuskit.sim import SimConfig, Simulation

FOUR = ("n1", "n2", "n3", "n4")


def run(byzantine: str, seed: int, *, duration: float = 2.0, nemesis: tuple[str, ...] = (), **kw: Any) -> Any:
    config = SimConfig(
        protocol="pbft",
        node_ids=FOUR,
        seed=seed,
        duration=duration,
        settle=3.0,
        clients=3,
        nemesis=nemesis,
        options={"byzantine": byzantine},
        **kw,
    )
    return Simulation(config).run()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("node", ["n1", "n3"])  # the first primary, and a backup
def test_f_faulty_replicas_keep_every_invariant(strategy: str, node: str):
    result = run(f"{node}:{strategy}", seed=1)
    assert result.invariant_violations == [], result.invariant_violations
    assert result.linearizable is True
    assert result.ops["ok"] > 0


def test_f_plus_1_colluding_equivocators_break_agreement():
    """Two liars (n = 4 tolerates one) split n3 and n4: each commits its own batch."""
    found = []
    for seed in range(5):
        result = run("n1:equivocate,n2:equivocate", seed=seed, duration=1.0)
        found += [v["name"] for v in result.invariant_violations]
        if found:
            break
    assert set(found) & {"committed-prepared", "one-request-per-seq", "one-result"}, found


def test_crash_fault_quorums_let_one_equivocator_break_agreement():
    """The small-quorums knob (f+1 commits) with one equivocating primary: within f faulty
    replicas, so only the broken quorum rule explains the violation."""
    found = []
    for seed in range(5):
        result = run("n1:equivocate", seed=seed, duration=1.0, bugs=frozenset({"small-quorums"}))
        found += [v["name"] for v in result.invariant_violations]
        if found:
            break
    assert found, "no seed caught small-quorums"


def test_the_monitor_measures_the_silent_primarys_cost():
    result = run("n1:silent", seed=2)
    metrics = result.metrics
    assert metrics["faulty"] == {"n1": "silent"}
    assert metrics["recovered"] >= 1
    # At least one request timeout (0.5 s) passes before the view change.
    assert all(0.5 <= s < 5.0 for s in metrics["recovery_seconds"]), metrics


def test_malformed_messages_are_dropped_and_counted():
    sim = Simulation(SimConfig(protocol="pbft", node_ids=FOUR, check_linearizability=False))
    replica = replica_of(sim.nodes["n2"])
    assert replica is not None
    request = ClientRequest(client_id="c1", seq=1, op=Op(kind="get", key="x"))
    bad = [
        PrePrepare(view="x", seq=1, digest=b"", batch=(request,), replica="n1"),  # type: ignore[arg-type]
        PrePrepare(view=0, seq=1, digest=b"", batch=(request,), replica="n1", mac=b"bad"),
        Commit(view=0, seq=-1, digest=b"", replica="n3"),
        Commit(view=0, seq=1, digest=b"", replica="n1"),  # n3 claiming to be n1
        "not a message",
    ]
    for msg in bad:
        replica.on_message("n1" if isinstance(msg, PrePrepare) else "n3", msg)
    assert replica.dropped == len(bad)
    assert replica.log == {}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sweep_f_faulty_under_every_fault(strategy: str):
    for seed in range(20):
        for node in ("n1", "n2"):
            result = run(
                f"{node}:{strategy}",
                seed=seed,
                duration=4.0,
                nemesis=("partition", "crash", "pause", "loss", "dup", "reorder", "skew"),
            )
            assert result.invariant_violations == [], (seed, node, result.invariant_violations)
            assert result.linearizable is not False, (seed, node)
