"""KVStateMachine: ops, versions, sessions, snapshots, determinism."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines.kv import STALE, KVStateMachine
from consensuskit.statemachines.kv_entry import Versioned
from consensuskit.statemachines.sessions import REUSED, command_digest, refusal

FAST = settings(max_examples=80, deadline=None)


def put(key, value):
    return Op(kind="put", key=key, value=value)


def get(key):
    return Op(kind="get", key=key)


def delete(key):
    return Op(kind="delete", key=key)


def cas(key, value, expected=None, expected_version=None):
    return Op(kind="cas", key=key, value=value, expected=expected, expected_version=expected_version)


def req(op, client="c", seq=1):
    return ClientRequest(client_id=client, seq=seq, op=op)


# -- single ops ----------------------------------------------------------------------------


def test_get_absent():
    kv = KVStateMachine()
    assert kv.execute(get("x")) == {"value": None, "version": 0}
    assert kv.get("x") is None


def test_put_then_get():
    kv = KVStateMachine()
    assert kv.execute(put("x", "a")) == {"version": 1}
    assert kv.execute(get("x")) == {"value": "a", "version": 1}
    assert kv.get("x") == "a"


def test_versions_increase_per_write():
    kv = KVStateMachine()
    assert [kv.execute(put("x", i))["version"] for i in range(4)] == [1, 2, 3, 4]
    assert kv.execute(cas("x", "c", expected=3)) == {"swapped": True, "version": 5}
    assert kv.execute(get("x")) == {"value": "c", "version": 5}
    assert kv.execute(put("y", 0)) == {"version": 1}


def test_delete_and_version_restart():
    kv = KVStateMachine()
    kv.execute(put("x", 1))
    kv.execute(put("x", 2))
    assert kv.execute(delete("x")) == {"deleted": True}
    assert kv.execute(delete("x")) == {"deleted": False}
    assert kv.execute(get("x")) == {"value": None, "version": 0}
    assert kv.execute(put("x", 3)) == {"version": 1}


def test_cas_on_value():
    kv = KVStateMachine()
    kv.execute(put("x", "a"))
    assert kv.execute(cas("x", "b", expected="zz")) == {"swapped": False, "value": "a", "version": 1}
    assert kv.get("x") == "a"
    assert kv.execute(cas("x", "b", expected="a")) == {"swapped": True, "version": 2}
    assert kv.get("x") == "b"


def test_cas_on_value_absent_is_none():
    kv = KVStateMachine()
    assert kv.execute(cas("x", "a", expected="a")) == {"swapped": False, "value": None, "version": 0}
    assert kv.execute(cas("x", "a", expected=None)) == {"swapped": True, "version": 1}
    assert kv.execute(cas("x", "b", expected=None)) == {"swapped": False, "value": "a", "version": 1}


def test_cas_on_version():
    kv = KVStateMachine()
    kv.execute(put("x", "a"))
    kv.execute(put("x", "b"))
    assert kv.execute(cas("x", "c", expected_version=1)) == {"swapped": False, "value": "b", "version": 2}
    assert kv.execute(cas("x", "c", expected_version=2)) == {"swapped": True, "version": 3}
    assert kv.execute(get("x")) == {"value": "c", "version": 3}


def test_cas_on_version_ignores_expected_value():
    kv = KVStateMachine()
    kv.execute(put("x", "a"))
    # expected value matches but the version does not: the version wins.
    assert kv.execute(cas("x", "c", expected="a", expected_version=5)) == {
        "swapped": False,
        "value": "a",
        "version": 1,
    }


def test_cas_expected_version_zero_means_absent():
    kv = KVStateMachine()
    assert kv.execute(cas("x", "a", expected_version=0)) == {"swapped": True, "version": 1}
    assert kv.execute(cas("x", "b", expected_version=0)) == {"swapped": False, "value": "a", "version": 1}
    kv.execute(delete("x"))
    assert kv.execute(cas("x", "b", expected_version=0)) == {"swapped": True, "version": 1}


def test_read_serves_only_get_and_ignores_sessions():
    kv = KVStateMachine()
    kv.apply(req(put("x", 1), seq=5))
    assert kv.read(req(get("x"), seq=1)) == {"value": 1, "version": 1}
    with pytest.raises(ValueError, match="read\\(\\) serves only get, not put"):
        kv.read(req(put("x", 2), seq=6))
    assert kv.get("x") == 1


def test_items_sorted():
    kv = KVStateMachine()
    kv.execute(put("b", 2))
    kv.execute(put("a", 1))
    assert list(kv.items().items()) == [("a", 1), ("b", 2)]


# -- sessions ------------------------------------------------------------------------------


def test_same_seq_returns_cached_result_without_reapplying():
    kv = KVStateMachine()
    first = kv.apply(req(put("x", "a"), seq=1))
    again = kv.apply(req(put("x", "a"), seq=1))
    assert first == again == {"version": 1}
    assert kv.execute(get("x")) == {"value": "a", "version": 1}


def test_retry_returns_cached_result_even_if_state_moved_on():
    kv = KVStateMachine()
    assert kv.apply(req(get("x"), client="c", seq=1)) == {"value": None, "version": 0}
    kv.apply(req(put("x", 9), client="other", seq=1))
    assert kv.apply(req(get("x"), client="c", seq=1)) == {"value": None, "version": 0}


def test_retry_with_different_op_is_refused_as_request_id_reused():
    """Honest idempotency: the id names another write, so its result is not this one's."""
    kv = KVStateMachine()
    kv.apply(req(put("x", "a"), seq=3))
    before = kv.snapshot()
    assert kv.apply(req(delete("x"), seq=3)) is REUSED
    assert kv.apply(req(put("other", "a"), seq=3)) is REUSED
    assert kv.apply(req(put("x", "b"), seq=3)) is REUSED
    assert REUSED == {"error": "request-id-reused"} and refusal(REUSED) == "request-id-reused"
    assert kv.get("x") == "a" and kv.get("other") is None
    assert kv.snapshot() == before
    assert kv.apply(req(put("x", "a"), seq=3)) == {"version": 1}  # the same command: cached


