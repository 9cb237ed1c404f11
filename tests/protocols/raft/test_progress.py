"""Progress: the leader's per-follower replication state machine."""

from __future__ import annotations

from consensuskit.protocols.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress


def replicating(match: int = 5) -> Progress:
    p = Progress(match + 1)
    p.update(match)
    p.become_replicate()
    return p


def test_initial_state():
    p = Progress(11)
    assert (p.state, p.match, p.next, p.probe_sent) == (PROBE, 0, 11, False)
    assert not p.is_paused(4, 1000)
    assert repr(p) == "Progress(probe match=0 next=11)"


def test_probe_pauses_after_one_send():
    p = Progress(11)
    p.sent(15, 200)
    assert p.probe_sent
    assert p.is_paused(100, 10**9)
    assert p.next == 11  # a probe does not advance next
    assert len(p.inflight) == 0 and p.inflight_bytes == 0


def test_probe_unpauses_when_match_advances():
    p = Progress(11)
    p.sent(15, 200)
    assert p.update(12) is True
    assert (p.match, p.next, p.probe_sent) == (12, 13, False)
    assert not p.is_paused(1, 1)


def test_update_without_advance_keeps_probe_paused():
    p = Progress(11)
    p.update(7)
    p.sent(10, 10)
    assert p.update(7) is False
    assert p.update(3) is False
    assert (p.match, p.next, p.probe_sent) == (7, 11, True)
    assert p.is_paused(10, 10**9)


def test_update_never_lowers_next():
    p = Progress(20)
    p.update(4)
    assert (p.match, p.next) == (4, 20)
    p.update(25)
    assert (p.match, p.next) == (25, 26)


def test_become_replicate_resets_next_to_match():
    p = Progress(20)
    p.update(4)
    p.sent(19, 10)
    p.become_replicate()
    assert (p.state, p.next, p.probe_sent) == (REPLICATE, 5, False)
    assert not p.is_paused(1, 1)


def test_replicate_pipelines_until_count_limit():
    p = replicating(5)
    p.sent(8, 10)
    assert p.next == 9
    assert not p.is_paused(3, 1000)
    p.sent(10, 10)
    assert not p.is_paused(3, 1000)
    p.sent(12, 10)
    assert p.next == 13
    assert list(p.inflight) == [(8, 10), (10, 10), (12, 10)]
    assert p.inflight_bytes == 30
    assert p.is_paused(3, 1000)
    assert not p.is_paused(4, 1000)


def test_replicate_pauses_on_byte_limit():
    p = replicating(5)
    p.sent(6, 60)
    assert not p.is_paused(100, 100)
    p.sent(7, 39)
    assert not p.is_paused(100, 100)
    p.sent(8, 1)
    assert p.inflight_bytes == 100
    assert p.is_paused(100, 100)


def test_update_frees_inflight_batches():
    p = replicating(5)
    for last, size in [(8, 10), (10, 20), (12, 30)]:
        p.sent(last, size)
    assert p.is_paused(3, 1000)
    assert p.update(9) is True  # frees only (8, 10): 9 < 10
    assert list(p.inflight) == [(10, 20), (12, 30)]
    assert p.inflight_bytes == 50
    assert not p.is_paused(3, 1000)
    assert p.update(12) is True
    assert (len(p.inflight), p.inflight_bytes) == (0, 0)
    assert (p.match, p.next) == (12, 13)


def test_stale_update_frees_nothing():
    p = replicating(5)
    p.sent(8, 10)
    assert p.update(5) is False
    assert p.update(3) is False
    assert (list(p.inflight), p.inflight_bytes, p.match, p.next) == ([(8, 10)], 10, 5, 9)


def test_become_probe_from_replicate():
    p = replicating(5)
    p.sent(8, 10)
    p.sent(10, 10)
    p.become_probe()
    assert (p.state, p.next, p.probe_sent) == (PROBE, 6, False)
    assert (len(p.inflight), p.inflight_bytes) == (0, 0)


def test_snapshot_state_is_always_paused():
    p = replicating(5)
    p.sent(8, 10)
    p.become_snapshot(40)
    assert (p.state, p.snapshot_index) == (SNAPSHOT, 40)
    assert (len(p.inflight), p.inflight_bytes) == (0, 0)
    assert p.is_paused(10**6, 10**9)
    p.sent(50, 5)  # heartbeats etc. do not queue anything
    assert len(p.inflight) == 0


def test_become_probe_from_snapshot_resumes_after_snapshot():
    p = replicating(5)
    p.become_snapshot(40)
    p.become_probe()
    assert (p.state, p.next, p.snapshot_index, p.probe_sent) == (PROBE, 41, 0, False)
    assert not p.is_paused(1, 1)


def test_become_probe_from_snapshot_when_match_passed_it():
    p = replicating(5)
    p.become_snapshot(40)
    assert p.update(45) is True
    p.become_probe()
    assert (p.state, p.match, p.next) == (PROBE, 45, 46)


def test_snapshot_ack_then_replicate():
    p = replicating(5)
    p.become_snapshot(40)
    p.update(40)
    p.become_replicate()
    assert (p.state, p.match, p.next) == (REPLICATE, 40, 41)
    assert not p.is_paused(1, 1)
