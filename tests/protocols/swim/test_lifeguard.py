"""Lifeguard's formulas and the broadcast queue, against the values memberlist's code
gives (../shared/research/wave2.md §2.1, derived from util.go and suspicion.go)."""

from __future__ import annotations

import math

import pytest

from consensuskit.protocols.swim import (
    Awareness,
    Suspicion,
    Update,
    confirmations_wanted,
    push_pull_interval,
    retransmit_limit,
    suspicion_bounds,
    suspicion_timeout,
)
from consensuskit.protocols.swim.broadcasts import BroadcastQueue


@pytest.mark.parametrize(
    ("n", "low", "high", "retransmits", "push_pull"),
    [(10, 4, 24, 8, 30), (100, 8, 48, 12, 90), (1000, 12, 72, 16, 180), (10_000, 16, 96, 20, 300)],
)
def test_memberlist_defaults_give_the_oracle_table(n, low, high, retransmits, push_pull):
    assert suspicion_bounds(4, 6, n, 1.0) == pytest.approx((low, high))
    assert retransmit_limit(4, n) == retransmits
    assert push_pull_interval(30.0, n) == pytest.approx(push_pull)


def test_suspicion_shrinks_with_confirmations_as_memberlist():
    """n = 100: 48.0 / 22.8 / 8.0 s with 0 / 1 / 2 confirmations (k = 2)."""
    low, high = suspicion_bounds(4, 6, 100, 1.0)
    k = confirmations_wanted(4, 100)
    assert k == 2
    assert [suspicion_timeout(c, k, low, high) for c in (0, 1, 2)] == pytest.approx([48.0, 22.762, 8.0])
    # Against the formula written out once more: max - log(c+1)/log(k+1) * (max - min).
    assert suspicion_timeout(1, k, low, high) == pytest.approx(48 - math.log(2) / math.log(3) * 40, abs=2e-3)
    assert suspicion_timeout(5, k, low, high) == low  # floored at the minimum


def test_no_confirmations_wanted_in_a_tiny_cluster():
    assert confirmations_wanted(4, 3) == 0  # n - 2 = 1 < k = 2
    assert suspicion_timeout(0, 0, 4.0, 24.0) == 4.0


def test_suspicion_counts_each_accuser_once_and_never_the_first():
    s = Suspicion(start=10.0, k=2, low=4.0, high=24.0, incarnation=0, accusers={"a"})
    assert s.deadline() == 34.0
    assert not s.confirm("a")  # the member that started it
    assert s.confirm("b")
    assert not s.confirm("b")
    assert s.confirm("c")
    assert s.deadline() == 14.0
    assert not s.confirm("d")  # k reached: nothing more to gain


def test_awareness_scales_and_clamps():
    a = Awareness(max_score=8)
    a.apply(-1)
    assert a.score == 0
    a.apply(3)
    assert a.scale(0.5) == 2.0
    a.apply(100)
    assert a.score == 7


def _update(member: str, inc: int = 0) -> Update:
    return Update(kind="alive", member=member, incarnation=inc)


def test_queue_sends_each_update_at_most_limit_times():
    q = BroadcastQueue()
    q.push(_update("a"))
    sent = 0
    while q.take(5, limit=3):
        sent += 1
    assert sent == 3
    assert len(q) == 0


def test_queue_replaces_news_about_the_same_member_and_prefers_fresh_news():
    q = BroadcastQueue()
    q.push(_update("a"))
    q.take(5, limit=10)
    q.push(_update("b"))
    assert q.take(1, limit=10) == (_update("b"),)  # sent least often first
    q.push(_update("a", 1))
    assert q.queued("a") == _update("a", 1)
    assert len(q) == 2


def test_queue_bug_knob_keeps_updates_past_the_limit():
    q = BroadcastQueue(keep_forever=True)
    q.push(_update("a"))
    for _ in range(4):
        q.take(1, limit=3)
    assert [e.transmits for e in q.over_limit()] == [4]
