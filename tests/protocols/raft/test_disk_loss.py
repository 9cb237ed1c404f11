"""A Raft server that lost its disk rejoins as a learner (README, "A node that lost its
disk"): the issue's story in the simulator, with and without the bug knob, and the
rules one at a time."""

from __future__ import annotations

import msgpack
import pytest

from consensuskit.core.client import Op
from consensuskit.core.messages import CODEC_VERSION, EXT_MESSAGE, decode, encode
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.raft.messages import (
    AppendEntriesResponse,
    ClusterConfig,
    HeartbeatResponse,
    RejoinConfig,
    Rejoining,
    RequestVote,
    RequestVoteResponse,
    make_config,
)
from consensuskit.protocols.raft.node import HARD_STATE_KEY, REJOIN_DEMOTED_KEY, REJOIN_INCARNATION_KEY
from consensuskit.sim import Schedule, SimConfig, Simulation

NODES = ("n1", "n2", "n3")


def make_sim(bugs: frozenset[str] = frozenset(), seed: int = 1) -> Simulation:
    cfg = SimConfig(
        protocol="raft",
        node_ids=NODES,
        seed=seed,
        bugs=bugs,
        # n1 times out first, so it leads; nobody else campaigns while it is up.
        options={"node_options": {"n1": {"election_timeout": 0.1}}},
        # The scripted steps below race elections against the unbatched timings.
        runtime="unbatched",
    )
    sim = Simulation(cfg)
    assert sim.run_until_true(lambda: sim.nodes["n1"].role == "leader", 5.0)
    return sim


def leader(sim: Simulation) -> str | None:
    found = [n for n in sim.node_ids if sim.nodes[n] is not None and sim.nodes[n].role == "leader"]
    return found[0] if found else None


def story(sim: Simulation) -> list:
    """Leader n1, n2 paused, 20 writes acknowledged by n1+n3; n1 killed and n3 wiped;
    n2 resumed; later n1 comes back.  Returns the 20 write handles."""
    sim.pause("n2")
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node="n1") for i in range(20)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    assert all(w.status == "ok" for w in writes)
    sim.crash("n1")
    sim.wipe("n3")
    sim.resume("n2")
    sim.run_for(3.0)  # n2 campaigns: only n3's vote can make it leader
    sim.restart("n1")
    sim.run_for(5.0)
    return writes


def test_the_issue_story_loses_nothing_and_the_wiped_node_votes_again():
    sim = make_sim()
    story(sim)
    assert not sim.violations, sim.violations[0]
    assert leader(sim) == "n1"  # n2 cannot win: n3 does not vote, n1 has the newer log
    n1, n3 = sim.nodes["n1"], sim.nodes["n3"]
    assert not n3.rejoining and sim.storage_of("n3").get(REJOINING_KEY) is False
    assert n3.config.voters == NODES and n1.config.voters == NODES
    assert type(n1.config) is ClusterConfig  # the rejoin marker is gone
    # Every acknowledged write is still there, and every node holds the same state.
    reads = [sim.submit(Op(kind="get", key=f"k{i}"), node="n1") for i in range(20)]
    assert sim.run_until_true(lambda: all(r.done for r in reads), 5.0)
    assert [r.result["value"] for r in reads] == [str(i) for i in range(20)]
    sim.run_for(0.5)
    assert len({sim.nodes[n].sm.digest() for n in NODES}) == 1
    assert sim.faults["wipe"] == 1


def test_the_issue_story_with_the_bug_elects_n2_and_breaks_an_invariant():
    sim = make_sim(frozenset({"vote-after-wipe"}))
    with pytest.raises(Exception) as caught:
        story(sim)
    assert sim.violations, caught.value
    assert sim.violations[0].name in {"leader-completeness", "state-machine-safety", "unsafe-commit"}


def test_a_rejoining_node_refuses_votes_and_pre_votes_and_never_campaigns():
    sim = make_sim()
    sim.wipe("n3")
    n3 = sim.nodes["n3"]
    assert n3.rejoining and n3.status()["rejoining"] is True
    for pre_vote in (True, False):
        env = sim.env_of("n3")
        sent_before = len(env.outbox)
        n3.on_message(
            "n2",
            RequestVote(
                term=50,
                candidate="n2",
                last_log_index=10**6,
                last_log_term=49,
                pre_vote=pre_vote,
                transfer=True,
            ),
        )
        answers = [m for _, m, _ in env.outbox[sent_before:] if isinstance(m, RequestVoteResponse)]
        assert answers and not answers[-1].granted
    n3.campaign()
    n3.on_timer("election")
    assert n3.role == "follower"


