"""A follower serves every request (etcd's proposal forwarding and follower ReadIndex):
commands go to the leader and are answered by the follower when it applies them;
linearizable reads wait for a read index the leader confirmed with a heartbeat round
after the request, then for the follower to apply that far."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.raft.messages import (
    ForwardRefused,
    ForwardRequest,
    Heartbeat,
    ReadIndexRequest,
    ReadIndexResponse,
)
from tests.protocols.raft.fake import Cluster


def put(key: str, value: object, seq: int, client: str = "w") -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key=key, value=value))


def get(key: str, seq: int, consistency: str | None = None) -> ClientRequest:
    return ClientRequest(client_id="r", seq=seq, op=Op(kind="get", key=key), consistency=consistency)


def settle(c: Cluster) -> None:
    """Deliver everything, then a heartbeat tells the followers the commit index."""
    c.deliver_all()
    c.fire("a", "heartbeat")
    c.deliver_all()


def sent_of(c: Cluster, node: str, kind: type) -> list[tuple[str, object]]:
    return [(dst, m) for dst, m in c.envs[node].sent if type(m) is kind]


def test_a_follower_forwards_a_command_and_answers_it_when_it_applies_it():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.envs["b"].take()
    c.nodes["b"].on_request(put("x", 7, 1))
    forwards = sent_of(c, "b", ForwardRequest)
    assert [dst for dst, _ in forwards] == ["a"] and c.envs["b"].delivered == []
    settle(c)
    answers = [r for r in c.envs["b"].delivered if r.client_id == "w"]
    assert len(answers) == 1 and answers[0].ok and answers[0].index == c.nodes["b"].last_applied
    assert c.nodes["a"].sm.read(get("x", 9)) == c.nodes["b"].sm.read(get("x", 9))
    assert c.nodes["b"].forwarded == {}  # nothing left waiting


def test_a_retried_forward_is_applied_once():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.nodes["b"].on_request(put("x", 1, 1))
    c.nodes["b"].on_request(put("x", 1, 1))  # the client's retry, same session seq
    c.nodes["a"].on_request(put("y", 2, 1, client="other"))
    settle(c)
    answers = [r for r in c.envs["b"].delivered if r.client_id == "w" and r.seq == 1]
    assert len(answers) == 1 and answers[0].ok


def test_a_node_that_is_not_the_leader_refuses_a_forwarded_command_definitely():
    """No second hop: the follower's client gets not-leader with the best hint."""
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.nodes["c"].on_message("b", ForwardRequest(term=0, request=put("x", 1, 1)))
    refusals = sent_of(c, "c", ForwardRefused)
    assert len(refusals) == 1 and refusals[0][1].response.error == "not-leader"
    assert refusals[0][1].response.leader_hint == "a"
    c.nodes["b"].forwarded[("w", 1)] = put("x", 1, 1)
    c.nodes["b"].on_message("c", refusals[0][1])
    assert c.envs["b"].delivered[-1].error == "not-leader" and c.nodes["b"].forwarded == {}


def test_a_follower_read_waits_for_the_leaders_round_and_its_own_apply():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.nodes["a"].on_request(put("x", 1, 1))
    c.deliver_all()
    b = c.nodes["b"]
    c.envs["b"].take()
    b.on_request(get("x", 5))
    ((dst, request),) = sent_of(c, "b", ReadIndexRequest)
    assert dst == "a" and c.envs["b"].delivered == []
    # The leader answers only after a heartbeat round sent after the request.
    c.envs["a"].take()
    c.nodes["a"].on_message("b", request)
    assert sent_of(c, "a", ReadIndexResponse) == []
    assert {dst for dst, _ in sent_of(c, "a", Heartbeat)} == {"b", "c"}
    c.deliver_all()
    answer = [r for r in c.envs["b"].delivered if r.client_id == "r"]
    assert len(answer) == 1 and answer[0].ok and answer[0].result is not None
    assert b.remote_reads == {} and b.follower_reads == []


def test_a_follower_read_is_served_only_once_applied_that_far():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.deliver_all()
    b = c.nodes["b"]
    b.remote_reads[("r", 5)] = get("x", 5)
    b.on_message("a", ReadIndexResponse(term=0, client_id="r", seq=5, index=b.last_applied + 3))
    assert [r for r in c.envs["b"].delivered if r.client_id == "r"] == []
    for seq in range(1, 4):
        c.nodes["a"].on_request(put("x", seq, seq))
    settle(c)
    (answer,) = [r for r in c.envs["b"].delivered if r.client_id == "r"]
    assert answer.ok and answer.result["value"] == 3  # it reflects every write up to the index


def test_a_refused_read_index_is_a_definite_refusal_and_a_late_answer_is_ignored():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    b = c.nodes["b"]
    b.remote_reads[("r", 5)] = get("x", 5)
    b.on_message("c", ReadIndexResponse(term=0, client_id="r", seq=5, index=0, leader="a"))
    answer = c.envs["b"].delivered[-1]
    assert not answer.ok and answer.error == "not-leader" and answer.leader_hint == "a"
    b.on_message("a", ReadIndexResponse(term=0, client_id="r", seq=5, index=1))
    assert len([r for r in c.envs["b"].delivered if r.client_id == "r"]) == 1


def test_a_follower_that_campaigns_refuses_the_reads_it_waits_on():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    b = c.nodes["b"]
    b.remote_reads[("r", 5)] = get("x", 5)
    b.campaign()
    assert b.remote_reads == {}
    assert c.envs["b"].delivered[-1].error == "not-leader"


def test_a_leader_that_steps_down_refuses_the_follower_reads_it_holds():
    c = Cluster(["a", "b", "c"])
    c.elect("a")
    c.deliver_all()
    a = c.nodes["a"]
    c.envs["a"].take()
    a.on_message("b", ReadIndexRequest(term=0, client_id="r", seq=5))
    a._become_follower(a.term + 1, None)
    refusals = sent_of(c, "a", ReadIndexResponse)
    assert [(dst, m.index) for dst, m in refusals] == [("b", 0)]


def test_the_waiting_tables_are_bounded():
    c = Cluster(["a", "b", "c"], max_forwarded=2)
    c.elect("a")
    b = c.nodes["b"]
    for seq in range(1, 5):
        b.on_request(put("x", seq, seq))
    assert list(b.forwarded) == [("w", 3), ("w", 4)]
