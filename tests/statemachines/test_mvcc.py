"""statemachines/mvcc.py: etcd's MVCC rules, and a property test against a naive twin
that keeps a full copy of the store at every revision."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.core.messages import LazyArray, decode, encode
from consensuskit.services.etcd import make_op
from consensuskit.statemachines import mvcc
from consensuskit.statemachines.mvcc import (
    CREATE,
    EQUAL,
    GREATER,
    MOD,
    SHORT_HISTORY,
    VALUE,
    VERSION,
    MVCCStateMachine,
    MVCCStore,
    prefix_end,
)


def run(store: MVCCStore, kind: str, **body: Any) -> Any:
    return store.execute(make_op(kind, "", body))


def test_revision_starts_at_one_and_grows_by_one_per_write_transaction() -> None:
    s = MVCCStore()
    assert run(s, "range", key=b"a")["revision"] == 1
    assert run(s, "put", key=b"a", value=b"1")["revision"] == 2
    assert run(s, "put", key=b"a", value=b"2")["revision"] == 3
    # a delete that deletes nothing and a txn that writes nothing keep the revision
    assert run(s, "delete_range", key=b"zz")["deleted"] == 0
    assert s.revision == 3
    r = run(s, "txn", compare=[], success=[{"range": {"key": b"a"}}])
    assert r["succeeded"] and s.revision == 3
    # one txn with two puts: one revision, both keys carry it
    run(s, "txn", success=[{"put": {"key": b"b", "value": b"x"}}, {"put": {"key": b"c", "value": b"y"}}])
    assert s.revision == 4
    kvs = run(s, "range", key=b"b", range_end=b"d")["kvs"]
    assert [kv[2] for kv in kvs] == [4, 4]


def test_create_mod_version_and_a_new_generation_after_delete() -> None:
    s = MVCCStore()
    run(s, "put", key=b"k", value=b"1")  # rev 2
    run(s, "put", key=b"k", value=b"2")  # rev 3
    (kv,) = run(s, "range", key=b"k")["kvs"]
    assert kv == (b"k", 2, 3, 2, b"2", 0)
    run(s, "delete_range", key=b"k")  # rev 4
    run(s, "put", key=b"k", value=b"3")  # rev 5
    (kv,) = run(s, "range", key=b"k")["kvs"]
    assert kv == (b"k", 5, 5, 1, b"3", 0)


def test_reads_at_a_past_revision_and_compaction() -> None:
    s = MVCCStore()
    for i in range(5):
        run(s, "put", key=b"k", value=str(i).encode())  # revs 2..6
    assert run(s, "range", key=b"k", revision=3)["kvs"][0][4] == b"1"
    assert run(s, "range", key=b"k", revision=99)["error"] == "future-revision"
    assert run(s, "compact", revision=0) == {"revision": 6, "compact_revision": 0}  # as etcd: a no-op
    assert run(s, "compact", revision=4)["compact_revision"] == 4
    assert run(s, "compact", revision=0)["error"] == "compacted"
    assert run(s, "range", key=b"k", revision=3)["error"] == "compacted"
    assert run(s, "range", key=b"k", revision=4)["kvs"][0][4] == b"2"  # still readable at the compaction
    assert run(s, "compact", revision=4)["error"] == "compacted"
    assert run(s, "watch", key=b"k", start_revision=2)["error"] == "compacted"
    events = run(s, "watch", key=b"k", start_revision=5)["events"]
    assert [e[1][4] for e in events] == [b"3", b"4"]


def test_hash_kv_agrees_between_replicas_up_to_a_revision() -> None:
    """etcd's HashKV: two stores that applied the same writes give the same hash; one
    that went further gives it too when asked at the other's revision (its later keys
    are left out), and a restored snapshot gives it as well."""
    a, b = MVCCStore(), MVCCStore()
    for store in (a, b):
        run(store, "put", key=b"k", value=b"1")
        run(store, "put", key=b"j", value=b"2")
        run(store, "delete_range", key=b"k")
    first = run(a, "hash_kv")
    assert first == run(b, "hash_kv") and first["hash_revision"] == first["revision"] == 4
    run(a, "put", key=b"j", value=b"3")  # a changed key
    run(a, "put", key=b"a", value=b"4")  # a key first written after revision 4
    assert run(a, "hash_kv")["hash"] != first["hash"]
    assert run(a, "hash_kv", revision=4)["hash"] == first["hash"]
    restored = MVCCStore()
    restored.restore(decode(encode(a.snapshot())))
    assert run(restored, "hash_kv") == run(a, "hash_kv")
    assert run(a, "hash_kv", revision=99)["error"] == "future-revision"
    run(a, "compact", revision=5)
    assert run(a, "hash_kv", revision=4)["error"] == "compacted"
    assert run(a, "hash_kv", revision=5)["compact_revision"] == 5


def test_hash_kv_over_many_chunks_cuts_every_chunk_at_the_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mvcc, "HASH_CHUNK", 7)
    ahead, behind = MVCCStore(), MVCCStore()
    for i in range(25):
        for store in (ahead, behind):
            run(store, "put", key=b"k%02d" % i, value=b"v")
    for i in range(0, 25, 3):  # later changes in most chunks, and a new key at the end
        run(ahead, "put", key=b"k%02d" % i, value=b"w")
    run(ahead, "put", key=b"z", value=b"new")
    assert run(ahead, "hash_kv", revision=behind.revision)["hash"] == run(behind, "hash_kv")["hash"]
    assert run(ahead, "hash_kv")["hash"] != run(behind, "hash_kv")["hash"]


def test_range_end_prefix_limit_sort_and_counts() -> None:
    s = MVCCStore()
    for key in (b"a", b"ab", b"abc", b"b", b"c"):
        run(s, "put", key=key, value=key * 2)
    keys = lambda r: [kv[0] for kv in r["kvs"]]  # noqa: E731
    assert keys(run(s, "range", key=b"ab", range_end=prefix_end(b"ab"))) == [b"ab", b"abc"]
    assert keys(run(s, "range", key=b"b", range_end=b"\0")) == [b"b", b"c"]
    assert keys(run(s, "range", key=b"\0", range_end=b"\0")) == [b"a", b"ab", b"abc", b"b", b"c"]
    r = run(s, "range", key=b"a", range_end=b"\0", limit=2, sort_order=2)
    assert keys(r) == [b"c", b"b"] and r["count"] == 5 and r["more"]
    r = run(s, "range", key=b"a", range_end=b"\0", count_only=True)
    assert r["count"] == 5 and r["kvs"] == ()
    assert run(s, "range", key=b"a", keys_only=True)["kvs"][0][4] == b""
    assert prefix_end(b"a\xff") == b"b" and prefix_end(b"\xff") == b"\0"


def test_txn_compares_and_nested_requests() -> None:
    s = MVCCStore()
    run(s, "put", key=b"k", value=b"v")  # rev 2
    cmp = lambda target, result, **f: {"key": b"k", "target": target, "result": result, **f}  # noqa: E731
    ok = lambda *c: run(s, "txn", compare=list(c))["succeeded"]  # noqa: E731
    assert ok(cmp(VALUE, EQUAL, value=b"v"), cmp(VERSION, EQUAL, version=1))
    assert ok(cmp(CREATE, EQUAL, create_revision=2), cmp(MOD, GREATER, mod_revision=1))
    assert not ok(cmp(VERSION, GREATER, version=1))
    # absent key: a value compare fails, the others compare with 0
    assert not ok({"key": b"none", "target": VALUE, "result": EQUAL, "value": b""})
    assert ok({"key": b"none", "target": VERSION, "result": EQUAL, "version": 0})
    nested = {
        "compare": [cmp(VERSION, EQUAL, version=99)],
        "success": [],
        "failure": [
            {"txn": {"compare": [], "success": [{"put": {"key": b"n", "value": b"1"}}], "failure": []}},
            {"range": {"key": b"n"}},
        ],
    }
    r = run(s, "txn", **nested)
    assert not r["succeeded"]
    inner = r["responses"][0]["txn"]
    assert inner["succeeded"] and r["responses"][1]["range"]["kvs"][0][4] == b"1"  # sees its own write


def test_a_read_or_delete_in_a_txn_says_the_txns_revision_once_it_wrote() -> None:
    """etcd's write txn: a range or delete before the txn's first change says the store's
    revision, one after it the txn's own (a range sees the put before it)."""
    s = MVCCStore()
    run(s, "put", key=b"k", value=b"v")  # rev 2
    ops = [
        {"range": {"key": b"k"}},
        {"delete_range": {"key": b"none"}},
        {"put": {"key": b"k", "value": b"w"}},
        {"range": {"key": b"k"}},
        {"delete_range": {"key": b"none"}},
    ]
    r = run(s, "txn", success=ops)
    assert [next(iter(op.values()))["revision"] for op in r["responses"]] == [2, 2, 3, 3, 3]
    assert r["revision"] == 3 and r["responses"][3]["range"]["kvs"][0][4] == b"w"
    r = run(s, "txn", success=[{"range": {"key": b"k"}}, {"delete_range": {"key": b"none"}}])
    assert [next(iter(op.values()))["revision"] for op in r["responses"]] == [3, 3] and r["revision"] == 3


