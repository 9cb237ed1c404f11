"""Tunables of a ZAB server.  Times are seconds of the server's own clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

# How a read is served by default (a request's own consistency wins):
#   linearizable  the leader confirms it still leads (a PING round to a quorum) and
#                 answers at its commit point; learners forward it (the kv default)
#   sync          ZooKeeper's sync() + read: the learner asks the leader for its commit
#                 point, applies up to it, then reads locally (not linearizable: the
#                 leader may have been deposed; see README)
#   local         any server answers from what it applied: sequentially consistent
READ_MODES = ("linearizable", "sync", "local")

# Deliberate protocol bugs that prove the checker can fail (check/zab.py):
#   ack-before-persist    a follower ACKs NEWLEADER (and takes the epoch) before the synced
#                         txns reach its disk (ZOOKEEPER-3911, -4646)
#   epoch-before-persist  a follower updates its current epoch before the synced txns
#                         reach its disk, ACKing after (ZOOKEEPER-4643)
#   trunc-across-epoch    the leader sends TRUNC to a zxid of another epoch than the
#                         learner's last instead of SNAP
#   vote-ignores-epoch    FLE orders votes by zxid then id, ignoring the peer epoch
#   paper-propose-acked   (issues.md #1) new PROPOSALs go only to learners that ACKed
#                         NEWLEADER; one acking later resumes after them
#   paper-redundant-propose  (issues.md #2) a learner appends a PROPOSAL it already
#                         holds (a late joiner gets one in its DIFF and again live)
#   paper-commit-ld-ack   (issues.md #3) UPTODATE (COMMIT-LD) commits up to the zxid
#                         of the learner's ACK-LD, not the leader's commit point
#   vote-after-wipe       a server that lost its disk votes and ACKs at once, as if it
#                         had never promised anything (README, "A server that lost its disk")
BUGS = (
    "ack-before-persist",
    "epoch-before-persist",
    "trunc-across-epoch",
    "vote-ignores-epoch",
    "paper-propose-acked",
    "paper-redundant-propose",
    "paper-commit-ld-ack",
    "vote-after-wipe",
)

MAX_COUNTER = 0xFFFFFFFF


# Timers on real processes (ProtocolSpec.server_options), as Raft's (raft/options.py):
# a 1 s silence limit and PINGs every 100 ms; the simulator keeps the defaults.
SERVER_OPTIONS = {"election_timeout": 1.0, "tick": 0.1}


@dataclass(slots=True, kw_only=True)
class ZabOptions:
    # A learner that hears nothing from its leader for this long, or a leader that hears
    # from no quorum, goes back to LOOKING (ZooKeeper's syncLimit * tickTime).
    election_timeout: float = 0.3
    # The leader's PING period (tickTime / 2 in ZooKeeper).
    tick: float = 0.05
    # FLE: wait this long after a quorum agrees for a better late vote (finalizeWait).
    finalize_wait: float = 0.02
    # FLE: resend notifications this often while LOOKING (randomized in [T, 2T)).
    notification_interval: float = 0.1
    read_mode: str = "linearizable"
    # The last ``observers`` servers (in id order) observe: they never vote.
    observers: int = 0
    # A PROPOSAL (or INFORM) carries at most this many txns and, past its first, this
    # many estimated bytes, values included: a batch capped by count alone (64 values
    # of 1 MiB) holds its peer link for 64 MiB (protocols/common/batching.py).
    max_batch_txns: int = 64
    max_batch_bytes: int = 1024 * 1024
    # Txns sent to a learner and not yet acknowledged; more wait.
    max_inflight_txns: int = 1024
    # Snapshot once this many applied txns sit in the log (0: never); the leader keeps
    # ``snapshot_trailing`` committed txns after it for DIFF (its committedLog; a large
    # state keeps more: common/snapshot_policy.py entries_kept).
    snapshot_threshold: int = 200
    snapshot_trailing: int = 20
    # The counter half of a zxid; reaching it forces a new epoch (ZooKeeper: 2^32 - 1).
    max_counter: int = MAX_COUNTER
    # With the *-before-persist knobs: how long the follower's log writer takes to
    # write the synced txns (ZooKeeper's asynchronous SyncRequestProcessor).
    async_log_delay: float = 0.005
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ZabOptions:
        opts = options_from_dict(cls, values, "zab")
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.read_mode not in READ_MODES:
            raise ValueError(f"unknown read mode {self.read_mode!r}; valid: {', '.join(READ_MODES)}")
        check_bug_names(self.bugs, BUGS)
        if self.tick <= 0 or self.election_timeout <= self.tick:
            raise ValueError("need 0 < tick < election_timeout")
        if self.finalize_wait < 0 or self.notification_interval <= 0:
            raise ValueError("finalize_wait must be >= 0 and notification_interval > 0")
        if self.observers < 0:
            raise ValueError("observers must be >= 0")
        if self.max_batch_txns < 1 or self.max_inflight_txns < 1 or self.max_batch_bytes < 1:
            raise ValueError("batch and in-flight limits must be at least 1")
        if not 1 <= self.max_counter <= MAX_COUNTER:
            raise ValueError(f"max_counter must be in 1..{MAX_COUNTER}")
