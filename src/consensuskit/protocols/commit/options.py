"""Tunables of the commit protocols.  Times are seconds of the node's own clock.

Deliberate bugs (each proves check/commit.py can fail):
  decide-before-log          2PC: the coordinator sends Commit before its commit record
                             is written (it writes it a moment later)
  vote-before-log            a participant sends its yes vote (Paxos Commit: its
                             phase 2a "prepared") before its prepared record is written
  3pc-commit-when-uncertain  3PC: the termination protocol commits when every state it
                             collected is uncertain (it must abort)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

BUGS_2PC = ("decide-before-log", "vote-before-log")
BUGS_3PC = ("vote-before-log", "3pc-commit-when-uncertain")
BUGS_PAXOS_COMMIT = ("vote-before-log",)


@dataclass(slots=True, kw_only=True)
class CommitOptions:
    # The first P members are the participants (resource managers), each owning a key
    # range (txn.py); 0: every member.  Any member coordinates the transactions it is
    # asked for.
    participants: int = 0
    # Paxos Commit: F, the acceptor failures tolerated; the first 2F+1 members are the
    # acceptors.  F = 0 is 2PC with the coordinator's log on one acceptor.
    faults: int = 1
    # Coordinator: how long it waits for votes (then aborts), for pre-commit
    # acknowledgements (3PC: then commits), and between Commit resends (2PC).
    # (Long enough for real processes on a busy machine: a sync can take tens of ms.)
    vote_timeout: float = 0.2
    ack_timeout: float = 0.2
    resend_interval: float = 0.5
    # Participant: how long it waits, uncertain, before it asks (2PC) or starts the
    # termination protocol (3PC) or a recovery ballot (Paxos Commit), and how long it
    # waits for the states it asked for.  Must exceed vote_timeout + ack_timeout plus
    # the round trips, or a participant takes over from a live coordinator.
    decision_timeout: float = 0.6
    report_timeout: float = 0.1
    # The bug knobs' "a moment later" (see the module docstring).
    lazy_log_delay: float = 0.02
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any], protocol: str, bugs: Sequence[str]) -> CommitOptions:
        opts = options_from_dict(cls, values, protocol)
        check_bug_names(opts.bugs, bugs)
        if opts.participants < 0 or opts.faults < 0:
            raise ValueError(f"{protocol}: participants and faults must be >= 0")
        for name in ("vote_timeout", "ack_timeout", "resend_interval", "decision_timeout", "report_timeout"):
            if getattr(opts, name) <= 0:
                raise ValueError(f"{protocol}: {name} must be > 0")
        return opts

    def participants_of(self, members: Sequence[str], protocol: str) -> tuple[str, ...]:
        if self.participants > len(members):
            raise ValueError(
                f"{protocol}: {self.participants} participants need as many nodes, got {len(members)}"
            )
        return tuple(members[: self.participants or len(members)])
