"""services/etcd_lessor.py: when the leader expires a lease (fake time)."""

from __future__ import annotations

from consensuskit.services.etcd_lessor import RETRY, Lessor


def test_only_the_leader_expires_and_only_past_the_deadline() -> None:
    lessor = Lessor()
    assert lessor.observe([(1, 5, 0)], now=0.0, leading=False) == []
    assert lessor.observe([(1, 5, 0)], now=10.0, leading=False) == []  # a follower never expires
    assert lessor.observe([(1, 5, 0)], now=10.0, leading=True) == []  # promoted: a whole TTL from now
    assert lessor.observe([(1, 5, 0)], now=14.9, leading=True) == []
    assert lessor.observe([(1, 5, 0)], now=15.0, leading=True) == [(1, 0)]


def test_a_keepalive_moves_the_deadline() -> None:
    lessor = Lessor()
    lessor.observe([(1, 5, 0)], now=0.0, leading=True)
    assert lessor.observe([(1, 5, 1)], now=4.0, leading=True) == []  # stamp 1: refreshed at 4
    assert lessor.observe([(1, 5, 1)], now=8.9, leading=True) == []
    assert lessor.observe([(1, 5, 1)], now=9.0, leading=True) == [(1, 1)]
    lessor.refreshed(1, 2, 5, now=9.5)
    assert lessor.observe([(1, 5, 2)], now=10.0, leading=True) == []
    assert lessor.remaining(1, 5, now=10.0) == 5


def test_a_new_leader_extends_every_lease_it_could_not_have_refreshed() -> None:
    lessor = Lessor()
    lessor.observe([(1, 5, 0), (2, 5, 0)], now=0.0, leading=False)  # seen as a follower at 0
    # leadership at 7: as a follower's estimate both are past due, but a new leader
    # cannot know when the old one last refreshed them
    assert lessor.observe([(1, 5, 0), (2, 5, 0)], now=7.0, leading=True) == []
    assert lessor.observe([(1, 5, 0), (2, 5, 0)], now=12.0, leading=True) == [(1, 0), (2, 0)]


def test_no_promote_extend_keeps_a_followers_deadlines() -> None:
    lessor = Lessor(frozenset({"no-promote-extend"}))
    lessor.observe([(1, 5, 0)], now=0.0, leading=False)
    assert lessor.observe([(1, 5, 0)], now=7.0, leading=True) == [(1, 0)]


def test_an_expiry_is_asked_once_then_again_after_retry() -> None:
    lessor = Lessor()
    lessor.observe([(1, 2, 0)], now=0.0, leading=True)
    assert lessor.observe([(1, 2, 0)], now=2.0, leading=True) == [(1, 0)]
    assert lessor.observe([(1, 2, 0)], now=2.1, leading=True) == []
    assert lessor.observe([(1, 2, 0)], now=2.0 + RETRY, leading=True) == [(1, 0)]
    assert lessor.observe([], now=5.0, leading=True) == []  # gone: forgotten
    assert lessor.remaining(1, 2, now=5.0) == 2


def test_ignore_new_leases_counts_only_what_the_leader_knew_when_promoted() -> None:
    lessor = Lessor(frozenset({"ignore-new-leases"}))
    lessor.observe([(1, 2, 0)], now=0.0, leading=True)  # promoted: lease 1 is counted
    assert lessor.observe([(1, 2, 0), (2, 2, 0)], now=1.0, leading=True) == []
    assert lessor.observe([(1, 2, 0), (2, 2, 0)], now=9.0, leading=True) == [(1, 0)]