def test_the_leader_counts_a_rejoining_follower_in_no_quorum_then_demotes_and_promotes_it():
    sim = make_sim()
    sim.pause("n2")
    sim.wipe("n3")
    n1 = sim.nodes["n1"]
    before = n1.commit_index
    run = sim.submit(Op(kind="put", key="x", value="1"), node="n1")
    sim.run_for(0.05)
    # n3 holds the entry by now, but its answers do not count: nothing commits ...
    assert n1.progress["n3"].rejoining and n1.progress["n3"].match > before
    assert n1.commit_index == before and not run.done
    assert "n3" in n1.config.voters  # the demotion itself needs a quorum without n3
    sim.run_for(1.0)
    # ... and check-quorum does not count it either: n1 stepped down, nobody can win.
    assert leader(sim) is None and n1.commit_index == before
    sim.resume("n2")
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    assert run.status == "ok"
    n3 = sim.nodes["n3"]
    hard = sim.storage_of("n3").get(HARD_STATE_KEY)
    assert hard.voted_for == "n3" and hard.term == n3.term  # no vote in the promotion's term
    configs = [e.data for e in n1.log.entries if e.kind == "config"]
    assert [c.summary() for c in configs] == [
        "voters=n1,n2 learners=n3 rejoining=n3",
        "voters=n1,n2,n3",
    ]
    sim.run_for(1.0)
    assert not n1.progress["n3"].rejoining
    assert not sim.violations


def test_a_rejoining_node_crashed_before_its_promotion_still_rejoins():
    sim = make_sim()
    sim.wipe("n3")
    assert sim.run_until_true(lambda: sim.storage_of("n3").durable.get(REJOIN_DEMOTED_KEY), 5.0)
    sim.crash("n3")
    sim.restart("n3")
    n3 = sim.nodes["n3"]
    assert n3.rejoining and n3.demoted_at > 0  # both persisted
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    assert sim.nodes["n1"].config.voters == NODES and not sim.violations


def test_admin_changes_keep_the_rejoin_marker_and_a_rejoin_config_round_trips():
    config = make_config({"a", "b"}, {"c", "d"}, {"c": 7})
    assert isinstance(config, RejoinConfig) and config.rejoining == ("c",) and config.incarnations == (7,)
    assert decode(encode(config)) == config
    assert type(make_config({"a"}, {"c"}, {"x": 7})) is ClusterConfig
    sim = make_sim()
    sim.pause("n2")
    sim.wipe("n3")
    sim.run_for(0.5)
    sim.resume("n2")
    assert sim.run_until_true(lambda: isinstance(sim.nodes["n1"].config, RejoinConfig), 5.0)
    sim.crash("n3")  # keep it from being promoted meanwhile
    sim.run_for(0.5)
    # n1 stepped down (check-quorum) while n2 was paused; either survivor may lead now.
    leader = next(n for n in ("n1", "n2") if sim.nodes[n].role == "leader")
    assert sim.invoke(leader, lambda n: n.propose_config_change("add-learner", "n4"), "add n4") is None
    sim.run_for(0.5)
    incarnation = sim.storage_of("n3").durable.get(REJOIN_INCARNATION_KEY)
    assert incarnation and sim.nodes[leader].config == RejoinConfig(
        voters=("n1", "n2"), learners=("n3", "n4"), rejoining=("n3",), incarnations=(incarnation,)
    )


def test_a_rejoining_wrapper_with_a_foreign_answer_is_ignored():
    sim = make_sim()
    n1 = sim.nodes["n1"]
    vote = RequestVoteResponse(term=n1.term, granted=True)
    n1.on_message("n3", Rejoining(term=n1.term, response=vote))
    other_term = AppendEntriesResponse(term=0, success=True, index=5)
    n1.on_message("n3", Rejoining(term=n1.term, response=other_term))
    assert not n1.progress["n3"].rejoining


def test_wipe_is_a_schedule_action_and_needs_the_capability():
    schedule = Schedule.parse("0.5 wipe n3\n")
    assert schedule.items == [(0.5, "wipe", ("n3",))]
    sim = make_sim()
    schedule.install(sim)
    sim.run_for(1.0)
    assert sim.faults["wipe"] == 1 and sim.nodes["n3"] is not None
    basic = Simulation(SimConfig(protocol="basic-paxos", node_ids=NODES, seed=1, nemesis=("wipe", "crash")))
    with pytest.raises(ValueError, match="survives_disk_loss"):
        basic.wipe("n1")
    basic.start_nemesis()
    assert basic.nemesis.kinds == ("crash",)


def test_a_late_rejoining_answer_after_the_promotion_demotes_nobody():
    sim = make_sim()
    sim.wipe("n3")
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    sim.run_for(0.5)
    n1, n3 = sim.nodes["n1"], sim.nodes["n3"]
    config = n1.config
    # An answer n3 sent before it saw its demotion, delivered late (reordered).
    late = Rejoining(
        term=n1.term, response=HeartbeatResponse(term=n1.term), demoted_at=0, incarnation=n3.incarnation
    )
    n1.on_message("n3", late)
    sim.run_for(0.5)
    assert n1.config == config and not n1.progress["n3"].rejoining
    # A new incarnation (wiped again) is demoted afresh.
    sim.wipe("n3")
    assert sim.run_until_true(lambda: "n3" in sim.nodes["n1"].config.learners, 5.0)
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    assert not sim.violations


