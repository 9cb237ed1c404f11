"""A malformed message from a peer is dropped and counted, never raised out of a handler."""

from __future__ import annotations

import pytest

from consensuskit.protocols.commit.messages import ZERO_ROUND, Phase2a, Prepare, RMValue, TxnPart, Vote
from consensuskit.sim import SimConfig, Simulation

BAD_PART = TxnPart(success=(("explode", "k1", 1),))
BAD_SNAPSHOT = (("k1", "v"),)  # not (key, value, version)


@pytest.mark.parametrize("protocol", ["2pc", "3pc", "paxos-commit"])
def test_malformed_peer_messages_are_dropped_and_counted(protocol: str):
    sim = Simulation(SimConfig(protocol=protocol, node_ids=("n1", "n2", "n3")))
    node = sim.nodes["n1"]
    assert node is not None
    node.on_message("n2", Prepare(txn="n2.1.1", coordinator="n2", participants=("n1",), part=BAD_PART))
    if protocol == "paxos-commit":
        value = RMValue(prepared=True, snapshot=BAD_SNAPSHOT)  # type: ignore[arg-type]
        node.on_message("n2", Phase2a(txn="n2.1.1", rm="n2", ballot=ZERO_ROUND, value=value, leader="n2"))
    else:
        node.on_message("n2", Vote(txn="n1.1.1", yes=True, snapshot=BAD_SNAPSHOT))  # type: ignore[arg-type]
    assert node.status()["malformed"] == 2
    assert not node.store.locks and not node.in_doubt()
