"""KVStateMachine list (prefix range) and opaque bytes/str values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.statemachines.kv import KVStateMachine


def listing(prefix: str, limit: int | None = None) -> Op:
    return Op(kind="list", key=prefix, value=limit)


def filled(**values: object) -> KVStateMachine:
    kv = KVStateMachine()
    for key, value in values.items():
        kv.execute(Op(kind="put", key=key, value=value))
    return kv


def test_list_returns_prefix_matches_in_key_order_with_versions():
    kv = filled(b2="y", a="x", b1=b"\x00\xff", c="z")
    kv.execute(Op(kind="put", key="b1", value=b"\x01"))
    assert kv.execute(listing("b")) == {
        "items": (("b1", b"\x01", 2), ("b2", "y", 1)),
        "truncated": False,
    }


def test_list_limit_truncates_and_says_so():
    kv = filled(k1=1, k2=2, k3=3)
    assert kv.execute(listing("k", 2)) == {"items": (("k1", 1, 1), ("k2", 2, 1)), "truncated": True}
    assert kv.execute(listing("k", 3))["truncated"] is False
    assert kv.execute(listing("k", 0)) == {"items": (), "truncated": True}


def test_list_is_a_read_and_changes_no_session():
    kv = filled(a=1)
    request = ClientRequest(client_id="c", seq=1, op=listing(""))
    assert kv.read(request) == {"items": (("a", 1, 1),), "truncated": False}
    assert kv.snapshot()["sessions"] == ()


def test_bytes_values_survive_snapshot_and_codec():
    kv = filled(bin=b"\x00\x01", text="h\u00e9")
    restored = KVStateMachine()
    restored.restore(decode(encode(kv.snapshot())))
    assert restored.items() == {"bin": b"\x00\x01", "text": "h\u00e9"}


@settings(max_examples=60, deadline=None)
@given(
    keys=st.dictionaries(st.text("abc", max_size=4), st.integers(0, 9), max_size=12),
    prefix=st.text("abc", max_size=2),
)
def test_list_matches_a_naive_filter(keys: dict[str, int], prefix: str) -> None:
    kv = KVStateMachine()
    for key, value in keys.items():
        kv.execute(Op(kind="put", key=key, value=value))
    expected = sorted(k for k in keys if k.startswith(prefix))
    assert [k for k, _, _ in kv.execute(listing(prefix))["items"]] == expected