def test_older_seq_is_stale_and_changes_nothing():
    kv = KVStateMachine()
    kv.apply(req(put("x", "a"), seq=1))
    kv.apply(req(put("x", "b"), seq=2))
    before = kv.snapshot()
    assert kv.apply(req(put("x", "old"), seq=1)) == STALE
    assert STALE == {"error": "stale-session"}
    assert kv.apply(req(delete("x"), seq=0)) == STALE
    assert kv.snapshot() == before
    assert kv.execute(get("x")) == {"value": "b", "version": 2}
    # the session still caches seq 2
    assert kv.apply(req(put("x", "b"), seq=2)) == {"version": 2}


def test_sessions_are_per_client():
    kv = KVStateMachine()
    assert kv.apply(req(put("x", 1), client="a", seq=5)) == {"version": 1}
    assert kv.apply(req(put("x", 2), client="b", seq=1)) == {"version": 2}
    assert kv.apply(req(put("x", 3), client="a", seq=6)) == {"version": 3}
    assert kv.apply(req(put("x", 2), client="b", seq=1)) == {"version": 2}  # b's retry: cached
    assert kv.get("x") == 3


def test_seq_gaps_are_allowed():
    kv = KVStateMachine()
    kv.apply(req(put("x", 1), seq=1))
    assert kv.apply(req(put("x", 2), seq=10)) == {"version": 2}
    assert kv.apply(req(put("x", 3), seq=5)) == STALE
    assert kv.get("x") == 2


# -- snapshots -----------------------------------------------------------------------------


def populated() -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(req(put("b", (1, "two")), client="c1", seq=1))
    kv.apply(req(put("a", {"n": 1}), client="c1", seq=2))
    kv.apply(req(put("a", b"bytes"), client="c2", seq=1))
    kv.apply(req(delete("zz"), client="c3", seq=4))
    return kv


