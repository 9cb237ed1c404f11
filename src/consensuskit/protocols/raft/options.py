"""Tunables of a Raft node.  Times are seconds of the node's own clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

READ_MODES = ("read-index", "lease", "log")

# Deliberate protocol bugs that prove the checkers can fail (see check/raft.py):
#   commit-previous-term  count replicas of an old-term entry to commit it (fig. 8)
#   vote-twice            grant a vote even after voting for another in this term
#   skip-log-check        accept AppendEntries whose prev entry has a different term
#   stale-read            any node answers reads from its local state, no ReadIndex/lease
#   vote-after-wipe       a node that lost its disk ignores the platform's rejoining key:
#                         it votes, campaigns and counts in quorums at once
#   count-self-before-durable  with early replication (a runtime that reports_durable), the
#                         leader counts its own log toward a commit quorum before its write
#                         is durable (§10.2.1 allows it to send early, not to count early)
BUGS = (
    "commit-previous-term",
    "vote-twice",
    "skip-log-check",
    "stale-read",
    "vote-after-wipe",
    "count-self-before-durable",
)


# Timers on real processes (ProtocolSpec.server_options): etcd's 100 ms heartbeats and
# 1 s election timeout.  On a loaded 2-core machine a follower's silence reached 250 ms
# with no fault at all (benchmarks/kv_throughput.py, docs/server.md), too close to the
# simulator's 300 ms; the simulator keeps the defaults below.
# Batches: at 256 clients a leader's runtime batch held more than 64 commands and went
# out as several AppendEntries per follower, each paying its own write, decode, WAL
# record and response; up to 1,024 entries a message (max_batch_bytes, over each entry's
# estimated size with its value, still caps it, as etcd's MaxSizePerMsg does) cut the
# leader's CPU per put by 10-20% (benchmarks/kv_throughput.py, issue 18).
SERVER_OPTIONS = {"election_timeout": 1.0, "heartbeat_interval": 0.1, "max_batch_entries": 1024}


@dataclass(slots=True, kw_only=True)
class RaftOptions:
    election_timeout: float = 0.3  # randomized in [T, 2T)
    heartbeat_interval: float = 0.05
    pre_vote: bool = True
    check_quorum: bool = True
    read_mode: str = "read-index"
    # Lease reads assume clocks drift apart by at most this fraction (§6.4.1).
    clock_drift_bound: float = 0.05
    # Seconds of client cache lease the leader grants on a "cache" read (cache_leases.py);
    # 0: none, a cache read is an ordinary linearizable read.
    cache_lease: float = 0.0
    max_batch_entries: int = 64
    max_batch_bytes: int = 64 * 1024
    max_inflight_msgs: int = 8
    max_inflight_bytes: int = 256 * 1024
    # Take a snapshot once this many applied entries sit in the log; 0 disables.
    snapshot_threshold: int = 200
    # Entries kept after a snapshot so slightly lagging followers need no snapshot (a
    # large state keeps more: common/snapshot_policy.py entries_kept).
    snapshot_trailing: int = 20
    # Snapshots whose encoding is larger go out in chunks of this size (stop-and-wait).
    snapshot_chunk_bytes: int = 1 << 20
    # A follower passes commands on to the leader and serves linearizable reads with a
    # read index from the leader (etcd's proposal forwarding and follower ReadIndex);
    # off: it refuses them with not-leader and its leader hint (HTTP 421).
    forward_requests: bool = True
    # Forwarded commands and reads a follower waits on at most (the oldest is forgotten).
    max_forwarded: int = 4096
    # Initial voters; empty means the members the runtime passes in.
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RaftOptions:
        opts = options_from_dict(cls, values, "raft")
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.read_mode not in READ_MODES:
            raise ValueError(f"unknown read mode {self.read_mode!r}; valid: {', '.join(READ_MODES)}")
        check_bug_names(self.bugs, BUGS)
        if self.heartbeat_interval <= 0 or self.election_timeout <= self.heartbeat_interval:
            raise ValueError("need 0 < heartbeat_interval < election_timeout")
        if not 0 <= self.clock_drift_bound < 1:
            raise ValueError("clock_drift_bound must be in [0, 1)")
        if not 0 <= self.cache_lease <= 3600:
            raise ValueError("cache_lease must be in [0, 3600] seconds")
        if self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_chunk_bytes must be at least 1")
        if self.max_forwarded < 1:
            raise ValueError("max_forwarded must be at least 1")
        if self.max_batch_entries < 1 or self.max_inflight_msgs < 1:
            raise ValueError("batch and in-flight limits must be at least 1")
