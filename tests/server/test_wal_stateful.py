"""Hypothesis stateful test: DiskStorage against MemoryStorage models of the working view
and of the synced state, through random writes, batches completed out of order, crashes
(close without sync) and copies of the directory taken mid-run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.raft.messages import NOOP, HardState, LogEntry
from consensuskit.server.wal import DiskStorage, SyncBatch

OPTIONS: dict[str, Any] = {"segment_bytes": 256, "inline_limit": 48, "fsync": False}
KEYS = ("raft/hard-state", "raft/snapshot", "other")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=8),
    st.binary(max_size=80),  # past inline_limit: a named-record file
)
values = st.recursive(
    st.one_of(
        scalars,
        st.builds(HardState, term=st.integers(0, 100), voted_for=st.one_of(st.none(), st.text(max_size=3))),
        st.builds(LogEntry, term=st.integers(0, 9), index=st.integers(0, 999), kind=st.just(NOOP)),
    ),
    lambda inner: st.one_of(st.tuples(inner, inner), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)


def view(s: Any) -> tuple[Any, ...]:
    return s.log_first(), s.log_last(), s.log_records(), tuple(s.get(k) for k in KEYS)


class DiskStorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="wal-stateful-"))
        self.directory = self.root / "node"
        self.disk = DiskStorage.open(self.directory, **OPTIONS)
        self.working = MemoryStorage()
        self.durable = MemoryStorage()
        self.pending: list[tuple[SyncBatch, MemoryStorage]] = []

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def both(self, method: str, *args: Any) -> None:
        getattr(self.disk, method)(*args)
        getattr(self.working, method)(*args)

    # ------------------------------------------------------------------- writes
    @rule(key=st.sampled_from(KEYS), value=values)
    def put(self, key: str, value: Any) -> None:
        self.both("put", key, value)

    @rule(records=st.lists(values, min_size=1, max_size=4))
    def append(self, records: list[Any]) -> None:
        self.both("log_append", records)

    @rule(back=st.integers(0, 6))
    def truncate(self, back: int) -> None:
        position = max(self.working.log_first(), self.working.log_last() + 1 - back)
        self.both("log_truncate_from", position)

    @rule(ahead=st.integers(-2, 8))
    def compact(self, ahead: int) -> None:
        self.both("log_compact_to", self.working.log_first() + ahead)

    # ------------------------------------------------------------------ syncing
    @rule()
    def sync(self) -> None:
        self.disk.sync()
        self.durable = self.working.copy()
        self.pending = []

    @rule()
    def begin(self) -> None:
        batch = self.disk.begin_sync()
        self.pending.append((batch, self.working.copy()))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        """Completing a batch writes every batch begun before it as well."""
        i = data.draw(st.integers(0, len(self.pending) - 1))
        self.pending[i][0].complete()
        self.durable = self.pending[i][1]
        del self.pending[: i + 1]

    # ------------------------------------------------------------------ crashes
    @rule()
    def crash(self) -> None:
        self.disk.close()  # without sync: only completed batches survive
        self.disk = DiskStorage.open(self.directory, **OPTIONS)
        assert self.disk.recovery_notes == []
        self.working = self.durable.copy()
        self.pending = []

    @rule()
    def copy_of_the_running_directory(self) -> None:
        copy = self.root / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.directory, copy)
        recovered = DiskStorage.open(copy, **OPTIONS)
        try:
            assert view(recovered) == view(self.durable)
        finally:
            recovered.close()

    # --------------------------------------------------------------- invariants
    @invariant()
    def reads_see_every_write(self) -> None:
        assert view(self.disk) == view(self.working)

    @invariant()
    def no_segment_is_kept_that_recovery_does_not_need(self) -> None:
        segments = self.disk._segments
        on_disk = sorted(p.name for p in self.directory.glob("wal-*.log"))
        assert on_disk == [s.path.name for s in segments]
        if len(segments) > 1:
            assert segments[0].max_position >= self.disk_durable_first()

    def disk_durable_first(self) -> int:
        # The log start of the newest batch written (what deletion is allowed to use).
        return self.durable.log_first()


TestDiskStorageMachine = DiskStorageMachine.TestCase
TestDiskStorageMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
# Generous: a failure is found in seconds, but shrinking a stateful run takes minutes.
TestDiskStorageMachine = pytest.mark.timeout(900)(TestDiskStorageMachine)


@pytest.mark.slow
class TestDiskStorageMachineLong(DiskStorageMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = settings(max_examples=1000, stateful_step_count=80, deadline=None)