def test_snapshot_shape():
    assert populated().snapshot() == {
        # in the store's order, shard by shard (statemachines/store.py: "a" is in shard
        # 67, "b" in 249), each shard in insertion order; not sorted
        "flat": ("a", b"bytes", 2, "b", (1, "two"), 1),
        "session_format": 2,
        # in order of last activity: (client, seq, result, digest, last active)
        "sessions": (
            *("c1", 2, {"version": 1}, command_digest(put("a", {"n": 1})), 0),
            *("c2", 1, {"version": 2}, command_digest(put("a", b"bytes")), 0),
            *("c3", 4, {"deleted": False}, command_digest(delete("zz")), 0),
        ),
        "session_clock": (0, None, 0, 0, 0, 0),
        "forgotten": (),
    }


@pytest.mark.parametrize("through_codec", [False, True], ids=["direct", "codec"])
def test_snapshot_restore_round_trip(through_codec):
    src = populated()
    snap = src.snapshot()
    if through_codec:
        snap = decode(encode(snap))
    dst = KVStateMachine()
    dst.apply(req(put("junk", 1), client="c9", seq=1))
    dst.restore(snap)
    assert dst.digest() == src.digest()
    assert dst.snapshot() == src.snapshot()
    assert dst.items() == {"a": b"bytes", "b": (1, "two")}
    # sessions came along: a retry is answered from the cache, an old seq is stale
    assert dst.apply(req(put("a", b"bytes"), client="c2", seq=1)) == {"version": 2}
    assert dst.apply(req(put("a", "x"), client="c2", seq=1)) is REUSED  # digests came along
    assert dst.apply(req(put("a", "x"), client="c1", seq=1)) == STALE
    # the junk session is gone
    assert dst.apply(req(put("junk", 2), client="c9", seq=1)) == {"version": 1}
    # versions continue
    assert dst.apply(req(put("a", "y"), client="c2", seq=2)) == {"version": 3}


def test_snapshot_is_isolated_from_later_writes():
    kv = populated()
    snap = kv.snapshot()
    kv.apply(req(put("a", "later"), client="c1", seq=3))
    other = KVStateMachine()
    other.restore(snap)
    assert other.get("a") == b"bytes"


def test_a_store_of_str_and_bytes_and_its_snapshot_copies_are_never_tracked_by_the_collector():
    # Overwrites, cas and deletes included: a (value, version) tuple per overwritten key
    # made the store tracked, and each full collection walked every key and value
    # (statemachines/kv_entry.py); two tuples per snapshot were walked by the next one.
    kv = KVStateMachine()
    for seq in range(1, 200):
        key = f"k{seq % 37}"
        value = "".join(["v", str(seq)])  # built at run time, as a decoded value is
        kv.apply(req(put(key, value if seq % 2 else value.encode()), client="w", seq=seq))
    kv.apply(req(cas("k1", "x", expected_version=6), client="w", seq=200))
    kv.apply(req(delete("k2"), client="w", seq=201))
    assert kv.get("k1") == "x" and kv.get("k2") is None
    shards = kv._data._shards
    assert not any(gc.is_tracked(shard) for shard in shards)
    kv.snapshot()  # frozen: the next writes copy the shards they reach
    kv.apply(req(put("k1", "after"), client="w", seq=202))
    assert kv._data._shards is shards and not any(gc.is_tracked(shard) for shard in shards)
    # Nor is it when a value is one the collector tracks (a list from a command): its
    # Versioned hides it, which is safe because a command's value holds no cycle.
    kv.apply(req(put("k3", ["a", "list"]), client="w", seq=203))
    assert not any(gc.is_tracked(shard) for shard in shards) and kv.get("k3") == ["a", "list"]


