"""A ZAB server that lost its disk observes until an established leader readmits it
(README, "A server that lost its disk"): issue 10's story in the simulator, with and
without the bug knob, and what the rejoining server counts for.  What it says (a vote
for nobody, OBSERVERINFO) is testdata/rejoin_after_disk_loss.txt."""

from __future__ import annotations

import pytest

from consensuskit.check import InvariantViolation
from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.zab.messages import FollowerInfo
from consensuskit.sim import SimConfig, Simulation
from tests.protocols.zab.fake import Cluster

NODES = ("n1", "n2", "n3")


def make_sim(bugs: frozenset[str] = frozenset()) -> tuple[Simulation, str]:
    sim = Simulation(SimConfig(protocol="zab", node_ids=NODES, seed=1, bugs=bugs, runtime="unbatched"))
    assert sim.run_until_true(lambda: any(n.state == "leader" and n.established for n in live(sim)), 5.0)
    return sim, leader(sim)


def live(sim: Simulation) -> list:
    return [sim.nodes[n] for n in NODES if sim.nodes[n] is not None]


def leader(sim: Simulation) -> str:
    return next(n.id for n in live(sim) if n.state == "leader")


def story(sim: Simulation, lead: str) -> tuple[str, bool]:
    """`stale` cut off while the leader and `wiped` acknowledge 20 writes; the leader
    killed and `wiped` wiped; the network healed; 3 s later the leader comes back.
    Returns `wiped` and whether a leader rose while the old one was down."""
    stale, wiped = (n for n in NODES if n != lead)
    sim.partition([[stale], [lead, wiped]])
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node=lead) for i in range(20)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    assert all(w.status == "ok" for w in writes)
    sim.crash(lead)
    sim.wipe(wiped)
    sim.heal()
    sim.run_for(3.0)  # only `wiped`'s vote could make `stale` a leader
    rose = any(n.state == "leader" for n in live(sim))
    sim.restart(lead)
    sim.run_for(5.0)
    return wiped, rose


def test_the_story_loses_nothing_and_the_wiped_server_votes_again():
    sim, lead = make_sim()
    wiped, rose = story(sim, lead)
    assert not sim.violations, sim.violations[0]
    assert not rose
    assert leader(sim) == lead
    node = sim.nodes[wiped]
    assert (node.rejoining, node.is_observer, node.state) == (False, False, "following")
    assert sim.storage_of(wiped).get(REJOINING_KEY) is False
    reads = [sim.submit(Op(kind="get", key=f"k{i}"), node=lead) for i in range(20)]
    assert sim.run_until_true(lambda: all(r.done for r in reads), 5.0)
    assert [r.result["value"] for r in reads] == [str(i) for i in range(20)]
    sim.run_for(0.5)
    assert len({n.sm.digest() for n in live(sim)}) == 1
    # It votes again: without the leader, it and the third server elect one of them.
    sim.crash(lead)
    assert sim.run_until_true(lambda: any(n.state == "leader" and n.established for n in live(sim)), 5.0)


def test_with_the_knob_the_wiped_server_votes_at_once_and_committed_txns_are_lost():
    sim, lead = make_sim(frozenset({"vote-after-wipe"}))
    with pytest.raises(InvariantViolation, match=r"primary-integrity"):
        story(sim, lead)


def test_the_leader_counts_no_vote_or_ack_of_a_rejoining_server():
    sim, lead = make_sim()
    paused, wiped = (n for n in NODES if n != lead)
    sim.wipe(wiped)
    sim.pause(paused)  # the leader's only other voter is the rejoining one
    write = sim.submit(Op(kind="put", key="x", value="1"), node=lead)
    sim.run_for(1.0)
    assert not write.done or write.status != "ok"
    assert sim.nodes[lead].commit_index < sim.nodes[lead].log.last_index or sim.nodes[lead].state != "leader"
    sim.resume(paused)
    sim.run_for(3.0)
    assert not sim.violations


def test_a_leader_takes_a_voters_word_that_it_observes_and_counts_it_for_nothing():
    # A leader elected without the rejoining server (its FLE vote counts for nothing)
    # must not be established with its ACKEPOCH or NEWLEADER ACK either.
    c = Cluster(["a", "b", "c"])
    lead = c.nodes["c"]
    lead._become_leading()
    c.envs["c"].take()
    lead.on_message("b", FollowerInfo(epoch=0, last_zxid=0, observer=True))
    assert lead.learners["b"].observer
    assert not lead.epoch_proposed  # c alone is no quorum of voters
    lead.on_message("a", FollowerInfo(epoch=0, last_zxid=0))
    assert lead.epoch_proposed and not lead.learners["a"].observer
    # An observer's word cannot make it a voter: the configured observers stay observers.
    c2 = Cluster(["a", "b", "c"], observers=1)
    lead2 = c2.nodes["b"]
    lead2._become_leading()
    lead2.on_message("c", FollowerInfo(epoch=0, last_zxid=0, observer=False))
    assert lead2.learners["c"].observer


def test_a_follower_taken_for_an_observer_by_a_late_observerinfo_says_again_that_it_follows():
    c = Cluster(["a", "b", "c"])
    lead = c.establish()
    follower = next(n for n in ("a", "b") if c.nodes[n].state == "following")
    # A late OBSERVERINFO of the follower's rejoin reaches the leader: it restarts the
    # follower's handshake as an observer's, and then INFORMs it of commits.
    lead.on_message(follower, FollowerInfo(epoch=lead.epoch, last_zxid=0, observer=True))
    assert lead.learners[follower].observer
    for _ in range(6):
        c.deliver_all()
        c.fire(lead.id, "tick")
    lead.on_request(ClientRequest(client_id="c1", seq=1, op=Op(kind="put", key="x", value="1")))
    for _ in range(10):
        c.deliver_all()
        if not lead.learners[follower].observer and lead.learners[follower].phase == "synced":
            break
        c.fire(lead.id, "tick")
    assert not lead.learners[follower].observer and lead.learners[follower].phase == "synced"
