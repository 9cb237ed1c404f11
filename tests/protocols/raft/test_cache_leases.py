"""The leader's side of client cache leases (protocols/raft/cache_leases.py): how long a
grant holds writes back, that held writes leave in arrival order, that no lease is
granted on a key a write waits for, and a new leader's wait."""

from __future__ import annotations

import pytest

from consensuskit.core.client import ClientRequest, Op, ServiceOp
from consensuskit.protocols.raft.cache_leases import MAX_HELD, CacheLeases


def write(seq: int, key: str = "x", client: str = "w") -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key=key, value=seq))


def test_a_grant_holds_writes_to_its_key_for_the_lease_lengthened_by_the_drift_bound():
    leases = CacheLeases(term=1.0, drift_bound=0.05)
    assert leases.grant("x", now=10.0) == 1.0
    assert leases.must_wait(write(1), 10.5)
    assert leases.must_wait(write(1), 11.049)
    assert not leases.must_wait(write(1), 11.05)
    assert not leases.must_wait(write(1, key="y"), 10.5)  # another key: at once


def test_held_writes_leave_in_arrival_order_even_when_a_later_one_is_free():
    leases = CacheLeases(term=1.0, drift_bound=0.0)
    leases.grant("x", now=0.0)
    first, second = write(1, "x"), write(2, "y")
    assert leases.must_wait(first, 0.1)
    leases.hold_back(first, None)
    # y has no lease, but a write of the same client is queued ahead of it.
    assert leases.must_wait(second, 0.1)
    leases.hold_back(second, "n2")
    assert leases.released(0.5) == []
    assert leases.next_release(0.5) == 1.0
    assert leases.released(1.0) == [(first, None), (second, "n2")]
    assert leases.next_release(1.0) is None


def test_no_lease_is_granted_on_a_key_a_write_waits_for():
    leases = CacheLeases(term=1.0, drift_bound=0.0)
    leases.grant("x", now=0.0)
    leases.hold_back(write(1, "x"), None)
    assert not leases.may_grant("x")
    assert leases.may_grant("y")


def test_another_services_write_waits_for_every_lease():
    leases = CacheLeases(term=1.0, drift_bound=0.0)
    leases.grant("a", now=0.0)
    leases.grant("b", now=0.5)
    other = ClientRequest(client_id="w", seq=1, op=ServiceOp(kind="txn", key="k", value=1))
    assert leases.must_wait(other, 1.2)
    assert not leases.must_wait(other, 1.5)
    leases.hold_back(other, None)
    assert not leases.may_grant("z")  # it waits for every key


def test_a_new_leader_holds_every_write_for_a_whole_lease():
    leases = CacheLeases(term=2.0, drift_bound=0.1)
    leases.grant("x", now=0.0)
    leases.start_term(now=5.0)  # leases of the old term are forgotten, and waited out
    assert leases.must_wait(write(1, "y"), 7.19)
    assert not leases.must_wait(write(1, "y"), 7.2)


def test_stepping_down_hands_back_every_held_write_and_the_queue_is_bounded():
    leases = CacheLeases(term=1.0, drift_bound=0.0)
    leases.grant("x", now=0.0)
    for seq in range(MAX_HELD):
        assert leases.hold_back(write(seq), None)
    assert not leases.hold_back(write(MAX_HELD), None)
    assert len(leases.drain()) == MAX_HELD and len(leases) == 0
    assert not leases.must_wait(write(1), 0.1)  # grants are gone with the leadership


@pytest.mark.parametrize("bad", [-1.0, 3601.0])
def test_the_option_is_checked(bad: float):
    from consensuskit.protocols.raft.options import RaftOptions

    with pytest.raises(ValueError, match="cache_lease"):
        RaftOptions.from_dict({"cache_lease": bad})
