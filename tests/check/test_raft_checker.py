"""RaftChecker's leader completeness, on hand-made nodes: the property (Raft §5.4,
figure 3) is about leaders of *later* terms than the one that committed an entry."""

from __future__ import annotations

from types import SimpleNamespace

from consensuskit.check.raft import RaftChecker
from consensuskit.protocols.raft.messages import LogEntry


class Log:
    def __init__(self, *entries: LogEntry) -> None:
        self.entries = {e.index: e for e in entries}
        self.offset = 0

    def entry(self, index: int) -> LogEntry:
        return self.entries[index]

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        entry = self.entries.get(index)
        return entry.term if entry is not None else None


def node(node_id: str, term: int, *entries: LogEntry, role: str = "leader") -> SimpleNamespace:
    return SimpleNamespace(id=node_id, term=term, role=role, log=Log(*entries), last_applied=0)


OLD = LogEntry(term=1, index=1, kind="noop")
NEW = LogEntry(term=4, index=2, kind="noop")


def names(checker: RaftChecker) -> list[str]:
    return [v.name for v in checker.pending]


def committed_old_then_new() -> RaftChecker:
    checker = RaftChecker()
    checker.on_commit(node("n1", 1, OLD), 1)
    checker.on_commit(node("n4", 4, OLD, NEW), 2)
    return checker


def test_a_leader_of_a_later_term_must_hold_every_committed_entry():
    checker = committed_old_then_new()
    checker._check_leader(node("n2", 5, OLD))
    assert names(checker) == ["leader-completeness"]


def test_a_stale_leader_of_an_older_term_need_not_hold_what_a_newer_term_committed():
    # A candidate of term 3 paused with its votes in its inbox wins on resuming, after
    # term 4 committed index 2: legal (it steps down at term 4's first message).
    checker = committed_old_then_new()
    checker._check_leader(node("n3", 3, OLD))
    assert names(checker) == []


def test_a_stale_leader_must_still_hold_what_was_committed_before_its_term():
    checker = committed_old_then_new()
    checker._check_leader(node("n3", 3, LogEntry(term=2, index=1, kind="noop")))
    assert names(checker) == ["leader-completeness"]