def test_a_node_wiped_twice_waits_for_the_demotion_of_its_second_loss():
    """Its first loss's demotion and promotion are in the log it catches up on: taken as
    its own (as they were), it counted itself readmitted before the leader demoted it,
    and the nemesis, seeing it up, wiped a third disk (`sweep raft --service etcd
    --duration 60 --clients 8 --nemesis all`, seed 60084: no leader for the last 35 s)."""
    cfg = SimConfig(
        protocol="raft",
        node_ids=NODES,
        seed=1,
        # One entry per AppendEntries: the catching-up commit index stops at every
        # entry, the first loss's demotion included.
        options={"max_batch_entries": 1, "node_options": {"n1": {"election_timeout": 0.1}}},
        runtime="unbatched",
    )
    sim = Simulation(cfg)
    assert sim.run_until_true(lambda: sim.nodes["n1"].role == "leader", 5.0)
    sim.wipe("n3")
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    first = sim.nodes["n3"].incarnation
    writes = [sim.submit(Op(kind="put", key=f"k{i}", value=str(i)), node="n1") for i in range(5)]
    assert sim.run_until_true(lambda: all(w.done for w in writes), 5.0)
    second_loss_at = sim.nodes["n1"].log.last_index
    sim.wipe("n3")
    n3 = sim.nodes["n3"]
    assert n3.incarnation != first
    assert sim.run_until_true(lambda: sim.nodes["n3"].demoted_at > 0, 5.0)
    assert sim.nodes["n3"].demoted_at > second_loss_at  # the demotion made for this loss
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    configs = [e.data.summary() for e in sim.nodes["n1"].log.entries if e.kind == "config"]
    assert configs == ["voters=n1,n2 learners=n3 rejoining=n3", "voters=n1,n2,n3"] * 2
    assert not sim.violations


def test_a_node_wiped_again_while_demoted_is_demoted_for_its_new_loss():
    sim = make_sim()
    sim.pause("n2")  # no promotion meanwhile: n3's answers count for nothing
    sim.wipe("n3")
    sim.run_for(0.3)
    sim.resume("n2")
    assert sim.run_until_true(lambda: sim.nodes["n3"].demoted_at > 0, 5.0)
    sim.crash("n3")  # crashed before its promotion ...
    sim.run_for(0.3)
    first = sim.nodes["n1"].config
    assert isinstance(first, RejoinConfig)
    sim.restart("n3")
    sim.wipe("n3")  # ... and lost its disk again
    # The leader names the new loss in a new demotion, then promotes it.
    assert sim.run_until_true(
        lambda: sim.nodes["n1"].config != first and "n3" in sim.nodes["n1"].config.learners, 5.0
    )
    assert sim.nodes["n1"].config.incarnations == (sim.nodes["n3"].incarnation,)
    assert sim.run_until_true(lambda: not sim.nodes["n3"].rejoining, 5.0)
    assert not sim.violations


def test_the_incarnation_survives_a_restart_and_old_demotions_name_none():
    sim = make_sim()
    sim.pause("n2")
    sim.wipe("n3")
    sim.run_for(0.3)
    incarnation = sim.nodes["n3"].incarnation
    assert sim.storage_of("n3").durable.get(REJOIN_INCARNATION_KEY) == incarnation
    sim.crash("n3")
    sim.restart("n3")
    assert sim.nodes["n3"].incarnation == incarnation
    # A RejoinConfig of the release before: no incarnations, so it demotes any loss.
    old = RejoinConfig(voters=("n1", "n2"), learners=("n3",), rejoining=("n3",))
    assert old.demotes("n3", 12345) and not old.demotes("n2", 12345)
    mine = make_config({"n1", "n2"}, {"n3"}, {"n3": 7})
    assert mine.demotes("n3", 7) and not mine.demotes("n3", 8)


def test_a_rejoin_config_the_previous_release_wrote_still_decodes():
    """Tag 23's frame before ``incarnations`` was appended: [marker, voters, learners,
    rejoining].  It decodes with no incarnations, which demote any loss of the node."""
    marker = msgpack.ExtType(EXT_MESSAGE, (23).to_bytes(2, "big"))
    old = bytes([CODEC_VERSION]) + msgpack.packb([marker, ["n1", "n2"], ["n3"], ["n3"]])
    config = decode(old)
    assert config == RejoinConfig(voters=("n1", "n2"), learners=("n3",), rejoining=("n3",))
    assert config.incarnations == () and config.demotes("n3", 99)