def test_a_snapshot_reads_the_same_from_readers_in_any_order_and_after_later_writes():
    kv = KVStateMachine()
    for seq in range(1, 2001):
        kv.apply(req(put(f"k{seq % 700}", f"v{seq}"), client="w", seq=seq))
    store_then = tuple(x for key, entry in kv._data.items() for x in (key, entry.value, entry.version))
    snap = kv.snapshot()
    whole = tuple(snap["flat"])  # one reader, in order
    assert len(whole) == 3 * 700 and whole == store_then
    for seq in range(2001, 2101):  # the store moves on; the snapshot does not
        kv.apply(req(put(f"k{seq % 900}", "later"), client="w", seq=seq))
    flat = snap["flat"]
    a, b = flat.chunks(64), flat.chunks(50)  # two readers interleaved (disk and a peer)
    got_a, got_b = [], []
    for _ in range(20):
        got_a.extend(next(a, ()))
        got_b.extend(next(b, ()))
    got_a.extend(x for chunk in a for x in chunk)
    got_b.extend(x for chunk in b for x in chunk)
    assert tuple(got_a) == tuple(got_b) == whole
    assert flat[3 * 699] == whole[3 * 699] and flat[4] == whole[4]  # out of order
    assert decode(encode(snap))["flat"] == whole
    other = KVStateMachine()
    other.restore(snap)
    assert other.get("k1") == "v1401" and len(other) == 700


@pytest.mark.parametrize(
    "garbage",
    [None, 5, "snapshot", (), {"data": ()}, {"sessions": ()}, {"data": ((1, 2),), "sessions": ()}],
    ids=["none", "int", "str", "tuple", "no-sessions", "no-data", "short-row"],
)
def test_restore_garbage_raises_value_error(garbage):
    kv = KVStateMachine()
    with pytest.raises(ValueError):
        kv.restore(garbage)


@pytest.mark.parametrize(
    "garbage",
    [{"data": 5, "sessions": ()}, {"data": (), "sessions": None}],
    ids=["data-int", "sessions-none"],
)
def test_restore_non_iterable_parts_raises_value_error(garbage):
    kv = KVStateMachine()
    with pytest.raises(ValueError):
        kv.restore(garbage)


def test_failed_restore_leaves_state_unchanged():
    kv = populated()
    before = kv.snapshot()
    with pytest.raises(ValueError):
        kv.restore({"data": (("new", 1, 1),), "sessions": (("c",),)})
    assert kv.snapshot() == before


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=3),
            st.one_of(st.text(max_size=2), st.binary(max_size=2), st.integers(0, 3), st.none()),
            st.sampled_from([1, 2, True]),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_restore_builds_the_store_a_snapshot_of_triples_describes(triples, bare_only):
    """Fast path (every value bare at version 1) or not, the dict is the one the triples
    describe: a value at version 1 kept bare when a str or bytes, else Versioned."""
    if bare_only:
        triples = [(k, v if type(v) in (str, bytes) else "s", 1) for k, v, _ in triples]
    flat = tuple(item for triple in triples for item in triple)
    kv = KVStateMachine()
    kv.restore({**KVStateMachine().snapshot(), "flat": flat})
    expected = {k: v if ver == 1 and type(v) in (str, bytes) else Versioned(v, ver) for k, v, ver in triples}
    stored = dict(kv._data.items())
    assert stored == expected
    assert [type(stored[k]) for k in expected] == [type(entry) for entry in expected.values()]


# -- property tests ------------------------------------------------------------------------

keys = st.sampled_from(["x", "y", "z"])
values = st.none() | st.integers(min_value=0, max_value=3)
op_strategy = st.one_of(
    st.builds(get, keys),
    st.builds(put, keys, values),
    st.builds(delete, keys),
    st.builds(cas, keys, values, expected=values),
    st.builds(cas, keys, values, expected_version=st.integers(min_value=0, max_value=3)),
)
requests = st.builds(
    ClientRequest,
    client_id=st.sampled_from(["a", "b"]),
    seq=st.integers(min_value=0, max_value=6),
    op=op_strategy,
)