def test_a_failing_request_undoes_the_whole_txn() -> None:
    s = MVCCStore()
    run(s, "put", key=b"a", value=b"1")
    before = s.digest()
    r = run(
        s,
        "txn",
        success=[
            {"put": {"key": b"a", "value": b"2"}},
            {"delete_range": {"key": b"b"}},
            {"put": {"key": b"c", "value": b"3", "lease": 77}},
        ],
    )
    assert r["error"] == "lease-not-found"
    assert s.digest() == before and run(s, "range", key=b"c")["kvs"] == ()
    assert len(s) == 1  # the undone change is not counted (len() is a running count)
    assert run(s, "txn", success=[{"put": {"key": b"x"}}, {"put": {"key": b"x"}}])["error"] == "duplicate-key"


def test_put_flags() -> None:
    s = MVCCStore()
    assert run(s, "put", key=b"", value=b"x")["error"] == "empty-key"
    assert run(s, "put", key=b"k", ignore_value=True)["error"] == "key-not-found"
    lease = run(s, "lease_grant", ttl=10)["id"]
    run(s, "put", key=b"k", value=b"v", lease=lease)
    run(s, "put", key=b"k", ignore_value=True, ignore_lease=True)
    (kv,) = run(s, "range", key=b"k")["kvs"]
    assert kv[4] == b"v" and kv[5] == lease and kv[3] == 2
    assert run(s, "put", key=b"k", value=b"x", ignore_value=True)["error"] == "value-provided"


