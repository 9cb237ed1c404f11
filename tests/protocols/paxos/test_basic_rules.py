"""One test per Basic Paxos rule, driven by hand (see fake_single_decree.py).

Section numbers refer to "Paxos Made Simple" (Lamport 2001).
"""

from __future__ import annotations

import pytest

from consensuskit.core.client import NOT_LEADER, ClientRequest, Op
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot
from consensuskit.protocols.paxos.basic import (
    CATCHUP_TIMER,
    PROPOSE_TIMER,
    acceptor_key,
    chosen_key,
    round_key,
)
from consensuskit.protocols.paxos.basic_messages import (
    NOOP,
    Accept,
    Accepted,
    AcceptorState,
    CatchUp,
    Chosen,
    Nack,
    Prepare,
    Promise,
)

from .fake_single_decree import Net, basic_node

THREE = ["n1", "n2", "n3"]


def put(client: str, seq: int, value: object) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key="x", value=value))


def kinds(sent: list) -> list[str]:
    return [f"{dst}:{type(m).__name__}" for dst, m in sent]


# ---------------------------------------------------------------------- acceptor
def test_promise_is_persisted_before_it_is_sent():
    """§2.2 P1a: the acceptor promises b and must remember it across a crash; the
    promise may leave only once stored (the runtime releases it after the sync)."""
    node, env = basic_node("n2", THREE)
    node.on_message("n1", Prepare(slot=1, ballot=Ballot(3, 1)))
    assert env.sent == [("n1", Promise(slot=1, ballot=Ballot(3, 1)))]
    stored = env.storage_at_send[0][acceptor_key(1)]
    assert stored == AcceptorState(promised=Ballot(3, 1))


def test_lower_prepare_gets_a_nack_naming_the_promise():
    node, env = basic_node("n2", THREE)
    node.on_message("n5", Prepare(slot=1, ballot=Ballot(4, 5)))
    node.on_message("n1", Prepare(slot=1, ballot=Ballot(3, 1)))
    assert env.sent[-1] == ("n1", Nack(slot=1, ballot=Ballot(3, 1), promised=Ballot(4, 5)))
    assert node.acceptor_state(1).promised == Ballot(4, 5)


def test_promise_reports_the_accepted_vote():
    """Seed 003 case 1: S3 accepted (3.1, X); its promise for 4.5 carries it."""
    node, env = basic_node("S3", ["S1", "S2", "S3", "S4", "S5"])
    node.on_message("S1", Accept(slot=1, ballot=Ballot(3, 1), value="X"))
    node.on_message("S5", Prepare(slot=1, ballot=Ballot(4, 5)))
    assert env.sent[-1] == (
        "S5",
        Promise(slot=1, ballot=Ballot(4, 5), accepted_ballot=Ballot(3, 1), accepted_value="X"),
    )


def test_accept_below_the_promise_is_refused():
    """Seed 003 case 2: S3 promised 4.5 and rejects S1's late accept (3.1, X)."""
    node, env = basic_node("S3", ["S1", "S2", "S3", "S4", "S5"])
    node.on_message("S5", Prepare(slot=1, ballot=Ballot(4, 5)))
    node.on_message("S1", Accept(slot=1, ballot=Ballot(3, 1), value="X"))
    assert env.sent[-1] == ("S1", Nack(slot=1, ballot=Ballot(3, 1), promised=Ballot(4, 5)))
    assert node.acceptor_state(1).accepted_ballot == ZERO_BALLOT


def test_accept_lower_ballot_bug_accepts_anyway():
    node, _env = basic_node("S3", ["S1", "S2", "S3", "S4", "S5"], bugs=["accept-lower-ballot"])
    node.on_message("S5", Prepare(slot=1, ballot=Ballot(4, 5)))
    node.on_message("S1", Accept(slot=1, ballot=Ballot(3, 1), value="X"))
    assert node.acceptor_state(1).accepted_value == "X"


