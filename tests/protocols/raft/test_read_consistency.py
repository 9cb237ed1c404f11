"""Per-request read consistency (ClientRequest.consistency) and the leader's status()."""

from __future__ import annotations

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.raft.messages import AppendEntriesResponse
from tests.protocols.raft.fake import Cluster


def read(seq: int, consistency: str | None, kind: str = "get", key: str = "x") -> ClientRequest:
    return ClientRequest(client_id="r", seq=seq, op=Op(kind=kind, key=key), consistency=consistency)


def put(key: str, value: object, seq: int) -> ClientRequest:
    return ClientRequest(client_id="w", seq=seq, op=Op(kind="put", key=key, value=value))


def leader_with_value() -> Cluster:
    c = Cluster(["a", "b", "c"])
    leader = c.elect("a")
    leader.on_request(put("x", 1, 1))
    c.deliver_all()
    return c


def test_unknown_consistency_is_refused_and_it_survives_the_codec():
    with pytest.raises(ValueError, match="unknown consistency 'eventual'; valid: linearizable, lease, stale"):
        read(1, "eventual")
    request = read(1, "lease", kind="list", key="pre")
    assert decode(encode(request)) == request


def test_stale_read_is_served_by_a_follower_from_local_state():
    c = leader_with_value()
    follower, env = c.nodes["b"], c.envs["b"]
    follower.on_request(read(1, "stale"))
    answer = env.delivered[-1]
    assert answer.ok and answer.leader_hint == "a" and answer.index == follower.last_applied
    assert env.sent == []


def test_linearizable_read_on_a_follower_is_refused_with_the_leader_when_it_does_not_forward():
    c = Cluster(["a", "b", "c"], forward_requests=False)
    c.elect("a")
    c.nodes["a"].on_request(put("x", 1, 1))
    c.deliver_all()
    c.nodes["b"].on_request(read(1, "linearizable"))
    answer = c.envs["b"].delivered[-1]
    assert not answer.ok and answer.error == "not-leader" and answer.leader_hint == "a"
    assert c.envs["b"].sent == []


def test_linearizable_overrides_a_lease_read_mode():
    """A node configured for lease reads still runs a ReadIndex round when asked to."""
    c = Cluster(["a", "b", "c"], read_mode="lease")
    leader = c.elect("a")
    c.fire("a", "heartbeat")
    c.deliver_all()
    env = c.envs["a"]
    env.take()
    before = len(env.delivered)
    leader.on_request(read(1, "linearizable"))
    assert len(env.delivered) == before and env.sent  # waiting for a heartbeat quorum
    c.deliver_all()
    assert env.delivered[-1].ok and env.delivered[-1].seq == 1


def test_lease_request_uses_the_lease_when_safe_else_read_index():
    c = Cluster(["a", "b", "c"])  # default read mode: read-index
    leader = c.elect("a")
    c.fire("a", "heartbeat")
    c.deliver_all()
    env = c.envs["a"]
    env.take()
    leader.on_request(read(1, "lease"))
    assert env.delivered[-1].seq == 1 and env.sent == []  # served from the lease
    c.advance(1.0)  # the lease ran out
    leader.on_request(read(2, "lease"))
    assert env.delivered[-1].seq == 1 and env.sent  # a ReadIndex round instead
    c.deliver_all()
    assert env.delivered[-1].seq == 2 and env.delivered[-1].ok


def test_read_log_mode_still_serves_explicit_consistency_without_the_log():
    c = Cluster(["a", "b", "c"], read_mode="log")
    leader = c.elect("a")
    last = leader.log.last_index
    leader.on_request(read(1, "linearizable"))
    c.deliver_all()
    assert leader.log.last_index == last and c.envs["a"].delivered[-1].ok
    leader.on_request(read(2, None))  # no preference: the configured mode logs it
    assert leader.log.last_index == last + 1


def test_list_is_a_read():
    c = leader_with_value()
    leader = c.nodes["a"]
    leader.on_request(put("xa", "v", 2))
    c.deliver_all()
    last = leader.log.last_index
    leader.on_request(read(1, None, kind="list", key="x"))
    c.deliver_all()
    answer = c.envs["a"].delivered[-1]
    assert leader.log.last_index == last
    assert answer.ok and answer.result == {"items": (("x", 1, 1), ("xa", "v", 1)), "truncated": False}


def test_status_names_each_followers_match_on_the_leader_only():
    c = leader_with_value()
    status = c.nodes["a"].status()
    last = c.nodes["a"].log.last_index
    assert status["role"] == "leader" and status["leader"] == "a"
    assert status["peers"] == {
        "b": {"match": last, "next": last + 1, "state": "replicate"},
        "c": {"match": last, "next": last + 1, "state": "replicate"},
    }
    assert c.nodes["b"].status()["peers"] == {}


def test_a_batching_runtime_shares_one_read_index_round_among_a_batchs_reads():
    """With on_batch_end (the real runtime), every read of a batch waits for the same
    heartbeat round, started once at the end of the batch."""
    c = leader_with_value()
    leader, env = c.nodes["a"], c.envs["a"]
    leader.share_read_rounds = True
    env.take()
    before = len(env.delivered)
    for seq in (1, 2, 3):
        leader.on_request(read(seq, "linearizable"))
    assert env.sent == [] and len(env.delivered) == before
    leader.on_batch_end()
    heartbeats = [m for _, m in env.sent if type(m).__name__ == "Heartbeat"]
    assert len(heartbeats) == 2 and heartbeats[0].context == heartbeats[1].context  # one round
    c.deliver_all()
    assert [r.seq for r in env.delivered[before:]] == [1, 2, 3] and all(r.ok for r in env.delivered[before:])
    leader.on_batch_end()  # nothing due: no new round
    assert env.sent == []


def test_a_regular_heartbeat_in_the_batch_serves_the_reads_waiting_for_a_round():
    c = leader_with_value()
    leader, env = c.nodes["a"], c.envs["a"]
    leader.share_read_rounds = True
    env.take()
    leader.on_request(read(1, "linearizable"))
    c.fire("a", "heartbeat")
    rounds = {m.context for _, m in env.sent if type(m).__name__ == "Heartbeat"}
    leader.on_batch_end()
    assert {m.context for _, m in env.sent if type(m).__name__ == "Heartbeat"} == rounds  # no extra round
    c.deliver_all()
    assert env.delivered[-1].seq == 1 and env.delivered[-1].ok


def test_reads_deferred_to_the_batch_end_are_refused_if_leadership_is_lost_first():
    c = leader_with_value()
    leader, env = c.nodes["a"], c.envs["a"]
    leader.share_read_rounds = True
    leader.on_request(read(1, "linearizable"))
    leader.on_message("b", AppendEntriesResponse(term=leader.term + 1, success=False, index=0))
    env.take()
    leader.on_batch_end()
    assert env.sent == []
    answer = env.delivered[-1]
    assert answer.seq == 1 and not answer.ok and answer.error == "not-leader"


def test_without_check_quorum_a_lease_request_uses_read_index():
    """§6.4.1: the lease rests on followers ignoring votes while they hear from a leader,
    which only check-quorum provides."""
    c = Cluster(["a", "b", "c"], check_quorum=False)
    leader = c.elect("a")
    c.fire("a", "heartbeat")
    c.deliver_all()
    env = c.envs["a"]
    env.take()
    before = len(env.delivered)
    leader.on_request(read(1, "lease"))
    assert len(env.delivered) == before and env.sent  # a ReadIndex round, not the lease
    c.deliver_all()
    assert env.delivered[-1].seq == 1 and env.delivered[-1].ok
