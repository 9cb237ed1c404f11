"""One test per Fast Paxos rule (Lamport, Fast Paxos 2006; seed 004), driven by hand."""

from __future__ import annotations

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.basic import PROPOSE_TIMER, acceptor_key
from consensuskit.protocols.paxos.basic_messages import Accept, Accepted, AcceptorState, Nack, Prepare
from consensuskit.protocols.paxos.fast import ANY_KEY, RECOVER_TIMER
from consensuskit.protocols.paxos.fast_messages import AcceptAny, Propose

from .fake_single_decree import Net, fast_node

FIVE = ["S1", "S2", "S3", "S4", "S5"]
FAST = Ballot(1, 1)  # S1 coordinates
GRANT = AcceptAny(ballot=FAST, from_slot=1)


def put(client: str, value: object) -> ClientRequest:
    return ClientRequest(client_id=client, seq=1, op=Op(kind="put", key="x", value=value))


def granted(node_id: str, **options):
    node, env = fast_node(node_id, FIVE, **options)
    node.on_message("S1", GRANT)
    env.take()
    return node, env


def test_coordinator_sends_any_to_every_acceptor_at_start():
    _, env = fast_node("S1", FIVE)
    assert sorted(d for d, m in env.sent if m == GRANT) == ["S2", "S3", "S4", "S5"]


def test_any_is_persisted_and_only_taken_from_the_coordinator():
    node, env = fast_node("S3", FIVE)
    node.on_message("S2", AcceptAny(ballot=Ballot(1, 2), from_slot=1))
    assert node.grant is None
    node.on_message("S1", GRANT)
    assert env.storage.get(ANY_KEY) == GRANT


def test_acceptor_without_any_ignores_proposals():
    node, env = fast_node("S3", FIVE)
    node.on_message("S2", Propose(slot=1, ballot=FAST, value="v"))
    assert env.sent == [] and node.acceptor_state(1).accepted_value is None


def test_acceptor_votes_for_the_first_proposal_only():
    node, env = granted("S4")
    node.on_message("S2", Propose(slot=1, ballot=FAST, value="V"))
    vote = Accepted(slot=1, ballot=FAST, value="V", fast=True)
    assert {m for _, m in env.sent} == {vote}
    assert env.storage_at_send[0][acceptor_key(1)] == AcceptorState(
        promised=FAST, accepted_ballot=FAST, accepted_value="V", accepted_fast=True
    )
    env.take()
    node.on_message("S3", Propose(slot=1, ballot=FAST, value="W"))
    assert env.sent == [("S3", vote)], "the later proposer is told how we voted"


def test_fast_proposal_after_a_higher_promise_is_refused():
    node, env = granted("S4")
    node.on_message("S3", Prepare(slot=1, ballot=Ballot(4, 3)))
    env.take()
    node.on_message("S2", Propose(slot=1, ballot=FAST, value="V"))
    assert env.sent == [("S2", Nack(slot=1, ballot=FAST, promised=Ballot(4, 3)))]
    buggy, env = granted("S4", bugs=["accept-lower-ballot"])
    buggy.on_message("S3", Prepare(slot=1, ballot=Ballot(4, 3)))
    buggy.on_message("S2", Propose(slot=1, ballot=FAST, value="V"))
    assert buggy.acceptor_state(1).accepted_value == "V"


def test_client_request_goes_straight_to_the_acceptors():
    node, env = granted("S2")
    node.on_request(put("c", "V"))
    assert sorted(d for d, m in env.sent if isinstance(m, Propose)) == ["S1", "S3", "S4", "S5"]
    assert node.acceptor_state(1).accepted_value == put("c", "V")  # its own acceptor voted


def test_fast_quorum_is_needed_to_learn_in_a_fast_round():
    node, _ = granted("S1")
    for src in ("S2", "S3", "S4"):
        node.on_message(src, Accepted(slot=1, ballot=FAST, value="V", fast=True))
    assert 1 not in node.chosen  # 3 < ceil(3*5/4) = 4
    node.on_message("S5", Accepted(slot=1, ballot=FAST, value="V", fast=True))
    assert node.chosen[1] == "V"


def test_no_collision_is_learned_in_two_message_delays():
    net = Net(FIVE, fast=True)
    net.deliver_all()  # "any"
    net.invoke("S2", lambda n: n.on_request(put("c", "V")))
    hops = 0
    while net.flight and not net.chosen(1):
        hops += 1
        for _ in range(len(net.flight)):
            net.deliver(0)
    assert hops == 2 and set(net.chosen(1).values()) == {put("c", "V")}


def collide(net: Net) -> None:
    """S2 proposes V and S3 proposes W; S2,S4 vote V and S1,S3,S5 vote W."""
    net.deliver_all()
    net.invoke("S2", lambda n: n.on_request(put("c1", "V")))
    net.invoke("S3", lambda n: n.on_request(put("c2", "W")))
    first = {"S4": "S2", "S1": "S3", "S5": "S3"}
    for dst, src in first.items():
        i = next(
            k for k, (s, d, m) in enumerate(net.flight) if (s, d) == (src, dst) and isinstance(m, Propose)
        )
        net.deliver(i)