def test_accepted_goes_to_the_proposer_and_every_learner_after_persisting():
    node, env = basic_node("n2", THREE, learners=["n3"])
    node.on_message("n1", Accept(slot=1, ballot=Ballot(1, 1), value="v"))
    # n1 is a proposer (default: everyone), so it learns too; n3 is the learner.
    assert kinds(env.sent) == ["n1:Accepted", "n3:Accepted"]
    assert env.storage_at_send[0][acceptor_key(1)].accepted_value == "v"


def test_acceptor_state_survives_a_restart():
    net = Net(THREE)
    net.nodes["n2"].on_message("n1", Accept(slot=4, ballot=Ballot(2, 1), value="v"))
    net.restart("n2")
    assert net.nodes["n2"].acceptor_state(4) == AcceptorState(
        promised=Ballot(2, 1), accepted_ballot=Ballot(2, 1), accepted_value="v"
    )


def test_pure_proposer_ignores_acceptor_messages():
    node, env = basic_node("p", ["p", "a1", "a2"], acceptors=["a1", "a2"])
    node.on_message("q", Prepare(slot=1, ballot=Ballot(1, 2)))
    assert env.sent == []


# ---------------------------------------------------------------------- proposer
def test_full_round_is_prepare_promise_accept_accepted():
    net = Net(THREE)
    net.invoke("n1", lambda n: n.propose("v"))
    assert {type(m).__name__ for _, _, m in net.flight} == {"Prepare"}
    net.deliver_all()
    assert net.chosen(1) == {"n1": "v", "n2": "v", "n3": "v"}
    assert net.nodes["n1"].instance is None


def test_round_is_persisted_before_the_prepare_leaves():
    node, env = basic_node("n1", THREE)
    node.propose("v", slot=1, round=3)
    prepares = [(d, m) for d, m in env.sent if isinstance(m, Prepare)]
    assert {m.ballot for _, m in prepares} == {Ballot(3, 1)}
    assert env.storage_at_send[0][round_key(1)] == 3
    # A restarted proposer never reuses the round.
    again, env2 = basic_node("n1", THREE, storage=env.storage)
    again.propose("w", slot=1)
    assert {m.ballot for _, m in env2.sent if isinstance(m, Prepare)} == {Ballot(4, 1)}


def test_proposer_adopts_the_highest_accepted_value():
    """§2.2 P2c: propose the value of the highest-numbered proposal among the promises."""
    node, env = basic_node("S5", ["S1", "S2", "S3", "S4", "S5"], catchup_interval=0)
    node.propose("Y", slot=1, round=4)
    env.take()
    ballot = Ballot(4, 5)
    node.on_message("S3", Promise(slot=1, ballot=ballot, accepted_ballot=Ballot(3, 1), accepted_value="X"))
    node.on_message("S4", Promise(slot=1, ballot=ballot, accepted_ballot=Ballot(2, 2), accepted_value="Z"))
    accepts = {m.value for _, m in env.sent if isinstance(m, Accept)}
    assert accepts == {"X"}


def test_ignore_promise_bug_proposes_its_own_value():
    node, env = basic_node("S5", ["S1", "S2", "S3", "S4", "S5"], bugs=["ignore-promise"])
    node.propose("Y", slot=1, round=4)
    env.take()
    ballot = Ballot(4, 5)
    node.on_message("S3", Promise(slot=1, ballot=ballot, accepted_ballot=Ballot(3, 1), accepted_value="X"))
    node.on_message("S4", Promise(slot=1, ballot=ballot))
    assert {m.value for _, m in env.sent if isinstance(m, Accept)} == {"Y"}


def test_nack_makes_the_proposer_jump_past_the_promise_without_backoff():
    node, env = basic_node("n1", THREE, backoff=False)
    node.propose("v", slot=1)
    env.take()
    node.on_message("n2", Nack(slot=1, ballot=Ballot(1, 1), promised=Ballot(7, 3)))
    assert {m.ballot for _, m in env.sent if isinstance(m, Prepare)} == {Ballot(8, 1)}
    assert env.recorded("preempted")


