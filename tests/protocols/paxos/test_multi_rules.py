"""One test per Multi-Paxos rule, driven by hand through FakeEnv (see multi_fake.py).

"PMS" refers to Lamport's "Paxos Made Simple" (section 3 for the multi-decree part).
"""

from __future__ import annotations

from consensuskit.core.client import LINEARIZABLE, STALE_OK
from consensuskit.protocols.common.snapshot_policy import AMORTIZE_FLOOR
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.multi_messages import (
    COMMAND,
    NOOP,
    Accept,
    Accepted,
    Entry,
    Forward,
    ForwardReply,
    Heartbeat,
    HeartbeatAck,
    Learn,
    Nack,
    Prepare,
    PrePrepare,
    PrePromise,
    Promise,
    SlotValue,
)
from consensuskit.protocols.paxos.multi_node import MAX_ROUND, PROMISED_KEY, MultiPaxosNode
from consensuskit.protocols.paxos.multi_options import MultiPaxosOptions

from ..snapshot_gaps import assert_amortized, note_snapshot
from .multi_fake import Cluster, get, make_node, put

IDS = ["n1", "n2", "n3"]


def command(slot: int, value: object) -> SlotValue:
    return SlotValue(slot=slot, entry=Entry(kind=COMMAND, data=put("t", slot, "x", value)))


def accepts(env) -> list[Accept]:
    return [m for _, m in env.sent if isinstance(m, Accept)]


# ---------------------------------------------------------------------- phase 1
def test_promise_is_persisted_and_reports_votes_from_the_requested_slot():
    """PMS 2.2/3: an acceptor promises a higher ballot (stable storage first) and reports
    what it accepted; one Prepare covers every slot from ``from_slot`` on."""
    node, env = make_node("n2", IDS)
    node.on_message(
        "n1",
        Accept(ballot=Ballot(1, 1), values=(command(1, "a"), command(2, "b"), command(3, "c")), commit=0),
    )
    env.take()
    node.on_message("n3", Prepare(ballot=Ballot(2, 3), from_slot=2))
    assert env.storage.get(PROMISED_KEY) == Ballot(2, 3)
    [(dst, promise)] = env.take()
    assert dst == "n3" and isinstance(promise, Promise)
    assert [(v.slot, v.ballot) for v in promise.accepted] == [(2, Ballot(1, 1)), (3, Ballot(1, 1))]
    assert promise.lease_remaining == 0 and promise.snapshot is None


def test_lower_ballot_is_nacked_with_the_promise():
    node, env = make_node("n2", IDS)
    node.on_message("n3", Prepare(ballot=Ballot(4, 3), from_slot=1))
    env.take()
    node.on_message("n1", Prepare(ballot=Ballot(3, 1), from_slot=1))
    node.on_message("n1", Accept(ballot=Ballot(3, 1), values=(command(1, "late"),), commit=0))
    assert env.take() == [
        ("n1", Nack(ballot=Ballot(3, 1), promised=Ballot(4, 3), leader_hint="n3")),
        ("n1", Nack(ballot=Ballot(3, 1), promised=Ballot(4, 3), leader_hint="n3")),
    ]
    assert node.log.vote(1) is None


def test_new_leader_reproposes_highest_ballot_votes_and_fills_gaps_with_noops():
    """PMS 3: the new leader re-proposes, for each slot, the value voted in the highest
    ballot among its promises, and fills slots nobody voted for with no-ops."""
    c = Cluster(IDS)
    c.nodes["n1"].on_message(
        "n1", Accept(ballot=Ballot(1, 1), values=(command(1, "X"), command(3, "Z")), commit=0)
    )
    c.nodes["n3"].on_message("n3", Accept(ballot=Ballot(2, 3), values=(command(1, "Y"),), commit=0))
    for env in c.envs.values():
        env.take()
    c.partition(["n1", "n3"], ["n2"])  # the quorum is n1 (X in 1.1, Z) and n3 (Y in 2.3)
    c.nodes["n1"].max_round = 5
    c.fire("n1", "election")
    c.deliver_all(rounds=2)  # Prepare out, Promises back: the leader's Accepts are queued
    leader = c.nodes["n1"]
    assert leader.role == "leader" and leader.ballot == Ballot(6, 1)
    [first, *_] = accepts(c.envs["n1"])
    proposed = {v.slot: v.entry for v in first.values}
    assert proposed[1].data.op.value == "Y"
    assert proposed[2].kind == NOOP
    assert proposed[3].data.op.value == "Z"
    c.deliver_all()
    assert leader.executed == 3 and leader.sm.get("x") == "Z"


def test_candidate_preempted_by_a_higher_promise_steps_down_and_jumps_ahead():
    c = Cluster(IDS)
    c.nodes["n2"].on_message("n3", Prepare(ballot=Ballot(7, 3), from_slot=1))
    c.envs["n2"].take()
    c.fire("n1", "election")
    c.deliver_all()
    n1 = c.nodes["n1"]
    assert n1.role == "follower" and n1.max_round == 7 and n1.leader_id == "n3"
    c.fire("n1", "election")
    c.deliver_all()
    assert n1.role == "leader" and n1.ballot == Ballot(8, 1)