def test_a_plain_put_looks_its_lease_up_before_its_key() -> None:
    """etcd's applier (apply.go Put) looks a plain put's lease up first; in a txn,
    checkRequestPut looks at the key first.  Checked against etcd 3.4."""
    s = MVCCStore()
    assert run(s, "put", key=b"k", ignore_value=True, lease=77)["error"] == "lease-not-found"
    bad = {"put": {"key": b"k", "ignore_value": True, "lease": 77}}
    assert run(s, "txn", success=[bad])["error"] == "key-not-found"


def test_a_range_takes_a_negative_limit_as_none_and_a_negative_revision_as_now() -> None:
    """etcd: a limit is applied only when positive; a revision <= 0 reads the current
    one (mvcc rangeKeys).  Both were refused as malformed."""
    s = MVCCStore()
    for key in (b"a", b"b", b"c"):
        run(s, "put", key=key, value=b"v")
    r = run(s, "range", key=b"a", range_end=b"\0", limit=-1, revision=-5)
    assert [kv[0] for kv in r["kvs"]] == [b"a", b"b", b"c"] and not r["more"] and r["revision"] == 4
    in_txn = run(s, "txn", success=[{"range": {"key": b"a", "range_end": b"\0", "limit": -2}}])
    assert len(in_txn["responses"][0]["range"]["kvs"]) == 3


def test_a_ranges_count_is_before_its_revision_bounds_filter_it() -> None:
    """etcd counts the keys in the range, then filters by min/max mod and create
    revision (apply.go Range); "more" says whether the limit cut the filtered ones.
    Ours counted after filtering.  Checked against etcd 3.4."""
    s = MVCCStore()
    for key in (b"a", b"b", b"c"):
        run(s, "put", key=key, value=b"v")  # revs 2, 3, 4
    r = run(s, "range", key=b"a", range_end=b"\0", max_create_revision=1)
    assert r["kvs"] == () and r["count"] == 3 and not r["more"]
    r = run(s, "range", key=b"a", range_end=b"\0", min_mod_revision=3, limit=1)
    assert [kv[0] for kv in r["kvs"]] == [b"b"] and r["count"] == 3 and r["more"]
    r = run(s, "range", key=b"a", range_end=b"\0", min_mod_revision=4, limit=1)
    assert [kv[0] for kv in r["kvs"]] == [b"c"] and r["count"] == 3 and not r["more"]
    assert run(s, "range", key=b"a", range_end=b"\0", min_mod_revision=4, count_only=True)["count"] == 3


def test_compacting_at_a_negative_revision_is_compacted() -> None:
    """etcd's store starts compacted at -1: a negative revision is at or below it."""
    s = MVCCStore()
    assert run(s, "compact", revision=-1)["error"] == "compacted"
    assert run(s, "compact", revision=-7)["error"] == "compacted"


def test_a_nested_txn_compares_on_the_state_before_the_txn() -> None:
    """etcd's compareToPath judges every compare, nested ones included, before any op
    runs: a nested compare does not see the put ahead of it.  Checked against etcd 3.4."""
    s = MVCCStore()
    nested = {
        "compare": [{"key": b"n", "target": VALUE, "result": EQUAL, "value": b"1"}],
        "success": [{"range": {"key": b"n"}}],
        "failure": [{"delete_range": {"key": b"zz"}}],
    }
    r = run(s, "txn", success=[{"put": {"key": b"n", "value": b"1"}}, {"txn": nested}])
    inner = r["responses"][1]["txn"]
    assert r["succeeded"] and not inner["succeeded"] and "delete_range" in inner["responses"][0]


def test_a_txn_checks_every_put_then_every_range_before_it_runs() -> None:
    """etcd's applier checks the puts a txn will run (the key for ignore_value or
    ignore_lease, then the lease), nested ones in place, then every range's revision,
    and only then runs it: the first error is the first put's, whatever comes before."""
    s = MVCCStore()
    run(s, "put", key=b"a", value=b"1")  # rev 2
    future = {"range": {"key": b"a", "revision": 99}}
    unknown_lease = {"put": {"key": b"b", "lease": 77}}
    assert run(s, "txn", success=[future, unknown_lease])["error"] == "lease-not-found"
    absent = {"put": {"key": b"zz", "ignore_value": True}}
    nested = {"txn": {"success": [absent]}}
    assert run(s, "txn", success=[unknown_lease, nested])["error"] == "lease-not-found"
    assert run(s, "txn", success=[nested, unknown_lease])["error"] == "key-not-found"
    assert run(s, "txn", success=[future])["error"] == "future-revision"
    # Below etcd's first revision (-1 before any compaction, then the compact revision)
    # a txn's range is compacted, where a plain range reads the current revision.
    at = lambda rev: [{"range": {"key": b"a", "revision": rev}}]  # noqa: E731
    assert "error" not in run(s, "txn", success=at(-1))
    assert run(s, "txn", success=at(-2))["error"] == "compacted"
    run(s, "compact", revision=2)
    assert run(s, "txn", success=at(-1))["error"] == "compacted"
    assert run(s, "range", key=b"a", revision=-1)["revision"] == 2
    assert s.revision == 2


