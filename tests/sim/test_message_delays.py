"""Message delays: the causal depth from a client request to the first learner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.sim import NetworkConfig, SimConfig, Simulation
from consensuskit.sim.simulation import summarize_delays


@dataclass(frozen=True, slots=True, kw_only=True)
class Hop:
    slot: int
    left: int


class ChainNode:
    """Passes each request ``hops`` times around the ring; the last receiver learns it.

    With option ``restart_on_timer`` the first hop is sent from a timer instead, which
    starts a new causal chain (depth 0) and so must not count the request's delivery."""

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.env = env
        self.members = list(members)
        self.hops: int = options.get("hops", 2)
        self.pending: list[int] = []

    def _next(self) -> str:
        i = self.members.index(self.env.node_id)
        return self.members[(i + 1) % len(self.members)]

    def on_start(self) -> None: ...

    def on_request(self, request: ClientRequest) -> None:
        self.env.storage.put(f"req{request.seq}", request.seq)  # through the barrier too
        self.env.send(self._next(), Hop(slot=request.seq, left=self.hops - 1))
        self.env.deliver(ClientResponse(client_id=request.client_id, seq=request.seq, ok=True))

    def on_message(self, src: str, msg: Any) -> None:
        if msg.left == 0:
            self.env.record("learned", slot=msg.slot)
        else:
            self.env.send(self._next(), Hop(slot=msg.slot, left=msg.left - 1))

    def on_timer(self, key: str) -> None: ...


def chain_sim(hops: int) -> Simulation:
    registry = Registry()
    registry.add(ProtocolSpec(name="chain", description="test", make_node=ChainNode))
    config = SimConfig(
        protocol="chain",
        duration=1.0,
        settle=0.5,
        options={"hops": hops},
        network=NetworkConfig(latency_min=0.001, latency_max=0.002),
    )
    return Simulation(config, registry)


def request(seq: int) -> ClientRequest:
    return ClientRequest(client_id="c1", seq=seq, op=Op(kind="get", key="k"))


@pytest.mark.parametrize("hops", [1, 2, 4, 7])
def test_depth_counts_every_hop(hops: int) -> None:
    sim = chain_sim(hops)
    for seq in range(1, 4):
        sim.send_request("n1", request(seq))
    sim.run_for(0.5)
    assert sim.learned_delays == {1: hops, 2: hops, 3: hops}
    assert sim.message_delays == {"count": 3, "mean": hops, "max": hops, "histogram": {str(hops): 3}}
    learned = [r for r in sim.trace.tail_records(200) if r[1] == "rec" and r[3] == "learned"]
    assert [r[4]["delays"] for r in learned] == [hops] * 3


def test_held_and_released_message_keeps_its_depth() -> None:
    sim = chain_sim(3)
    sim.add_filter(lambda src, dst, msg: "hold" if isinstance(msg, Hop) and msg.left == 1 else None)
    sim.send_request("n1", request(1))
    sim.run_for(0.2)
    assert sim.learned_delays == {}
    sim.clear_filters()
    assert sim.release_held() == 1
    sim.run_for(0.2)
    assert sim.learned_delays == {1: 3}


def test_only_the_first_learner_of_a_slot_counts_and_ranges_expand() -> None:
    sim = chain_sim(1)
    env = sim.env_of("n2")
    assert env is not None
    env.depth = 5
    env.record("learned", slot=10, first=8)
    env.depth = 1
    env.record("learned", slot=9)
    assert sim.learned_delays == {8: 5, 9: 5, 10: 5}


def test_summary_of_no_commands() -> None:
    assert summarize_delays([]) == {"count": 0, "mean": None, "max": None, "histogram": {}}
    assert summarize_delays([2, 4, 2]) == {"count": 3, "mean": 2.667, "max": 4, "histogram": {"2": 2, "4": 1}}


def test_raft_leader_learns_in_two_delays_in_steady_state() -> None:
    result = Simulation(SimConfig(protocol="raft", clients=1, seed=3, duration=2.0)).run()
    delays = result.message_delays
    assert delays["count"] > 20
    # One sequential client: AppendEntries out, acknowledgement back.
    assert delays["histogram"]["2"] >= 0.9 * delays["count"]
    assert result.to_json()["message_delays"] == delays
