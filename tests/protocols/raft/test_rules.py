"""One test per Raft rule, driven by hand through FakeEnv (see fake.py).

Section numbers refer to Ongaro's dissertation.
"""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.number_bounds import STEP
from consensuskit.protocols.raft.messages import (
    COMMAND,
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    Heartbeat,
    InstallSnapshot,
    LogEntry,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from consensuskit.protocols.raft.node import HARD_STATE_KEY, MAX_TERM

from .fake import Cluster, make_node


def put(client: str, seq: int, key: str, value: object) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key=key, value=value))


def get(client: str, seq: int, key: str) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="get", key=key))


def entry(term: int, index: int) -> LogEntry:
    return LogEntry(term=term, index=index, kind=COMMAND, data=put("t", index, "x", index))


def follower_with_log(terms: list[int], term: int | None = None, **options):
    node, env = make_node("f", ["f", "l", "o"], **options)
    node.log.append([entry(t, i) for i, t in enumerate(terms, start=1)])
    node.term = term if term is not None else (terms[-1] if terms else 0)
    env.clock = 10.0  # long after start: no leader lease in force
    return node, env


# ---------------------------------------------------------------------- RequestVote
def test_vote_granted_to_up_to_date_candidate_and_persisted_before_reply():
    """§3.4: a server votes for at most one candidate per term, first come first served;
    the vote is on stable storage before the response is released."""
    node, env = follower_with_log([1, 1], term=1)
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=2, last_log_term=1))
    assert env.sent == [("c", RequestVoteResponse(term=2, granted=True))]
    assert env.storage.get(HARD_STATE_KEY) == HardState(term=2, voted_for="c")


def test_second_candidate_in_same_term_is_refused():
    node, env = follower_with_log([1], term=1)
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1))
    node.on_message("d", RequestVote(term=2, candidate="d", last_log_index=5, last_log_term=1))
    assert env.sent[-1] == ("d", RequestVoteResponse(term=2, granted=False))
    # The same candidate asking again (a retransmission) gets the same answer.
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1))
    assert env.sent[-1] == ("c", RequestVoteResponse(term=2, granted=True))


def test_vote_twice_bug_grants_both():
    node, env = follower_with_log([1], term=1, bugs=frozenset({"vote-twice"}))
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1))
    node.on_message("d", RequestVote(term=2, candidate="d", last_log_index=1, last_log_term=1))
    assert [m.granted for _, m in env.sent] == [True, True]


def test_candidate_with_stale_log_is_refused():
    """§3.6.1: up to date = higher last term, or same last term and at least as long."""
    node, env = follower_with_log([1, 2], term=2)
    node.on_message("c", RequestVote(term=3, candidate="c", last_log_index=9, last_log_term=1))
    node.on_message("d", RequestVote(term=3, candidate="d", last_log_index=1, last_log_term=2))
    assert [m.granted for _, m in env.sent] == [False, False]
    assert node.term == 3 and node.voted_for is None
    node.on_message("e", RequestVote(term=3, candidate="e", last_log_index=2, last_log_term=2))
    assert env.sent[-1] == ("e", RequestVoteResponse(term=3, granted=True))


def test_lower_term_vote_request_is_answered_with_our_term():
    node, env = follower_with_log([1, 3], term=3)
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=5, last_log_term=3))
    assert env.sent == [("c", RequestVoteResponse(term=3, granted=False))]


def test_pre_vote_changes_neither_term_nor_vote():
    """§9.6: a pre-vote asks whether we would vote, without disturbing anything."""
    node, env = follower_with_log([1], term=1)
    msg = RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1, pre_vote=True)
    node.on_message("c", msg)
    assert env.sent == [("c", RequestVoteResponse(term=2, granted=True, pre_vote=True))]
    assert (node.term, node.voted_for) == (1, None)


def test_vote_requests_ignored_while_hearing_from_a_leader():
    """§4.2.3: within the minimum election timeout of hearing from a leader, a server
    ignores RequestVote (unless it comes from a leadership transfer)."""
    node, env = follower_with_log([1], term=1)
    node.on_message("l", Heartbeat(term=1, leader="l", commit=0))
    env.take()
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1))
    assert env.sent == [] and node.term == 1
    node.on_message("c", RequestVote(term=2, candidate="c", last_log_index=1, last_log_term=1, transfer=True))
    assert env.sent == [("c", RequestVoteResponse(term=2, granted=True))]