def test_a_txn_an_earlier_release_logged_runs_as_it_did() -> None:
    """A txn without ``precheck`` (what the log of an earlier release holds) keeps its
    old meaning on replay: nested compares after the ops ahead of them, a negative
    limit malformed."""
    s = MVCCStore()
    nested = {
        "compare": [{"key": b"n", "target": VALUE, "result": EQUAL, "value": b"1"}],
        "success": [{"range": {"key": b"n"}}],
        "failure": [],
    }
    old = {"success": [{"put": {"key": b"n", "value": b"1"}}, {"txn": nested}]}
    r = s.execute(ServiceOp(kind="txn", value=old))
    assert r["responses"][1]["txn"]["succeeded"]
    negative = {"success": [{"range": {"key": b"n", "limit": -1}}]}
    assert s.execute(ServiceOp(kind="txn", value=negative))["error"] == "bad-request"
    assert make_op("txn", "", old).value["precheck"] is True


def test_a_delete_to_the_end_conflicts_with_no_put_in_a_txn() -> None:
    """etcd's checkIntervals reads a delete to "\\0" as the interval [key, "\\0"),
    which holds no key: a put beside it is no duplicate.  Checked against etcd 3.4."""
    s = MVCCStore()
    run(s, "put", key=b"a", value=b"1")
    r = run(s, "txn", success=[{"delete_range": {"key": b"a", "range_end": b"\0"}}, {"put": {"key": b"b"}}])
    assert r["responses"][0]["delete_range"]["deleted"] == 1
    assert [kv[0] for kv in run(s, "range", key=b"a", range_end=b"\0")["kvs"]] == [b"b"]


def test_leases_keys_keepalive_and_expiry_by_stamp() -> None:
    s = MVCCStore()
    g = run(s, "lease_grant", ttl=5)
    lease = g["id"]
    assert run(s, "lease_grant", id=lease, ttl=5)["error"] == "lease-exists"
    run(s, "put", key=b"a", value=b"1", lease=lease)
    run(s, "put", key=b"b", value=b"2", lease=lease)
    ttl = run(s, "lease_ttl", id=lease, keys=True)
    assert ttl["granted_ttl"] == 5 and ttl["keys"] == (b"a", b"b")
    stamp = ttl["stamp"]
    assert run(s, "lease_keepalive", id=lease)["ttl"] == 5
    # an expiry naming the stamp before the keep-alive is a no-op: the lease was refreshed
    assert run(s, "lease_expire", id=lease, stamp=stamp)["expired"] is False
    assert lease in s.leases
    rev = s.revision
    r = run(s, "lease_expire", id=lease, stamp=stamp + 1)
    assert r["expired"] and r["deleted"] == 2 and s.revision == rev + 1
    assert run(s, "range", key=b"a", range_end=b"c")["kvs"] == ()
    assert run(s, "lease_ttl", id=lease)["ttl"] == -1
    assert run(s, "lease_revoke", id=lease)["error"] == "lease-not-found"
    assert run(s, "lease_keepalive", id=lease)["ttl"] == 0


def test_the_lease_bug_knobs_break_what_they_name() -> None:
    """The simulator's lease checks (check/etcd_leases.py) must see these: a stale expiry
    honoured, and an expiry that leaves its keys."""
    s = MVCCStore(frozenset({"expire-ignores-keepalive"}))
    lease = run(s, "lease_grant", ttl=5)["id"]
    run(s, "lease_keepalive", id=lease)
    assert run(s, "lease_expire", id=lease, stamp=0)["expired"] is True
    s = MVCCStore(frozenset({"lease-keys-survive"}))
    lease = run(s, "lease_grant", ttl=5)["id"]
    run(s, "put", key=b"a", value=b"1", lease=lease)
    assert run(s, "lease_expire", id=lease, stamp=0)["deleted"] == 0
    assert lease not in s.leases and s.live()[b"a"][5] == lease
    copy = MVCCStore()  # a snapshot of that state still restores (the key, attached to nothing)
    copy.restore(s.snapshot())
    assert copy.digest() == s.digest()


def test_moving_a_key_to_another_lease_detaches_it() -> None:
    s = MVCCStore()
    one, two = run(s, "lease_grant", ttl=5)["id"], run(s, "lease_grant", ttl=5)["id"]
    run(s, "put", key=b"k", value=b"v", lease=one)
    run(s, "put", key=b"k", value=b"v", lease=two)
    assert run(s, "lease_revoke", id=one)["deleted"] == 0
    assert run(s, "range", key=b"k")["count"] == 1
    assert run(s, "lease_revoke", id=two)["deleted"] == 1


def test_watch_events_in_revision_order_with_prev_kv() -> None:
    s = MVCCStore()
    run(s, "put", key=b"b", value=b"1")  # 2
    run(s, "put", key=b"a", value=b"1")  # 3
    run(s, "put", key=b"b", value=b"2")  # 4
    run(s, "delete_range", key=b"a")  # 5
    r = run(s, "watch", key=b"a", range_end=b"c", start_revision=2, prev_kv=True)
    got = [(e[0], e[1][0], e[1][2]) for e in r["events"]]
    assert got == [(0, b"b", 2), (0, b"a", 3), (0, b"b", 4), (1, b"a", 5)]
    assert r["events"][2][2][4] == b"1" and r["next"] == 6
    assert run(s, "watch", key=b"a", range_end=b"c", start_revision=6)["events"] == ()


