"""Per-request read consistency (ClientRequest.consistency) and the leader's status()."""

from __future__ import annotations

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
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


def test_linearizable_read_on_a_follower_is_refused_with_the_leader():
    c = leader_with_value()
    c.nodes["b"].on_request(read(1, "linearizable"))
    answer = c.envs["b"].delivered[-1]
    assert not answer.ok and answer.error == "not-leader" and answer.leader_hint == "a"


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