# ---------------------------------------------------------------------- AppendEntries
def test_consistency_check_rejects_with_conflict_hint():
    """§3.5 + fast backtracking: the follower names the conflicting term and the first
    index it holds for that term, or its log end when too short."""
    node, env = follower_with_log([1, 1, 2, 2, 2], term=3)
    node.on_message(
        "l", AppendEntries(term=3, leader="l", prev_log_index=5, prev_log_term=3, entries=(), leader_commit=0)
    )
    assert env.sent[-1] == (
        "l",
        AppendEntriesResponse(term=3, success=False, index=5, conflict_term=2, conflict_index=3),
    )
    node.on_message(
        "l", AppendEntries(term=3, leader="l", prev_log_index=9, prev_log_term=3, entries=(), leader_commit=0)
    )
    assert env.sent[-1] == (
        "l",
        AppendEntriesResponse(term=3, success=False, index=9, conflict_term=0, conflict_index=6),
    )


def test_conflicting_suffix_is_replaced():
    node, env = follower_with_log([1, 1, 2, 2], term=3)
    new = (entry(3, 3), entry(3, 4), entry(3, 5))
    node.on_message(
        "l",
        AppendEntries(term=3, leader="l", prev_log_index=2, prev_log_term=1, entries=new, leader_commit=4),
    )
    assert [e.term for e in node.log.entries] == [1, 1, 3, 3, 3]
    assert env.sent[-1] == ("l", AppendEntriesResponse(term=3, success=True, index=5))
    assert node.commit_index == 4  # min(leader_commit, last new entry)


def test_old_duplicate_append_does_not_truncate():
    """A reordered, older AppendEntries must not cut entries that a newer one added."""
    node, env = follower_with_log([1, 1, 1, 1], term=1)
    node.on_message(
        "l",
        AppendEntries(
            term=1, leader="l", prev_log_index=1, prev_log_term=1, entries=(entry(1, 2),), leader_commit=0
        ),
    )
    assert node.log.last_index == 4
    assert env.sent[-1] == ("l", AppendEntriesResponse(term=1, success=True, index=2))


def test_commit_from_append_is_bounded_by_the_verified_prefix():
    node, _ = follower_with_log([1, 1, 1, 1], term=1)
    node.on_message(
        "l", AppendEntries(term=1, leader="l", prev_log_index=2, prev_log_term=1, entries=(), leader_commit=9)
    )
    assert node.commit_index == 2


def test_stale_leader_gets_our_term():
    node, env = follower_with_log([1, 2], term=2)
    node.on_message(
        "l", AppendEntries(term=1, leader="l", prev_log_index=1, prev_log_term=1, entries=(), leader_commit=0)
    )
    assert env.sent == [("l", AppendEntriesResponse(term=2, success=False, index=0))]


def test_skip_log_check_bug_accepts_mismatched_prev():
    node, env = follower_with_log([1, 1, 2], term=3, bugs=frozenset({"skip-log-check"}))
    node.on_message(
        "l",
        AppendEntries(
            term=3, leader="l", prev_log_index=3, prev_log_term=3, entries=(entry(3, 4),), leader_commit=0
        ),
    )
    assert env.sent[-1][1].success is True
    assert [e.term for e in node.log.entries] == [1, 1, 2, 3]


# ---------------------------------------------------------------------- leader
def test_leader_appends_noop_and_commits_with_majority():
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    assert leader.log.entries[0].kind == "noop" and leader.commit_index == 1
    leader.on_request(put("x", 1, "k", 7))
    c.deliver_all()
    assert leader.commit_index == 2
    assert c.envs["a"].delivered[-1].ok and c.envs["a"].delivered[-1].index == 2


def test_a_reordered_stale_term_answer_is_no_log_position():
    """§3.3's answer to a stale AppendEntries carries the answerer's term and no hint
    (index 0, conflict 0/0). Delivered late, after the old sender won that very term,
    it must not read as "the follower's log ends before index 1" (the leader once set
    next to 0 and asked for a snapshot it did not have: raft seed 6, 3 nodes, 5 s)."""
    c = Cluster(["a", "b", "c"])
    c.partition(["a", "c"], ["b"])  # b has acknowledged nothing: match 0
    leader = c.elect("a")
    pr = leader.progress["b"]
    assert pr.match == 0
    leader.on_message("b", AppendEntriesResponse(term=leader.term, success=False, index=0))
    assert pr.match == 0 and pr.next >= 1


