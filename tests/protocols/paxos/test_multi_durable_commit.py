"""A Multi-Paxos leader on a runtime with ``reports_durable`` and ``send_early`` sends its
Accepts before its own vote is synced and counts that vote toward a slot's quorum only
once the runtime reported it durable (``on_durable``), as Raft's leader does (§10.2.1 of
the Raft dissertation).  The bug knob ``count-self-before-durable`` counts it at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.protocols.paxos.multi_messages import Accept, Accepted

from .multi_fake import Cluster, FakeEnv, put

IDS = ["n1", "n2", "n3"]


@dataclass
class EarlyEnv(FakeEnv):
    reports_durable: bool = True
    early: list[tuple[str, Any]] = field(default_factory=list)

    def send_early(self, dst: str, msg: Any) -> None:
        self.early.append((dst, msg))
        self.sent.append((dst, msg))  # the fake network delivers both kinds alike


class EarlyCluster(Cluster):
    env_class = EarlyEnv


def elected(**options: Any) -> tuple[EarlyCluster, Any]:
    c = EarlyCluster(IDS, **options)
    leader = c.elect("n1")
    for node in c.nodes.values():
        node.on_durable(node.log.last)
    c.deliver_all()
    for env in c.envs.values():
        env.take()
        env.early.clear()
    return c, leader


def propose(c: EarlyCluster, leader: Any) -> int:
    leader.on_request(put("c", 1, "x", 1))
    [slot] = sorted(leader.proposals)
    return slot


def test_accepts_go_out_early_and_nothing_else_does():
    c, leader = elected()
    propose(c, leader)
    env = c.envs["n1"]
    assert {type(m).__name__ for _, m in env.early} == {"Accept"}
    assert len(env.early) == len(env.sent) == 2
    c.deliver_all()
    assert all(not c.envs[i].early for i in ("n2", "n3"))  # followers never send early


def test_one_follower_and_an_unsynced_leader_vote_do_not_choose():
    c, leader = elected()
    slot = propose(c, leader)
    leader.on_message("n2", Accepted(ballot=leader.ballot, slots=(slot,), executed=0))
    assert leader.executed < slot and slot in leader.proposals  # one durable vote of three
    leader.on_durable(slot)
    assert leader.executed == slot
    [answer] = c.envs["n1"].delivered
    assert answer.ok and answer.index == slot


def test_a_majority_of_followers_chooses_without_the_leaders_vote():
    _, leader = elected()
    slot = leader.log.last + 1
    leader.on_request(put("c", 1, "x", 1))
    for follower in ("n2", "n3"):
        leader.on_message(follower, Accepted(ballot=leader.ballot, slots=(slot,), executed=0))
    assert leader.executed == slot and leader.durable_slot < slot


def test_durable_reports_never_go_past_the_log_and_a_rewritten_vote_lowers_them():
    c, leader = elected()
    follower = c.nodes["n2"]
    slot = propose(c, leader)
    accept = next(m for _, m in c.envs["n1"].early if isinstance(m, Accept))
    c.deliver_all()
    follower.on_durable(slot + 5)
    assert follower.durable_slot == follower.log.last == slot
    follower.on_message("n1", accept)  # the same vote again: rewritten from its slot on
    assert follower.durable_slot == slot - 1


def test_bug_count_self_before_durable_chooses_on_one_follower_and_an_unsynced_vote():
    # The knob: the leader counts its vote as soon as it is written, so one follower's
    # vote "chooses" a slot that a crash of the leader during its sync leaves on one node.
    c, leader = elected(bugs=frozenset({"count-self-before-durable"}))
    slot = propose(c, leader)
    assert leader.durable_slot < slot
    leader.on_message("n2", Accepted(ballot=leader.ballot, slots=(slot,), executed=0))
    assert leader.executed == slot


def test_without_the_capability_the_leaders_vote_counts_at_once():
    c = Cluster(IDS)  # plain FakeEnv: no reports_durable
    leader = c.elect("n1")
    slot = leader.log.last + 1
    leader.on_request(put("c", 1, "x", 1))
    leader.on_message("n2", Accepted(ballot=leader.ballot, slots=(slot,), executed=0))
    assert leader.executed == slot and not leader.early_replication
