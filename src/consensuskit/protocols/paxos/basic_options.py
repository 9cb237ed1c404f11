"""Tunables of a Basic Paxos node.  Times are seconds of the node's own clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

# Deliberate protocol bugs that prove the checker can fail (see check/paxos.py):
#   ignore-promise       a proposer proposes its own value even when a promise reported
#                        an accepted one
#   accept-lower-ballot  an acceptor accepts a ballot below the one it promised
BUGS = ("ignore-promise", "accept-lower-ballot")


@dataclass(slots=True, kw_only=True)
class BasicPaxosOptions:
    # Role sets; empty means every member (all roles collapsed into each node).
    proposers: tuple[str, ...] = ()
    acceptors: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    # Randomized exponential backoff after a pre-emption (the cure for dueling
    # proposers): wait uniform(0, min(cap, base * 2**(k-1))) after the k-th in a row.
    backoff: bool = True
    backoff_base: float = 0.01
    backoff_cap: float = 0.2
    # A phase without a quorum of answers for this long is retried with a higher ballot.
    retry_timeout: float = 0.2
    # Every interval a learner asks one peer for chosen values it lacks; 0 disables.
    catchup_interval: float = 0.1
    catchup_batch: int = 64
    # A hole in the chosen log that outlives this is filled by proposing a no-op
    # (which adopts any value already accepted there).
    gap_timeout: float = 0.3
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        opts = options_from_dict(cls, values, cls.protocol_name())
        opts.validate()
        return opts

    @staticmethod
    def protocol_name() -> str:
        return "basic-paxos"

    def validate(self) -> None:
        check_bug_names(self.bugs, BUGS)
        if self.backoff_base <= 0 or self.backoff_cap < self.backoff_base:
            raise ValueError("need 0 < backoff_base <= backoff_cap")
        if self.retry_timeout <= 0 or self.gap_timeout <= 0:
            raise ValueError("retry_timeout and gap_timeout must be > 0")
        if self.catchup_interval < 0 or self.catchup_batch < 1:
            raise ValueError("catchup_interval must be >= 0 and catchup_batch >= 1")

    def roles(self, members: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(proposers, acceptors, learners), defaulted and checked against ``members``."""
        valid = set(members)
        out = []
        for name in ("proposers", "acceptors", "learners"):
            listed = tuple(getattr(self, name)) or tuple(members)
            unknown = sorted(set(listed) - valid)
            if unknown:
                raise ValueError(
                    f"{name} name unknown node(s) {', '.join(unknown)}; valid: {', '.join(members)}"
                )
            if len(set(listed)) != len(listed):
                raise ValueError(f"{name} lists a node twice: {', '.join(listed)}")
            out.append(tuple(sorted(listed)))
        return out[0], out[1], out[2]