def test_leader_never_commits_previous_term_entry_by_counting():
    """§3.6.2 (figure 8): an old-term entry on a majority is not committed until an
    entry of the current term is."""
    c = Cluster(["a", "b", "c"])
    a = c.nodes["a"]
    a.log.append([entry(1, 1)])
    a.term = 2
    c.nodes["b"].term = c.nodes["c"].term = 2
    # Elect a, but let no message carrying the term-3 no-op reach anyone.
    c.fire("a", "election")
    c.deliver_all(rounds=4)  # pre-vote and vote rounds
    assert a.role == "leader" and a.term == 3
    a.progress["b"].match = 1  # b acknowledged the old entry only
    a._maybe_commit()
    assert a.commit_index == 0
    a.progress["b"].match = 2  # now the no-op too
    a._maybe_commit()
    assert a.commit_index == 2


def test_commit_previous_term_bug_commits_by_counting():
    c = Cluster(["a", "b", "c"], bugs=frozenset({"commit-previous-term"}))
    a = c.nodes["a"]
    a.log.append([entry(1, 1)])
    a.term = 2
    c.fire("a", "election")
    c.deliver_all(rounds=4)
    a.progress["b"].match = 1
    a._maybe_commit()
    assert a.commit_index == 1


def test_fast_backtracking_jumps_over_a_conflicting_term():
    """The follower's (conflict term, first index of it) lets the leader skip a whole
    term per round trip: to just after its own last entry of that term, or to the
    follower's first index of a term the leader does not have."""
    c = Cluster(["a", "b", "c"])
    for n in c.nodes.values():
        n.log.append([entry(t, i) for i, t in enumerate([1, 1, 2, 2, 2], start=1)])
        n.term = 2
    leader = c.elect("a")
    pr = leader.progress["b"]

    def reject(index: int, conflict_term: int, conflict_index: int) -> int:
        pr.become_probe()
        pr.match, pr.next, pr.probe_sent = 0, index + 1, True
        leader.on_message(
            "b",
            AppendEntriesResponse(
                term=3, success=False, index=index, conflict_term=conflict_term, conflict_index=conflict_index
            ),
        )
        return pr.next

    assert reject(5, conflict_term=4, conflict_index=3) == 3  # leader has no term 4
    assert reject(5, conflict_term=2, conflict_index=4) == 5  # leader's last term-2 entry is 5
    assert reject(5, conflict_term=0, conflict_index=2) == 2  # follower's log ends at 1
    assert pr.state == "probe"


def test_check_quorum_steps_down_without_a_majority():
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    c.down = {"b", "c"}
    c.fire("a", "check-quorum")  # responses from the election round count once
    c.fire("a", "check-quorum")
    assert leader.role == "follower"


def test_read_index_waits_for_a_heartbeat_quorum():
    """§6.4: a read is answered only after a majority confirms leadership, from state at
    least as new as the commit index at the read's arrival."""
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    leader.on_request(put("x", 1, "k", 1))
    c.deliver_all()
    env = c.envs["a"]
    before = len(env.delivered)
    leader.on_request(get("y", 1, "k"))
    assert len(env.delivered) == before  # not yet: waiting for the round
    c.deliver_all()
    answer = env.delivered[-1]
    assert answer.ok and answer.result == {"value": 1, "version": 1} and answer.index == 2


def test_read_index_is_refused_by_a_deposed_leader():
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    c.partition(["a"], ["b", "c"])
    leader.on_request(get("y", 1, "k"))
    c.deliver_all()
    c.heal()
    c.nodes["b"].on_message("c", RequestVote(term=5, candidate="c", last_log_index=9, last_log_term=1))
    leader.on_message("b", AppendEntriesResponse(term=5, success=False, index=0))
    answer = c.envs["a"].delivered[-1]
    assert leader.role == "follower" and not answer.ok and answer.error == "not-leader"


def test_stale_read_bug_answers_from_local_state_anywhere():
    c = Cluster(["a", "b", "c"], bugs=frozenset({"stale-read"}))
    c.elect("a")
    c.nodes["b"].on_request(get("y", 1, "k"))
    assert c.envs["b"].delivered[-1].ok


