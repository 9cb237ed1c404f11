"""AuthState through KVStateMachine: commands, refusals, permissions, snapshots (incl. the
snapshot written before auth existed), determinism, and commands that cannot halt a node."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines.auth import ACTIONS, ROOT, AuthState
from consensuskit.statemachines.kv import KVStateMachine

PW = ("pbkdf2-sha256", 1000, b"salt", b"hash")
PW2 = ("pbkdf2-sha256", 1000, b"salt2", b"hash2")


def auth(action, *args):
    return Op(kind="auth", key=action, value=args)


def read(what, arg=None):
    return Op(kind="auth-read", key=what, value=arg)


def run(kv, *ops):
    return [kv.execute(op) for op in ops]


def with_root(kv=None):
    kv = kv or KVStateMachine()
    run(kv, auth("user-add", ROOT, PW), auth("user-grant-role", ROOT, ROOT))
    return kv


def test_users_roles_and_permissions_bump_the_revision_once_per_change():
    kv = KVStateMachine()
    assert kv.execute(auth("user-add", "alice", PW)) == {"revision": 1}
    assert kv.execute(auth("role-add", "app")) == {"revision": 2}
    assert kv.execute(auth("role-grant", "app", "app/", "read")) == {"revision": 3}
    assert kv.execute(auth("role-grant", "app", "app/", "read")) == {"revision": 3}  # no change
    assert kv.execute(auth("user-grant-role", "alice", "app")) == {"revision": 4}
    assert kv.execute(auth("user-grant-role", "alice", "app")) == {"revision": 4}
    assert kv.execute(read("user", "alice")) == {
        "name": "alice",
        "roles": ["app"],
        "has_password": True,
        "password": PW,
        "rev": 1,
        "enabled": False,
        "revision": 4,
    }
    assert kv.execute(read("roles"))["roles"] == [
        {"name": "app", "permissions": [{"prefix": "app/", "permission": "read"}], "builtin": False},
        {"name": "root", "permissions": [{"prefix": "", "permission": "readwrite"}], "builtin": True},
    ]
    assert kv.execute(read("users")) == {
        "users": [{"name": "alice", "roles": ["app"], "has_password": True}],
        "revision": 4,
    }


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([auth("user-add", "a", PW), auth("user-add", "a", PW)], "user-exists"),
        ([auth("user-delete", "nobody")], "user-not-found"),
        ([auth("role-add", "r"), auth("role-add", "r")], "role-exists"),
        ([auth("role-add", ROOT)], "role-exists"),
        ([auth("user-add", "a", PW), auth("user-grant-role", "a", "nope")], "role-not-found"),
        ([auth("user-add", "a", PW), auth("user-revoke-role", "a", ROOT)], "role-not-granted"),
        ([auth("role-add", "r"), auth("role-revoke", "r", "x/")], "permission-not-granted"),
        ([auth("role-delete", ROOT)], "root-protected"),
        ([auth("role-grant", ROOT, "", "read")], "root-protected"),
        ([auth("enable")], "root-required"),
        ([auth("user-add", ROOT, PW), auth("enable")], "root-required"),  # root lacks the root role
        ([auth("role-add", "r"), auth("role-grant", "r", "x", "execute")], "bad-command"),
        ([auth("user-add", "bad:name", PW)], "bad-command"),
        ([auth("user-add", "a/b", PW)], "bad-command"),
        ([auth("user-add", "", PW)], "bad-command"),
        ([auth("user-add", "x" * 129, PW)], "bad-command"),
        ([auth("user-add", "a", ("pbkdf2", "many", b"s", b"h"))], "bad-command"),
        ([auth("user-add", "a")], "bad-command"),
        ([auth("launch-missiles")], "bad-command"),
    ],
)
def test_refusals_are_results_that_change_nothing(ops, code):
    kv = KVStateMachine()
    *setup, last = ops
    run(kv, *setup)
    before = kv.auth.snapshot()
    result = kv.execute(last)
    assert result["error"] == code and result["message"]
    assert kv.auth.snapshot() == before


def test_enable_needs_root_and_then_protects_it():
    kv = with_root()
    rev = kv.execute(auth("enable"))["revision"]
    assert kv.auth.enabled and kv.auth.enabled_rev == rev
    assert kv.execute(auth("enable")) == {"revision": rev}  # already enabled: nothing changes
    assert kv.execute(auth("user-delete", ROOT))["error"] == "root-protected"
    assert kv.execute(auth("user-revoke-role", ROOT, ROOT))["error"] == "root-protected"
    assert kv.execute(auth("disable")) == {"revision": rev + 1}
    assert not kv.auth.enabled
    assert kv.execute(auth("user-delete", ROOT)) == {"revision": rev + 2}


def test_password_change_moves_the_users_rev_and_role_changes_do_not():
    kv = KVStateMachine()
    run(kv, auth("user-add", "a", PW), auth("role-add", "r"), auth("user-grant-role", "a", "r"))
    assert kv.auth.users["a"].rev == 1
    rev = kv.execute(auth("user-password", "a", PW2))["revision"]
    assert kv.auth.users["a"].rev == rev and kv.auth.users["a"].password == PW2
    assert kv.auth.users["a"].roles == ("r",)  # kept
    run(kv, auth("role-grant", "r", "", "read"))
    assert kv.auth.users["a"].rev == rev


def test_deleting_a_role_removes_it_from_every_user():
    kv = KVStateMachine()
    run(kv, auth("role-add", "r"), auth("role-add", "s"))
    for name in ("a", "b"):
        run(
            kv,
            auth("user-add", name, None),
            auth("user-grant-role", name, "r"),
            auth("user-grant-role", name, "s"),
        )
    kv.execute(auth("role-delete", "r"))
    assert kv.auth.users["a"].roles == kv.auth.users["b"].roles == ("s",)
    assert kv.execute(read("role", "r"))["error"] == "role-not-found"


def test_permissions_per_prefix_and_kind():
    kv = KVStateMachine()
    run(
        kv,
        auth("role-add", "reader"),
        auth("role-grant", "reader", "pub/", "read"),
        auth("role-add", "writer"),
        auth("role-grant", "writer", "inbox/", "write"),
        auth("role-add", "owner"),
        auth("role-grant", "owner", "home/a/", "readwrite"),
        auth("user-add", "a", PW),
        auth("user-grant-role", "a", "reader"),
        auth("user-grant-role", "a", "writer"),
        auth("user-grant-role", "a", "owner"),
        auth("user-add", "root", PW),
        auth("user-grant-role", "root", "root"),
    )
    a, root, state = kv.auth.users["a"], kv.auth.users["root"], kv.auth
    assert state.allowed(a, "read", "pub/x") and not state.allowed(a, "write", "pub/x")
    assert state.allowed(a, "write", "inbox/x") and not state.allowed(a, "read", "inbox/x")
    assert state.allowed(a, "readwrite", "home/a/x") and not state.allowed(a, "read", "home/b/x")
    assert not state.allowed(a, "read", "pub")  # a prefix is not a directory: "pub" is outside "pub/"
    # listings: the requested prefix must lie inside one read permission
    assert state.allowed(a, "read", "pub/") and state.allowed(a, "read", "pub/sub/")
    assert not state.allowed(a, "read", "") and not state.allowed(a, "read", "pu")
    assert all(state.allowed(root, need, "anything") for need in ("read", "write", "readwrite"))
    run(kv, auth("role-revoke", "reader", "pub/"))
    assert not state.allowed(a, "read", "pub/x")


@pytest.mark.parametrize("through_codec", [False, True])
def test_snapshot_round_trip_carries_auth(through_codec):
    kv = with_root()
    run(
        kv,
        auth("role-add", "r"),
        auth("role-grant", "r", "p/", "write"),
        auth("user-add", "u", None),
        auth("user-grant-role", "u", "r"),
        auth("enable"),
        Op(kind="put", key="k", value="v"),
    )
    snap = kv.snapshot()
    if through_codec:
        snap = decode(encode(snap))
    copy = KVStateMachine()
    copy.restore(snap)
    assert copy.auth.snapshot() == kv.auth.snapshot()
    assert copy.auth.enabled and copy.auth.users["u"].password is None
    assert copy.get("k") == "v"
    assert copy.execute(auth("role-add", "next")) == kv.execute(auth("role-add", "next"))


def test_snapshot_through_msgpack_lists_restores():
    """The WAL's snapshot reader decodes arrays as lists (``use_list`` default)."""
    import msgpack

    kv = with_root()
    run(kv, auth("role-add", "r"), auth("role-grant", "r", "", "read"))
    from consensuskit.core.messages import encode

    # The codec's bytes (after its version byte) read back by plain msgpack: every array
    # a list, the lazily flattened keys included.
    snap = msgpack.unpackb(encode(kv.snapshot())[1:], raw=False, strict_map_key=False)
    copy = KVStateMachine()
    copy.restore(snap)
    assert copy.auth.snapshot() == kv.auth.snapshot()


