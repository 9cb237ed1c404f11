"""Options from dicts: one error wording for every protocol, immutable containers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from consensuskit.core.options import check_bug_names, options_from_dict


@dataclass(slots=True, kw_only=True)
class Knobs:
    timeout: float = 1.0
    members: tuple[str, ...] = ()
    bugs: frozenset[str] = field(default_factory=frozenset)


def test_lists_become_the_default_container_type() -> None:
    knobs = options_from_dict(Knobs, {"members": ["a", "b"], "bugs": ["x"], "timeout": 2}, "toy")
    assert knobs == Knobs(timeout=2, members=("a", "b"), bugs=frozenset({"x"}))
    assert hash(knobs.members) and isinstance(knobs.bugs, frozenset)


def test_unknown_keys_are_named_with_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown toy option\(s\) colour, size; valid: bugs, members, timeout$"
    ):
        options_from_dict(Knobs, {"size": 1, "colour": 2}, "toy")


def test_bug_names() -> None:
    check_bug_names(["a"], ("a", "b"))
    with pytest.raises(ValueError, match=r"^unknown bug z; valid: a, b$"):
        check_bug_names(["a", "z"], ("a", "b"))


@pytest.mark.parametrize("protocol", ["raft", "multipaxos", "basic-paxos", "fast-paxos"])
def test_every_protocol_rejects_unknown_options_the_same_way(protocol: str) -> None:
    from consensuskit.catalog import default_registry
    from consensuskit.sim import SimConfig, Simulation

    with pytest.raises(ValueError, match=r"unknown .* option\(s\) no_such_knob; valid: "):
        Simulation(
            SimConfig(protocol=protocol, node_ids=("n1", "n2", "n3", "n4"), options={"no_such_knob": 1})
        )
    assert protocol in default_registry().names()