def test_lease_read_is_local_within_the_lease_only():
    """§6.4.1: after a heartbeat round acknowledged by a majority, reads are served
    without messages until election_timeout * (1 - drift bound) after that round."""
    c = Cluster(["a", "b", "c"], read_mode="lease")
    leader = c.elect("a")
    c.fire("a", "heartbeat")
    c.deliver_all()
    env = c.envs["a"]
    env.take()
    leader.on_request(get("y", 1, "k"))
    assert env.delivered[-1].ok and env.sent == []
    c.advance(1.0)  # far beyond the lease
    leader.on_request(get("y", 2, "k"))
    assert env.delivered[-1].seq == 1 and env.sent  # a ReadIndex round went out instead


def test_leadership_transfer():
    """§3.10: the leader brings the target up to date and sends TimeoutNow; the target
    campaigns at once, past the other servers' leader leases."""
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    assert leader.transfer_leadership("b") is None
    assert any(isinstance(m, TimeoutNow) for _, m in c.envs["a"].sent)
    leader.on_request(put("x", 1, "k", 1))
    assert c.envs["a"].delivered[-1].error == "busy"
    c.deliver_all()
    assert c.nodes["b"].role == "leader" and leader.role == "follower"


def test_single_server_membership_changes():
    """§4.1: add a learner (not in the quorum), promote it, remove a voter; one change
    at a time."""
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    assert leader.propose_config_change("add-learner", "d") is None
    assert leader.propose_config_change("add-voter", "d") == "a configuration change is already in progress"
    c.deliver_all()
    assert leader.config.learners == ("d",) and "d" in leader.progress
    assert leader.propose_config_change("add-voter", "d") is None
    assert leader.config.voters == ("a", "b", "c", "d")
    assert leader.propose_config_change("remove", "zz") is not None
    c.deliver_all()  # d does not exist here: the 4-voter config still commits with a,b,c
    assert leader.commit_index == leader.log.last_index
    assert leader.propose_config_change("remove", "a") is None
    c.deliver_all()
    assert leader.role == "follower" and leader.config.voters == ("b", "c", "d")


def test_duplicate_command_is_applied_once():
    """Client sessions: a retry with the same (client, seq) returns the cached result."""
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    leader.on_request(put("x", 1, "k", "v"))
    leader.on_request(put("x", 1, "k", "v"))
    c.deliver_all()
    answers = [r for r in c.envs["a"].delivered if r.seq == 1]
    assert [r.result for r in answers] == [{"version": 1}, {"version": 1}]
    c.fire("a", "heartbeat")
    c.deliver_all()
    assert c.nodes["b"].sm.execute(Op(kind="get", key="k")) == {"value": "v", "version": 1}


def test_snapshot_compaction_install_and_restart():
    """§5: the log is compacted after a snapshot; a follower behind the compacted log
    receives InstallSnapshot; a restarted server rebuilds from snapshot + log."""
    c = Cluster(["a", "b", "c"], snapshot_threshold=5, snapshot_trailing=1)
    leader = c.elect("a")
    c.down = {"c"}
    for seq in range(1, 13):
        leader.on_request(put("x", seq, "k", seq))
        c.deliver_all()
    assert leader.snapshot is not None and leader.log.offset > 1
    c.down = set()
    c.fire("a", "heartbeat")
    c.deliver_all()
    c.fire("a", "heartbeat")
    sent = c.deliver_all()
    assert sent > 0
    assert c.nodes["c"].sm.get("k") == 12 and c.nodes["c"].snapshot is not None
    c.restart("c")
    restarted = c.nodes["c"]
    assert restarted.last_applied == restarted.snapshot.last_index
    assert restarted.log.last_index >= restarted.snapshot.last_index


def test_install_snapshot_keeps_matching_suffix():
    from consensuskit.protocols.raft.messages import ClusterConfig, Snapshot

    node, _ = follower_with_log([1, 1, 1, 1], term=1)

    snap = Snapshot(
        last_index=2,
        last_term=1,
        config=ClusterConfig(voters=("f", "l", "o")),
        data={"data": (), "sessions": ()},
    )
    node.on_message("l", InstallSnapshot(term=1, leader="l", snapshot=snap))
    assert node.log.offset == 2 and node.log.last_index == 4 and node.commit_index == 2