def test_a_pre_vote_changes_nothing_and_a_node_that_hears_a_leader_refuses_it():
    """Pre-vote (Raft §9.6 for phase 1): a grant writes nothing, moves no promise and no
    election timer; a node that heard from a leader within the election timeout, or
    leads, refuses; once the timeout passed unheard, it grants."""
    node, env = make_node("n2", IDS, pre_vote=True)
    timer = env.timers["election"]
    writes = env.storage.get(PROMISED_KEY)
    node.on_message("n3", PrePrepare(round=4))
    [(dst, answer)] = env.take()
    assert dst == "n3" and answer == PrePromise(round=4, granted=True, promised=Ballot(0, 0))
    assert env.storage.get(PROMISED_KEY) == writes and node.promised == Ballot(0, 0)
    assert env.timers["election"] == timer and node.role == "follower"
    node.on_message("n1", Heartbeat(ballot=Ballot(1, 1), leader="n1", commit=0, round=1))
    env.take()
    env.clock += node.opts.election_timeout * 0.9
    node.on_message("n3", PrePrepare(round=4))
    [(_, answer)] = env.take()
    assert not answer.granted and answer.promised == Ballot(1, 1)
    env.clock += node.opts.election_timeout * 0.2
    node.on_message("n3", PrePrepare(round=4))
    [(_, answer)] = env.take()
    assert answer.granted


def test_a_pre_candidate_runs_phase_1_on_a_majority_and_yields_to_a_leader():
    c = Cluster(IDS, pre_vote=True)
    c.partition(["n1"], ["n2", "n3"])
    c.fire("n1", "election")
    c.deliver_all()
    n1 = c.nodes["n1"]
    assert n1.role == "pre-candidate" and n1.promised == Ballot(0, 0)  # nothing written
    c.fire("n1", "election")  # again and again, alone: its round does not climb
    c.deliver_all()
    assert n1.max_round == 0 and c.envs["n1"].storage.get(PROMISED_KEY) is None
    c.heal()
    c.elect("n2")  # n2 pre-votes, gets n3's grant, runs phase 1 and leads
    assert n1.role == "follower" and n1.leader_id == "n2" and n1.promised == Ballot(1, 2)


def test_restarted_acceptor_reports_a_full_lease_to_an_unknown_holder():
    """It may have granted a lease just before crashing and cannot remember to whom."""
    c = Cluster(IDS)
    c.elect("n1")
    n2 = c.restart("n2")
    promise = n2._promise_for(Ballot(9, 3), 1)
    assert promise.lease_holder == "" and promise.lease_remaining == n2.opts.lease_duration


# ---------------------------------------------------------------------- phase 2
def test_steady_state_is_one_accept_round_per_command():
    """Seed 001: under a stable leader phase 1 is skipped: Accept/Accepted only."""
    c = Cluster(IDS)
    leader = c.elect("n1")
    c.envs["n1"].take()
    leader.on_request(put("c", 1, "x", 1))
    assert [(dst, type(m).__name__) for dst, m in c.envs["n1"].sent] == [("n2", "Accept"), ("n3", "Accept")]
    c.deliver_all()
    [answer] = c.envs["n1"].delivered
    assert answer.ok and answer.result == {"version": 1} and answer.index == 1
    assert leader.executed == 1
    c.fire("n1", "heartbeat")  # the commit reaches the followers with the next message
    c.deliver_all()
    assert all(c.nodes[i].executed == 1 for i in IDS)


def test_execution_is_strictly_in_slot_order():
    node, _env = make_node("n2", IDS)
    node.on_message("n1", Learn(ballot=Ballot(1, 1), leader="n1", values=(command(2, "second"),)))
    assert node.executed == 0 and node.sm.get("x") is None
    node.on_message("n1", Learn(ballot=Ballot(1, 1), leader="n1", values=(command(1, "first"),)))
    assert node.executed == 2 and node.sm.get("x") == "second"


def test_commit_teaches_only_votes_in_the_leaders_ballot():
    """A vote in another ballot may hold a value that was never chosen."""
    node, _env = make_node("n2", IDS)
    node.on_message("n1", Accept(ballot=Ballot(1, 1), values=(command(1, "old"),), commit=0))
    node.on_message("n3", Heartbeat(ballot=Ballot(2, 3), leader="n3", commit=1, round=1))
    assert node.executed == 0
    node.on_message("n3", Accept(ballot=Ballot(2, 3), values=(command(1, "new"),), commit=0))
    node.on_message("n3", Heartbeat(ballot=Ballot(2, 3), leader="n3", commit=1, round=2))
    assert node.executed == 1 and node.sm.get("x") == "new"


def test_leader_keeps_at_most_alpha_slots_in_flight():
    c = Cluster(IDS, alpha=2, commands_per_slot=1)
    leader = c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    c.envs["n1"].take()
    for seq in range(1, 6):
        leader.on_request(put("c", seq, "x", seq))
    slots = sorted({v.slot for m in accepts(c.envs["n1"]) for v in m.values})
    assert slots == [1, 2] and len(leader.queue) == 3
    c.heal()
    c.deliver_all()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert leader.executed == 5


