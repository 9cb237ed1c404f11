"""ConfigHistory against a naive twin in the shape Raft had: a log of positions scanned
backwards for the newest configuration entry, with a base below the log's offset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.common.config_history import ConfigHistory


class NaiveHistory:
    """``log[i]`` is the configuration recorded at index ``offset + 1 + i``, or None."""

    def __init__(self, offset: int, base: str) -> None:
        self.offset, self.base = offset, base
        self.log: list[str | None] = []

    def last(self) -> int:
        return self.offset + len(self.log)

    def record(self, index: int, config: str) -> None:
        while self.last() < index - 1:
            self.log.append(None)
        self.log.append(config)

    def at(self, index: int) -> str:
        for i in range(min(index, self.last()), self.offset, -1):
            if self.log[i - self.offset - 1] is not None:
                return self.log[i - self.offset - 1]
        return self.base

    def latest(self) -> tuple[int, str]:
        for i in range(self.last(), self.offset, -1):
            if self.log[i - self.offset - 1] is not None:
                return i, self.log[i - self.offset - 1]
        return self.offset, self.base

    def since(self, index: int) -> list[tuple[int, str]]:
        later = []
        for i in range(max(index, self.offset) + 1, self.last() + 1):
            config = self.log[i - self.offset - 1]
            if config is not None:
                later.append((i, config))
        return [(index, self.at(index)), *later]

    def between(self, lo: int, hi: int) -> list[str]:
        out: list[str] = []
        for i in range(lo, hi + 1):
            if self.at(i) not in out:
                out.append(self.at(i))
        return out

    def truncate_from(self, index: int) -> None:
        if index <= self.offset:
            self.log = []
        else:
            del self.log[index - self.offset - 1 :]

    def rebase(self, index: int, config: str) -> None:
        keep = self.log[index - self.offset :] if index < self.last() else []
        self.offset, self.base, self.log = index, config, keep

    def compact(self, upto: int) -> None:
        if upto > self.offset:
            self.rebase(upto, self.at(upto))


def test_a_configuration_governs_from_its_index_until_the_next():
    h = ConfigHistory(0, "abc")
    h.record(3, "abcd")
    h.record(7, "bcd")
    assert [h.at(i) for i in (0, 2, 3, 6, 7, 100)] == ["abc", "abc", "abcd", "abcd", "bcd", "bcd"]
    assert h.latest() == (7, "bcd") and h.base() == (0, "abc")
    assert h.since(4) == [(4, "abcd"), (7, "bcd")]
    assert h.between(1, 7) == ["abc", "abcd", "bcd"] and h.between(4, 6) == ["abcd"]
    h.truncate_from(7)  # the entry at 7 left the log
    assert h.latest() == (3, "abcd")
    h.compact(5)  # snapshot at 5: the configuration in force there is the base
    assert h.entries == [(5, "abcd")] and h.at(1) == "abcd"
    h.truncate_from(1)  # never the base
    assert h.latest() == (5, "abcd")
    with pytest.raises(ValueError):
        h.record(5, "x")  # not after the latest
    with pytest.raises(ValueError):
        h.rebase(4, "x")  # before the base
    with pytest.raises(ValueError):
        ConfigHistory.of([(1, "a"), (1, "b")])  # e.g. a peer's garbage snapshot
    with pytest.raises(ValueError):
        ConfigHistory.of([])


configs = st.sampled_from(["abc", "abcd", "bcd", "ab", "abcde"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.integers(1, 4), configs),
        st.tuples(st.just("truncate"), st.integers(0, 30)),
        st.tuples(st.just("compact"), st.integers(0, 30)),
        st.tuples(st.just("rebase"), st.integers(0, 30), configs),
        st.tuples(st.just("query"), st.integers(0, 30), st.integers(0, 8)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5), configs, ops)
def test_agrees_with_the_naive_twin(offset, base, operations):
    real, naive = ConfigHistory(offset, base), NaiveHistory(offset, base)
    for op in operations:
        kind = op[0]
        if kind == "record":
            index = naive.last() + op[1]
            real.record(index, op[2])
            naive.record(index, op[2])
        elif kind == "truncate":
            real.truncate_from(op[1])
            naive.truncate_from(op[1])
        elif kind == "compact":
            upto = min(op[1], naive.last())  # a log compacts only what it holds
            real.compact(upto)
            naive.compact(upto)
        elif kind == "rebase":
            if op[1] >= naive.offset:
                real.rebase(op[1], op[2])
                naive.rebase(op[1], op[2])
        else:
            lo, hi = op[1], op[1] + op[2]
            assert real.at(lo) == naive.at(lo)
            assert real.since(lo) == naive.since(lo)
            assert real.between(lo, hi) == naive.between(lo, hi)
        assert real.latest() == naive.latest()
        assert real.base() == (naive.offset, naive.base)
