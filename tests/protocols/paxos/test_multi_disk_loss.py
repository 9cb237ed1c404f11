"""A Multi-Paxos acceptor that lost its disk stays silent until it saw a slot decided in
a ballot prepared after its restart (Paxos Made Live §5.1; README, "Disk loss"): the
issue's story in the simulator with and without the bug knob, and the rules."""

from __future__ import annotations

import pytest

from consensuskit.core.client import Op
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.multi_messages import Accept, Prepare, Promise, SlotValue
from consensuskit.protocols.paxos.multi_node import NOOP_ENTRY, PROMISED_KEY
from consensuskit.sim import SimConfig, Simulation

NODES = ("n1", "n2", "n3")


def make_sim(bugs: frozenset[str] = frozenset()) -> Simulation:
    cfg = SimConfig(
        protocol="multipaxos",
        node_ids=NODES,
        seed=3,
        bugs=bugs,
        options={"node_options": {"n1": {"election_timeout": 0.1}}},
    )
    sim = Simulation(cfg)
    assert sim.run_until_true(lambda: sim.nodes["n1"].role == "leader", 5.0)
    return sim


def story(sim: Simulation) -> list:
    # n2 cut off (a paused node would replay every Accept on resume: the simulator
    # defers what reaches it; a partition drops it).
    sim.partition([["n2"], ["n1", "n3"]])
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node="n1") for i in range(20)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    assert all(w.status == "ok" for w in writes)
    sim.crash("n1")
    sim.wipe("n3")
    sim.heal()
    # A write reaching n2 makes it campaign: only n3's promise can make it leader, and
    # as leader it would put the write in a slot already chosen.
    sim.submit(Op(kind="put", key="late", value="x"), node="n2")
    sim.run_for(3.0)
    sim.restart("n1")
    sim.run_for(5.0)
    return writes


def test_the_issue_story_loses_nothing_and_the_wiped_acceptor_is_readmitted():
    sim = make_sim()
    story(sim)
    assert not sim.violations, sim.violations[0]
    assert not sim.nodes["n3"].rejoining and sim.storage_of("n3").get(REJOINING_KEY) is False
    reads = [sim.submit(Op(kind="get", key=f"k{i}")) for i in range(20)]
    assert sim.run_until_true(lambda: all(r.done for r in reads), 5.0)
    assert [r.result["value"] for r in reads] == [str(i) for i in range(20)]
    sim.run_for(0.5)
    assert len({sim.nodes[n].sm.digest() for n in NODES}) == 1
    # Readmitted: with n1 gone, n2 and n3 elect a leader.
    sim.crash("n1")
    assert sim.run_until_true(lambda: any(sim.nodes[n].role == "leader" for n in ("n2", "n3")), 5.0)
    assert not sim.violations


def test_the_issue_story_with_the_bug_chooses_a_second_value_for_a_slot():
    sim = make_sim(frozenset({"promise-after-wipe"}))
    with pytest.raises(Exception) as caught:
        story(sim)
    assert sim.violations, caught.value
    assert sim.violations[0].name in {"one-value-per-slot", "learned-agreement", "execution-agreement"}


def test_a_rejoining_acceptor_sends_no_promise_no_accepted_and_never_campaigns():
    sim = make_sim()
    sim.wipe("n3")
    n3, env = sim.nodes["n3"], sim.env_of("n3")
    assert n3.rejoining and n3.status()["rejoining"] is True
    before = len(env.outbox)
    high = Ballot(99, 2)
    n3.on_message("n2", Prepare(ballot=high, from_slot=1))
    n3.on_message("n2", Accept(ballot=high, values=(SlotValue(slot=1, entry=NOOP_ENTRY),), commit=0))
    sent = [m for _, m, _ in env.outbox[before:]]
    assert not any(isinstance(m, Promise) for m in sent)
    assert not any(type(m).__name__ == "Accepted" for m in sent)
    assert n3.log.vote(1) is None  # no vote recorded either
    n3.campaign()
    n3.on_timer("election")
    assert n3.role == "follower"


def test_a_caught_up_rejoiner_asks_for_a_new_ballot_and_is_readmitted_by_it():
    sim = make_sim()
    old_ballot = sim.nodes["n1"].ballot
    sim.wipe("n3")
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    n1, n3 = sim.nodes["n1"], sim.nodes["n3"]
    assert n1.role == "leader" and n1.ballot > old_ballot  # phase 1 ran again for n3
    assert n3.promised >= n1.ballot and sim.storage_of("n3").get(PROMISED_KEY) >= n1.ballot
    assert not sim.violations


# The sweep that catches promise-after-wipe at default options: tests/check/test_multipaxos_sweeps.py.


def test_a_rejoiner_on_an_idle_cluster_is_readmitted_without_a_write():
    """Liveness: an acceptor wiped while no client writes must not stay silent until the
    next write.  It sees the new ballot's Prepare after its restart, catches up, and that
    ballot decides nothing more; it asks for a ballot anyway, whose no-op readmits it."""
    sim = make_sim()
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node="n1") for i in range(5)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    sim.wipe("n3")
    sim.crash("n1")  # a new leader: its Prepare reaches n3 after the restart
    sim.run_for(3.0)
    sim.restart("n1")
    readmitted = sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 6.0)
    assert readmitted, "still rejoining on an idle cluster"
    assert not sim.violations, sim.violations[0]