def test_commands_waiting_for_the_window_share_a_slot_and_run_in_order():
    """Alpha bounds slots in flight; commands that queue meanwhile go out together, as
    one batch value (at most commands_per_slot), executed and answered in order."""
    c = Cluster(IDS, alpha=2, commands_per_slot=2)
    leader = c.elect("n1")
    env = c.envs["n1"]
    c.partition(["n1"], ["n2", "n3"])
    env.take()
    for seq in range(1, 6):
        leader.on_request(put("c", seq, "x", seq))
    assert sorted({(v.slot, v.entry.kind) for m in accepts(env) for v in m.values}) == [
        (1, "command"),
        (2, "command"),
    ]
    c.heal()
    c.deliver_all()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert leader.executed == 4  # slots 1 and 2: one command each; 3: two; 4: one
    values = {slot: leader.log.vote(slot).entry for slot in (3, 4)}
    assert values[3].kind == "batch" and [r.seq for r in values[3].data] == [3, 4]
    assert values[4].kind == "command" and values[4].data.seq == 5
    answers = [(r.seq, r.index, r.result["version"]) for r in env.delivered]
    assert answers == [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 3, 4), (5, 4, 5)]
    assert all(n.sm.get("x") == 5 for n in c.nodes.values())


def test_nack_makes_the_leader_step_down():
    c = Cluster(IDS)
    leader = c.elect("n1")
    leader.on_message("n2", Nack(ballot=leader.ballot, promised=Ballot(9, 3), leader_hint="n3"))
    assert leader.role == "follower" and leader.leader_id == "n3" and leader.max_round == 9


# ---------------------------------------------------------------------- clients
def test_follower_forwards_to_the_leader_and_relays_the_answer():
    c = Cluster(IDS)
    c.elect("n1")
    c.nodes["n3"].on_request(put("c", 1, "x", "fw"))
    assert [type(m).__name__ for _, m in c.envs["n3"].sent] == ["Forward"]
    c.deliver_all()
    [answer] = c.envs["n3"].delivered
    assert answer.ok and answer.leader_hint == "n1"
    assert c.envs["n1"].delivered == []


def test_a_command_in_flight_handed_over_by_two_nodes_is_answered_at_both():
    """A client retries through another node before the first answer: one slot, and
    each node that holds a waiting client gets the answer (the real server has an HTTP
    request waiting at each)."""
    c = Cluster(IDS)
    c.elect("n1")
    c.nodes["n1"].on_request(put("c", 1, "x", "once"))
    c.nodes["n3"].on_request(put("c", 1, "x", "once"))
    c.deliver_all()
    [here] = c.envs["n1"].delivered
    [there] = c.envs["n3"].delivered
    assert here.ok and there.ok and here.index == there.index == 1
    assert c.nodes["n1"].executed == 1 and c.nodes["n1"].sm.get("x") == "once"


def test_forward_to_a_node_that_no_longer_leads_is_refused_with_a_hint():
    node, env = make_node("n2", IDS)
    node.leader_id = "n3"
    node.on_message("n1", Forward(request=put("c", 1, "x", 1), origin="n1"))
    [(dst, reply)] = env.take()
    assert dst == "n1" and not reply.response.ok and reply.response.leader_hint == "n3"


def test_node_without_a_leader_campaigns_for_a_command():
    """Seed 004's first request: it pays Prepare/Promise before Accept/Accepted."""
    c = Cluster(IDS)
    c.nodes["n2"].on_request(put("c", 1, "x", 1))
    assert [type(m).__name__ for _, m in c.envs["n2"].sent] == ["Prepare", "Prepare"]
    c.deliver_all()
    assert c.nodes["n2"].role == "leader" and c.envs["n2"].delivered[0].ok


# ---------------------------------------------------------------------- leases and reads
def test_leader_serves_a_lease_read_from_its_own_state():
    c = Cluster(IDS)
    c.elect("n1")
    c.request("n1", put("c", 1, "x", 7))
    leader, env = c.nodes["n1"], c.envs["n1"]
    env.take()
    env.delivered.clear()
    leader.on_request(get("r", 1, "x"))
    assert env.sent == [] and env.delivered[0].result == {"value": 7, "version": 1}


def test_read_without_a_lease_waits_for_a_quorum_round():
    c = Cluster(IDS)
    leader = c.elect("n1")
    c.advance(1.0)  # the lease ran out
    env = c.envs["n1"]
    env.take()
    leader.on_request(get("r", 1, "x"))
    assert env.delivered == [] and env.kinds() == ["Heartbeat", "Heartbeat"]
    c.deliver_all()
    assert env.delivered[0].ok


