"""A leader that sends replication traffic before its own fsync (a runtime with
``reports_durable`` and ``send_early``) counts itself toward a commit only for entries
the runtime reported durable (``on_durable``): §10.2.1 of the dissertation."""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.raft import RaftNode, RaftOptions
from consensuskit.protocols.raft.messages import AppendEntries, AppendEntriesResponse, LogEntry
from consensuskit.sim.storage import SimStorage
from tests.protocols.fake_env import AnsweringFakeEnv, EarlyFakeEnv
from tests.protocols.raft.fake import Cluster


def early_cluster(tracked: bool = False, env_class: type = EarlyFakeEnv, **options: Any) -> Cluster:
    """Nodes built on EarlyFakeEnv (the fake Cluster wires FakeEnv; swap and rebuild);
    ``tracked``: on a SimStorage, whose writes the env's driver syncs."""
    c = Cluster(["a", "b", "c"])
    for node_id in c.ids:
        env = env_class(node_id, storage=SimStorage()) if tracked else env_class(node_id)
        c.envs[node_id] = env
        c.nodes[node_id] = RaftNode(node_id, env, c.ids, RaftOptions(**options))
        c.nodes[node_id].on_start()
    return c


def append(term: int, leader: str, prev: int, prev_term: int, entry: LogEntry) -> AppendEntries:
    return AppendEntries(
        term=term,
        leader=leader,
        prev_log_index=prev,
        prev_log_term=prev_term,
        entries=(entry,),
        leader_commit=0,
    )


def put(seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key="x", value=seq))


def elected(tracked: bool = False, env_class: type = EarlyFakeEnv, **options: Any) -> tuple[Cluster, Any]:
    c = early_cluster(tracked, env_class, **options)
    leader = c.elect("a")
    for node in c.nodes.values():
        node.on_durable(node.log.last_index)
    c.deliver_all()
    return c, leader


def test_replication_goes_out_early_and_nothing_else_does():
    c, leader = elected()
    env = c.envs["a"]
    env.sent_early.clear()
    env.take()
    leader.on_request(put(1))
    kinds = {type(m).__name__ for _, m in env.sent_early}
    assert kinds == {"AppendEntries"} and len(env.sent_early) == len(env.sent) == 2
    assert all(not e.sent_early for i, e in c.envs.items() if i != "a")  # followers never send early


def test_under_a_held_sync_replication_leaves_and_the_answer_waits_for_it():
    """The fake env's driver, with the barrier driven by hand: the leader's sync is held
    while its followers acknowledge; the entry commits on them, but the answer leaves
    only with the leader's own sync, which then reports the entry durable."""
    c, leader = elected(tracked=True)
    env = c.envs["a"]
    env.manual = True
    env.take()
    leader.on_request(put(1))
    index = leader.log.last_index
    env.end_batch()
    assert env.syncing and {type(m).__name__ for _, m in env.take()} == {"AppendEntries"}
    assert env.disk.durable.log_last() < index  # the leader's copy is not on disk yet
    for follower in ("b", "c"):
        leader.on_message(follower, AppendEntriesResponse(term=leader.term, success=True, index=index))
    env.end_batch()
    assert leader.commit_index == index and env.delivered == []  # committed, held
    env.complete_sync()
    assert [r.seq for r in env.delivered] == [1] and env.durable_reports[-1] == index
    assert env.disk.durable.log_last() == index


def test_with_deliver_early_the_committed_answer_leaves_before_the_leaders_sync():
    """The same, on a runtime that offers deliver_early: the entry is durable on a
    quorum (the followers), so its answer does not wait for the leader's own sync."""
    c, leader = elected(tracked=True, env_class=AnsweringFakeEnv)
    env = c.envs["a"]
    env.manual = True
    env.take()
    leader.on_request(put(1))
    index = leader.log.last_index
    env.end_batch()
    assert env.syncing and env.disk.durable.log_last() < index
    for follower in ("b", "c"):
        leader.on_message(follower, AppendEntriesResponse(term=leader.term, success=True, index=index))
    env.end_batch()
    assert leader.commit_index == index and [r.seq for r in env.delivered] == [1]
    assert env.syncing  # the leader's own copy is still not on disk


def test_one_follower_and_an_unsynced_leader_do_not_commit():
    _, leader = elected()
    leader.on_request(put(1))
    index = leader.log.last_index
    leader.on_message("b", AppendEntriesResponse(term=leader.term, success=True, index=index))
    assert leader.commit_index < index  # b + a's unsynced copy is one durable copy
    leader.on_durable(index)
    assert leader.commit_index == index


def test_a_majority_of_followers_commits_without_the_leaders_copy():
    _, leader = elected()
    leader.on_request(put(1))
    index = leader.log.last_index
    for follower in ("b", "c"):
        leader.on_message(follower, AppendEntriesResponse(term=leader.term, success=True, index=index))
    assert leader.commit_index == index and leader.durable_index < index


def test_durable_reports_never_go_past_the_log_and_truncation_lowers_them():
    c, leader = elected()
    follower = c.nodes["b"]
    follower.on_durable(follower.log.last_index + 5)
    assert follower.durable_index == follower.log.last_index
    # A new leader of a later term overwrites b's uncommitted tail.
    last = follower.log.last_index
    prev_term = follower.log.last_term
    stray = LogEntry(term=leader.term, index=last + 1, kind="noop", data=None)
    follower.on_message("a", append(leader.term, "a", last, prev_term, stray))
    follower.on_durable(last + 1)
    replacement = LogEntry(term=leader.term + 1, index=last + 1, kind="noop", data=None)
    follower.on_message("c", append(leader.term + 1, "c", last, prev_term, replacement))
    assert follower.log.entry(last + 1).term == leader.term + 1 and follower.durable_index == last


def test_without_the_capability_the_leader_counts_its_whole_log():
    c = Cluster(["a", "b", "c"])  # plain FakeEnv: no reports_durable
    leader = c.elect("a")
    leader.on_request(put(1))
    index = leader.log.last_index
    leader.on_message("b", AppendEntriesResponse(term=leader.term, success=True, index=index))
    assert leader.commit_index == index and not leader.early_replication


def test_bug_count_self_before_durable_commits_on_one_follower_and_an_unsynced_copy():
    # The knob: the leader counts its own log as soon as it is written, so one follower's
    # copy commits an entry that a crash of the leader during its sync leaves on one node.
    _, leader = elected(bugs=frozenset({"count-self-before-durable"}))
    leader.on_request(put(1))
    index = leader.log.last_index
    assert leader.durable_index < index
    leader.on_message("b", AppendEntriesResponse(term=leader.term, success=True, index=index))
    assert leader.commit_index == index
