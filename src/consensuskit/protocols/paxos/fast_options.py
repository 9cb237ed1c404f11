"""Tunables of a Fast Paxos node (on top of the Basic Paxos ones)."""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.protocols.paxos.basic_options import BasicPaxosOptions

RECOVERY_MODES = ("coordinated", "uncoordinated")


@dataclass(slots=True, kw_only=True)
class FastPaxosOptions(BasicPaxosOptions):
    # The node that sends "any" and leads coordinated recovery; empty = first member.
    coordinator: str = ""
    # What happens after a collision in a fast round (Lamport, Fast Paxos §3.3-3.4):
    #   coordinated    the coordinator picks a value from the round's 2b messages and
    #                  starts classic round i+1 (4 message delays from the client)
    #   uncoordinated  each acceptor treats the 2b messages as 1b messages of fast round
    #                  i+1 and votes there itself (3 message delays)
    recovery: str = "coordinated"
    # Acceptor failures a fast round must survive: needs n >= 3f+1 acceptors and a fast
    # quorum of at most n-f.
    f: int = 1
    # Period of the coordinator's "any" (re-sent for acceptors that lost or restarted).
    any_interval: float = 1.0
    # After a collision, wait this long for the remaining 2b messages of the round
    # before recovering with the classic quorum at hand (so nodes that can wait for all
    # of them pick the same value).
    recovery_wait: float = 0.02

    @staticmethod
    def protocol_name() -> str:
        return "fast-paxos"

    def validate(self) -> None:
        BasicPaxosOptions.validate(self)
        if self.recovery not in RECOVERY_MODES:
            raise ValueError(f"unknown recovery {self.recovery!r}; valid: {', '.join(RECOVERY_MODES)}")
        if self.f < 0:
            raise ValueError(f"f must be >= 0, got {self.f}")
        if self.any_interval <= 0 or self.recovery_wait <= 0:
            raise ValueError("any_interval and recovery_wait must be > 0")