def test_a_batching_runtime_gets_one_quorum_round_for_a_batch_of_reads():
    """With ``calls_batch_end`` (the real runtime) the quorum reads of one batch share
    the heartbeat round started at the batch's end; a round sent since they arrived
    (the heartbeat timer's) serves them without another."""
    c = Cluster(IDS)
    env = c.envs["n1"]
    env.calls_batch_end = True  # type: ignore[attr-defined]
    c.nodes["n1"] = leader = MultiPaxosNode("n1", env, IDS, MultiPaxosOptions())
    leader.on_start()
    c.elect("n1")
    c.advance(1.0)  # the lease ran out
    env.take()
    for seq in range(1, 6):
        leader.on_request(get("r", seq, "x", consistency=LINEARIZABLE))
    assert env.sent == []
    leader.on_batch_end()
    assert env.kinds() == ["Heartbeat", "Heartbeat"] and env.delivered == []
    c.deliver_all()
    assert [r.seq for r in env.delivered] == [1, 2, 3, 4, 5] and all(r.ok for r in env.delivered)
    leader.on_request(get("r", 6, "x", consistency=LINEARIZABLE))
    c.fire("n1", "heartbeat")
    leader.on_batch_end()
    assert env.kinds() == ["Heartbeat", "Heartbeat"]  # the timer's round, sent after the read came
    c.deliver_all()
    assert env.delivered[-1].seq == 6 and env.delivered[-1].ok


def test_a_batching_runtime_gets_one_accept_for_a_batch_of_commands():
    """With ``calls_batch_end`` the commands of one batch are proposed together at its
    end: one Accept per acceptor carrying every slot (up to alpha), answered in order."""
    c = Cluster(IDS)
    env = c.envs["n1"]
    env.calls_batch_end = True  # type: ignore[attr-defined]
    options = MultiPaxosOptions(alpha=4, commands_per_slot=1)
    c.nodes["n1"] = leader = MultiPaxosNode("n1", env, IDS, options)
    leader.on_start()
    c.elect("n1")
    c.advance(1.0)  # the old lease ran out
    c.deliver_all()
    env.take()
    first = leader.next_slot
    for seq in range(1, 7):
        leader.on_request(put("w", seq, f"k{seq}", seq))
    assert accepts(env) == []  # held until the batch ends
    leader.on_batch_end()
    sent = accepts(env)
    assert len(sent) == 2 and sent[0] is sent[1]  # one Accept, to both acceptors
    assert [v.slot for v in sent[0].values] == list(range(first, first + 4))  # alpha of them
    c.deliver_all()  # the rest go out as the window moves
    assert [r.seq for r in env.delivered if r.ok] == [1, 2, 3, 4, 5, 6]
    assert leader.executed == first + 5


def test_stale_read_is_answered_by_any_node():
    node, env = make_node("n3", IDS)
    node.on_request(get("r", 1, "x", consistency=STALE_OK))
    assert env.delivered[0].ok and env.sent == []


def test_new_leader_waits_for_the_old_lease_before_deciding_or_reading():
    """Chubby: the new master waits out the old master's lease (scaled by the drift
    bound); a value chosen earlier would make the old leader's lease reads stale."""
    c = Cluster(IDS)
    c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    new = c.elect("n2")
    env = c.envs["n2"]
    assert not new.ready and "lease-wait" in env.timers
    env.take()
    new.on_request(put("c", 1, "x", 2))
    assert accepts(env) == []
    wait = next(f for k, f in env.records if k == "lease-wait")["seconds"]
    eps = new.opts.clock_drift_bound
    assert wait >= new.opts.lease_duration * (1 + eps) / (1 - eps) - 1e-9
    c.fire("n2", "lease-wait")
    assert {v.slot for m in accepts(env) for v in m.values} == {1}
    c.deliver_all()
    assert new.ready and env.delivered[0].ok


def test_lease_without_wait_bug_decides_at_once():
    c = Cluster(IDS, bugs=frozenset({"lease-without-wait"}))
    c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    new = c.elect("n2")
    assert new.ready and "lease-wait" not in c.envs["n2"].timers


def test_skip_phase1_bug_leads_without_prepare():
    c = Cluster(IDS, bugs=frozenset({"skip-phase1-on-takeover"}))
    c.fire("n3", "election")
    assert c.nodes["n3"].role == "leader"
    assert "Prepare" not in c.envs["n3"].kinds()


# ---------------------------------------------------------------------- catch-up
def test_lagging_node_catches_up_by_snapshot_after_compaction():
    c = Cluster(IDS, snapshot_threshold=4, snapshot_trailing=0)
    leader = c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    for seq in range(1, 11):
        c.request("n1", put("c", seq, f"k{seq}", seq))
    assert leader.snapshot is not None and leader.log.offset >= 8
    c.heal()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert c.nodes["n3"].snapshot is not None  # installed, not replayed slot by slot
    assert c.nodes["n3"].executed == leader.executed == 10
    assert c.nodes["n3"].sm.digest() == leader.sm.digest()


def test_a_large_state_snapshots_once_per_as_many_slots_as_keys():
    """The shared snapshot policy (protocols/common/snapshot_policy.py): a state above
    AMORTIZE_FLOOR keys waits for as many executed commands (one a slot here) as keys,
    not for the threshold (a 1,000-key store snapshotted every 200 puts paid five copies
    per 1,000 puts)."""
    threshold, keyspace = 50, AMORTIZE_FLOOR + 100
    c = Cluster(IDS, snapshot_threshold=threshold, snapshot_trailing=0)
    leader = c.elect("n1")
    taken: list[tuple[int, int]] = []  # (snapshot slot, keys in the state when taken)
    for seq in range(1, 5 * keyspace):
        c.request("n1", put("c", seq, f"k{seq % keyspace}", seq))
        # A read's target, kept as a running maximum, agrees with ``chosen`` across
        # every compaction.
        for node in c.nodes.values():
            assert node._max_chosen() == max(node.executed, max(node.chosen, default=0))
        note_snapshot(taken, leader.snapshot.last_slot if leader.snapshot else None, len(leader.sm))
    # Its replicas take turns: n1 is first of three.
    assert_amortized(taken, threshold, keyspace, turn=(0, 3))


