"""A malformed message from a peer is dropped and counted, never raised out of a handler."""

from __future__ import annotations

from typing import Any

import pytest

from consensuskit.core.messages import CodecError, decode, encode
from consensuskit.protocols.commit.base import MAX_ROUND
from consensuskit.protocols.commit.messages import (
    ZERO_ROUND,
    Phase1a,
    Phase1b,
    Phase2a,
    Phase2b,
    Prepare,
    RMValue,
    Round,
    StateRequest,
    TxnPart,
    Vote,
)
from consensuskit.protocols.common.number_bounds import STEP
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


# ---------------------------------------------------------------------- found by fuzzing
# Messages the peer-port fuzzing (tests/server/test_fuzz_peer.py) sent, decoded as the
# server's transport decodes them: each halted a node or left a transaction in doubt.
def from_wire(msg: Any) -> Any:
    """``msg`` as a peer's frame reaches a node: encoded, then decoded (the codec's checks)."""
    return decode(encode(msg))


def quiet_sim(protocol: str) -> Simulation:
    """Three nodes, every one a participant, whose messages are all lost: a node does
    only what the test feeds it.  No checker after each step: what these tests feed
    claims votes their senders never cast (the checker would call them lies)."""
    sim = Simulation(SimConfig(protocol=protocol, node_ids=("n1", "n2", "n3"), check_every_step=False))
    sim.add_filter(lambda src, dst, msg: "drop")
    return sim


def feed(sim: Simulation, node: str, src: str, msg: Any, wire: bool = True) -> None:
    """``msg`` handled by ``node`` as from ``src``: through the codec (``wire``), or as is
    (what the codec refuses, to hold the node's own gate to it too)."""
    msg = from_wire(msg) if wire else msg
    sim.invoke(node, lambda n: n.on_message(src, msg), f"{src}->{node} {type(msg).__name__}")


GOOD_PART = TxnPart(success=(("put", "k1", "v"),))


@pytest.mark.parametrize("protocol", ["2pc", "3pc", "paxos-commit"])
@pytest.mark.parametrize(
    "prepare",
    [
        # A dict where a participant belongs (the codec then checked only that it was a
        # tuple; it refuses the frame now): the timed-out participant's DecisionRequest
        # went to it, and the server's runtime halted ("releasing outputs failed with
        # AttributeError: 'dict' object has no attribute 'done'").
        Prepare(txn="n2.1.9", coordinator="n2", participants=({"a": "b"},), part=GOOD_PART),  # type: ignore[arg-type]
        # A coordinator that is not a member: nobody answers the participant's inquiry,
        # so it would hold its locks in doubt for good.
        Prepare(txn="n9.1.9", coordinator="n9", participants=("n1",), part=GOOD_PART),
        # A coordinator that is not the one the id names (that one presumes abort).
        Prepare(txn="n9.1.9", coordinator="n2", participants=("n1",), part=GOOD_PART),
    ],
    ids=["dict-participant", "non-member-coordinator", "coordinator-not-the-ids"],
)
def test_prepare_naming_no_member_is_dropped(protocol: str, prepare: Prepare):
    sim = quiet_sim(protocol)
    wire = all(isinstance(p, str) for p in prepare.participants)
    if not wire:
        with pytest.raises(CodecError, match="field 'participants' holds a dict, not a str"):
            from_wire(prepare)
    feed(sim, "n1", "n2", prepare, wire=wire)
    sim.run_until(30.0)  # every timeout fires (the DecisionRequest, the recovery)
    node = sim.nodes["n1"]
    assert node.status()["malformed"] == 1
    assert not node.store.locks and not node.in_doubt()


@pytest.mark.parametrize("protocol", ["3pc", "paxos-commit"])
def test_round_beyond_max_is_ignored(protocol: str):
    """A round of 2^63-1 promised would make the next takeover's round 2^63, which no
    frame can carry: the takeover's every message dropped, the transaction in doubt.  So
    would one at the ceiling itself, 2^62, once taken: a round more than a step above the
    transaction's rounds this node knows is ignored too (protocols/common/number_bounds.py);
    one within the step is promised."""
    sim = quiet_sim(protocol)
    node = sim.nodes["n1"]
    feed(sim, "n1", "n2", Prepare(txn="n2.1.9", coordinator="n2", participants=("n1",), part=GOOD_PART))

    def promised() -> Round:
        return node.ptx["n2.1.9"].promised if protocol == "3pc" else node.acc["n2.1.9"].promised

    def offer(number: int) -> None:
        round_ = Round(number, 2)
        if protocol == "3pc":
            feed(sim, "n1", "n2", StateRequest(txn="n2.1.9", round=round_))
        else:
            feed(sim, "n1", "n2", Phase1a(txn="n2.1.9", ballot=round_, participants=("n1",), leader="n2"))

    for number in (2**63 - 1, MAX_ROUND, STEP + 1):
        offer(number)
        assert promised() == ZERO_ROUND, number
    assert node.status()["malformed"] == 3
    offer(STEP)
    assert promised() == Round(STEP, 2) and node.status()["malformed"] == 3


def test_paxos_commit_promise_with_accepted_values_of_the_wrong_shape_is_dropped():
    """Phase1b.accepted is declared ``tuple[tuple[str, Round, RMValue], ...]``; the codec
    checks only the outer tuple.  A leader unpacking ``(rm, ballot, value)`` from a pair
    raised (a halt)."""
    sim = quiet_sim("paxos-commit")
    node = sim.nodes["n1"]
    sim.invoke("n1", lambda n: n._recover("n2.1.9", ("n1", "n2")), "recover")
    ballot = node.leading["n2.1.9"].ballot
    for src, accepted in (("n2", (("n1", ballot),)), ("n3", ((5, ballot, RMValue(prepared=True)),))):
        feed(sim, "n1", src, Phase1b(txn="n2.1.9", ballot=ballot, accepted=accepted))  # type: ignore[arg-type]
    assert node.status()["malformed"] == 2
    assert node.leading["n2.1.9"].state == "phase1"


def test_paxos_commit_phase2b_value_with_a_bad_snapshot_is_dropped():
    """Only Phase2a's value was checked: a Phase2b's went into the decision, whose
    answer to the client unpacked it (a halt)."""
    sim = quiet_sim("paxos-commit")
    node = sim.nodes["n1"]
    txn = sim.invoke("n1", lambda n: n.begin({"success": (("put", "k1", "v"),)}, ("c1", 1)), "begin")
    bad = RMValue(prepared=True, snapshot=BAD_SNAPSHOT)  # type: ignore[arg-type]
    for rm in node.leading[txn].participants:
        for src in ("n2", "n3"):
            feed(sim, "n1", src, Phase2b(txn=txn, rm=rm, ballot=ZERO_ROUND, value=bad))
    assert node.status()["malformed"] == 2 * len(node.leading[txn].participants)
    assert node.leading[txn].state == "collecting"