def test_coordinated_recovery_picks_by_o4_and_runs_classic_round_2():
    net = Net(FIVE, fast=True)
    collide(net)
    while not any(isinstance(m, Accept) for _, _, m in net.flight):
        net.deliver(0)
    accepts = {(s, m.ballot, m.value, m.base) for s, _, m in net.flight if isinstance(m, Accept)}
    # The coordinator saw every 2b message of round 1.1: W has 3 votes, V 2, none 4.
    assert accepts == {("S1", Ballot(2, 1), put("c2", "W"), FAST)}
    net.deliver_all()
    assert net.chosen(1) == dict.fromkeys(FIVE, put("c2", "W"))
    recovered = net.envs["S1"].recorded("recover")
    assert [(r["mode"], r["base"], r["ballot"]) for r in recovered] == [("coordinated", "1.1", "2.1")]
    votes = {i: net.nodes[i].acceptor_state(1).accepted_ballot for i in FIVE}
    assert set(votes.values()) == {Ballot(2, 1)}


def test_uncoordinated_recovery_has_every_acceptor_vote_in_fast_round_2():
    net = Net(FIVE, fast=True, recovery="uncoordinated")
    collide(net)
    net.deliver_all()
    assert net.chosen(1) == dict.fromkeys(FIVE, put("c2", "W"))
    for i in FIVE:
        rec = net.nodes[i].acceptor_state(1)
        assert (rec.accepted_ballot, rec.accepted_fast) == (Ballot(2, 1), True)
    assert not any(isinstance(m, Accept) for env in net.envs.values() for _, m in env.sent)


def test_partial_collision_waits_then_recovers_with_a_classic_quorum():
    node, env = granted("S1")
    node.on_message("S2", Accepted(slot=1, ballot=FAST, value="V", fast=True))
    node.on_message("S3", Accepted(slot=1, ballot=FAST, value="W", fast=True))
    node.on_message("S4", Accepted(slot=1, ballot=FAST, value="X", fast=True))
    # Three values among three votes: no value can reach 4 any more.
    key = f"{RECOVER_TIMER}1/1"
    assert key in env.timers and not any(isinstance(m, Accept) for _, m in env.sent)
    node.on_timer(key)
    accepts = [m for _, m in env.sent if isinstance(m, Accept)]
    assert accepts and {(m.ballot, m.base) for m in accepts} == {(Ballot(2, 1), FAST)}


def test_recovery_accept_is_refused_after_a_promise_above_its_base():
    """Skipping phase 1 of round 2.1 is safe only if nothing between 1.1 and 2.1 was
    promised; an acceptor that promised 4.3 meanwhile refuses."""
    node, env = granted("S4")
    node.on_message("S3", Prepare(slot=1, ballot=Ballot(4, 3)))
    env.take()
    node.on_message("S1", Accept(slot=1, ballot=Ballot(2, 1), value="W", base=FAST))
    assert env.sent == [("S1", Nack(slot=1, ballot=Ballot(2, 1), promised=Ballot(4, 3)))]


def test_recovery_happens_once_even_after_a_restart():
    """The coordinator persists the recovery round before its Accept leaves, so a
    restarted coordinator cannot run round 2.1 again (possibly with another value)."""
    net = Net(FIVE, fast=True)
    collide(net)
    votes_to_s1 = []
    while not any(isinstance(m, Accept) for _, _, m in net.flight):
        src, dst, msg = net.deliver(0)
        if dst == "S1" and isinstance(msg, Accepted):
            votes_to_s1.append((src, msg))
    net.restart("S1")
    env = net.envs["S1"]
    env.take()
    for src, msg in votes_to_s1:
        net.nodes["S1"].on_message(src, msg)
    key = f"{RECOVER_TIMER}1/1"
    assert key in env.timers, "the restarted coordinator sees the collision again"
    net.nodes["S1"].on_timer(key)
    assert not any(isinstance(m, Accept) for _, m in env.sent)


def test_stalled_fast_round_falls_back_to_a_classic_round_with_full_phase_1():
    net = Net(FIVE, fast=True, backoff=False)
    net.deliver_all()
    net.invoke("S2", lambda n: n.on_request(put("c", "V")))
    net.flight = [f for f in net.flight if f[1] in ("S3",)]  # most proposals lost
    net.deliver_all()
    net.fire("S2", PROPOSE_TIMER)
    prepares = {m.ballot for _, _, m in net.flight if isinstance(m, Prepare)}
    assert prepares == {Ballot(4, 2)}  # classic rounds start at 4
    net.deliver_all()
    assert set(net.chosen(1).values()) == {put("c", "V")}


@pytest.mark.parametrize(
    "members, options, message",
    [
        (["a", "b", "c"], {}, "3f\\+1"),
        (FIVE, {"f": 2}, "3f\\+1"),
        (FIVE, {"recovery": "sometimes"}, "unknown recovery"),
        (FIVE, {"coordinator": "S9"}, "not a member"),
    ],
)
def test_bad_configuration_is_refused(members, options, message):
    with pytest.raises(ValueError, match=message):
        fast_node(members[0], members, **options)


def test_three_acceptors_run_with_f_zero():
    node, _ = fast_node("a", ["a", "b", "c"], f=0)
    assert (node.quorum_size(True), node.quorum_size(False)) == (3, 2)