def test_promise_carries_a_snapshot_when_the_candidate_lacks_compacted_slots():
    c = Cluster(IDS, snapshot_threshold=4, snapshot_trailing=0)
    c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    for seq in range(1, 6):
        c.request("n1", put("c", seq, "x", seq))
    promise = c.nodes["n2"]._promise_for(Ballot(5, 3), 1)
    assert promise.snapshot is not None and promise.snapshot.last_slot >= 4
    c.fire("n1", "heartbeat")
    c.deliver_all()
    c.heal()
    c.down.add("n1")
    c.nodes["n3"].max_round = 4
    new = c.elect("n3")
    assert new.executed == 5 and new.sm.get("x") == 5


def test_a_snapshot_that_does_not_restore_changes_nothing():
    """Issue 10: a peer's InstallSnapshot with data that is not a state-machine snapshot,
    or configurations of the wrong shape, is ignored instead of halting the node."""
    from consensuskit.protocols.paxos.multi_messages import InstallSnapshot, Snapshot

    c = Cluster(IDS)
    leader = c.elect("n1")
    c.request("n1", put("c", 1, "x", 1))
    follower = c.nodes["n2"]
    before = (follower.executed, follower.snapshot, follower.configs, follower.sm.digest())
    for snap in (
        Snapshot(last_slot=50, configs=((1, ("n1", "n2", "n3")),), data="garbage"),
        Snapshot(last_slot=50, configs=(("one", ("n1",)),), data={"data": (), "sessions": ()}),
        Snapshot(last_slot=50, configs=((1, 5),), data={"data": (), "sessions": ()}),
        # No configuration, or configurations out of slot order (ConfigHistory refuses).
        Snapshot(last_slot=50, configs=(), data={"data": (), "sessions": ()}),
        Snapshot(last_slot=50, configs=((9, ("n1",)), (4, ("n2",))), data={"data": (), "sessions": ()}),
    ):
        follower.on_message("n1", InstallSnapshot(ballot=leader.ballot, leader="n1", snapshot=snap))
        assert (follower.executed, follower.snapshot, follower.configs, follower.sm.digest()) == before


# ---------------------------------------------------------------------- membership
def test_configuration_takes_effect_alpha_slots_later():
    """Lamport's alpha: a configuration chosen at slot s governs slots s + alpha on."""
    c = Cluster(["n1", "n2", "n3", "n4"], members=("n1", "n2", "n3"), alpha=3)
    leader = c.elect("n1")
    assert leader.propose_config_change("add", "n4") is None
    c.deliver_all()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    [(first, members)] = leader.configs[1:]
    assert members == ("n1", "n2", "n3", "n4") and first == 1 + 3
    assert leader.config_at(3) == ("n1", "n2", "n3") and leader.config_at(4) == members
    assert leader.propose_config_change("add", "n4") in (
        "n4 is already a member",
        "a configuration change is already in progress",
    )
    # With no command to carry the log to slot 4, no-ops fill slots 2 and 3: the
    # configuration is in force on an idle cluster, and the next change may start.
    assert [leader.chosen[s].kind for s in (2, 3)] == ["noop", "noop"]
    assert leader.executed == 3 and leader.membership().config_pending is False
    for seq in range(1, 5):
        c.request("n1", put("c", seq, "x", seq))
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert c.nodes["n4"].executed == leader.executed == 7


def test_server_membership_names_and_a_new_node_gets_a_ballot_number():
    """The server says add-voter (docs/server.md); a node absent from every member
    list is admitted when its ballot number cannot clash with a known node's."""
    c = Cluster(IDS, alpha=2)
    leader = c.elect("n1")
    assert leader.config_changes == ("add-voter", "remove")
    assert leader.status()["config_pending"] is False
    assert leader.propose_config_change("add-learner", "n4").startswith("unknown change")
    assert leader.propose_config_change("add-voter", "n7") is None
    assert leader.numbers["n7"] == 7 and leader.ids_by_number[7] == "n7"
    c.deliver_all()
    status = leader.status()
    assert status["voters"] == ["n1", "n2", "n3", "n7"] and status["config_pending"] is False
    assert status["config_index"] == 1 and status["learners"] == []
    # n1, n3, n5 are numbered 1, 3, 5; with "x" the numbers would be positions: 1, 2, 3, 4.
    other = Cluster(["n1", "n3", "n5"])
    boss = other.elect("n1")
    assert boss.propose_config_change("add-voter", "x") == "x is not a known node"
    assert boss.numbers == {"n1": 1, "n3": 3, "n5": 5}


