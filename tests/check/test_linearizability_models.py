"""The sequential specifications, one rule at a time."""

from __future__ import annotations

import pytest

from consensuskit.check.linearizability import UNKNOWN, Call, KVModel, ModelError, RegisterModel, get_model


def run(model, steps):
    """Apply (call, output) pairs; return the legality of each and the final state."""
    state = model.init()
    legal = []
    for call, output in steps:
        ok, state = model.step(state, call, output)
        legal.append(ok)
    return legal, state


class TestRegister:
    def test_read_sees_the_last_write_and_nil_at_first(self) -> None:
        reg = RegisterModel()
        legal, state = run(
            reg,
            [(Call("read"), None), (Call("write", value=3), None), (Call("read"), 3), (Call("read"), 4)],
        )
        assert legal == [True, True, True, False] and state == 3

    def test_unknown_read_output_is_always_legal(self) -> None:
        assert RegisterModel().step(7, Call("read"), UNKNOWN) == (True, 7)

    def test_plain_register_refuses_cas(self) -> None:
        with pytest.raises(ModelError, match="cas-register"):
            RegisterModel().validate(Call("cas", expected=1, value=2))

    def test_cas_register_swaps_only_on_match(self) -> None:
        reg = RegisterModel(cas=True)
        assert reg.step(1, Call("cas", expected=1, value=2), True) == (True, 2)
        assert reg.step(1, Call("cas", expected=1, value=2), False) == (False, 2)
        assert reg.step(5, Call("cas", expected=1, value=2), False) == (True, 5)
        assert reg.step(5, Call("cas", expected=1, value=2), True) == (False, 5)
        # nil never equals an integer (Jepsen's etcd register starts at nil)
        assert reg.step(None, Call("cas", expected=0, value=2), False) == (True, None)

    def test_project_dict_outputs_are_understood(self) -> None:
        reg = RegisterModel(cas=True)
        assert reg.step(4, Call("get", key="k"), {"value": 4, "version": 9})[0]
        assert reg.step(4, Call("cas", key="k", expected=4, value=5), {"swapped": True, "version": 2}) == (
            True,
            5,
        )

    def test_unknown_cas_takes_effect_when_it_matches(self) -> None:
        reg = RegisterModel(cas=True)
        assert reg.step(1, Call("cas", expected=1, value=2), UNKNOWN) == (True, 2)
        assert reg.step(3, Call("cas", expected=1, value=2), UNKNOWN) == (True, 3)


class TestKV:
    def test_versions_follow_the_state_machine(self) -> None:
        kv = KVModel()
        legal, state = run(
            kv,
            [
                (Call("get", key="a"), {"value": None, "version": 0}),
                (Call("put", key="a", value=1), {"version": 1}),
                (Call("put", key="a", value=2), {"version": 2}),
                (Call("get", key="a"), {"value": 2, "version": 2}),
                (Call("delete", key="a"), {"deleted": True}),
                (Call("delete", key="a"), {"deleted": False}),
                (Call("put", key="a", value=3), {"version": 1}),
            ],
        )
        assert all(legal) and state == (3, 1)

    @pytest.mark.parametrize(
        ("call", "output"),
        [
            (Call("get", key="a"), {"value": 5, "version": 2}),  # wrong version
            (Call("get", key="a"), {"value": 4, "version": 1}),  # wrong value
            (Call("put", key="a", value=9), {"version": 3}),  # skipped a version
            (Call("delete", key="a"), {"deleted": False}),  # the key exists
            (Call("cas", key="a", expected=4, value=6), {"swapped": True, "version": 2}),
            (Call("cas", key="a", expected=5, value=6), {"swapped": False, "value": 5, "version": 1}),
            (Call("cas", key="a", expected=4, value=6), {"swapped": False, "value": 4, "version": 1}),
            (Call("cas", key="a", expected_version=2, value=6), {"swapped": True, "version": 2}),
        ],
    )
    def test_wrong_outputs_are_illegal(self, call: Call, output: object) -> None:
        assert KVModel().step((5, 1), call, output)[0] is False

    def test_cas_by_value_and_by_version(self) -> None:
        kv = KVModel()
        assert kv.step(
            (5, 1), Call("cas", key="a", expected=5, value=6), {"swapped": True, "version": 2}
        ) == (
            True,
            (6, 2),
        )
        assert kv.step(
            (5, 1), Call("cas", key="a", expected_version=1, value=6), {"swapped": True, "version": 2}
        )[0]
        assert kv.step(
            None, Call("cas", key="a", expected=None, value=6), {"swapped": True, "version": 1}
        ) == (
            True,
            (6, 1),
        )
        assert kv.step(
            None, Call("cas", key="a", expected_version=0, value=6), {"swapped": True, "version": 1}
        )[0]

    def test_unknown_outputs_apply_their_effect(self) -> None:
        kv = KVModel()
        assert kv.step((5, 1), Call("put", key="a", value=7), UNKNOWN) == (True, (7, 2))
        assert kv.step((5, 1), Call("delete", key="a"), UNKNOWN) == (True, None)
        assert kv.step((5, 1), Call("cas", key="a", expected=4, value=7), UNKNOWN) == (True, (5, 1))

    def test_porcupine_append_and_missing_reads_as_empty(self) -> None:
        kv = KVModel(missing="")
        legal, _ = run(
            kv,
            [
                (Call("get", key="0"), ""),
                (Call("append", key="0", value="x 0 0 y"), {}),
                (Call("append", key="0", value="x 1 0 y"), {}),
                (Call("get", key="0"), "x 0 0 yx 1 0 y"),
                (Call("put", key="0", value="z"), {}),
                (Call("get", key="0"), "x 0 0 y"),
            ],
        )
        assert legal == [True, True, True, True, True, False]

    def test_unpartitioned_state_is_hashable_and_order_free(self) -> None:
        kv = KVModel(partitioned=False)
        _, s1 = run(kv, [(Call("put", key="a", value=1), {}), (Call("put", key="b", value=2), {})])
        _, s2 = run(kv, [(Call("put", key="b", value=2), {}), (Call("put", key="a", value=1), {})])
        assert s1 == s2 and hash(s1) == hash(s2)
        assert kv.step(s1, Call("get", key="a"), {"value": 1, "version": 1})[0]
        assert not kv.step(s1, Call("get", key="a"), {"value": 2, "version": 1})[0]

    def test_kv_refuses_unknown_operations(self) -> None:
        with pytest.raises(ModelError, match="no 'scan'"):
            KVModel().validate(Call("scan", key="a"))


def test_get_model_names() -> None:
    assert get_model("kv").name == "kv"
    assert get_model("register").name == "register"
    assert get_model("cas-register").name == "cas-register"
    with pytest.raises(ModelError, match="valid: kv, register, cas-register"):
        get_model("queue")
