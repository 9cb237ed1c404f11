"""core/capabilities.py: ``NodeStatus``'s reserved ``details["peers"]`` (read only through
``peer_progress``, which never lets a node's odd use of the name fail a status request),
and ``implements``, which answers exactly as ``isinstance`` does."""

from __future__ import annotations

from consensuskit.core.capabilities import (
    HAS_LEADER,
    REPLICATED_LOG,
    HasLeader,
    LogPosition,
    NodeStatus,
    ReplicatedLog,
    capabilities,
    implements,
    is_leading,
    leader_of,
    peer_progress,
)


def test_per_peer_progress_is_read_as_given():
    details = {"peers": {"n2": {"match": 7, "next": 8, "state": "replicate"}, "n3": {"match": 3}}}
    assert peer_progress(details) == {"n2": {"match": 7, "next": 8, "state": "replicate"}, "n3": {"match": 3}}


def test_other_shapes_read_as_no_progress():
    # A gossip node once reported "peers": 4 (a count); /v1/status crashed on it.
    assert peer_progress({"peers": 4}) == {}
    assert peer_progress({"peers": ["n2", "n3"]}) == {}
    assert peer_progress({}) == {}
    assert peer_progress({"peers": {"n2": 5, "n3": {"match": 1}}}) == {"n3": {"match": 1}}


def test_the_common_fields_win_a_name_clash_in_the_json_form():
    status = NodeStatus(
        id="n1",
        role="member",
        leader=None,
        generation_name="round",
        generation=2,
        details={"role": "spoofed", "peers": 4},
    )
    assert status.to_dict()["role"] == "member"


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
