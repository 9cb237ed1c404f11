"""MemoryStorage: log positions, truncation, compaction, named records."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from consensuskit.core.storage import MemoryStorage, log_after_snapshot


def state(s: MemoryStorage) -> tuple[int, int, list]:
    return s.log_first(), s.log_last(), s.log_records()


def filled(first: int = 1, n: int = 5) -> MemoryStorage:
    s = MemoryStorage(first)
    s.log_append([f"r{first + i}" for i in range(n)])
    return s


def test_empty_storage():
    assert state(MemoryStorage()) == (1, 0, [])
    assert state(MemoryStorage(10)) == (10, 9, [])


def test_append_assigns_consecutive_positions():
    s = MemoryStorage()
    s.log_append(["a", "b"])
    s.log_append([])
    s.log_append(["c"])
    assert state(s) == (1, 3, ["a", "b", "c"])


def test_records_returns_a_copy():
    s = filled()
    s.log_records().append("junk")
    assert s.log_records() == ["r1", "r2", "r3", "r4", "r5"]


def test_truncate_from_middle_start_and_past_end():
    s = filled()
    s.log_truncate_from(4)
    assert state(s) == (1, 3, ["r1", "r2", "r3"])
    s.log_truncate_from(10)  # past the end: nothing to drop
    assert state(s) == (1, 3, ["r1", "r2", "r3"])
    s.log_truncate_from(1)
    assert state(s) == (1, 0, [])
    s.log_append(["x"])
    assert state(s) == (1, 1, ["x"])


def test_truncate_before_first_raises_and_changes_nothing():
    s = filled(first=5)
    with pytest.raises(ValueError, match="cannot truncate at 4: log starts at 5"):
        s.log_truncate_from(4)
    assert state(s) == (5, 9, ["r5", "r6", "r7", "r8", "r9"])


def test_compact_drops_prefix():
    s = filled()
    s.log_compact_to(3)
    assert state(s) == (3, 5, ["r3", "r4", "r5"])
    s.log_append(["r6"])
    assert state(s) == (3, 6, ["r3", "r4", "r5", "r6"])


def test_detach_drops_the_prefix_as_compact_does_and_hands_it_back():
    everything = ["r1", "r2", "r3", "r4", "r5"]
    cases = [(3, ["r1", "r2"]), (1, []), (6, everything), (9, everything)]
    for position, dropped in cases:
        detached, compacted = filled(), filled()
        assert detached.log_detach_to(position) == dropped
        compacted.log_compact_to(position)
        assert state(detached) == state(compacted)
    empty = MemoryStorage(5)
    assert empty.log_detach_to(2) == []
    assert state(empty) == (2, 1, [])  # an empty log restarts earlier, as with compact


def test_compact_to_first_or_before_is_a_no_op():
    s = filled(first=3)
    s.log_compact_to(3)
    s.log_compact_to(1)
    assert state(s) == (3, 7, ["r3", "r4", "r5", "r6", "r7"])


def test_compact_to_just_past_the_end_empties():
    s = filled()
    s.log_compact_to(6)
    assert state(s) == (6, 5, [])


def test_an_empty_log_restarts_before_its_old_start():
    """ZAB's SNAP sync restores a leader's snapshot older than the node's own: the emptied
    log must start right after it, or positions and txn indexes part ways."""
    s = filled(first=251)
    s.log_compact_to(201)  # holding records: nothing to drop, nothing moves
    assert state(s) == (251, 255, ["r251", "r252", "r253", "r254", "r255"])
    s.log_truncate_from(251)
    s.log_compact_to(201)
    assert state(s) == (201, 200, [])
    s.log_append(["r201"])
    assert state(s) == (201, 201, ["r201"])
    empty = MemoryStorage(first_position=5)
    empty.log_compact_to(0)  # positions start at 1
    assert state(empty) == (5, 4, [])


def test_compact_beyond_the_end_restarts_the_log_there():
    s = filled()
    s.log_compact_to(42)
    assert state(s) == (42, 41, [])
    s.log_append(["r42", "r43"])
    assert state(s) == (42, 43, ["r42", "r43"])
    with pytest.raises(ValueError):
        s.log_truncate_from(41)


def test_named_records():
    s = MemoryStorage()
    assert s.get("hard") is None
    assert s.get("hard", "dflt") == "dflt"
    s.put("hard", (3, "a"))
    s.put("hard", (4, None))
    assert s.get("hard") == (4, None)


def test_copy_is_independent():
    s = filled()
    s.put("k", 1)
    c = s.copy()
    s.log_append(["r6"])
    s.log_compact_to(3)
    s.put("k", 2)
    assert state(c) == (1, 5, ["r1", "r2", "r3", "r4", "r5"])
    assert c.get("k") == 1
    c.log_truncate_from(2)
    assert state(s) == (3, 6, ["r3", "r4", "r5", "r6"])


class StorageVsDictModel(RuleBasedStateMachine):
    """MemoryStorage against a naive model: a dict position -> record and a first position."""

    def __init__(self) -> None:
        super().__init__()
        self.real = MemoryStorage(1)
        self.model: dict[int, object] = {}
        self.first = 1
        self.counter = 0
        self.kv: dict[str, int] = {}

    def model_last(self) -> int:
        return max(self.model) if self.model else self.first - 1

    @rule(n=st.integers(min_value=0, max_value=4))
    def append(self, n):
        records = []
        for _ in range(n):
            self.counter += 1
            records.append(self.counter)
        pos = self.model_last() + 1
        for r in records:
            self.model[pos] = r
            pos += 1
        self.real.log_append(records)

    @rule(position=st.integers(min_value=-1, max_value=30))
    def truncate_from(self, position):
        if position < self.first:
            with pytest.raises(ValueError):
                self.real.log_truncate_from(position)
            return
        for p in [p for p in self.model if p >= position]:
            del self.model[p]
        self.real.log_truncate_from(position)

    @rule(position=st.integers(min_value=-1, max_value=30))
    def compact_to(self, position):
        if position > self.first:
            for p in [p for p in self.model if p < position]:
                del self.model[p]
            self.first = position
        elif not self.model and position >= 1:
            self.first = position  # an empty log restarts anywhere
        self.real.log_compact_to(position)

    @rule(key=st.sampled_from(["a", "b"]), value=st.integers())
    def put(self, key, value):
        self.kv[key] = value
        self.real.put(key, value)

    @invariant()
    def matches_model(self):
        assert self.real.log_first() == self.first
        assert self.real.log_last() == self.model_last()
        expected = [self.model[p] for p in range(self.first, self.model_last() + 1)]
        assert self.real.log_records() == expected
        assert self.real.log_first() <= self.real.log_last() + 1
        for key in ("a", "b"):
            assert self.real.get(key) == self.kv.get(key)


TestStorageVsDictModel = StorageVsDictModel.TestCase
TestStorageVsDictModel.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


# ---------------------------------------------------------------------- log_after_snapshot
def log_of(first: int, last: int) -> MemoryStorage:
    storage = MemoryStorage(first_position=first)
    storage.log_append([f"r{p}" for p in range(first, last + 1)])
    return storage


@pytest.mark.parametrize(
    ("first", "last", "offset", "records", "new_first"),
    [
        (1, 5, 0, ["r1", "r2", "r3", "r4", "r5"], 1),  # no snapshot
        (1, 5, 3, ["r4", "r5"], 4),  # a crash between the snapshot and the compaction
        (4, 5, 3, ["r4", "r5"], 4),  # compacted as it should be
        (1, 2, 5, [], 6),  # the snapshot covers the whole log
        (1, 0, 0, [], 1),  # empty
        (7, 6, 6, [], 7),  # empty, after a snapshot
    ],
)
def test_log_after_snapshot_skips_and_compacts_what_it_covers(first, last, offset, records, new_first):
    storage = log_of(first, last)
    assert log_after_snapshot(storage, offset) == records
    assert storage.log_first() == new_first
    assert storage.log_records() == records


def test_log_after_snapshot_refuses_a_gap_after_the_snapshot_point():
    storage = log_of(6, 8)
    with pytest.raises(ValueError, match="log starts at 6, after the snapshot point 3"):
        log_after_snapshot(storage, 3)
    assert storage.log_records() == ["r6", "r7", "r8"]  # nothing dropped
