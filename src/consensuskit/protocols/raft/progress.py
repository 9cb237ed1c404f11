"""The leader's view of one follower's replication (etcd's tracker.Progress).

States:
  probe     - next is a guess; send one AppendEntries and wait for its answer.
  replicate - next is optimistic; pipeline batches while in-flight limits allow.
  snapshot  - an InstallSnapshot is outstanding; send nothing else but heartbeats.

Invariant: match < next.
"""

from __future__ import annotations

from collections import deque
from typing import Final

PROBE: Final = "probe"
REPLICATE: Final = "replicate"
SNAPSHOT: Final = "snapshot"


class Progress:
    __slots__ = (
        "demoted_at",
        "incarnation",
        "inflight",
        "inflight_bytes",
        "match",
        "next",
        "probe_sent",
        "rejoining",
        "snapshot_index",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.probe_sent = False
        self.snapshot_index = 0
        # (last index of a batch, its estimated bytes), oldest first
        self.inflight: deque[tuple[int, int]] = deque()
        self.inflight_bytes = 0
        # The follower lost its disk and rejoins (it answers through ``Rejoining``): it
        # counts in no quorum.  demoted_at: what it last reported (see messages.py).
        self.rejoining = False
        self.demoted_at = 0
        self.incarnation = 0

    def become_probe(self) -> None:
        if self.state == SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = PROBE
        self.probe_sent = False
        self.snapshot_index = 0
        self._clear_inflight()

    def become_replicate(self) -> None:
        self.state = REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self._clear_inflight()

    def become_snapshot(self, index: int) -> None:
        self.state = SNAPSHOT
        self.snapshot_index = index
        self._clear_inflight()

    def update(self, index: int) -> bool:
        """Acknowledge ``index`` as matching; returns True if match advanced."""
        advanced = index > self.match
        if advanced:
            self.match = index
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        while self.inflight and self.inflight[0][0] <= index:
            self.inflight_bytes -= self.inflight.popleft()[1]
        return advanced

    def sent(self, last_index: int, size: int) -> None:
        if self.state == REPLICATE:
            self.next = last_index + 1
            self.inflight.append((last_index, size))
            self.inflight_bytes += size
        else:
            self.probe_sent = True

    def is_paused(self, max_inflight_msgs: int, max_inflight_bytes: int) -> bool:
        if self.state == PROBE:
            return self.probe_sent
        if self.state == REPLICATE:
            return len(self.inflight) >= max_inflight_msgs or self.inflight_bytes >= max_inflight_bytes
        return True

    def _clear_inflight(self) -> None:
        self.inflight.clear()
        self.inflight_bytes = 0

    def __repr__(self) -> str:
        return f"Progress({self.state} match={self.match} next={self.next})"
