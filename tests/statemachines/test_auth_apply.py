"""Auth judged where a command is applied (statemachines/auth.py ``judge``, as etcd's
authApplierV3): a write is checked against the applying replica's auth state with the
principal its edge authenticated, whatever that edge believed."""

from __future__ import annotations

import msgspec
import pytest

from consensuskit.core.client import (
    EDGE_JUDGED,
    VIA_ADMIN,
    VIA_CERTIFICATE,
    VIA_TOKEN,
    ClientRequest,
    Op,
    Principal,
)
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.common.replies import command_answer
from consensuskit.statemachines.auth import ROOT
from consensuskit.statemachines.kv import KVStateMachine
from consensuskit.statemachines.sessions import refusal

PW = ("pbkdf2-sha256", 1000, b"salt", b"hash")
PW2 = ("pbkdf2-sha256", 1000, b"salt2", b"hash2")


def auth(action, *args):
    return Op(kind="auth", key=action, value=args)


class Log:
    """A state machine fed through ``apply``, as a protocol feeds committed commands."""

    def __init__(self) -> None:
        self.kv = KVStateMachine()
        self.seq = 0

    def apply(self, op, principal=None, *, client="c", seq=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        request = ClientRequest(client_id=client, seq=seq, op=op, principal=principal)
        return self.kv.apply(decode(encode(request)))  # as it travels and is logged

    def setup(self, *, enable=True):
        admin = Principal(name="", via=VIA_ADMIN)
        for op in (
            auth("user-add", ROOT, PW),
            auth("user-grant-role", ROOT, ROOT),
            auth("role-add", "app"),
            auth("role-grant", "app", "app/", "readwrite"),
            auth("role-add", "reader"),
            auth("role-grant", "reader", "app/", "read"),
            auth("user-add", "alice", PW),
            auth("user-grant-role", "alice", "app"),
        ):
            assert "error" not in self.apply(op, admin)
        if enable:
            assert "error" not in self.apply(auth("enable"), admin)

    def token(self, name):
        """A token principal issued now (at the current revision)."""
        return Principal(name=name, via=VIA_TOKEN, rev=self.kv.auth.revision)


def put(key, value="v"):
    return Op(kind="put", key=key, value=value)


def test_a_write_without_a_principal_is_refused_once_auth_is_enabled():
    """The lagging-follower case: its edge had not applied ``enable`` and sent nobody."""
    log = Log()
    log.setup(enable=False)
    assert log.apply(put("app/x")) == {"version": 1}  # auth off: nobody needed
    log.apply(auth("enable"), Principal(name="", via=VIA_ADMIN))
    result = log.apply(put("app/x"))
    assert refusal(result) == "unauthenticated"
    assert log.kv.get("app/x") == "v" and log.kv.digest() == (("app/x", "v", 1),)


@pytest.mark.parametrize(
    "op", [put("app/x"), Op(kind="delete", key="app/x"), Op(kind="cas", key="app/x", value="w")]
)
def test_every_kind_of_write_needs_the_permission(op):
    log = Log()
    log.setup()
    bob = Principal(name="bob", via=VIA_TOKEN, rev=0)
    assert refusal(log.apply(op, bob)) == "invalid-token"  # no such user
    alice = log.token("alice")
    assert refusal(log.apply(msgspec.structs.replace(op, key="other/x"), alice)) == "permission-denied"
    assert "error" not in log.apply(op, alice)


def test_a_revoked_role_refuses_the_next_write():
    log = Log()
    log.setup()
    alice = log.token("alice")
    assert log.apply(put("app/x"), alice) == {"version": 1}
    log.apply(auth("user-revoke-role", "alice", "app"), log.token(ROOT))
    assert refusal(log.apply(put("app/x", "2"), alice)) == "permission-denied"
    log.apply(auth("user-grant-role", "alice", "reader"), log.token(ROOT))
    assert refusal(log.apply(put("app/x", "2"), alice)) == "permission-denied"  # read only
    assert log.kv.get("app/x") == "v"


def test_a_token_dies_with_a_new_password_a_deleted_user_and_a_re_enable():
    log = Log()
    log.setup()
    root = log.token(ROOT)
    alice = log.token("alice")
    log.apply(auth("user-password", "alice", PW2), root)
    assert refusal(log.apply(put("app/x"), alice)) == "invalid-token"
    assert log.apply(put("app/x"), log.token("alice")) == {"version": 1}  # a token issued since
    alice = log.token("alice")
    log.apply(auth("disable"), root)
    log.apply(auth("enable"), Principal(name="", via=VIA_ADMIN))
    assert refusal(log.apply(put("app/x"), alice)) == "invalid-token"  # from before the enable
    alice = log.token("alice")
    log.apply(auth("user-delete", "alice"), log.token(ROOT))
    assert refusal(log.apply(put("app/x"), alice)) == "invalid-token"


def test_a_certificate_user_needs_only_to_exist_and_hold_the_permission():
    log = Log()
    log.setup()
    alice = Principal(name="alice", via=VIA_CERTIFICATE, rev=0)
    log.apply(auth("user-password", "alice", PW2), log.token(ROOT))  # retires tokens, not certificates
    assert log.apply(put("app/x"), alice) == {"version": 1}
    log.apply(auth("user-delete", "alice"), log.token(ROOT))
    assert refusal(log.apply(put("app/x"), alice)) == "unauthenticated"


def test_auth_administration_needs_root_once_enabled():
    log = Log()
    log.setup()
    assert refusal(log.apply(auth("user-add", "mallory", PW))) == "unauthenticated"
    assert refusal(log.apply(auth("user-add", "mallory", PW), log.token("alice"))) == "permission-denied"
    assert refusal(log.apply(auth("disable"), log.token("alice"))) == "permission-denied"
    assert log.kv.auth.enabled and "mallory" not in log.kv.auth.users
    assert "error" not in log.apply(auth("user-add", "mallory", PW), log.token(ROOT))
    assert "error" not in log.apply(auth("disable"), Principal(name="", via=VIA_ADMIN))


def test_a_command_of_the_release_that_judged_at_the_edge_replays_as_it_applied():
    log = Log()
    log.setup()
    assert log.apply(put("other/x"), EDGE_JUDGED) == {"version": 1}


def test_reads_are_left_to_the_edge():
    log = Log()
    log.setup()
    log.apply(put("app/x"), log.token("alice"))
    result = log.apply(Op(kind="get", key="app/x"))  # a protocol that logs its reads
    assert result == {"value": "v", "version": 1}


def test_a_refusal_is_not_remembered_so_the_same_id_may_be_retried():
    log = Log()
    log.setup()
    refused = log.apply(put("app/x"), client="alice-1", seq=1)
    assert refusal(refused) == "unauthenticated"
    answer = command_answer(ClientRequest(client_id="alice-1", seq=1, op=put("app/x")), refused, "n1", 9)
    assert not answer.ok and answer.error == "unauthenticated"
    assert "alice-1" not in log.kv.sessions
    assert log.apply(put("app/x"), log.token("alice"), client="alice-1", seq=1) == {"version": 1}
    # A retry of the applied write by a principal who lost the right gets its first answer:
    # the session's dedup comes before the judgment.
    log.apply(auth("user-revoke-role", "alice", "app"), log.token(ROOT))
    assert log.apply(put("app/x"), log.token("alice"), client="alice-1", seq=1) == {"version": 1}


def test_replicas_agree_whatever_their_edges_did():
    """Two replicas applying the same log reach the same state and the same answers."""
    answers = []
    for _ in range(2):
        log = Log()
        log.setup()
        alice = log.token("alice")
        out = [
            log.apply(put("app/a"), alice),
            log.apply(put("app/b")),
            log.apply(put("zz"), alice),
        ]
        answers.append((out, log.kv.digest(), log.kv.snapshot()))
    assert answers[0] == answers[1]
    assert [refusal(r) for r in answers[0][0]] == [None, "unauthenticated", "permission-denied"]
