"""Tunables of a Multi-Paxos node.  Times are seconds of the node's own clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

READ_MODES = ("lease", "quorum", "log")

# Deliberate protocol bugs that prove the checkers can fail (see check/multipaxos.py):
#   lease-without-wait       a new leader serves (and decides) at once, without waiting
#                            for the lease its promisers granted the old leader to expire
#   skip-phase1-on-takeover  a node that times out leads with a new ballot without running
#                            phase 1, so it never learns what earlier leaders got accepted
#   promise-after-wipe       an acceptor that lost its disk ignores the platform's rejoining
#                            key: it promises, votes and campaigns at once
#   count-self-before-durable  with early Accepts (a runtime that reports_durable), the
#                            leader counts its own vote toward a slot's quorum before the
#                            vote is durable
BUGS = ("lease-without-wait", "skip-phase1-on-takeover", "promise-after-wipe", "count-self-before-durable")


# Timers on real processes (ProtocolSpec.server_options), as Raft's (raft/options.py):
# etcd's 100 ms heartbeats and 1 s election timeout; the simulator keeps the defaults.
# Pre-vote too: a paused or cut-off node must not depose a leader a majority still hears
# (the simulator keeps Chubby's plain phase 1, the seeds' narrative).
SERVER_OPTIONS = {"election_timeout": 1.0, "heartbeat_interval": 0.1, "pre_vote": True}


@dataclass(slots=True, kw_only=True)
class MultiPaxosOptions:
    election_timeout: float = 0.3  # randomized in [T, 2T)
    heartbeat_interval: float = 0.05
    # An acceptor's lease grant lasts this long (its clock) from a heartbeat's arrival;
    # the leader counts lease_duration * (1 - clock_drift_bound) from the heartbeat's send.
    lease_duration: float = 0.5
    # Clocks run at rates that differ by at most this fraction (the lease arithmetic's
    # assumption; steps of a clock are outside it).
    clock_drift_bound: float = 0.05
    read_mode: str = "lease"
    # A configuration decided at slot s governs slots s + alpha on; a leader has at most
    # alpha slots beyond its executed prefix in flight.
    alpha: int = 10
    # A leader that did not hear from a majority in an election timeout steps down.
    check_quorum: bool = True
    # Ask the members before phase 1, which runs only if a majority has not heard from
    # a leader within the election timeout (multi_node.py's rules).
    pre_vote: bool = False
    # A node with no known leader that gets a client command starts phase 1 at once.
    campaign_on_request: bool = True
    max_batch: int = 64  # values per Learn / re-sent Accept
    # Commands a leader puts in one slot when several wait: alpha bounds the slots in
    # flight, so without this it bounds the commands in flight too.
    commands_per_slot: int = 64
    # Past its first value, a slot's batch, an Accept and a Learn stay within this many
    # estimated bytes, values included: capped by count alone (64 commands of 1 MiB), a
    # message held its peer link for 64 MiB (protocols/common/batching.py).
    max_batch_bytes: int = 1024 * 1024
    max_queue: int = 1000  # commands a leader holds while it cannot propose
    snapshot_threshold: int = 200  # executed commands (a slot counts its batch) before a snapshot; 0 = never
    snapshot_trailing: int = 20  # slots kept after a snapshot for lagging nodes (more for a large state)
    members: tuple[str, ...] = ()  # initial configuration; empty = the runtime's members
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MultiPaxosOptions:
        opts = options_from_dict(cls, values, "multipaxos")
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.read_mode not in READ_MODES:
            raise ValueError(f"unknown read mode {self.read_mode!r}; valid: {', '.join(READ_MODES)}")
        check_bug_names(self.bugs, BUGS)
        if self.heartbeat_interval <= 0 or self.election_timeout <= self.heartbeat_interval:
            raise ValueError("need 0 < heartbeat_interval < election_timeout")
        if self.lease_duration <= self.heartbeat_interval:
            raise ValueError("lease_duration must exceed heartbeat_interval")
        if not 0 <= self.clock_drift_bound < 0.5:
            raise ValueError("clock_drift_bound must be in [0, 0.5)")
        if self.alpha < 1 or self.max_batch < 1 or self.max_queue < 1 or self.commands_per_slot < 1:
            raise ValueError("alpha, max_batch, max_queue and commands_per_slot must be at least 1")
        if self.max_batch_bytes < 1:
            raise ValueError("max_batch_bytes must be at least 1")
        if self.snapshot_threshold < 0 or self.snapshot_trailing < 0:
            raise ValueError("snapshot_threshold and snapshot_trailing must be >= 0")