def test_malformed_ops_are_refused_without_raising() -> None:
    s = MVCCStore()
    before = s.digest()
    for body in ({"key": 5}, {"key": b"k", "lease": "x"}, {"compare": "no"}):
        for kind in ("put", "range", "txn", "delete_range"):
            assert isinstance(run(s, kind, **body), dict)
    assert run(s, "put", key=5)["error"] == "bad-request"
    assert s.execute(make_op("txn", "", {"success": [{"put": {}, "range": {}}]}))["error"] == "bad-request"
    assert s.digest() == before


def test_sessions_apply_a_retry_once_and_snapshots_round_trip() -> None:
    sm = MVCCStateMachine()
    request = ClientRequest(client_id="c", seq=1, op=make_op("put", "k", {"value": b"v"}))
    assert sm.apply(request) == sm.apply(request)
    assert sm.store.revision == 2
    copy = MVCCStateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest() and copy.apply(request)["revision"] == 2


def test_a_short_history_is_a_tuple_the_collector_does_not_track() -> None:
    """A million one-change keys kept as lists made every full collection walk a million
    lists (pauses near a second on the event loop); a short history is a tuple."""
    s = MVCCStore()
    run(s, "put", key=b"a", value=b"1")
    for _ in range(3):  # the collector untracks nested tuples one level per collection
        gc.collect()
    assert type(s._hist[b"a"]) is tuple and not gc.is_tracked(s._hist[b"a"])
    for i in range(2, SHORT_HISTORY + 1):
        run(s, "put", key=b"a", value=b"%d" % i)
    assert type(s._hist[b"a"]) is tuple and len(s._hist[b"a"]) == SHORT_HISTORY
    at_eight = s.digest()
    # A change that would make it a list, undone: the tuple it was comes back.
    failing = [{"put": {"key": b"a", "value": b"x"}}, {"put": {"key": b"z", "lease": 9}}]
    failed = run(s, "txn", success=failing)
    assert failed["error"] == "lease-not-found"
    assert type(s._hist[b"a"]) is tuple and len(s._hist[b"a"]) == SHORT_HISTORY and s.digest() == at_eight
    run(s, "put", key=b"a", value=b"9")
    assert type(s._hist[b"a"]) is list and len(s._hist[b"a"]) == SHORT_HISTORY + 1
    before = s.digest()
    failed = run(s, "txn", success=failing)
    assert failed["error"] == "lease-not-found"
    assert len(s._hist[b"a"]) == SHORT_HISTORY + 1 and s.digest() == before  # popped in place
    assert [kv[4] for kv in (run(s, "range", key=b"a", revision=r)["kvs"][0] for r in range(2, 11))] == [
        b"%d" % i for i in range(1, 10)
    ]
    run(s, "compact", revision=s.revision)  # the last change is kept: a tuple again
    assert s._hist[b"a"] == ((s.revision, 0, s._live[b"a"]),) and type(s._hist[b"a"]) is tuple
    copy = MVCCStore()
    copy.restore(s.snapshot())
    assert copy.digest() == s.digest() and type(copy._hist[b"a"]) is tuple


def test_a_snapshot_is_a_value_whatever_happens_after_it() -> None:
    """The history is flattened when the snapshot is encoded (a LazyArray), maybe seconds
    later: what it holds must not see later puts, deletes, undone transactions or a
    compaction (which used to cut each key's list in place)."""
    s = MVCCStore()
    for key, value in ((b"a", b"1"), (b"a", b"2"), (b"b", b"1"), (b"c", b"1")):
        run(s, "put", key=key, value=value)
    snap, digest = s.snapshot(), s.digest()
    assert isinstance(snap["history"], LazyArray)
    blob = encode(snap)
    run(s, "compact", revision=s.revision)
    undone = run(
        s, "txn", success=[{"put": {"key": b"a", "value": b"9"}}, {"put": {"key": b"z", "lease": 5}}]
    )
    assert undone["error"] == "lease-not-found"
    run(s, "put", key=b"a", value=b"3")
    run(s, "delete_range", key=b"b")
    run(s, "put", key=b"d", value=b"1")
    assert encode(snap) == blob
    copy = MVCCStore()
    copy.restore(snap)
    assert copy.digest() == digest
    assert run(copy, "range", key=b"a", revision=2)["kvs"][0][4] == b"1"  # its history is whole


def _decoded_snapshot() -> tuple[MVCCStore, dict[str, Any]]:
    """A store with a lease, a long history, a deleted key; its snapshot as a peer or
    the disk hands it over (decoded: tuples)."""
    s = MVCCStore()
    lease = run(s, "lease_grant", ttl=10)["id"]
    run(s, "put", key=b"leased", value=b"v", lease=lease)
    for i in range(SHORT_HISTORY + 2):
        run(s, "put", key=b"long", value=b"%d" % i)
    run(s, "put", key=b"gone", value=b"x")
    run(s, "delete_range", key=b"gone")
    return s, decode(encode(s.snapshot()))


