"""The Paxos checker: chosen is computed from durable votes, and each property fires."""

from __future__ import annotations

import pytest

from consensuskit.check import InvariantViolation
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic_messages import Accept
from consensuskit.protocols.paxos.fast_messages import Propose
from consensuskit.sim import SimConfig, Simulation

IDS = ("n1", "n2", "n3")


def sim_of(protocol: str = "basic-paxos", ids=IDS) -> Simulation:
    cfg = SimConfig(protocol=protocol, node_ids=ids, options={"catchup_interval": 0})
    return Simulation(cfg)


def vote(sim: Simulation, acceptor: str, ballot: Ballot, value: object, slot: int = 1) -> None:
    src = f"n{ballot.node}"
    sim.invoke(
        acceptor, lambda n: n.handle_accept(src, Accept(slot=slot, ballot=ballot, value=value)), "vote"
    )


def poke(sim: Simulation) -> None:
    """Let pending syncs finish, then give the checker a step to look."""
    sim.run_for(0.01)
    sim.invoke("n1", lambda n: None, "poke")


def offer(sim: Simulation, *values: object) -> None:
    for v in values:
        sim.checker.on_offered(None, v)


def test_a_durable_quorum_of_votes_is_chosen():
    sim = sim_of()
    poke(sim)
    offer(sim, "a")
    vote(sim, "n1", Ballot(1, 1), "a")
    vote(sim, "n2", Ballot(1, 1), "a")
    assert sim.checker.chosen == {}  # written, not yet durable
    poke(sim)
    assert sim.checker.chosen == {1: ("a", Ballot(1, 1))}


def test_a_vote_lost_in_a_crash_before_its_sync_does_not_count():
    sim = sim_of()
    poke(sim)
    offer(sim, "a")
    vote(sim, "n1", Ballot(1, 1), "a")
    vote(sim, "n2", Ballot(1, 1), "a")
    sim.crash("n2")  # n2's vote was never durable: its Accepted never left
    poke(sim)
    assert sim.checker.chosen == {}
    assert sim.checker.votes[(1, Ballot(1, 1))] == {"n1": "a"}


def test_two_values_chosen_in_one_slot_is_an_agreement_violation():
    sim = sim_of()
    poke(sim)
    offer(sim, "a", "b")
    vote(sim, "n1", Ballot(1, 1), "a")
    vote(sim, "n2", Ballot(1, 1), "a")
    poke(sim)
    vote(sim, "n2", Ballot(2, 3), "b")
    vote(sim, "n3", Ballot(2, 3), "b")
    with pytest.raises(InvariantViolation, match="agreement") as caught:
        poke(sim)
    assert "ballot 1.1" in caught.value.detail and "ballot 2.3" in caught.value.detail


def test_a_value_nobody_proposed_must_not_be_chosen():
    sim = sim_of()
    poke(sim)
    vote(sim, "n1", Ballot(1, 1), "forged")
    vote(sim, "n2", Ballot(1, 1), "forged")
    with pytest.raises(InvariantViolation, match="chosen-not-proposed"):
        poke(sim)


def test_learning_a_value_that_was_not_chosen_is_caught():
    sim = sim_of()
    poke(sim)
    sim.invoke("n3", lambda n: n._learn(1, "rumour"), "learn")
    with pytest.raises(InvariantViolation, match="learned-not-chosen"):
        poke(sim)


def test_fast_rounds_need_a_fast_quorum():
    sim = sim_of("fast-paxos", ("n1", "n2", "n3", "n4", "n5"))
    poke(sim)
    offer(sim, "v")
    for acceptor in ("n1", "n2", "n3"):
        sim.invoke(
            acceptor,
            lambda n: n.handle_propose("n2", Propose(slot=1, ballot=Ballot(1, 1), value="v")),
            "propose",
        )
    poke(sim)
    assert sim.checker.chosen == {}  # 3 of 5 is a classic quorum, not a fast one (4)
    assert all(sim.checker.fast_round.values())


def test_executing_different_commands_at_one_slot_is_caught():
    sim = sim_of()
    poke(sim)
    checker = sim.checker
    checker.on_execute(sim.nodes["n1"], 1, "a")
    checker.on_execute(sim.nodes["n2"], 1, "b")
    with pytest.raises(InvariantViolation, match="executed-divergence"):
        poke(sim)