def test_backoff_waits_a_random_growing_time_before_the_next_round():
    node, env = basic_node("n1", THREE, backoff_base=0.01, backoff_cap=0.2)
    node.propose("v", slot=1)
    env.take()
    waits = []
    for k in range(1, 8):
        ballot = node.instance.ballot
        node.on_message("n2", Nack(slot=1, ballot=ballot, promised=Ballot(ballot.round + 1, 3)))
        assert not any(isinstance(m, Prepare) for _, m in env.sent), "no round before the backoff ends"
        waits.append(env.timers[PROPOSE_TIMER] - env.clock)
        assert 0 <= waits[-1] <= min(0.2, 0.01 * 2 ** (k - 1))
        node.on_timer(PROPOSE_TIMER)
        assert any(isinstance(m, Prepare) for _, m in env.sent)
        env.take()
    assert len(set(waits)) > 1


def test_stale_answers_are_ignored():
    node, env = basic_node("n1", THREE)
    node.propose("v", slot=1, round=5)
    env.take()
    node.on_message("n2", Promise(slot=1, ballot=Ballot(4, 1)))
    node.on_message("n3", Nack(slot=1, ballot=Ballot(4, 1), promised=Ballot(9, 9)))
    assert node.instance.phase == "prepare" and env.sent == []


def test_no_quorum_in_time_retries_with_a_higher_ballot():
    net = Net(THREE, backoff=False)
    net.invoke("n1", lambda n: n.propose("v"))
    net.flight.clear()  # every Prepare lost
    net.fire("n1", PROPOSE_TIMER)
    assert {m.ballot for _, _, m in net.flight if isinstance(m, Prepare)} == {Ballot(2, 1)}
    net.deliver_all()
    assert net.chosen(1)["n1"] == "v"


def test_losing_a_slot_retries_the_value_in_the_next_one():
    net = Net(THREE)
    # n2 wins slot 1 first; n1's proposal for slot 1 then adopts n2's value.
    net.invoke("n2", lambda n: n.propose("b"))
    net.deliver_all()
    net.invoke("n1", lambda n: n.propose("a", slot=1))
    net.deliver_all()
    assert net.chosen(1) == dict.fromkeys(THREE, "b")
    assert net.chosen(2) == dict.fromkeys(THREE, "a")


# ---------------------------------------------------------------------- learner and log
def test_learner_needs_a_quorum_for_one_ballot():
    """§2.3: chosen = accepted by a majority in the same proposal (ballot)."""
    node, env = basic_node("n1", THREE)
    node.on_message("n2", Accepted(slot=1, ballot=Ballot(1, 2), value="v"))
    node.on_message("n3", Accepted(slot=1, ballot=Ballot(2, 3), value="v"))
    assert 1 not in node.chosen
    node.on_message("n3", Accepted(slot=1, ballot=Ballot(1, 2), value="v"))
    assert node.chosen[1] == "v"
    assert env.storage.get(chosen_key(1)) == "v"
    assert env.recorded("learned") == [{"slot": 1, "value": "v"}]


def test_accepted_from_a_non_acceptor_does_not_count():
    node, _ = basic_node("n1", ["n1", "n2", "n3", "n4"], acceptors=["n2", "n3", "n4"])
    node.on_message("n1", Accepted(slot=1, ballot=Ballot(1, 1), value="v"))
    node.on_message("n2", Accepted(slot=1, ballot=Ballot(1, 1), value="v"))
    assert 1 not in node.chosen


def test_commands_execute_in_slot_order_and_the_receiver_answers():
    node, env = basic_node("n1", THREE)
    node.on_request(put("c", 1, 10))
    node.on_message("n2", Chosen(values=((2, put("c", 1, 10)),)))
    assert node.executed == 0 and env.delivered == []  # slot 1 unknown: nothing runs
    node.on_message("n2", Chosen(values=((1, put("d", 1, 5)),)))
    assert node.executed == 2 and node.sm.get("x") == 10
    assert [(r.ok, r.index, r.result) for r in env.delivered] == [(True, 2, {"version": 2})]