def test_a_decoded_snapshot_restores_the_same_store() -> None:
    s, snap = _decoded_snapshot()
    copy = MVCCStore()
    copy.restore(snap)
    assert copy.digest() == s.digest() and copy.live() == s.live() and len(copy) == len(s)
    assert list(copy._hist) == list(s._hist) and copy._keys == sorted(s._hist)  # its order kept
    assert type(copy._hist[b"long"]) is list and type(copy._hist[b"leased"]) is tuple
    attached = {i: lease.keys for i, lease in s.leases.items()}
    assert {i: lease.keys for i, lease in copy.leases.items()} == attached and attached
    assert run(copy, "range", key=b"gone", revision=s.revision - 1)["kvs"][0][4] == b"x"  # a tombstone kept
    run(copy, "put", key=b"long", value=b"new")  # a restored long history grows
    assert run(copy, "range", key=b"long")["kvs"][0][4] == b"new"


def _replace(snap: dict[str, Any], key: bytes, change: Callable[[Any], Any]) -> dict[str, Any]:
    """``snap`` with the (key, changes) entry of ``key`` replaced by ``change(entry)``."""
    history = tuple(change(pair) if pair[0] == key else pair for pair in snap["history"])
    return {**snap, "history": history}


@pytest.mark.parametrize(
    "change",
    [
        lambda snap: {**snap, "history": 5},
        lambda snap: _replace(snap, b"leased", lambda pair: (*pair, 1)),
        lambda snap: _replace(snap, b"leased", lambda pair: ("leased", pair[1])),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ())),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], [*pair[1]])),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ((1, 0),))),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], (("2", 0, None),))),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ((2, True, None),))),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ((2, 0, (b"k", 1)),))),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ((2, 0, (b"k", 1, 1, 1, "v", 0)),))),
        lambda snap: _replace(snap, b"leased", lambda pair: (pair[0], ((2, 0, (b"k", 1, 1, 1, b"", None)),))),
        lambda snap: _replace(snap, b"long", lambda pair: (pair[0], (*pair[1], (3, 0, "kv")))),
        lambda snap: {key: value for key, value in snap.items() if key != "leases"},
    ],
    ids=[
        "history-not-an-array", "entry-of-three", "key-a-str", "no-changes", "changes-a-list",
        "change-of-two", "revision-a-str", "sub-revision-a-bool", "key-value-of-two",
        "value-a-str", "lease-none", "last-of-a-long-history", "no-leases",
    ],
)  # fmt: skip
def test_a_malformed_snapshot_is_refused_and_changes_nothing(change: Callable[[Any], Any]) -> None:
    _, snap = _decoded_snapshot()
    target = MVCCStore()
    run(target, "put", key=b"mine", value=b"1")
    before = target.digest()
    with pytest.raises(ValueError, match="not an MVCC snapshot"):
        target.restore(change(snap))
    assert target.digest() == before and list(target._hist) == [b"mine"]


# ---------------------------------------------------------------------- the naive twin
class Twin:
    """A full copy of the store per revision: obviously right, hopelessly slow.  Leases
    are a set of ids; a key's lease is in its key-value; revoking one deletes every key
    whose current key-value names it."""

    def __init__(self) -> None:
        self.rev = 1
        self.states: dict[int, dict[bytes, tuple[Any, ...]]] = {1: {}}
        self.compacted = 0
        self.leases: set[int] = set()

    def put_leased(self, key: bytes, value: bytes, lease: int) -> bool:
        if lease and lease not in self.leases:
            return False
        state = dict(self.states[self.rev])
        old = state.get(key)
        rev = self.rev + 1
        state[key] = (key, old[1] if old else rev, rev, old[3] + 1 if old else 1, value, lease)
        self._commit(state)
        return True

    def revoke(self, lease: int) -> bool:
        if lease not in self.leases:
            return False
        self.leases.discard(lease)
        state = self.states[self.rev]
        gone = [k for k, kv in state.items() if kv[5] == lease]
        if gone:
            self._commit({k: v for k, v in state.items() if k not in gone})
        return True

    def _commit(self, state: dict[bytes, tuple[Any, ...]]) -> None:
        self.rev += 1
        self.states[self.rev] = state

    def put(self, key: bytes, value: bytes) -> None:
        state = dict(self.states[self.rev])
        old = state.get(key)
        rev = self.rev + 1
        state[key] = (key, old[1] if old else rev, rev, old[3] + 1 if old else 1, value, 0)
        self._commit(state)

    def delete(self, start: bytes, end: bytes) -> None:
        state = self.states[self.rev]
        gone = [k for k in state if _in(k, start, end)]
        if gone:
            self._commit({k: v for k, v in state.items() if k not in gone})

    def range(self, start: bytes, end: bytes, rev: int) -> Any:
        if rev > self.rev:
            return "future-revision"
        if rev and rev < self.compacted:
            return "compacted"
        state = self.states[rev or self.rev]
        return tuple(state[k] for k in sorted(state) if _in(k, start, end))

    def compact(self, rev: int) -> Any:
        if rev > self.rev:
            return "future-revision"
        if rev == 0 and self.compacted == 0:
            return None  # nothing compacted yet: nothing to do
        if rev <= self.compacted:
            return "compacted"
        self.compacted = rev
        return None