def test_unused_auth_adds_nothing_to_the_snapshot():
    kv = KVStateMachine()
    kv.execute(Op(kind="put", key="k", value="v"))
    assert "auth" not in kv.snapshot()


def test_a_snapshot_of_the_previous_release_restores_with_auth_empty():
    # Written by the release before auth (both of its forms), then decoded from the wire.
    for old in (
        {"flat": ("k", "v", 3), "sessions": (("c", 2, {"version": 3}),)},
        {"data": (("k", "v", 3),), "sessions": ()},
    ):
        kv = with_root()  # a state with auth, replaced by the old snapshot
        kv.restore(decode(encode(old)))
        assert kv.get("k") == "v" and not kv.auth and kv.auth.users == {} and not kv.auth.enabled


@pytest.mark.parametrize(
    "garbage",
    [
        {"v": 2},
        {"v": 1, "enabled": True},
        {
            "v": 1,
            "enabled": False,
            "revision": 1,
            "enabled_rev": 0,
            "users": ((1, None, (), 1),),
            "roles": (),
        },
        {"v": 1, "enabled": False, "revision": 1, "enabled_rev": 0, "users": (), "roles": 5},
        "auth",
    ],
)
def test_a_bad_auth_part_refuses_the_snapshot_and_changes_nothing(garbage):
    kv = with_root()
    before = kv.snapshot()
    with pytest.raises(ValueError):
        kv.restore({"flat": (), "sessions": (), "auth": garbage})
    assert kv.snapshot() == before


