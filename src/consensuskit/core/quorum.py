"""Majority arithmetic shared by every protocol (pure functions, tested against a naive twin)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def quorum_size(voters: int) -> int:
    return voters // 2 + 1


def committed_index(match: Mapping[str, int], voters: Iterable[str]) -> int:
    """Largest index replicated on a majority of ``voters`` (absent voters count as 0)."""
    get = match.get
    indexes = [get(v, 0) for v in voters]  # a list, not a generator: no resume per voter
    indexes.sort(reverse=True)
    if not indexes:
        return 0
    return indexes[quorum_size(len(indexes)) - 1]


def has_quorum(granted: Iterable[str], voters: Iterable[str]) -> bool:
    voter_set = set(voters)
    return len(voter_set.intersection(granted)) >= quorum_size(len(voter_set))
