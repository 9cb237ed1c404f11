"""The leader restarts a learner's unanswered handshake, sooner the first time than later.

A lost LEADERINFO, ACKEPOCH, NEWLEADER or NEWLEADER ACK is resent after 2 ticks; each
restart doubles the wait, up to ZooKeeper's initLimit (20 of our ticks).  A learner taking
in a large SNAP answers nothing until it is in: with a fixed 2-tick wait the leader handed
it a new LEADERINFO every 2 ticks of the transfer (11 in a 2.4 s SNAP on real processes)."""

from __future__ import annotations

import itertools
from typing import Any

from consensuskit.protocols.zab.messages import Ack, LeaderInfo
from consensuskit.protocols.zab.node import HANDSHAKE_FIRST_WAIT_TICKS, HANDSHAKE_MAX_WAIT_TICKS, SYNCED
from tests.protocols.zab.fake import Cluster


def is_newleader_ack(msg: Any) -> bool:
    return isinstance(msg, Ack) and msg.newleader


def silence_after_newleader(c: Cluster, late: str) -> None:
    """Bring ``late`` through FLE and discovery to the leader's NEWLEADER, and lose its
    ACK: the leader now waits on a learner that answers nothing."""
    follower = c.nodes[late]
    for _ in range(10):
        c.fire(late, "notify" if follower.state == "looking" else "tick")
        for _ in range(10):
            for src in c.ids:
                for dst, m in c.envs[src].take():
                    if is_newleader_ack(m):
                        return
                    c.nodes[dst].on_message(src, m)
    raise AssertionError(follower.status())


def test_an_unanswered_handshake_is_restarted_after_2_4_8_16_then_20_ticks():
    c = Cluster(["a", "b", "c"])
    c.partition(["a"], ["b", "c"])  # "a" starts late
    leader = c.establish()
    c.heal()
    silence_after_newleader(c, "a")
    tick = leader.opts.tick
    newleader_sent = leader.learners["a"].handshake_at
    restarts: list[float] = []
    for _ in range(120):
        c.fire("c", "tick")
        sent = c.envs["c"].take()
        restarts += [c.envs["c"].clock for dst, m in sent if dst == "a" and isinstance(m, LeaderInfo)]
        for dst, m in sent:  # the others keep the leader established; "a" hears nothing
            if dst != "a":
                c.nodes[dst].on_message("c", m)
        c.deliver_all()
    gaps = [round((t - s) / tick) for s, t in itertools.pairwise(restarts)]
    first = round((restarts[0] - newleader_sent) / tick)
    waits = [HANDSHAKE_FIRST_WAIT_TICKS, 4, 8, 16, HANDSHAKE_MAX_WAIT_TICKS, HANDSHAKE_MAX_WAIT_TICKS]
    # The wait is "more than N ticks": the tick after the Nth restarts it, or the Nth
    # itself when the clock's sum of ticks rounds above N ticks.
    assert HANDSHAKE_FIRST_WAIT_TICKS <= first <= HANDSHAKE_FIRST_WAIT_TICKS + 1, restarts
    assert len(gaps) >= len(waits) - 1, gaps
    for wait, gap in zip(waits[1:], gaps, strict=False):
        assert wait <= gap <= wait + 1, gaps
    assert leader.learners["a"].phase != SYNCED


def test_a_learner_that_answers_at_last_is_synced_once_without_more_restarts():
    c = Cluster(["a", "b", "c"])
    c.partition(["a"], ["b", "c"])
    leader = c.establish()
    c.heal()
    silence_after_newleader(c, "a")
    for _ in range(3):  # a restart's LEADERINFO waits, unanswered, as behind a long SNAP
        c.fire("c", "tick")
    c.deliver_all()  # "a" answers what it was sent, late
    for _ in range(40):
        c.fire("c", "tick")
        c.deliver_all()
    assert leader.learners["a"].phase == SYNCED
    assert c.nodes["a"].log.last_index == leader.log.last_index
    c.fire("c", "tick")
    assert not [m for dst, m in c.envs["c"].take() if dst == "a" and isinstance(m, LeaderInfo)]
