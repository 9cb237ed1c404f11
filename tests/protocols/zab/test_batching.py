"""Batching runtimes (on_batch_end, send_early, reports_durable): a batch's writes leave
as one PROPOSAL per follower, and its commits as one cumulative COMMIT per follower,
early (before the leader's own sync), whatever number of ACKs committed them."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.zab.messages import Ack, Commit, Proposal
from tests.protocols.fake_env import AnsweringFakeEnv
from tests.protocols.zab.fake import Cluster


class BatchingCluster(Cluster):
    env_class = AnsweringFakeEnv


def put(key: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value="v"))


def batching_leader():
    c = BatchingCluster(["a", "b", "c"])
    leader = c.establish()
    # What a runtime with calls_batch_end sets up (the fake env has no batches).
    leader.batched = True
    leader.log.defer_writes = True
    for env in c.envs.values():
        env.take()
    return c, leader


def test_a_batchs_commits_leave_as_one_early_commit_per_follower():
    c, leader = batching_leader()
    env = c.envs[leader.id]
    first = leader.log.last_index + 1
    for seq in range(1, 4):
        leader.on_request(put(f"k{seq}", seq))
    leader.on_batch_end()
    proposals = [(dst, m) for dst, m in env.take() if isinstance(m, Proposal)]
    assert sorted(dst for dst, _ in proposals) == ["a", "b"]
    for dst, m in proposals:
        c.nodes[dst].on_message(leader.id, m)
        c.envs[dst].take()  # their ACKs: the leader gets them in pieces below
    # Each follower ACKs in pieces (as separate PROPOSAL batches would be ACKed): three
    # ACKs in the leader's next batch, each advancing its commit point.
    for i in range(3):
        for follower in ("a", "b"):
            leader.on_message(
                follower, Ack(epoch=leader.epoch, index=first + i, zxid=leader.log.zxid_at(first + i))
            )
    assert leader.commit_index == first + 2
    assert not [m for _, m in env.sent if isinstance(m, Commit)]  # not before the batch ends
    env.sent_early.clear()
    leader.on_batch_end()
    commits = [(dst, m) for dst, m in env.take() if isinstance(m, Commit)]
    assert sorted(dst for dst, _ in commits) == ["a", "b"]
    assert all(m.index == first + 2 and m.zxid == leader.log.zxid_at(first + 2) for _, m in commits)
    assert [(d, m) for d, m in env.sent_early if isinstance(m, Commit)] == commits  # early
    leader.on_batch_end()  # nothing new committed: no COMMIT
    assert not [m for _, m in env.take() if isinstance(m, Commit)]
    for dst, m in commits:
        c.nodes[dst].on_message(leader.id, m)
    assert all(c.nodes[f].commit_index == first + 2 for f in ("a", "b"))
    assert [r.seq for r in env.delivered if r.ok] == [1, 2, 3]


def test_without_batches_each_commit_is_announced_at_once():
    c = BatchingCluster(["a", "b", "c"])
    leader = c.establish()
    env = c.envs[leader.id]
    env.take()
    first = leader.log.last_index + 1
    for seq in range(1, 3):
        leader.on_request(put(f"k{seq}", seq))
    for dst, m in env.take():
        c.nodes[dst].on_message(leader.id, m)
    acks = [(f, m) for f in ("a", "b") for _, m in c.envs[f].take() if isinstance(m, Ack)]
    for f, m in acks:
        leader.on_message(f, m)
    commits = [m.index for _, m in env.take() if isinstance(m, Commit)]
    assert commits and commits[-1] == first + 1


def test_a_batch_of_large_values_leaves_as_several_proposals_within_max_batch_bytes():
    """max_batch_txns alone let 64 values of 1 MiB form one PROPOSAL of 64 MiB, over
    the peer transport's frame limit: never delivered, so nothing would ever commit."""
    c, leader = batching_leader()
    env = c.envs[leader.id]
    first = leader.log.last_index + 1
    big = "v" * 400_000  # three fit in max_batch_bytes (1 MiB), not four
    for seq in range(1, 11):
        leader.on_request(ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=f"k{seq}", value=big)))
    leader.on_batch_end()
    to_a = [m for dst, m in env.take() if dst == "a" and isinstance(m, Proposal)]
    assert [[t.index - first for t in m.txns] for m in to_a] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert all(sum(t.size() for t in m.txns) <= leader.opts.max_batch_bytes for m in to_a)
    # What the log measured for the first learner it reuses for the second.
    assert list(leader.log.sizes.cached()) == list(range(first, first + 10))


def test_a_txn_larger_than_max_batch_bytes_still_leaves_alone():
    c, leader = batching_leader()
    env = c.envs[leader.id]
    leader.opts.max_batch_bytes = 1_000
    for seq in range(1, 4):
        leader.on_request(
            ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=f"k{seq}", value="v" * 5_000))
        )
    leader.on_batch_end()
    to_b = [m for dst, m in env.take() if dst == "b" and isinstance(m, Proposal)]
    assert [len(m.txns) for m in to_b] == [1, 1, 1]


def test_a_txns_estimated_size_counts_its_value():
    _, leader = batching_leader()
    leader.on_request(ClientRequest(client_id="w", seq=1, op=Op(kind="put", key="k", value="x" * 100_000)))
    leader.on_request(put("k2", 2))
    big, small = leader.log.entries[-2], leader.log.entries[-1]
    assert 48 <= small.size() < 200
    assert big.size() - small.size() >= 100_000 - 10
