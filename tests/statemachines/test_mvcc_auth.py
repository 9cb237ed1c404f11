"""etcd's auth in the etcd state machine: permissions on key ranges (statemachines/auth.py),
what each etcd op needs (statemachines/mvcc_auth.py), and the judge where a command is
applied (statemachines/mvcc.py ``MVCCStateMachine``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.core.client import VIA_ADMIN, VIA_TOKEN, ClientRequest, Op, Principal, ServiceOp
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines.auth import (
    ADMINISTER,
    READ,
    READWRITE,
    ROOT,
    WRITE,
    AuthState,
    covers,
    key_span,
    next_prefix,
    prefix_span,
    range_span,
)
from consensuskit.statemachines.mvcc import MVCCStateMachine
from consensuskit.statemachines.mvcc_auth import ANY_USER, ROOT_ONLY, needs
from consensuskit.statemachines.sessions import refusal

PW = ("pbkdf2-sha256", 1000, b"salt", b"hash")
ADMIN = Principal(name="", via=VIA_ADMIN)


# ---------------------------------------------------------------------- key sets
ALPHABET = "ab"
WORDS = ["", *("".join(p) for n in (1, 2, 3) for p in itertools.product(ALPHABET, repeat=n))]
bound = st.sampled_from(WORDS)
span = st.tuples(bound, st.one_of(st.none(), bound))


def inside(key: str, s: tuple[str, str | None]) -> bool:
    return s[0] <= key and (s[1] is None or key < s[1])


@given(st.lists(span, max_size=5), span)
def test_covers_is_the_union_holding_every_key(spans, wanted):
    """Against the definition: the keys worth trying are the words and every bound (the
    first key a union misses is a bound, or the start)."""
    candidates = set(WORDS) | {b for s in [*spans, wanted] for b in s if b is not None}
    missed = [k for k in candidates if inside(k, wanted) and not any(inside(k, s) for s in spans)]
    assert covers(spans, wanted) == (not missed)


def test_key_sets():
    assert next_prefix("ab") == "ac" and next_prefix("") is None and next_prefix("a" + chr(0x10FFFF)) == "b"
    assert prefix_span("a/") == ("a/", "a0") and key_span("k") == ("k", "k\0")
    assert range_span("k", "") == ("k", "k\0") and range_span("k", "\0") == ("k", None)
    assert range_span("a", "c") == ("a", "c")


def ranged_state() -> tuple[AuthState, object]:
    state = AuthState()
    for action, args in (
        ("user-add", ("u", PW)),
        ("role-add", ("r",)),
        ("role-grant", ("r", "p/", READWRITE)),
        ("role-grant-range", ("r", "k", "", READ)),
        ("role-grant-range", ("r", "m", "o", WRITE)),
        ("role-grant-range", ("r", "x", "\0", READ)),
        ("user-grant-role", ("u", "r")),
    ):
        assert "error" not in state.execute(Op(kind="auth", key=action, value=args)), action
    return state, state.users["u"]


def test_range_grants_reach_their_keys_only():
    state, user = ranged_state()
    assert state.allowed_span(user, READ, key_span("k"))
    assert not state.allowed_span(user, READ, key_span("k2"))
    assert not state.allowed_span(user, WRITE, key_span("k"))
    assert state.allowed_span(user, WRITE, ("m", "o")) and not state.allowed_span(user, WRITE, ("m", "p"))
    assert state.allowed_span(user, READ, ("x", None)) and state.allowed_span(user, READ, key_span("zzz"))
    assert not state.allowed_span(user, READ, ("w", None))
    assert state.allowed(user, READWRITE, "p/q") and not state.allowed(user, READ, "p")
    view = state.role_view("r")["permissions"]
    assert view == [
        {"key": "k", "range_end": "", "permission": READ},
        {"key": "m", "range_end": "o", "permission": WRITE},
        {"prefix": "p/", "permission": READWRITE},
        {"key": "x", "range_end": "\0", "permission": READ},
    ]
    revoke = Op(kind="auth", key="role-revoke-range", value=("r", "m", "o"))
    assert "error" not in state.execute(revoke)
    assert not state.allowed_span(user, WRITE, ("m", "o"))
    again = state.execute(revoke)
    assert again["error"] == "permission-not-granted"


def test_range_grants_survive_a_snapshot_as_the_log_encodes_it():
    state, _ = ranged_state()
    restored = AuthState.restored(decode(encode(state.snapshot())))
    assert restored.snapshot() == state.snapshot() and restored.roles == state.roles
    with pytest.raises(ValueError):
        AuthState.restored({**state.snapshot(), "roles": (("r", (((1, 2), READ),)),)})


# ---------------------------------------------------------------------- what an op needs
def test_what_each_op_needs():
    assert needs("range", {"key": b"a", "range_end": b"c"}) == ((READ, ("a", "c")),)
    assert needs("watch", {"key": b"a"}) == ((READ, ("a", "a\0")),)
    assert needs("put", {"key": b"a", "value": b"v"}) == ((WRITE, ("a", "a\0")),)
    assert needs("put", {"key": b"a", "prev_kv": True}) == ((READWRITE, ("a", "a\0")),)
    assert needs("delete_range", {"key": b"a", "range_end": b"\0"}) == ((WRITE, ("a", None)),)
    assert needs("range", {"key": b"\xff"}) == ((READ, ("\xff", "\xff\0")),)  # byte order
    txn = {
        "compare": [{"key": b"c"}],
        "success": [{"put": {"key": b"s"}}],
        "failure": [{"txn": {"success": [{"range": {"key": b"f"}}]}}],
    }
    assert needs("txn", txn) == ((READ, ("c", "c\0")), (WRITE, ("s", "s\0")), (READ, ("f", "f\0")))
    assert needs("txn", {}) == ANY_USER
    for kind in ("lease_grant", "lease_keepalive", "lease_ttl", "lease_leases"):
        assert needs(kind, {"id": 1}) == ANY_USER
    for kind in ("compact", "hash_kv", "lease_expire", "something-new"):
        assert needs(kind, {}) == ROOT_ONLY
    assert ROOT_ONLY[0][0] == ADMINISTER
    assert needs("put", {"key": 5}) == ROOT_ONLY  # unreadable: the root role's
    assert needs("txn", {"success": [{"put": {}, "range": {}}]}) == ROOT_ONLY


# ---------------------------------------------------------------------- the judge
class Log:
    """The etcd state machine fed through ``apply``, as a protocol feeds committed commands."""

    def __init__(self) -> None:
        self.sm = MVCCStateMachine()
        self.seq = 0

    def apply(self, op, principal=None, *, seq=None, client="c"):
        if seq is None:
            self.seq += 1
            seq = self.seq
        request = ClientRequest(client_id=client, seq=seq, op=op, principal=principal)
        return self.sm.apply(decode(encode(request)))

    def setup(self) -> Principal:
        for action, args in (
            ("user-add", (ROOT, PW)),
            ("user-grant-role", (ROOT, ROOT)),
            ("role-add", ("app",)),
            ("role-grant", ("app", "a/", READWRITE)),
            ("user-add", ("alice", PW)),
            ("user-grant-role", ("alice", "app")),
            ("enable", ()),
        ):
            assert "error" not in self.apply(ServiceOp(kind="auth", key=action, value=args), ADMIN), action
        return Principal(name="alice", via=VIA_TOKEN, rev=self.sm.auth.revision)


def put(key: bytes, **extra) -> ServiceOp:
    return ServiceOp(kind="put", key=key.decode(), value={"key": key, "value": b"v", **extra})


def test_writes_are_judged_where_applied():
    log = Log()
    alice = log.setup()
    revision = log.sm.store.revision
    assert refusal(log.apply(put(b"a/1"))) == "unauthenticated"
    assert refusal(log.apply(put(b"b"), alice)) == "permission-denied"
    assert log.sm.store.revision == revision  # refused: nothing changed
    assert log.apply(put(b"a/1"), alice)["revision"] == revision + 1
    compact = ServiceOp(kind="compact", value={"revision": 2})
    assert refusal(log.apply(compact, alice)) == "permission-denied"
    assert "error" not in log.apply(compact, ADMIN)
    add = ServiceOp(kind="auth", key="role-add", value=("x",))
    assert refusal(log.apply(add, alice)) == "permission-denied"
    stale = Principal(name="alice", via=VIA_TOKEN, rev=alice.rev - 1)
    assert refusal(log.apply(put(b"a/2"), stale)) == "invalid-token"


def test_a_retry_of_an_applied_write_gets_its_first_answer_after_a_revoke():
    log = Log()
    alice = log.setup()
    first = log.apply(put(b"a/1"), alice, seq=100)
    log.apply(ServiceOp(kind="auth", key="role-revoke", value=("app", "a/")), ADMIN, client="admin")
    assert log.apply(put(b"a/1"), alice, seq=100) == first
    assert refusal(log.apply(put(b"a/2"), alice, seq=102)) == "permission-denied"


def test_the_http_apis_ops_reach_the_same_users():
    log = Log()
    log.setup()
    assert log.apply(Op(kind="auth", key="role-add", value=("ops",)), ADMIN)["revision"] > 0
    assert "ops" in log.sm.auth.roles
    read = ClientRequest(client_id="r", seq=1, op=Op(kind="auth-read", key="role", value="ops"))
    assert log.sm.read(read)["name"] == "ops"


def test_the_auth_part_rides_in_snapshots():
    log = Log()
    alice = log.setup()
    log.apply(put(b"a/1"), alice)
    snap = decode(encode(log.sm.snapshot()))
    fresh = MVCCStateMachine()
    fresh.restore(snap)
    assert fresh.auth.snapshot() == log.sm.auth.snapshot() and fresh.auth.enabled
    assert fresh.store.digest() == log.sm.store.digest()
    plain = MVCCStateMachine()
    older = {k: v for k, v in snap.items() if k != "auth"}  # a snapshot from before auth
    plain.restore(older)
    assert not plain.auth and plain.store.digest() == log.sm.store.digest()
    broken = MVCCStateMachine()
    with pytest.raises(ValueError):
        broken.restore({**snap, "auth": {"v": 99}})
    assert len(broken) == 0 and not broken.auth  # nothing changed
    untouched = MVCCStateMachine()
    assert "auth" not in untouched.snapshot()


def test_a_range_that_ends_before_its_key_needs_what_etcd_asks_for_it():
    """Found by the randomized comparison with etcd 3.4: a range that ends at or before
    its key holds no key, and ours let anyone read or delete it; etcd's interval check
    asks for the keys from its end to its key, both included ([b, a) needs a and b;
    [a, a) needs a).  Reads (judged at the edge) always ask so; a write asks so when
    its op is marked ``empty_ranges`` (make_op marks every one), and one logged by the
    previous release without the mark is judged as it was then."""
    assert needs("range", {"key": b"b", "range_end": b"a"}) == ((READ, ("a", "b\0")),)
    assert needs("range", {"key": b"a", "range_end": b"a"}) == ((READ, ("a", "a\0")),)
    assert needs("range", {"key": b"a", "range_end": b"\0"}) == ((READ, ("a", None)),)  # not inverted
    assert needs("delete_range", {"key": b"b", "range_end": b"a"}) == ((WRITE, ("b", "a")),)
    marked = {"key": b"b", "range_end": b"a", "empty_ranges": True}
    assert needs("delete_range", marked) == ((WRITE, ("a", "b\0")),)
    nested = {
        "compare": [{"key": b"b", "range_end": b"a"}],
        "success": [{"delete_range": {"key": b"d", "range_end": b"c"}}],
    }
    assert needs("txn", {**nested, "empty_ranges": True}) == ((READ, ("a", "b\0")), (WRITE, ("c", "d\0")))

    log = Log()
    alice = log.setup()  # read and write on a/ only
    old = ServiceOp(kind="delete_range", value={"key": b"b", "range_end": b"a"})
    assert "error" not in log.apply(old, alice)  # the previous release's op: as it was
    new = ServiceOp(kind="delete_range", value={**old.value, "empty_ranges": True})
    assert refusal(log.apply(new, alice)) == "permission-denied"
    inside = ServiceOp(kind="delete_range", value={"key": b"a/2", "range_end": b"a/1", "empty_ranges": True})
    assert "error" not in log.apply(inside, alice)


def test_make_op_marks_the_ops_whose_empty_ranges_etcd_judges():
    from consensuskit.services.etcd import make_op, validate

    for kind in ("delete_range", "txn"):
        op = make_op(kind, value={"key": b"b", "range_end": b"a"} if kind == "delete_range" else {})
        assert op.value["empty_ranges"] is True
        validate(op)