def test_auth_commands_go_through_sessions_like_any_write():
    kv = KVStateMachine()
    first = kv.apply(ClientRequest(client_id="c", seq=1, op=auth("user-add", "a", PW)))
    retry = kv.apply(ClientRequest(client_id="c", seq=1, op=auth("user-add", "a", PW)))
    assert first == retry == {"revision": 1}
    assert kv.auth.revision == 1


def test_auth_read_is_a_read():
    kv = with_root()
    request = ClientRequest(client_id="r", seq=1, op=read("status"))
    assert kv.read(request) == {"enabled": False, "revision": 2}
    assert "hash" not in Op(kind="auth", key="user-add", value=("a", PW)).describe()


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4).map(tuple),
    max_leaves=8,
)
_ops = (
    st.builds(
        auth,
        st.sampled_from([*ACTIONS, "nope"]),
    )
    | st.builds(
        lambda action, args: Op(kind="auth", key=action, value=args),
        st.sampled_from(ACTIONS) | st.text(max_size=5),
        _values,
    )
    | st.builds(read, st.sampled_from(["status", "user", "users", "role", "roles", "x"]), _values)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ops, max_size=20))
def test_no_command_raises_and_replicas_agree(ops):
    a, b = KVStateMachine(), KVStateMachine()
    for op in ops:
        assert a.execute(op) == b.execute(op)
        encode(a.execute(read("users")))  # results stay encodable
    restored = KVStateMachine()
    restored.restore(decode(encode(a.snapshot())))
    assert restored.auth.snapshot() == a.auth.snapshot() == b.auth.snapshot()


def test_empty_state_is_falsy():
    assert not AuthState()
    kv = KVStateMachine()
    kv.execute(auth("role-add", "r"))
    assert kv.auth