def _in(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    return key >= start and (end == b"\0" or key < end)


keys = st.sampled_from([b"a", b"b", b"ba", b"c"])
ends = st.sampled_from([b"", b"", b"b", b"c", b"\0"])
ops = st.one_of(
    st.tuples(st.just("put"), keys, st.binary(max_size=3)),
    st.tuples(st.just("delete"), keys, ends),
    st.tuples(st.just("range"), keys, ends, st.integers(0, 30)),
    st.tuples(st.just("compact"), st.integers(0, 30)),
    st.tuples(st.just("cas"), keys, st.integers(0, 3), st.binary(max_size=3)),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("grant"), st.integers(1, 3)),
    st.tuples(st.just("leased"), keys, st.binary(max_size=2), st.integers(0, 3)),
    st.tuples(st.just("revoke"), st.integers(1, 3)),
    st.tuples(st.just("watch"), keys, ends, st.integers(0, 30)),
    st.tuples(st.just("undone"), keys),
)


def check_watch_index(s: MVCCStore, key: bytes, end: bytes, start: int) -> None:
    """The recent changes name exactly the keys of the range changed at ``start`` or
    later, and a watch answers the same whether it looks there or at every key."""
    assert all(main >= s.compact_revision for main, _ in s._recent)  # compaction prunes them
    if end and start >= s._recent_from:
        named = {k for main, k in s._recent if main >= start and _in(k, key, end)}
        changed = {k for k, h in s._hist.items() if _in(k, key, end) and any(c[0] >= start for c in h)}
        assert named == changed
    body = {"key": key, "range_end": end, "start_revision": start, "prev_kv": True}
    indexed = run(s, "watch", **body)
    s._recent_from, kept = 2**62, s._recent_from  # every key looked at
    try:
        assert run(s, "watch", **body) == indexed
    finally:
        s._recent_from = kept


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=60))
# The recent changes: an undone txn's change leaves none; compaction prunes them.
@example([("put", b"a", b"1"), ("undone", b"b"), ("put", b"c", b"2"), ("watch", b"a", b"\0", 2)])
@example([("put", b"a", b"1"), ("put", b"a", b"2"), ("compact", 3), ("watch", b"a", b"c", 3)])
# A deletion at the compact revision leaves no recent change (the key's history is gone).
@example(
    [
        ("put", b"a", b"1"),
        ("put", b"b", b"1"),
        ("put", b"ba", b"1"),
        ("delete", b"a", b""),
        ("compact", 5),
        ("watch", b"a", b"\0", 5),
    ]
)
def test_the_store_agrees_with_its_naive_twin(program: list[tuple[Any, ...]]) -> None:
    s, twin = MVCCStore(), Twin()
    # (snapshot, its encoding and the digest when taken): still the same at the end.
    held: list[tuple[Any, bytes, Any]] = []
    for op in program:
        name = op[0]
        if name == "put":
            assert run(s, "put", key=op[1], value=op[2])["revision"] == twin.rev + 1
            twin.put(op[1], op[2])
        elif name == "delete":
            run(s, "delete_range", key=op[1], range_end=op[2])
            twin.delete(op[1], op[2])
        elif name == "range":
            r = run(s, "range", key=op[1], range_end=op[2], revision=op[3])
            want = twin.range(op[1], op[2], op[3])
            assert r.get("error", r.get("kvs")) == want
        elif name == "compact":
            r = run(s, "compact", revision=op[1])
            assert r.get("error") == twin.compact(op[1])
        elif name == "cas":  # txn: compare the version, put on success
            cur = twin.states[twin.rev].get(op[1])
            r = run(
                s,
                "txn",
                compare=[{"key": op[1], "target": VERSION, "result": EQUAL, "version": op[2]}],
                success=[{"put": {"key": op[1], "value": op[3]}}],
            )
            assert r["succeeded"] == ((cur[3] if cur else 0) == op[2])
            if r["succeeded"]:
                twin.put(op[1], op[3])
        elif name == "grant":
            r = run(s, "lease_grant", id=op[1], ttl=5)
            assert ("error" in r) == (op[1] in twin.leases)
            twin.leases.add(op[1])
        elif name == "leased":
            r = run(s, "put", key=op[1], value=op[2], lease=op[3])
            assert ("error" not in r) == twin.put_leased(op[1], op[2], op[3])
        elif name == "watch":
            check_watch_index(s, op[1], op[2], op[3])
        elif name == "undone":  # a txn that puts, then fails: undone whole
            absent = {"key": b"zz", "ignore_value": True}  # no such key: fails after the first put
            r = run(s, "txn", success=[{"put": {"key": op[1], "value": b"x"}}, {"put": absent}])
            assert r.get("error") == "key-not-found"
        elif name == "revoke":
            stamp = s.leases[op[1]].stamp if op[1] in s.leases else 0
            if op[1] % 2:  # half expire (the lessor's way), half revoke
                r = run(s, "lease_expire", id=op[1], stamp=stamp)
                assert bool(r.get("expired")) == twin.revoke(op[1])
            else:
                r = run(s, "lease_revoke", id=op[1])
                assert ("error" not in r) == twin.revoke(op[1])
        else:
            snap = s.snapshot()
            held.append((snap, encode(snap), s.digest()))
            copy = MVCCStore()
            copy.restore(snap)
            assert copy.digest() == s.digest()
            # Restore keeps the store's order: replicas at one revision snapshot the same
            # bytes however they got there (PBFT's checkpoints compare digests of them).
            assert encode(copy.snapshot()) == held[-1][1]
            if len(held) % 2:  # every other time, go on with the store the snapshot came from
                s = copy
        assert s.revision == twin.rev
        assert set(s.leases) == twin.leases
        assert len(s) == sum(len(c) for c in s._hist.values()) + len(s.leases)  # counted, not summed
        for lease_id, lease in s.leases.items():  # attached keys follow the key-values
            live = twin.states[twin.rev]
            assert lease.keys == {k for k, kv in live.items() if kv[5] == lease_id}
    for snap, blob, digest in held:  # a snapshot is a value
        assert encode(snap) == blob
        copy = MVCCStore()
        copy.restore(snap)
        assert copy.digest() == digest
    # every revision still readable agrees
    for rev in range(max(twin.compacted, 1), twin.rev + 1):
        assert run(s, "range", key=b"\0", range_end=b"\0", revision=rev)["kvs"] == twin.range(
            b"\0", b"\0", rev
        )