def test_a_snapshot_that_does_not_restore_changes_nothing():
    """Issue 10: a peer's InstallSnapshot whose data is not a state-machine snapshot made
    the follower reset its log and then fail: a halt.  Now it is ignored, untouched."""
    from consensuskit.protocols.raft.messages import ClusterConfig, Snapshot

    node, _ = follower_with_log([1, 1, 1, 1], term=1)
    before = (node.log.offset, node.log.last_index, node.commit_index, node.snapshot)
    snap = Snapshot(last_index=9, last_term=5, config=ClusterConfig(voters=("f", "l", "o")), data="garbage")
    node.on_message("l", InstallSnapshot(term=1, leader="l", snapshot=snap))
    assert (node.log.offset, node.log.last_index, node.commit_index, node.snapshot) == before


def test_follower_that_lost_acknowledged_entries_is_repaired():
    """A follower whose disk lost synced entries (outside Raft's model) rejects the
    leader's next append with a log shorter than its match; the leader lowers match and
    probes from there instead of retrying at match+1 forever (hashicorp/raft does the same)."""
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    for seq in range(1, 11):
        leader.on_request(put("x", seq, f"k{seq}", seq))
        c.deliver_all()
    assert leader.progress["c"].match == leader.log.last_index
    # c loses its last three entries (as if the WAL tail were cut) and restarts.
    storage = c.envs["c"].storage
    storage.log_truncate_from(storage.log_last() - 2)
    c.restart("c")
    assert c.nodes["c"].log.last_index == leader.log.last_index - 3
    leader.on_request(put("x", 11, "k11", 11))
    c.deliver_all()
    c.fire("a", "heartbeat")
    c.deliver_all()
    assert any(kind == "follower-behind-match" for kind, _ in c.envs["a"].records)
    assert c.nodes["c"].log.last_index == leader.log.last_index
    assert leader.progress["c"].match == leader.log.last_index
    c.fire("a", "heartbeat")
    c.deliver_all()
    assert c.nodes["c"].sm.get("k11") == 11


def test_a_term_no_cluster_could_reach_is_ignored():
    """A term beyond MAX_TERM (2^62), or more than STEP (2^40) above the node's own, comes
    only from a broken or hostile peer: adopting 2^63-1 would leave no term to campaign in
    (found by the peer fuzz suite), and so did adopting MAX_TERM itself (below).  The
    message is ignored; the node keeps its term."""
    node, _ = make_node("f", ["f", "c", "l"])
    for term in (STEP + 1, MAX_TERM, MAX_TERM + 1, 2**63 - 1, -1):
        node.on_message("c", RequestVote(term=term, candidate="c", last_log_index=0, last_log_term=0))
        assert node.term == 0 and node.voted_for is None
    node.on_message("c", RequestVote(term=STEP, candidate="c", last_log_index=0, last_log_term=0))
    assert node.term == STEP
    node.on_message("c", RequestVote(term=MAX_TERM, candidate="c", last_log_index=0, last_log_term=0))
    assert node.term == STEP  # still out of reach: 2^22 such steps would be needed


def test_one_message_cannot_set_a_cluster_at_the_term_ceiling():
    """A Heartbeat of term 2^62 (the ceiling) to every node of a cluster: each adopted
    it, and the next term, 2^62+1, was refused by all, so the three nodes pre-campaigned
    forever.  It is ignored now; a term STEP above the nodes' is adopted and the cluster
    elects a leader in the term after it."""
    from consensuskit.sim import SimConfig, Simulation

    for term, ignored in ((MAX_TERM, True), (1 + STEP, False)):
        sim = Simulation(SimConfig(protocol="raft", node_ids=("n1", "n2", "n3"), check_every_step=False))
        sim.run_until(3.0)
        assert {n.term for n in sim.nodes.values()} == {1}
        for node_id in sim.nodes:
            src = "n2" if node_id != "n2" else "n1"
            forged = Heartbeat(term=term, leader=src, commit=0)
            sim.invoke(node_id, lambda n, m=forged, s=src: n.on_message(s, m), "forged heartbeat")
        sim.run_until(30.0)
        roles = sorted(n.role for n in sim.nodes.values())
        assert roles == ["follower", "follower", "leader"], (term, roles)
        terms = {n.term for n in sim.nodes.values()}
        assert terms == ({1} if ignored else {term + 1}), (term, terms)
