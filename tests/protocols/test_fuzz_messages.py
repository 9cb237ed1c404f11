"""Fuzzing the protocols that are not log protocols in process: hostile peer messages
into simulated nodes under a client load (the fast companion of
tests/server/test_fuzz_peer.py, which sends far fewer to live processes).

Each protocol's own traffic is harvested from a short run (hostile_peers.harvest), then
replayed and mutated (hostile_peers.mutated): out-of-range values, empty, unknown and
wrong-typed node ids, transactions, rounds and incarnations that do not exist, items of
the wrong type inside tuples the codec checks only as tuples.  Every message goes
through the codec first (``decode`` of its bytes), so a node sees exactly what the
server's transport would hand it; a sender is always another member (the transport
authenticates it).  Between batches virtual time passes, so the timers the messages
armed fire too.

Asserted: no handler or timer raises (on a server that is a halt), every node's status
stays JSON, and after the fuzzing every timer it armed still runs without raising.
Not asserted: safety (a forged vote is a lie the checkers would rightly flag: an
authenticated peer is trusted to run the protocol, docs/transport.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import consensuskit.protocols.commit.messages
import consensuskit.protocols.gossip.messages
import consensuskit.protocols.raft.messages
import consensuskit.protocols.sharded.messages
import consensuskit.protocols.swim.messages  # noqa: F401 - registers the families' classes
from consensuskit.core.messages import CodecError, decode
from consensuskit.sim import SimConfig, Simulation
from tests.fuzzing import live_fuzz
from tests.protocols.hostile_peers import harvest, mutated, payload_of

PROTOCOLS = ("2pc", "3pc", "paxos-commit", "gossip", "gossip-kv", "swim", "sharded-raft")
NODES = ("n1", "n2", "n3")
DEFAULT_EXAMPLES = 150  # about 10 s a protocol; the named tests guard the bugs it was built for
SLOW_EXAMPLES = 5000


def loaded_sim(protocol: str) -> Simulation:
    """Three nodes under two clients, no checker (see the module docstring)."""
    sim = Simulation(
        SimConfig(
            protocol=protocol,
            node_ids=NODES,
            clients=2,
            duration=10_000.0,
            check_every_step=False,
            check_linearizability=False,
        )
    )
    sim.start_workload()
    sim.run_until(1.0)
    return sim


def check_statuses(sim: Simulation) -> None:
    for node in sim.nodes.values():
        if node is not None and hasattr(node, "status"):
            json.dumps(node.status())


def run_fuzz(protocol: str, examples: int) -> None:
    harvested = harvest(protocol)
    sim = loaded_sim(protocol)

    @live_fuzz(examples)
    @given(
        st.lists(st.tuples(mutated(harvested), st.sampled_from(NODES)), min_size=1, max_size=4),
        st.sampled_from([0.0, 0.01, 0.2, 2.0]),
    )
    def one(batch: list[tuple[tuple[str, str, Any], str]], wait: float) -> None:
        for (src, dst, raw), elsewhere in batch:
            try:
                msg = decode(payload_of(raw))
            except CodecError:
                continue  # the transport drops the connection: no node sees it
            if elsewhere != src and elsewhere != dst:
                dst = elsewhere  # the same message to a node it was not meant for
            sim.invoke(dst, lambda node, src=src, msg=msg: node.on_message(src, msg), f"fuzz {src}->{dst}")
        sim.run_for(wait)
        check_statuses(sim)

    one()
    sim.run_for(60.0)  # every timeout the fuzzing armed fires
    check_statuses(sim)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_peer_messages_never_raise(protocol: str) -> None:
    run_fuzz(protocol, DEFAULT_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_peer_messages_never_raise_long(protocol: str) -> None:
    run_fuzz(protocol, SLOW_EXAMPLES)
