"""Client sessions: expiry through clock commands only, the LRU cap, honest idempotency,
determinism across replicas, snapshots old and new, and bounded memory."""

from __future__ import annotations

import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import EDGE_JUDGED, ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.sessions import (
    BAD_COMMAND,
    EXPIRED,
    REUSED,
    STALE,
    _packer,
    clock_op,
    command_digest,
    refusal,
)

TTL = 60_000  # ms
FAST = settings(max_examples=100, deadline=None)


def put(key, value):
    return Op(kind="put", key=key, value=value)


def write(client, seq, key="k", value="v"):
    return ClientRequest(client_id=client, seq=seq, op=put(key, value))


def tick(now, *, epoch="leader-1", ttl=TTL, max_sessions=1000):
    return ClientRequest(client_id="anon.clock", seq=now + 1, op=clock_op(epoch, now, ttl, max_sessions))


def started(now=0, **kw) -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(tick(now, **kw))
    return kv


# -- the log clock ---------------------------------------------------------------------------


def test_the_log_clock_moves_only_by_clock_commands_of_one_epoch():
    kv = started(1_000)
    table = kv.sessions
    assert table.clock == 0  # the first command of an epoch only starts it
    kv.apply(tick(1_500))
    assert table.clock == 500
    kv.apply(tick(1_400))  # a reading that goes back: ignored
    assert table.clock == 500
    kv.apply(tick(2_000))
    assert table.clock == 1_000
    # A new leader: its monotonic clock has nothing to do with the old one's.
    kv.apply(tick(999_999_999, epoch="leader-2"))
    assert table.clock == 1_000
    kv.apply(tick(1_000_000_099, epoch="leader-2"))
    assert table.clock == 1_100
    # A late command of the old leader interleaved: it never moves the clock back.
    kv.apply(tick(5, epoch="leader-1"))
    kv.apply(tick(1_000_000_199, epoch="leader-2"))
    assert table.clock == 1_100


def test_nothing_expires_without_clock_commands_however_many_writes():
    kv = started()
    for seq in range(1, 200):
        kv.apply(write("busy", seq))
    kv.apply(write("idle", 1))
    for seq in range(200, 400):
        kv.apply(write("busy", seq))
    assert "idle" in kv.sessions


@pytest.mark.parametrize(
    "value",
    [
        None,
        5,
        {"now": -1, "ttl": 1, "max_sessions": 1},
        {"now": 1, "ttl": 1, "max_sessions": 0},
        {"now": True, "ttl": 1, "max_sessions": 1},
        {"now": 1},
    ],
)
def test_a_malformed_clock_command_is_refused_and_changes_nothing(value):
    kv = started()
    kv.apply(write("c", 1))
    before = kv.snapshot()
    bad = ClientRequest(client_id="anon.clock", seq=99, op=Op(kind="clock", key="e", value=value))
    assert kv.apply(bad) is BAD_COMMAND and refusal(BAD_COMMAND) == "bad-command"
    assert kv.snapshot() == before


def test_a_clock_command_survives_the_codec():
    request = tick(123, epoch="n1.abcdef")
    assert decode(encode(request)) == request


# -- expiry ----------------------------------------------------------------------------------