def test_a_watch_over_many_keys_finds_one_change_among_the_recent_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = MVCCStore()
    for i in range(300):
        run(s, "put", key=b"k%03d" % i, value=b"v")
    start = s.revision + 1
    run(s, "put", key=b"k150", value=b"w")
    looked: list[bytes] = []
    span = MVCCStore._key_span

    def counting(self: MVCCStore, key: bytes, end: bytes):  # type: ignore[no-untyped-def]
        for k in span(self, key, end):
            looked.append(k)
            yield k

    monkeypatch.setattr(MVCCStore, "_key_span", counting)
    r = run(s, "watch", key=b"k", range_end=prefix_end(b"k"), start_revision=start)
    assert [e[1][0] for e in r["events"]] == [b"k150"] and looked == []  # no key scanned
    r = run(s, "watch", key=b"k", range_end=prefix_end(b"k"), start_revision=2)  # behind: a scan
    assert len(r["events"]) == 301 and len(looked) == 300
    restored = MVCCStore()
    restored.restore(s.snapshot())
    assert restored._recent == [] and restored._recent_from == s.revision + 1


def test_the_recent_changes_are_bounded_and_a_watch_before_them_looks_at_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mvcc, "RECENT_KEPT", 4)
    s = MVCCStore()
    for i in range(6):
        run(s, "put", key=b"k%d" % i, value=b"v")  # revisions 2..7
    run(s, "txn", success=[{"put": {"key": b"k0", "value": b"w"}}, {"put": {"key": b"k1", "value": b"w"}}])
    assert len(s._recent) <= 8
    run(s, "txn", success=[{"put": {"key": b"k2", "value": b"w"}}, {"put": {"key": b"k3", "value": b"w"}}])
    # Past 2 x 4: the newest 4, less revision 8, which the cut might have split.
    assert s._recent == [(9, b"k2"), (9, b"k3")] and s._recent_from == 9
    for start in range(2, s.revision + 1):  # before, at and after what is kept: the same events
        body = {"key": b"k", "range_end": prefix_end(b"k"), "start_revision": start}
        indexed = run(s, "watch", **body)
        s._recent_from, kept = 2**62, s._recent_from
        assert run(s, "watch", **body) == indexed
        s._recent_from = kept


def test_a_watch_read_returns_whole_revisions_and_a_big_one_whole(monkeypatch) -> None:
    """At most WATCH_BATCH events, whole revisions only; a revision holding more (a delete
    of many keys, a lease's keys) goes whole.  It was cut at WATCH_BATCH and the read went
    on after it: a watch lost the rest of a big delete."""
    monkeypatch.setattr(mvcc, "WATCH_BATCH", 10)
    s = MVCCStore()
    start = s.revision + 1
    for i in range(15):  # 15 revisions of one event: 10, then 5
        run(s, "put", key=b"p/%02d" % i, value=b"v")
    first = run(s, "watch", key=b"p/", range_end=b"p0", start_revision=start)
    assert [e[1][2] for e in first["events"]] == list(range(start, start + 10))
    assert first["next"] == start + 10
    rest = run(s, "watch", key=b"p/", range_end=b"p0", start_revision=first["next"])
    assert len(rest["events"]) == 5 and rest["next"] == s.revision + 1
    # 6 puts in one txn (revision a), then 15 deletes in one (b), then one put (c)
    a = s.revision + 1
    run(s, "txn", success=[{"put": {"key": b"q/%d" % i, "value": b"v"}} for i in range(6)])
    run(s, "delete_range", key=b"p/", range_end=b"p0")
    run(s, "put", key=b"p/x", value=b"1")
    got = run(s, "watch", key=b"\0", range_end=b"\0", start_revision=a)
    assert [e[1][2] for e in got["events"]] == [a] * 6 and got["next"] == a + 1  # b does not fit
    got = run(s, "watch", key=b"\0", range_end=b"\0", start_revision=a + 1)
    assert len(got["events"]) == 15 and {e[0] for e in got["events"]} == {mvcc.DELETE_EVENT}
    assert got["next"] == a + 2  # the big delete whole, then c in the next read
    got = run(s, "watch", key=b"\0", range_end=b"\0", start_revision=got["next"])
    assert [e[1][0] for e in got["events"]] == [b"p/x"]
