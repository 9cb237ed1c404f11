"""core/capabilities.py: ``implements`` answers exactly as ``isinstance`` does."""

from __future__ import annotations

from consensuskit.core.capabilities import (
    HAS_LEADER,
    REPLICATED_LOG,
    HasLeader,
    LogPosition,
    ReplicatedLog,
    capabilities,
    implements,
    is_leading,
    leader_of,
)


class Leader:
    def __init__(self, leads: bool) -> None:
        self.leads = leads

    def is_leader(self) -> bool:
        return self.leads

    def current_leader(self) -> str | None:
        return "a" if self.leads else None


class LogLeader(Leader):
    def log_position(self) -> LogPosition:
        return LogPosition(last_index=0, commit=0, applied=0, snapshot_index=0)


class Leaderless:
    pass


def test_implements_matches_isinstance_for_every_class_and_repeat() -> None:
    for _ in range(3):  # the memo must not change a later answer
        for node in (Leader(True), LogLeader(False), Leaderless(), object(), None, 3):
            for proto in (HasLeader, ReplicatedLog):
                assert implements(node, proto) is isinstance(node, proto), (node, proto)


def test_a_negative_answer_is_not_memoised() -> None:
    node = Leaderless()
    assert not implements(node, HasLeader)
    # An instance that gains the methods is judged on what it has now.
    node.is_leader = lambda: True  # type: ignore[attr-defined]
    node.current_leader = lambda: None  # type: ignore[attr-defined]
    assert implements(node, HasLeader) and is_leading(node)
    assert not implements(Leaderless(), HasLeader)


def test_leader_lookup_and_capabilities_use_it() -> None:
    nodes = [("a", Leader(True)), ("b", LogLeader(True)), ("c", Leaderless()), ("d", None)]
    assert leader_of(nodes) == ["a", "b"]
    assert capabilities(LogLeader(False)) == (HAS_LEADER, REPLICATED_LOG)
    assert capabilities(Leaderless()) == ()
