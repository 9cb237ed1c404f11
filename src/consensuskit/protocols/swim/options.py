"""Tunables of a SWIM member.  Times are seconds of the member's own clock; defaults are
memberlist's ``DefaultLANConfig`` (ProbeInterval 1 s, ProbeTimeout 500 ms,
IndirectChecks 3, SuspicionMult 4, SuspicionMaxTimeoutMult 6, RetransmitMult 4,
GossipInterval 200 ms, GossipNodes 3, PushPullInterval 30 s, AwarenessMaxMultiplier 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.options import check_bug_names, options_from_dict

# Deliberate protocol bugs that prove the checkers can fail (check/swim.py and the
# membership monitor, check/swim_monitor.py):
#   foreign-incarnation     a prober suspects a silent member at its incarnation + 1:
#                           raises an incarnation it does not own
#   alive-overrides-suspect an alive at the same incarnation clears a suspicion
#                           (SWIM: suspect beats alive at equal incarnation)
#   push-pull-resurrects    push-pull state revives a dead member with an alive at the
#                           same incarnation (memberlist #312's zombie)
#   unbounded-retransmit    the broadcast queue never retires an update (breaks the
#                           dissemination bound)
#   never-declare-dead      suspicion timers never declare anyone dead (breaks strong
#                           completeness)
#   drop-stale-alive        a stale alive about a member we hold suspect or dead is
#                           dropped silently instead of answered with the accusation
#                           (memberlist before PR #345: a restarted member never refutes)
BUGS = (
    "foreign-incarnation",
    "alive-overrides-suspect",
    "push-pull-resurrects",
    "unbounded-retransmit",
    "never-declare-dead",
    "drop-stale-alive",
)


@dataclass(slots=True, kw_only=True)
class SwimOptions:
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3  # k members asked to ping-req a silent target
    suspicion_mult: int = 4
    suspicion_max_mult: int = 6
    retransmit_mult: int = 4  # lambda in lambda * ceil(log10(n + 1))
    gossip_interval: float = 0.2  # 0: updates travel only piggybacked on probes
    gossip_nodes: int = 3
    push_pull_interval: float = 30.0  # 0: no periodic push-pull
    max_piggyback: int = 16  # updates per message (memberlist fills a 1400-byte packet)
    awareness_max: int = 8
    # Lifeguard: local health awareness, dynamic suspicion, nacks and the buddy system.
    lifeguard: bool = True
    # Keep the own incarnation in storage, so a restarted member comes back above every
    # accusation of its previous life (the SWIM paper's stable-storage incarnation).
    persist_incarnation: bool = True
    # Seeds to join through (a push-pull with the first that answers); empty: start
    # knowing every initial member as alive at incarnation 0.
    join: tuple[str, ...] = ()
    bugs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SwimOptions:
        opts = options_from_dict(cls, values, "swim")
        opts.validate()
        return opts

    def validate(self) -> None:
        check_bug_names(self.bugs, BUGS)
        if self.probe_interval <= 0 or not 0 < self.probe_timeout <= self.probe_interval:
            raise ValueError("need 0 < probe_timeout <= probe_interval")
        if self.indirect_checks < 0 or self.gossip_nodes < 0 or self.max_piggyback < 1:
            raise ValueError("indirect_checks and gossip_nodes must be >= 0, max_piggyback >= 1")
        if self.suspicion_mult < 1 or self.suspicion_max_mult < 1 or self.retransmit_mult < 1:
            raise ValueError("suspicion_mult, suspicion_max_mult and retransmit_mult must be >= 1")
        if self.gossip_interval < 0 or self.push_pull_interval < 0:
            raise ValueError("gossip_interval and push_pull_interval must be >= 0")
        if self.awareness_max < 1:
            raise ValueError("awareness_max must be >= 1")
