"""The etcd workload's leases in time (services/etcd.py): keep-alives a third of the TTL
after the last refresh answered, as etcd's client sends them, and refreshes aimed just
before the leader's lessor look that expires the lease (the keep-alive/expiry race)."""

from __future__ import annotations

import math
import random

import pytest

from consensuskit.services.etcd import KEEPALIVE_AFTER, RACE_AIM, WAIT_FOR_AIM, EtcdWorkload, _Lease
from consensuskit.services.etcd_lessor import LOOK


def client_with(lease_id: int, lease: _Lease) -> EtcdWorkload:
    w = EtcdWorkload(1, 4)
    w.leases[lease_id] = lease
    return w


def answer(w: EtcdWorkload, kind: str, lease_id: int, ttl: int, at: float) -> None:
    w.now = at
    w.learn(_op(kind, lease_id), {"id": lease_id, "ttl": ttl, "revision": 1})


def _op(kind: str, lease_id: int):
    from consensuskit.services.etcd import make_op

    body = {"id": lease_id, "ttl": 3} if kind == "lease_grant" else {"id": lease_id}
    return make_op(kind, "", body)


def test_an_on_time_refresh_is_due_a_third_of_the_ttl_after_the_answer():
    w = client_with(7, _Lease(3, kept=True, early_by=None))
    answer(w, "lease_grant", 7, 3, at=1.25)
    assert w.leases[7].due == pytest.approx(1.25 + 3 * KEEPALIVE_AFTER)
    w.now = 2.0
    assert w.next_op(random.Random(0)).kind != "lease_keepalive" or w.leases[7].due > 2.0
    w.now = 2.25
    op = w.next_op(random.Random(0))
    assert op.kind == "lease_keepalive" and op.value == {"id": 7}


def test_a_late_refresh_is_aimed_just_before_the_look_that_expires_the_lease():
    w = client_with(7, _Lease(3, kept=True, early_by=0.004))
    answer(w, "lease_keepalive", 7, 3, at=0.537)
    expiring_look = (math.floor((0.537 + 3) / LOOK) + 1) * LOOK  # 3.6: the first look past 3.537
    assert w.leases[7].due == pytest.approx(expiring_look - 0.004)
    assert 0 < 0.004 <= RACE_AIM < LOOK


def test_a_client_near_an_aimed_refresh_waits_idle_then_sends_it_on_time():
    w = client_with(7, _Lease(2, kept=True, early_by=0.005))
    answer(w, "lease_grant", 7, 2, at=0.0)
    due = w.leases[7].due
    assert due is not None
    w.now = due - WAIT_FOR_AIM / 2
    assert w.next_op(random.Random(0)) is None and w.wake_at == due
    w.now = due
    op = w.next_op(random.Random(0))
    assert op.kind == "lease_keepalive" and op.value == {"id": 7}
    assert w.leases[7].due is not None and w.leases[7].due > due  # unanswered: not again at once


def test_a_keepalive_that_finds_the_lease_gone_forgets_it():
    w = client_with(7, _Lease(1, kept=True, early_by=None))
    answer(w, "lease_keepalive", 7, 0, at=2.0)
    assert 7 not in w.leases


def test_a_lapsing_lease_is_never_refreshed():
    w = client_with(1, _Lease(3, kept=False, early_by=None))
    w.leases[1].due = 0.0
    rng = random.Random(3)
    w.now = 5.0
    assert all(w.next_op(rng).kind != "lease_keepalive" for _ in range(200))


def test_a_client_full_of_kept_leases_refreshes_only_when_due():
    """No early refresh (it would spoil an aimed one): until it revokes one, its lease
    ops give way to the other ops."""
    w = client_with(2, _Lease(3, kept=True, early_by=None))
    w.leases[3] = _Lease(3, kept=True, early_by=None)
    w.leases[2].due, w.leases[3].due = 50.0, 60.0
    rng = random.Random(3)
    w.now = 1.0
    kinds = []
    while not kinds or kinds[-1] != "lease_revoke":
        kinds.append(w.next_op(rng).kind)
    assert len(kinds) > 10 and not {"lease_keepalive", "lease_grant"} & set(kinds)