def test_a_command_chosen_twice_is_applied_once():
    node, _env = basic_node("n1", THREE)
    node.on_message("n2", Chosen(values=((1, put("c", 1, 10)), (2, put("c", 1, 10)))))
    assert node.sm.execute(Op(kind="get", key="x")) == {"value": 10, "version": 1}


def test_non_proposer_refuses_clients_with_a_hint():
    node, env = basic_node("a", ["p", "a"], proposers=["p"])
    node.on_request(put("c", 1, 1))
    assert env.delivered[0].error == NOT_LEADER and env.delivered[0].leader_hint == "p"


def test_duplicate_request_is_proposed_once():
    node, _env = basic_node("n1", THREE)
    node.on_request(put("c", 1, 1))
    node.on_request(put("c", 1, 1))
    assert len(node.queue) == 0 and node.instance is not None and len(node.waiting) == 1


def test_restart_replays_the_chosen_log():
    net = Net(THREE)
    net.invoke("n1", lambda n: n.propose("a"))
    net.deliver_all()
    net.invoke("n1", lambda n: n.on_request(put("c", 1, 7)))
    net.deliver_all()
    net.restart("n3")
    assert net.nodes["n3"].executed == 2 and net.nodes["n3"].sm.get("x") == 7


def test_catch_up_sends_known_chosen_values():
    node, env = basic_node("n1", THREE)
    node.on_message("n2", Chosen(values=((1, "a"), (2, "b"), (4, "d"))))
    env.take()
    node.on_message("n3", CatchUp(from_slot=2))
    assert env.sent == [("n3", Chosen(values=((2, "b"), (4, "d"))))]


def test_catch_up_timer_asks_a_peer_and_fills_a_lasting_hole_with_a_noop():
    node, env = basic_node("n1", THREE, catchup_interval=0.1, gap_timeout=0.3)
    node.on_message("n2", Chosen(values=((2, "b"),)))
    env.take()
    node.on_timer(CATCHUP_TIMER)
    assert [type(m).__name__ for _, m in env.sent] == ["CatchUp"]
    env.clock += 0.5
    node.on_timer(CATCHUP_TIMER)
    assert node.instance is not None and node.instance.slot == 1 and node.instance.own == NOOP
    assert {m.slot for _, m in env.sent if isinstance(m, Prepare)} == {1}


def test_noop_fill_adopts_a_value_already_accepted():
    net = Net(THREE)
    net.nodes["n2"].on_message("n9", Accept(slot=1, ballot=Ballot(1, 2), value="late"))
    net.collect()
    net.flight.clear()
    net.nodes["n1"].on_message("n3", Chosen(values=((2, "b"),)))
    net.collect()
    net.invoke("n1", lambda n: n.on_timer(CATCHUP_TIMER))
    net.envs["n1"].clock += 1
    net.invoke("n1", lambda n: n.on_timer(CATCHUP_TIMER))
    net.flight = [f for f in net.flight if not isinstance(f[2], CatchUp)]
    net.deliver_all()  # n2 promised 1.2, so it refuses n1's 1.1: n1 backs off
    net.fire("n1", PROPOSE_TIMER)
    net.deliver_all()
    # n1's promise quorum for 2.1 is n1 + n2, and n2 reports the vote: the no-op yields.
    assert net.chosen(1)["n1"] == "late"
    assert net.nodes["n1"].executed == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"acceptors": ["n9"]}, "unknown node"),
        ({"learners": ["n1", "n1"]}, "twice"),
        ({"bugs": ["nope"]}, "unknown bug"),
        ({"backoff_base": 0}, "backoff"),
        ({"colour": 1}, "unknown basic-paxos option"),
    ],
)
def test_bad_options_are_refused_with_a_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        basic_node("n1", THREE, **options)
