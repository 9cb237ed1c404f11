"""A Multi-Paxos acceptor that lost its disk stays silent until a phase 1 started on its
request told it through which slot the values chosen before lie, and it executed and
stored them (Paxos Made Live §5.1; README, "Disk loss"): the issue's story in the
simulator with and without the bug knob, the story of the values it caught up on, and
the rules."""

from __future__ import annotations

import msgpack
import pytest

from consensuskit.core.client import Op
from consensuskit.core.messages import CODEC_VERSION, decode, encode
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.multi_messages import (
    Accept,
    Heartbeat,
    Learn,
    Prepare,
    Promise,
    Readmit,
    RejoinRequest,
    SlotValue,
)
from consensuskit.protocols.paxos.multi_node import NOOP_ENTRY, PROMISED_KEY, SNAPSHOT_KEY
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


def test_a_readmitted_acceptor_keeps_the_values_it_caught_up_on():
    """Found by a 3-node all-fault sweep (seed 70037, 30 s, 8 clients): slots chosen by
    n1 and n2 while n3 was cut off; n2 loses its disk, catches up and is readmitted.
    Its lost votes were half of those slots' majority: if what it caught up on lived
    only in memory, a crash of n2 and n3 and the loss of n1 would leave a majority (n2,
    n3) that knows nothing of them, and its next leader would fill them with no-ops."""
    sim = make_sim()
    sim.partition([["n3"], ["n1", "n2"]])
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node="n1") for i in range(5)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    assert all(w.status == "ok" for w in writes)
    written = sim.nodes["n1"].executed  # the writes' slots, and the first leader's no-op
    sim.wipe("n2")
    sim.heal()
    assert sim.run_until_true(lambda: not sim.nodes["n2"].rejoining, 5.0)
    assert sim.run_until_true(lambda: sim.nodes["n3"].executed >= written, 5.0)
    assert all(sim.nodes["n3"].log.vote(s) is None for s in range(1, written + 1))
    sim.run_for(0.5)  # (a crash loses writes not yet synced)
    snap = sim.storage_of("n2").durable.get(SNAPSHOT_KEY)
    assert snap is not None and snap.last_slot >= written
    for node in ("n2", "n3"):
        sim.crash(node)
        sim.restart(node)
    sim.crash("n1")
    late = sim.submit(Op(kind="put", key="late", value="x"), node="n2")
    assert sim.run_until_true(lambda: late.done and late.status == "ok", 10.0), late
    reads = [sim.submit(Op(kind="get", key=f"k{i}"), node="n2") for i in range(5)]
    assert sim.run_until_true(lambda: all(r.done for r in reads), 5.0)
    assert not sim.violations, sim.violations[0]
    assert [r.result["value"] for r in reads] == [str(i) for i in range(5)]


def test_only_a_readmit_answering_this_incarnations_request_counts():
    sim = make_sim()
    sim.wipe("n3")
    n3 = sim.nodes["n3"]
    nonce = n3.rejoin_nonce
    assert nonce
    n3.on_message("n1", Readmit(ballot=Ballot(50, 1), through=0, nonce=nonce + 1))
    assert n3.rejoining and n3.readmit is None
    n3.on_message("n1", Readmit(ballot=Ballot(50, 1), through=0, nonce=nonce))
    assert not n3.rejoining
    assert n3.promised == Ballot(50, 1) and sim.storage_of("n3").get(REJOINING_KEY) is False


def test_a_readmitted_acceptor_waits_to_execute_through_the_named_slot():
    sim = make_sim()
    sim.wipe("n3")
    sim.partition([["n3"], ["n1", "n2"]])  # nothing reaches n3 but what the test hands it
    n3 = sim.nodes["n3"]
    n3.on_message("n1", Readmit(ballot=Ballot(50, 1), through=2, nonce=n3.rejoin_nonce))
    assert n3.rejoining  # nothing executed yet
    n3.on_message("n1", Heartbeat(ballot=Ballot(50, 1), leader="n1", commit=1, round=1))
    assert n3.rejoining
    values = tuple(SlotValue(slot=s, entry=NOOP_ENTRY) for s in (1, 2))
    n3.on_message("n1", Learn(ballot=Ballot(50, 1), leader="n1", values=values))
    assert not n3.rejoining and n3.executed == 2
    assert sim.storage_of("n3").get(SNAPSHOT_KEY).last_slot == 2 and n3.log.offset == 2


def test_a_caught_up_rejoiner_asks_once_until_its_answer_is_overdue():
    sim = make_sim()
    sim.wipe("n3")
    sim.partition([["n3"], ["n1", "n2"]])
    n3, env = sim.nodes["n3"], sim.env_of("n3")
    before = len(env.outbox)
    for round_ in (1, 2, 3):
        n3.on_message("n1", Heartbeat(ballot=Ballot(50, 1), leader="n1", commit=0, round=round_))
    asks = [m for _, m, _ in env.outbox[before:] if isinstance(m, RejoinRequest)]
    assert asks == [RejoinRequest(ballot=Ballot(50, 1), nonce=n3.rejoin_nonce)]


def test_the_previous_releases_rejoin_request_still_decodes_and_gets_a_new_ballot():
    """Tag 66's frame before ``nonce`` was appended: [marker, ballot].  It decodes with
    nonce 0, and the leader answers as that release expects: a new phase 1 that decides
    a no-op (a slot decided in a ballot prepared after the restart readmitted it), and
    no Readmit, a message that release cannot decode."""
    fields = msgpack.unpackb(encode(RejoinRequest(ballot=Ballot(3, 1), nonce=5))[1:])
    old = bytes([CODEC_VERSION]) + msgpack.packb(fields[:-1])
    assert decode(old) == RejoinRequest(ballot=Ballot(3, 1), nonce=0)
    sim = make_sim()
    n1, env = sim.nodes["n1"], sim.env_of("n1")
    ballot, before = n1.ballot, len(env.outbox)
    n1.on_message("n3", RejoinRequest(ballot=ballot))
    assert n1.ballot > ballot and n1.noop_on_lead
    assert sim.run_until_true(lambda: n1.role == "leader" and n1.ballot > ballot, 2.0)
    assert not any(isinstance(m, Readmit) for _, m, _ in env.outbox[before:])


def test_a_phase_1_run_again_for_a_rejoiner_keeps_the_wait_for_the_old_lease():
    """Seed 92175 (5 nodes, 60 s): a new leader waiting out its predecessor's lease ran
    phase 1 again for a rejoining acceptor; the new promises no longer told of that lease
    (the acceptors' grants had passed to the new leader), and it served at once while the
    old leader, cut off, still served its lease.  The wait it learned stays."""
    sim = make_sim()
    sim.run_for(0.3)  # n1 holds a lease the others granted
    sim.partition([["n1"], ["n2", "n3"]])
    sim.invoke("n2", lambda n: n.campaign(), "campaign n2")
    n2 = sim.nodes["n2"]
    assert sim.run_until_true(lambda: n2.role == "leader", 1.0)
    waiting_until = n2.wait_until
    assert waiting_until > sim.local_time("n2")
    sim.invoke("n2", lambda n: n.on_message("n3", RejoinRequest(ballot=n.ballot, nonce=1)), "rejoin")
    assert sim.run_until_true(lambda: n2.role == "leader" and n2.ballot.round > 2, 1.0)
    assert n2.wait_until >= waiting_until
    sim.run_for(1.0)
    assert not sim.violations, sim.violations[0]