def test_non_member_never_campaigns():
    c = Cluster(["n1", "n2", "n3", "n4"], members=("n1", "n2", "n3"))
    c.fire("n4", "election")
    assert c.envs["n4"].sent == [] and c.nodes["n4"].role == "follower"
    c.nodes["n4"].on_request(put("c", 1, "x", 1))
    assert not c.envs["n4"].delivered[0].ok


def test_accepted_from_an_old_ballot_is_ignored():
    c = Cluster(IDS)
    leader = c.elect("n1")
    leader.on_request(put("c", 1, "x", 1))
    leader.on_message("n2", Accepted(ballot=Ballot(0, 2), slots=(1,), executed=0))
    leader.on_message("n3", Accepted(ballot=Ballot(0, 3), slots=(1,), executed=0))
    assert leader.executed == 0


def test_a_ballot_round_no_cluster_could_reach_is_ignored():
    """A round beyond MAX_ROUND (2^62), or more than a step above the node's greatest,
    comes only from a broken or hostile peer: promising 2^63-1 would leave no higher
    round to lead with (the peer fuzz suite's finding, as for Raft's terms), and so would
    MAX_ROUND itself.  Neither a Prepare nor a Nack's ``promised`` moves the node."""
    from consensuskit.protocols.common.number_bounds import STEP

    node, env = make_node("n2", IDS)
    for bad in (Ballot(MAX_ROUND, 3), Ballot(MAX_ROUND + 1, 3), Ballot(2**63 - 1, 3), Ballot(-1, 3)):
        node.on_message("n3", Prepare(ballot=bad, from_slot=1))
        node.on_message("n3", Nack(ballot=Ballot(1, 2), promised=bad, leader_hint="n3"))
        assert env.take() == [] and env.storage.get(PROMISED_KEY) is None
    node.on_message("n3", Prepare(ballot=Ballot(node.max_round + STEP, 3), from_slot=1))
    assert env.storage.get(PROMISED_KEY) == Ballot(STEP, 3)


def test_a_slot_counts_its_commands_toward_the_snapshot_threshold():
    """A slot batching n commands counts n toward ``snapshot_threshold`` (and the
    amortization), not 1: counting slots let a leader that puts 64 commands in a slot
    keep 64 times the log of an unbatched one between snapshots (under benchmark load
    some 64,000 commands, and full garbage collections of ~50 ms: issue 18)."""
    c = Cluster(IDS, snapshot_threshold=20, snapshot_trailing=0)
    leader = c.elect("n1")
    leader.share_read_rounds = True  # a batching runtime: a batch's commands share a slot
    slots_before = leader.executed
    seq = 0
    for _ in range(2):
        for _ in range(10):
            seq += 1
            leader.on_request(put("c", seq, f"k{seq}", seq))
        leader.on_batch_end()
        c.deliver_all()
    assert leader.executed == slots_before + 2  # two slots of ten commands each
    assert leader.snapshot is not None and leader.snapshot.last_slot == leader.executed
    assert leader.log.offset == leader.executed and leader.chosen == {}
    assert len(leader.sm) == 20


# ---------------------------------------------------------------------- byte caps
def big(seq: int, size: int = 400_000):
    return put("w", seq, f"k{seq}", "v" * size)


def test_a_slots_batch_stops_at_max_batch_bytes():
    """commands_per_slot alone let 64 commands of 1 MiB share one slot: an Accept of
    64 MiB, over the peer transport's frame limit, never delivered."""
    c = Cluster(IDS, alpha=1)
    leader = c.elect("n1")
    env = c.envs["n1"]
    c.partition(["n1"], ["n2", "n3"])  # slot 1 stays in flight: the rest queue
    env.take()
    for seq in range(1, 9):
        leader.on_request(big(seq))
    c.heal()
    c.deliver_all()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert leader.executed >= 3
    batches = [leader.chosen.get(s) or leader.log.vote(s).entry for s in range(2, leader.executed + 1)]
    sizes = [len(e.data) if e.kind == "batch" else 1 for e in batches]
    assert max(sizes) == 2  # 3 x 400 kB would pass 1 MiB
    assert sum(sizes) + 1 == 8 and all(n.sm.get("k8") == "v" * 400_000 for n in c.nodes.values())


def test_an_accept_of_many_slots_splits_at_max_batch_bytes():
    c = Cluster(IDS)
    env = c.envs["n1"]
    env.calls_batch_end = True  # type: ignore[attr-defined]
    c.nodes["n1"] = leader = MultiPaxosNode("n1", env, IDS, MultiPaxosOptions(alpha=4, commands_per_slot=1))
    leader.on_start()
    c.elect("n1")
    c.advance(1.0)
    c.deliver_all()
    env.take()
    for seq in range(1, 5):
        leader.on_request(big(seq))
    leader.on_batch_end()
    to_n2 = [m for dst, m in env.sent if dst == "n2" and isinstance(m, Accept)]
    assert [len(m.values) for m in to_n2] == [2, 2]
    c.deliver_all()
    assert leader.executed >= 4