class NaiveKV:
    """Each key keeps the list of values written since it was (re)created."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {}
        self.last: dict[str, tuple[int, Op, object]] = {}

    def apply(self, r: ClientRequest):
        if r.client_id in self.last:
            seq, op, result = self.last[r.client_id]
            if r.seq == seq:
                return result if op == r.op else {"error": "request-id-reused"}
            if r.seq < seq:
                return {"error": "stale-session"}
        result = self.execute(r.op)
        self.last[r.client_id] = (r.seq, r.op, result)
        return result

    def execute(self, op: Op):
        writes = self.history.get(op.key, [])
        version = len(writes)
        value = writes[-1] if writes else None
        if op.kind == "get":
            return {"value": value, "version": version}
        if op.kind == "put":
            self.history[op.key] = [*writes, op.value]
            return {"version": version + 1}
        if op.kind == "delete":
            self.history.pop(op.key, None)
            return {"deleted": version > 0}
        ok = version == op.expected_version if op.expected_version is not None else value == op.expected
        if not ok:
            return {"swapped": False, "value": value, "version": version}
        self.history[op.key] = [*writes, op.value]
        return {"swapped": True, "version": version + 1}

    def digest(self):
        return tuple((k, w[-1], len(w)) for k, w in sorted(self.history.items()))


@FAST
@given(st.lists(requests, max_size=40))
def test_matches_naive_model(commands):
    kv, model = KVStateMachine(), NaiveKV()
    for c in commands:
        assert kv.apply(c) == model.apply(c), c
        assert kv.digest() == model.digest()
    assert kv.items() == {k: w[-1] for k, w in sorted(model.history.items())}


@FAST
@given(st.lists(requests, max_size=40), st.data())
def test_determinism_and_snapshot_catch_up(commands, data):
    a, b = KVStateMachine(), KVStateMachine()
    cut = data.draw(st.integers(min_value=0, max_value=len(commands)))
    ra = [a.apply(c) for c in commands]
    rb = [b.apply(c) for c in commands[:cut]]
    # a third replica catches up from b's snapshot (through the codec) and continues
    c = KVStateMachine()
    c.restore(decode(encode(b.snapshot())))
    rest_b = [b.apply(x) for x in commands[cut:]]
    rest_c = [c.apply(x) for x in commands[cut:]]
    assert ra == rb + rest_b
    assert rest_c == rest_b
    assert a.digest() == b.digest() == c.digest()
    assert a.snapshot() == b.snapshot() == c.snapshot()


@FAST
@given(st.lists(requests, max_size=30))
def test_applying_a_command_twice_is_idempotent(commands):
    once, twice = KVStateMachine(), KVStateMachine()
    for c in commands:
        r1 = once.apply(c)
        r2 = twice.apply(c)
        assert twice.apply(c) == r2 == r1
    assert once.snapshot() == twice.snapshot()


def test_the_older_snapshot_form_with_triples_still_restores():
    src = populated()
    flat = src.snapshot()["flat"]
    old_form = {"data": tuple(zip(flat[::3], flat[1::3], flat[2::3], strict=True)), "sessions": ()}
    kv = KVStateMachine()
    kv.restore(old_form)
    assert kv.digest() == src.digest()
    with pytest.raises(ValueError, match="triples"):
        kv.restore({"flat": ("a", "b"), "sessions": ()})
    assert kv.digest() == src.digest()  # a bad snapshot changes nothing


@pytest.mark.parametrize("value", ["text", b"raw", (1, 2), ("v", 1), 7, None])
def test_version_one_values_stored_bare_or_not_read_back_the_same(value):
    """A version-1 str/bytes is stored without a tuple; every other value keeps one:
    either way reads, cas, list, snapshots and later versions see the same thing."""
    kv = KVStateMachine()
    assert kv.execute(Op(kind="put", key="k", value=value)) == {"version": 1}
    assert kv.execute(Op(kind="get", key="k")) == {"value": value, "version": 1}
    assert kv.execute(Op(kind="cas", key="k", expected_version=1, value=value)) == {
        "swapped": True,
        "version": 2,
    }
    assert kv.execute(Op(kind="get", key="k")) == {"value": value, "version": 2}
    assert kv.execute(Op(kind="list", key="")) == {"items": (("k", value, 2),), "truncated": False}
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy.digest() == kv.digest() == (("k", value, 2),) and copy.get("k") == value
