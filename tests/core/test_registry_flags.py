"""Protocol flags that name their protocol (``ProtocolFlag.names_protocol``)."""

from __future__ import annotations

from consensuskit.catalog import default_registry
from consensuskit.core.registry import protocol_named_by_flags


def test_a_flag_that_names_its_protocol_picks_it_and_no_other_flag_does():
    registry = default_registry()
    specs = [registry.get(n) for n in registry.names()]
    assert protocol_named_by_flags(specs, ["--shards", "3"]) == "sharded-raft"
    assert protocol_named_by_flags(specs, ["--shards=3", "--nodes", "5"]) == "sharded-raft"
    assert protocol_named_by_flags(specs, ["--observers", "1"]) is None  # zab's, but it names nothing
    assert protocol_named_by_flags(specs, []) is None