def test_a_command_larger_than_max_batch_bytes_still_goes_alone():
    c = Cluster(IDS, alpha=1, max_batch_bytes=1_000)
    leader = c.elect("n1")
    for seq in range(1, 4):
        c.request("n1", big(seq, 5_000))
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert leader.executed == 3 and all(n.sm.get("k3") == "v" * 5_000 for n in c.nodes.values())


def test_catch_up_learns_stop_at_max_batch_bytes():
    c = Cluster(IDS, commands_per_slot=1, snapshot_threshold=0)
    leader = c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    for seq in range(1, 7):
        c.request("n1", big(seq))
    c.heal()
    c.fire("n1", "heartbeat")
    learns: list[Learn] = []
    for _ in range(50):  # deliver_all, watching what reaches n3
        batch = [(src, dst, m) for src in IDS for dst, m in c.envs[src].take()]
        for src, dst, msg in batch:
            if dst == "n3" and isinstance(msg, Learn):
                learns.append(msg)
            c.nodes[dst].on_message(src, msg)
    assert [len(m.values) for m in learns] == [2, 2, 2]
    assert c.nodes["n3"].executed == leader.executed and c.nodes["n3"].sm.get("k6") == "v" * 400_000


def test_duplicated_and_reordered_acks_do_not_multiply_catch_up_learns():
    """Seed 195060 (max_batch=1, every fault): a peer catching up a slot a Learn answers
    each Learn, duplicates included, with an ack; the leader answered every ack whose
    executed differed from the last one it answered, so reordered duplicates doubled the
    Learns in flight on every round trip (2.3 million in 0.4 virtual seconds).  Only an
    ack showing progress past the last one answered gets a Learn, or one after two
    heartbeats (a lost Learn)."""
    c = Cluster(IDS, commands_per_slot=1, max_batch=1, snapshot_threshold=0)
    leader = c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    for seq in range(1, 6):
        c.request("n1", put("c", seq, "k", seq))
    c.heal()
    c.deliver_all()
    ballot = leader.ballot
    c.envs["n1"].take()

    def learns_for(*executed: int) -> list[int]:
        for e in executed:
            leader.on_message("n3", HeartbeatAck(ballot=ballot, round=0, executed=e))
        return [m.values[0].slot for dst, m in c.envs["n1"].take() if dst == "n3" and isinstance(m, Learn)]

    assert learns_for(1) == [2]
    assert learns_for(1, 0, 1) == []  # a duplicate, an older one reordered, the duplicate again
    assert learns_for(2, 2, 1, 2) == [3]  # one Learn per step of progress
    c.envs["n1"].clock += 2 * leader.opts.heartbeat_interval
    assert learns_for(2) == [3]  # two heartbeats on: the Learn was lost, sent again


def test_a_lost_prepare_to_a_new_configurations_member_is_sent_again():
    """Seed 121113 (membership changes): a leader elected by the old configuration's
    majority recovers a slot the new configuration governs; its one Prepare to the new
    member was lost, and the slot waited forever.  Unanswered Prepares go out again with
    each heartbeat while a slot waits for them."""
    c = Cluster(["n1", "n2", "n3", "n4"], members=("n1", "n2", "n3"), alpha=3)
    leader = c.elect("n1")
    c.partition(["n1", "n2", "n4"], ["n3"])  # n3 lags behind everything below
    assert leader.propose_config_change("add", "n4") is None
    c.deliver_all()
    c.fire("n1", "heartbeat")
    c.deliver_all()
    assert leader.config_at(4) == ("n1", "n2", "n3", "n4") and leader.executed == 3
    c.request("n1", put("c", 1, "x", 1))  # slot 4, in the new configuration
    c.request("n1", put("c", 2, "x", 2))  # slot 5: n2 votes, but never hears it chosen
    assert leader.executed == 5 and c.nodes["n2"].executed == 4
    c.down.add("n1")
    c.partition(["n1", "n2", "n3"], ["n4"])  # n3's Prepare to n4 is lost
    n3 = c.elect("n3")  # by the old configuration's majority (n2, n3)
    assert n3.executed == 4 and n3.to_recover == {5}
    c.fire("n3", "lease-wait")  # n1's lease ran out: slot 5 needs n4's promise now
    c.deliver_all()
    assert "n4" in n3.prepare_sent and n3.executed == 4
    c.heal()
    c.fire("n3", "heartbeat")
    c.deliver_all()
    assert n3.executed == 5 and n3.sm.digest() == leader.sm.digest()