def test_sessions_idle_longer_than_ttl_expire_at_the_next_clock_command():
    kv = started(0)
    kv.apply(write("old", 1))
    kv.apply(tick(TTL // 2))
    kv.apply(write("young", 1))
    kv.apply(tick(TTL))  # "old" idle exactly ttl: kept
    assert "old" in kv.sessions
    kv.apply(tick(TTL + 1))
    assert "old" not in kv.sessions and "young" in kv.sessions
    assert kv.sessions.forgotten() == ("old",)
    kv.apply(write("young", 2))  # activity renews
    kv.apply(tick(TTL // 2 + TTL + 1))
    assert "young" in kv.sessions


def test_a_retry_after_expiry_is_refused_never_reapplied():
    kv = started(0)
    assert kv.apply(write("c", 1, value="a")) == {"version": 1}
    assert kv.apply(write("c", 2, value="b")) == {"version": 2}
    kv.apply(tick(TTL + 1))
    assert "c" not in kv.sessions
    before = kv.snapshot()
    assert kv.apply(write("c", 2, value="b")) is EXPIRED  # the retry of seq 2
    assert kv.apply(write("c", 1, value="a")) is EXPIRED  # even seq 1: c is in the record
    assert kv.apply(write("c", 3, value="c")) is EXPIRED  # c cannot go on: a new session
    assert refusal(EXPIRED) == "session-expired"
    assert kv.snapshot() == before
    assert kv.get("k") == "b"


def test_after_any_forgetting_an_unknown_client_must_start_at_seq_1():
    kv = started(0)
    assert kv.apply(write("early", 7)) == {"version": 1}  # nothing forgotten yet: any seq
    kv.apply(write("gone", 1))
    kv.apply(tick(TTL // 2))
    kv.apply(write("early", 8))
    kv.apply(tick(TTL + 1))
    assert "gone" not in kv.sessions and kv.sessions.forgotten_total == 1
    # An unknown client with seq > 1 may be a forgotten session's retry.
    assert kv.apply(write("stranger", 5)) is EXPIRED
    assert kv.apply(write("stranger", 1)) == {"version": 4}
    assert kv.apply(write("stranger", 2)) == {"version": 5}


def test_the_forgotten_record_is_bounded_and_then_seq_1_looks_new():
    """What is *not* guaranteed: once a forgotten id leaves the record (max_sessions // 4
    ids), a retry of that session's seq 1 is a new session's first write."""
    kv = started(0, max_sessions=8)
    for i in range(20):
        kv.apply(write(f"c{i}", 1))
    assert len(kv.sessions) == 8
    assert kv.sessions.forgotten() == ("c10", "c11")  # the last 8 // 4 forgotten
    assert kv.apply(write("c11", 1)) is EXPIRED
    assert kv.apply(write("c0", 2)) is EXPIRED
    assert kv.apply(write("c0", 1)) == {"version": 21}  # c0 fell out of the record


def test_reads_and_anonymous_writes_are_never_refused_as_expired():
    kv = started(0)
    kv.apply(write("gone", 1))
    kv.apply(tick(TTL + 1))
    read = ClientRequest(client_id="read.n1.x", seq=40, op=Op(kind="get", key="k"))
    assert kv.apply(read) == {"value": "v", "version": 1}
    assert kv.apply(write("anon.n1.abc", 17)) == {"version": 2}
    assert kv.apply(ClientRequest(client_id="gone", seq=3, op=Op(kind="get", key="k"))) == {
        "value": "v",
        "version": 2,
    }


# -- the cap ---------------------------------------------------------------------------------


def test_the_cap_evicts_the_least_recently_active_session():
    kv = started(0, max_sessions=3)
    for client in ("a", "b", "c"):
        kv.apply(write(client, 1))
    kv.apply(write("a", 2))  # a is now the most recently active
    kv.apply(write("d", 1))  # evicts b
    assert [c for c in ("a", "b", "c", "d") if c in kv.sessions] == ["a", "c", "d"]
    assert kv.apply(write("b", 2)) is EXPIRED
    # A retry answered from the cache is not activity: c stays the oldest.
    assert kv.apply(write("c", 1)) == {"version": 3}
    kv.apply(write("e", 1))
    assert "c" not in kv.sessions and "a" in kv.sessions


def test_a_lower_cap_in_a_clock_command_evicts_at_once():
    kv = started(0, max_sessions=10)
    for i in range(10):
        kv.apply(write(f"c{i}", 1))
    result = kv.apply(tick(1, max_sessions=4))
    assert result == {"clock": 1, "sessions": 4, "forgotten": 6}
    assert [c for c in (f"c{i}" for i in range(10)) if c in kv.sessions] == ["c6", "c7", "c8", "c9"]


# -- idempotency -----------------------------------------------------------------------------


def test_same_command_retry_is_answered_from_the_cache():
    kv = started()
    assert kv.apply(write("c", 1, value="a")) == {"version": 1}
    kv.apply(write("other", 1, value="b"))
    assert kv.apply(write("c", 1, value="a")) == {"version": 1}
    assert kv.get("k") == "b"


def test_reused_id_with_another_command_changes_nothing():
    kv = started()
    kv.apply(write("dupc", 1, key="idem"))
    before = kv.snapshot()
    assert kv.apply(write("dupc", 1, key="other-key")) is REUSED
    delete = ClientRequest(client_id="dupc", seq=1, op=Op(kind="delete", key="idem"))
    assert kv.apply(delete) is REUSED
    assert kv.snapshot() == before
    assert kv.get("idem") == "v" and kv.get("other-key") is None


def test_the_digest_is_stable_across_processes():
    """Pinned bytes: a digest must not depend on the process (Python's hash() would)."""
    assert command_digest(put("k", "v")).hex() == command_digest(put("k", "v")).hex()
    assert command_digest(put("k", "v")) != command_digest(put("k", b"v"))
    assert command_digest(put("k", 1)) != command_digest(put("k", "1"))
    assert command_digest(Op(kind="cas", key="k", value="v", expected_version=0)) != command_digest(
        Op(kind="cas", key="k", value="v", expected=0)
    )
    assert command_digest(put("k", "v")).hex() == EXPECTED_DIGEST
    packer = _packer()
    assert len(command_digest(put("k", 2**70), packer)) == 8  # beyond msgpack's ints: still a digest
    assert command_digest(put("k", "v"), packer).hex() == EXPECTED_DIGEST  # the packer recovered


# Pinned: blake2b-64 of msgpack ["put", "k", "v", None, None].  Replicas and restarts
# compare digests, so changing the canonical form is a format change.
EXPECTED_DIGEST = "cf8b927ca8b405d7"


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_round_trip_keeps_order_clock_and_record():
    kv = started(0, max_sessions=4)
    for i in range(6):
        kv.apply(write(f"c{i}", 1))
    kv.apply(write("c2", 2))
    kv.apply(tick(500, max_sessions=4))
    copy = KVStateMachine()
    copy.restore(decode(encode(kv.snapshot())))
    assert copy.snapshot() == kv.snapshot()
    # The same future on both: c3 is the least recently active on each.
    for machine in (kv, copy):
        machine.apply(write("new", 1))
        machine.apply(tick(1_000, max_sessions=4))
    assert copy.snapshot() == kv.snapshot()
    assert "c3" not in copy.sessions and copy.sessions.forgotten() == ("c3",)
    assert copy.apply(write("c3", 1)) is EXPIRED


@pytest.mark.parametrize("machine", ["kv", "sessioned"])
def test_a_deep_copy_is_a_twin_that_shares_nothing(machine):
    """PBFT's twin replica deep-copies a state machine (protocols/pbft/byzantine.py):
    the copy has the same state and its own session table and encoder, also compiled."""
    import copy as copying

    from consensuskit.statemachines.mvcc import MVCCStateMachine

    sm = started(0, max_sessions=4) if machine == "kv" else MVCCStateMachine()
    if machine == "kv":
        sm.apply(write("c1", 1))
    twin = copying.deepcopy(sm)
    assert twin.snapshot() == sm.snapshot()
    assert twin.sessions is not sm.sessions
    assert twin.sessions._packer is not sm.sessions._packer
    if machine == "kv":
        assert twin.apply(write("c2", 1)) == {"version": 2}
        assert "c2" in twin.sessions and "c2" not in sm.sessions
        assert sm.apply(write("c1", 1)) == twin.apply(write("c1", 1)) == {"version": 1}


def test_the_previous_release_snapshot_still_restores():
    """Sessions as (client, seq, result) triples in client order, no clock."""
    old = {
        "flat": ("a", "x", 1, "b", "y", 2),
        "sessions": (("c1", 3, {"version": 1}), ("c2", 1, {"version": 2})),
    }
    kv = KVStateMachine()
    kv.restore(decode(encode(old)))
    assert kv.items() == {"a": "x", "b": "y"}
    assert kv.apply(write("c1", 3, value="anything")) == {"version": 1}  # no digest: cached
    assert kv.apply(write("c1", 2)) is STALE
    assert kv.apply(write("c2", 2, key="b")) == {"version": 3}
    # The first clock command puts the table in canonical order, without digests.
    kv.apply(tick(0))
    snap = kv.snapshot()
    assert snap["sessions"] == (
        *("c1", 3, {"version": 1}, None, 0),
        *("c2", 2, {"version": 3}, command_digest(put("b", "v")), 0),
    )


def test_a_replica_from_an_old_snapshot_and_one_replaying_agree_after_the_first_clock():
    replayed = KVStateMachine()
    commands = [write("z", 1), write("a", 1), write("m", 1), write("z", 2)]
    for c in commands:
        replayed.apply(c)
    snap = replayed.snapshot()
    old_form = {
        "flat": snap["flat"],
        "sessions": (("a", 1, {"version": 2}), ("m", 1, {"version": 3}), ("z", 2, {"version": 4})),
    }
    restored = KVStateMachine()
    restored.restore(old_form)
    for machine in (replayed, restored):
        machine.apply(tick(0, max_sessions=2))
        machine.apply(write("new", 1))
    a, b = replayed.snapshot(), restored.snapshot()
    # Only the digest of z differs (the old snapshot had none); "new" has one on both.
    assert b["sessions"][3] is None and a["sessions"][3] == command_digest(put("k", "v"))
    assert a["sessions"][8] == b["sessions"][8] is not None
    for snap in (a, b):
        snap["sessions"] = snap["sessions"][0::5] + snap["sessions"][1::5] + snap["sessions"][4::5]
    assert a == b
    assert a["sessions"][:2] == ("z", "new")  # a and m were evicted, in client order


@pytest.mark.parametrize(
    "section",
    [
        {"session_format": 3, "sessions": (), "session_clock": (0, None, 0, 0, 0, 0), "forgotten": ()},
        {
            "session_format": 2,
            "sessions": ("c", 1, None, None),
            "session_clock": (0, None, 0, 0, 0, 0),
            "forgotten": (),
        },
        {
            "session_format": 2,
            "sessions": ("c", 1, None, b"d", -1),
            "session_clock": (0, None, 0, 0, 0, 0),
            "forgotten": (),
        },
        {
            "session_format": 2,
            "sessions": ("c", 1, None, None, 5, "d", 1, None, None, 4),
            "session_clock": (0, None, 0, 0, 0, 0),
            "forgotten": (),
        },
        {"session_format": 2, "sessions": (), "session_clock": (0, None, 0), "forgotten": ()},
        {"session_format": 2, "sessions": (), "session_clock": (0, None, 0, 0, 0, 0)},
        {"session_format": 2, "sessions": (), "session_clock": (0, None, 0, 0, 0, 0), "forgotten": (1,)},
    ],
    ids=["format", "short", "digest", "order", "clock", "no-record", "record"],
)
def test_a_bad_sessions_section_is_refused_and_changes_nothing(section):
    kv = started()
    kv.apply(write("c", 1))
    before = kv.snapshot()
    with pytest.raises(ValueError, match="not a KV snapshot"):
        kv.restore({"flat": (), **section})
    assert kv.snapshot() == before


# -- determinism -----------------------------------------------------------------------------

clients = st.sampled_from(["a", "b", "c", "d", "e", "anon.x"])
commands = st.one_of(
    st.builds(
        lambda c, s, v: write(c, s, value=v),
        clients,
        st.integers(min_value=0, max_value=4),
        st.sampled_from(["v", "w"]),
    ),
    st.builds(
        lambda now, epoch, cap: tick(now, epoch=epoch, ttl=100, max_sessions=cap),
        st.integers(min_value=0, max_value=400),
        st.sampled_from(["e1", "e2"]),
        st.integers(min_value=1, max_value=4),
    ),
)


@FAST
@given(st.lists(commands, max_size=60), st.data())
def test_replicas_applying_the_same_commands_agree(sequence, data):
    a, b = KVStateMachine(), KVStateMachine()
    cut = data.draw(st.integers(min_value=0, max_value=len(sequence)))
    ra = [a.apply(c) for c in sequence]
    rb = [b.apply(c) for c in sequence[:cut]]
    c = KVStateMachine()  # catches up from b's snapshot
    c.restore(decode(encode(b.snapshot())))
    rest_b = [b.apply(x) for x in sequence[cut:]]
    rest_c = [c.apply(x) for x in sequence[cut:]]
    assert ra == rb + rest_b and rest_c == rest_b
    assert a.snapshot() == b.snapshot() == c.snapshot()
    table = a.sessions
    if table.max_sessions:
        assert len(table) <= table.max_sessions
        assert len(table.forgotten()) <= max(1, table.max_sessions // 4)


# -- memory ----------------------------------------------------------------------------------


def distinct_writes(kv: KVStateMachine, n: int, start: int = 0) -> None:
    apply = kv.apply
    op = put("k", "v")
    for i in range(start, start + n):
        apply(ClientRequest(client_id=f"client-{i:07d}", seq=1, op=op))


def test_many_distinct_client_ids_leave_the_table_bounded():
    cap = 5_000
    kv = started(max_sessions=cap)
    distinct_writes(kv, 10_000)
    size_at_10k = len(encode(kv.snapshot()))
    distinct_writes(kv, 50_000, start=10_000)
    assert len(kv.sessions) == cap
    assert len(kv.sessions.forgotten()) == cap // 4
    assert len(encode(kv.snapshot())) <= size_at_10k + 1_000  # grows no more


@pytest.mark.slow
def test_a_million_distinct_client_ids_leave_the_state_machine_bounded():
    """Issue 10: a Client per request used to leak one session per request forever."""
    kv = started(max_sessions=100_000)  # the server's default cap
    started_at = time.monotonic()
    distinct_writes(kv, 200_000)  # the table and the record of forgotten ids are full
    size = len(encode(kv.snapshot()))
    distinct_writes(kv, 800_000, start=200_000)
    assert len(kv.sessions) == 100_000 and kv.sessions.forgotten_total == 900_000
    assert len(kv.sessions.forgotten()) == 25_000
    assert len(encode(kv.snapshot())) <= size + 1_000
    assert time.monotonic() - started_at < 120


def test_a_command_logged_by_the_previous_release_still_decodes_and_applies():
    """A WAL record of the previous release, pinned as bytes, decodes to the same command;
    ClientRequest gained ``principal`` since (appended: the old frame decodes with
    EDGE_JUDGED, a command its edge judged)."""
    old = bytes.fromhex("0295d5010002a1630296d5010001a3707574a16ba176c0c0c0")
    assert decode(old) == msgspec.structs.replace(write("c", 2), principal=EDGE_JUDGED)
    kv = started()
    assert kv.apply(decode(old)) == {"version": 1}
