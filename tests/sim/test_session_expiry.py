"""Session expiry under the simulator's faults: whoever thinks it leads writes clock
commands from its own (skewed, drifting, restarted) clock, sessions expire and are
evicted all the time (a ttl of a few hundred ms, a cap below the number of clients), and
still every replica reaches the same session table, no invariant breaks and the history
stays linearizable (a retry of a forgotten session is refused, never re-applied)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from consensuskit.core.client import ClientRequest
from consensuskit.sim import NEMESIS_KINDS, SimConfig, Simulation
from consensuskit.statemachines.sessions import clock_op

PERIOD = 0.05


def applied(node: Any) -> int:
    return int(node.status()["applied"])


def run_with_clock(protocol: str, seed: int) -> tuple[Simulation, Any]:
    config = SimConfig(protocol=protocol, clients=5, seed=seed, duration=6.0, nemesis=tuple(NEMESIS_KINDS))
    sim = Simulation(config)
    epochs: dict[int, str] = {}  # id(env) -> the epoch of that incarnation
    envs: list[Any] = []  # keeps every env alive, so no id() is reused
    seq = itertools.count(1)

    def tick() -> None:
        for node_id in sim.node_ids:
            node = sim.nodes[node_id]
            if node is None or sim.paused(node_id) or node.status()["role"] != "leader":
                continue
            env = sim.env_of(node_id)
            if id(env) not in epochs:
                envs.append(env)
                epochs[id(env)] = f"{node_id}.{len(epochs)}"
            now_ms = max(0, int(sim.local_time(node_id) * 1000))
            op = clock_op(epochs[id(env)], now_ms, 300, 3)
            sim.send_request(node_id, ClientRequest(client_id="anon.clock", seq=next(seq), op=op))
        if sim.now < config.duration:
            sim.schedule(sim.now + PERIOD, tick, "clock")

    sim.schedule(PERIOD, tick, "clock")
    return sim, sim.run()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", ["raft", "multipaxos"])
@pytest.mark.parametrize("seed", range(4))
def test_replicas_agree_on_sessions_under_faults(protocol: str, seed: int) -> None:
    sim, result = run_with_clock(protocol, seed)
    assert result.invariant_violations == [] and result.linearizable is True, result.to_json()
    nodes = [n for n in sim.nodes.values() if n is not None]
    tables = [n.sm.sessions for n in nodes]
    assert max(t.forgotten_total for t in tables) > 0  # expiry and eviction happened
    assert all(len(t) <= 3 for t in tables)
    # Replicas at the same applied index hold the same sessions, clock and record.
    by_index: dict[int, list[Any]] = {}
    for n in nodes:
        by_index.setdefault(applied(n), []).append(n.sm.snapshot())
    for snapshots in by_index.values():
        assert all(s == snapshots[0] for s in snapshots)
