"""Batching for the real runtime (on_batch_end): a batch's writes leave in one
AppendEntries per follower; large states snapshot less often (amortized)."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR as SNAPSHOT_AMORTIZE_FLOOR
from consensuskit.protocols.common.snapshot_policy import entries_kept
from consensuskit.protocols.raft.messages import AppendEntries, AppendEntriesResponse
from tests.protocols.raft.fake import Cluster
from tests.protocols.snapshot_gaps import assert_amortized, note_snapshot


def put(key: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value="v"))


def batching_leader(**options) -> Cluster:
    c = Cluster(["a", "b", "c"], **options)
    leader = c.elect("a")
    c.deliver_all()
    leader.share_read_rounds = True  # what a runtime with calls_batch_end sets
    leader.log.defer_writes = True
    c.envs["a"].take()
    return c


def test_a_batchs_log_appends_reach_storage_as_one_write_before_anything_is_sent():
    c = batching_leader()
    leader, env = c.nodes["a"], c.envs["a"]
    appends: list[list[int]] = []

    class Counting:
        def __getattr__(self, name):
            return getattr(env.storage, name)

        def log_append(self, records):
            appends.append([r.index for r in records])
            env.storage.log_append(records)

    leader.log.storage = Counting()  # type: ignore[assignment]
    first = leader.log.last_index + 1
    for seq in range(1, 4):
        leader.on_request(put(f"k{seq}", seq))
    assert appends == [] and env.storage.log_last() == first - 1  # in memory only
    env.sent.clear()
    leader.on_batch_end()
    assert appends == [[first, first + 1, first + 2]] and env.storage.log_last() == first + 2
    assert env.sent  # the AppendEntries left after the write
    c.deliver_all()
    assert [r.seq for r in env.delivered if r.ok] == [1, 2, 3]


def test_a_deferred_append_is_written_before_a_truncation_or_compaction():
    c = batching_leader()
    leader, env = c.nodes["a"], c.envs["a"]
    first = leader.log.last_index + 1
    leader.on_request(put("k", 1))
    assert env.storage.log_last() == first - 1
    leader.log.compact(first)  # as a snapshot does
    assert leader.log.unwritten == [] and env.storage.log_first() == first + 1
    leader.on_request(put("k", 2))
    leader.log.truncate_from(first + 1)
    assert leader.log.unwritten == [] and env.storage.log_last() == first


def test_a_batchs_writes_leave_together_at_its_end_and_are_answered_in_order():
    c = batching_leader()
    leader, env = c.nodes["a"], c.envs["a"]
    first = leader.log.last_index + 1
    for seq in range(1, 6):
        leader.on_request(put(f"k{seq}", seq))
    assert env.sent == [] and leader.log.last_index == first + 4  # appended, not yet sent
    leader.on_batch_end()
    appends = [(dst, m) for dst, m in env.sent if isinstance(m, AppendEntries)]
    assert sorted(dst for dst, _ in appends) == ["b", "c"]
    assert all([e.index for e in m.entries] == list(range(first, first + 5)) for _, m in appends)
    c.deliver_all()
    assert [r.seq for r in env.delivered if r.ok] == [1, 2, 3, 4, 5]
    leader.on_batch_end()  # nothing due
    assert env.sent == []


def test_a_leader_that_steps_down_mid_batch_sends_nothing_and_answers_nothing():
    c = batching_leader()
    leader, env = c.nodes["a"], c.envs["a"]
    leader.on_request(put("k", 1))
    leader.on_message("b", AppendEntriesResponse(term=leader.term + 1, success=False, index=0))
    env.take()
    leader.on_batch_end()
    assert env.sent == [] and env.delivered == []


def test_without_the_hook_each_write_is_sent_at_once():
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    c.deliver_all()
    c.envs["a"].take()
    leader.on_request(put("k", 1))
    assert sum(isinstance(m, AppendEntries) for _, m in c.envs["a"].sent) == 2


def test_a_large_state_waits_for_as_many_entries_as_keys_between_snapshots():
    threshold, keyspace = 50, SNAPSHOT_AMORTIZE_FLOOR + 100
    c = Cluster(["a"], snapshot_threshold=threshold, snapshot_trailing=0)
    leader = c.elect("a")
    taken: list[tuple[int, int]] = []  # (snapshot index, keys in the state when taken)
    for seq in range(1, 5 * keyspace):
        leader.on_request(put(f"key{seq % keyspace}", seq))
        c.deliver_all()
        note_snapshot(taken, leader.snapshot.last_index if leader.snapshot else None, len(leader.sm))
    assert_amortized(taken, threshold, keyspace, min_large=3)
    # It keeps a quarter of the interval in the log for followers a little behind.
    assert (
        leader.log.offset
        == leader.snapshot.last_index - entries_kept(0, keyspace)
        == leader.snapshot.last_index - 153
    )
