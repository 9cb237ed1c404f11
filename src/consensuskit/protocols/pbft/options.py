"""Tunables of a PBFT replica.  Times are seconds of the replica's own clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from consensuskit.core.options import check_bug_names, options_from_dict
from consensuskit.protocols.pbft.auth import SIGNATURE_KINDS

# Deliberate protocol bugs that prove the checker can fail (check/pbft.py):
#   early-commit               send COMMIT on accepting the PRE-PREPARE, before being
#                              prepared (committed-local then no longer implies prepared
#                              at f+1 correct replicas)
#   new-view-ignores-prepared  the new view re-issues nothing: every number above the
#                              checkpoint starts empty, so a committed request can lose
#                              its sequence number
#   small-quorums              prepared with f prepares and committed with f+1 commits
#                              (the crash-fault majority): an equivocating primary gets two
#                              requests decided at one number
#   read-only-f-plus-1         with ``read_only``, clients keep the normal case's f+1
#                              matching replies instead of 2f+1 (reads answered without
#                              ordering, writes alike): f+1 replicas that have not yet
#                              executed a completed write outvote it, the read is stale
BUGS = ("early-commit", "new-view-ignores-prepared", "small-quorums", "read-only-f-plus-1")

STRATEGIES = ("equivocate", "silent", "forge", "replay", "twin", "delay")


@dataclass(slots=True, kw_only=True)
class PbftOptions:
    # A request waiting longer than this triggers a view change; doubled after every
    # view change that does not complete (the paper's T, 2T, 4T...).
    view_change_timeout: float = 0.5
    # Most requests per PRE-PREPARE (1: no batching).
    batch_size: int = 16
    # Most sequence numbers the primary has assigned and not yet executed; requests
    # beyond wait and go out as one batch (the paper's batching window).
    max_inflight: int = 2
    # Checkpoint every K sequence numbers; the high watermark is h + watermark_window.
    checkpoint_interval: int = 16
    watermark_window: int = 32
    # MAC and signing keys derive from the runtime's cluster key (the server's, derived
    # from the cluster secret); this secret only where there is none (the simulator).
    mac_secret: str = "consensuskit-pbft"
    signatures: str = "auto"  # one of auth.SIGNATURE_KINDS
    # The read-only optimisation (TOCS §5.1.3): a replica answers a read it sees for the
    # first time from its executed state, without ordering, and hands it to every other
    # replica; clients then wait for 2f+1 matching replies (writes too), and a read
    # retransmitted (no 2f+1 agreed) is ordered as a regular request.
    read_only: bool = False
    # "n1:equivocate,n2:twin": these replicas run byzantine.py's strategies.
    byzantine: str = ""
    # Delay of the "delay" strategy (seconds), for messages to its victim.
    byzantine_delay: float = 0.3
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict) -> PbftOptions:  # type: ignore[type-arg]
        opts = options_from_dict(cls, values, "pbft")
        opts.validate()
        return opts

    def validate(self) -> None:
        check_bug_names(self.bugs, BUGS)
        if self.view_change_timeout <= 0:
            raise ValueError("view_change_timeout must be > 0")
        if self.batch_size < 1 or self.max_inflight < 1:
            raise ValueError("batch_size and max_inflight must be at least 1")
        if self.checkpoint_interval < 1 or self.watermark_window < self.checkpoint_interval:
            raise ValueError("need 1 <= checkpoint_interval <= watermark_window")
        if self.signatures not in SIGNATURE_KINDS:
            raise ValueError(f"unknown signatures {self.signatures!r}; valid: {', '.join(SIGNATURE_KINDS)}")
        parse_byzantine(self.byzantine)

    def faulty(self) -> dict[str, str]:
        return parse_byzantine(self.byzantine)


def parse_byzantine(text: str) -> dict[str, str]:
    """``"n1:equivocate,n2:twin"`` -> {"n1": "equivocate", "n2": "twin"}; ValueError (one
    line) naming the valid strategies."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in str(text or "").split(",")):
        if not part:
            continue
        node, sep, strategy = part.partition(":")
        if not sep or not node or strategy not in STRATEGIES:
            raise ValueError(
                f"bad byzantine entry {part!r}: expected NODE:STRATEGY with STRATEGY one of "
                f"{', '.join(STRATEGIES)}"
            )
        if node in out:
            raise ValueError(f"byzantine names {node} twice")
        out[node] = strategy
    return out