def lagging_candidate_takes_over() -> tuple[MultiPaxosNode, MultiPaxosNode]:
    """Two membership changes pass a node by, then it leads.  n3 is cut off while n4 and
    n5 join ({n1,n2,n3} to {n1..n4} at slot 1 to {n1..n5} at slot 2; alpha 1), and
    n2 is cut off too before x=chosen goes into slot 3, whose configuration is the
    five-node one: it is chosen by n1, n4 and n5, a quorum that shares no node with
    n2 and n3.  n1 goes down; n3 campaigns with what it knows, the first
    configuration, whose majority n2 and n3 are.  Returns (n1, n3)."""
    c = Cluster(["n1", "n2", "n3", "n4", "n5"], members=("n1", "n2", "n3"), alpha=1)
    n1 = c.elect("n1")
    c.partition(["n1", "n2", "n4", "n5"], ["n3"])
    for node in ("n4", "n5"):
        assert n1.propose_config_change("add", node) is None
        c.deliver_all()
        c.fire("n1", "heartbeat")
        c.deliver_all()
    assert n1.config_at(3) == ("n1", "n2", "n3", "n4", "n5")
    c.partition(["n1", "n4", "n5"], ["n2"], ["n3"])
    c.request("n1", put("c", 1, "x", "chosen"))
    assert n1.executed == 3 and c.nodes["n2"].executed == 2 and c.nodes["n3"].executed == 0
    c.down.add("n1")
    c.heal()
    n3 = c.elect("n3")  # by n2 and n3, who tell it of slots 1 and 2 only
    c.request("n3", put("d", 1, "x", "other"))
    c.fire("n3", "lease-wait")
    c.deliver_all()
    c.fire("n3", "heartbeat")
    c.deliver_all()
    return n1, n3


def test_a_lagging_candidate_proposes_in_a_slot_only_with_its_configurations_promises():
    """A leader elected by an old configuration's majority learns of newer ones from the
    promises, and proposes in a slot only once a majority of the configuration that
    governs that slot promised it (``_ready_for_slot``).  Here n3 needs n4's or n5's
    promise for slot 3, which reports x=chosen: it re-proposes that, and its own
    command takes slot 4."""
    n1, n3 = lagging_candidate_takes_over()
    assert n3.chosen[3] == n1.chosen[3]
    assert n3.chosen[3].data.op.value == "chosen"
    assert n3.chosen[4].data.op.value == "other"
    assert n3.executed == 4


def test_without_its_configurations_promises_a_lagging_candidate_overwrites_a_chosen_slot(monkeypatch):
    """The rule the previous test checks, broken: a leader that proposes in every slot
    once the configuration that elected it promised puts d's command in slot 3, and n4
    and n5 accept it (its ballot is the highest they saw).  Two values are chosen in
    one slot: the scenario does exercise the rule."""

    def electing_configuration_only(self: MultiPaxosNode, slot: int) -> bool:
        return self._prepared(self.config_at(self.prepare_from))

    monkeypatch.setattr(MultiPaxosNode, "_ready_for_slot", electing_configuration_only)
    n1, n3 = lagging_candidate_takes_over()
    assert n1.chosen[3].data.op.value == "chosen"
    assert n3.chosen[3].data.op.value == "other"


def test_one_message_cannot_set_a_cluster_at_the_round_ceiling():
    """A Heartbeat of ballot round 2^62 (the ceiling) to every node: promising it left no
    higher round to lead with (protocols/common/number_bounds.py).  It is ignored now; a
    round STEP above the nodes' is taken, and a leader is elected in a round after it."""
    from consensuskit.protocols.common.number_bounds import CEILING, STEP
    from consensuskit.protocols.paxos.multi_messages import Ballot, Heartbeat
    from consensuskit.sim import SimConfig, Simulation

    for ignored in (True, False):
        sim = Simulation(
            SimConfig(protocol="multipaxos", node_ids=("n1", "n2", "n3"), check_every_step=False)
        )
        sim.run_until(3.0)
        before = {n.max_round for n in sim.nodes.values()}
        assert max(before) <= 2, before
        round_ = CEILING if ignored else min(before) + STEP  # within every node's reach
        for node_id in sim.nodes:
            src = "n2" if node_id != "n2" else "n1"
            forged = Heartbeat(ballot=Ballot(round=round_, node=9), leader=src, commit=0, round=0)
            sim.invoke(node_id, lambda n, m=forged, s=src: n.on_message(s, m), "forged heartbeat")
        sim.run_until(40.0)
        roles = sorted(n.role for n in sim.nodes.values())
        assert roles == ["follower", "follower", "leader"], (round_, roles)
        rounds = {n.max_round for n in sim.nodes.values()}
        assert (max(rounds) <= 2) if ignored else (min(rounds) > round_), (round_, rounds)


def test_no_refusal_for_a_write_voted_in_a_slot_not_yet_executed():
    """A refusal says the write was not applied; an acceptor holding a vote for a copy of
    it (accepted from a leader since deposed) must not give one: that copy may still be
    chosen (protocols/common/replies.py, may_apply).  A write it holds no copy of is
    refused as before; so is a read."""
    node, env = make_node("n2", IDS)
    held = put("c1", 1, "x", 1)
    node.on_message(
        "n1",
        Accept(
            ballot=Ballot(1, 1), values=(SlotValue(slot=1, entry=Entry(kind=COMMAND, data=held)),), commit=0
        ),
    )
    node.on_message("n1", Forward(request=held, origin="n3"))  # a duplicate, or a retry
    node.on_message("n1", Forward(request=put("c2", 1, "y", 2), origin="n3"))
    node.on_message("n1", Forward(request=get("c3", 1, "x"), origin="n3"))
    replies = [m.response for _, m in env.take() if isinstance(m, ForwardReply)]
    assert [(r.client_id, r.ok, r.error) for r in replies] == [
        ("c2", False, "not-leader"),
        ("c3", False, "not-leader"),
    ]
