"""What the gossip family checks and measures in a simulation (its monitor).

Rules this module owns:
  * convergence: when a run ends (after the settle phase: faults healed, crashed nodes
    restarted, clients stopped), every live replica holds the same map; otherwise the
    run fails, naming how many distinct states remain and one key they disagree on;
  * measured, not forbidden: gossip messages and their encoded bytes by type, the
    residue (fraction of (live node, key) pairs where the node lacks the newest entry
    any replica holds), and when the replicas were last seen all equal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from consensuskit.core.messages import encode
from consensuskit.protocols.gossip import messages as gossip_messages

GOSSIP_TYPES = tuple(
    obj
    for obj in vars(gossip_messages).values()
    if isinstance(obj, type) and obj.__module__ == gossip_messages.__name__
)


def replica_states(sim: Any) -> dict[str, tuple[tuple[str, int, str], ...]]:
    """Each live node's map as (key, counter, origin), sorted."""
    return {n: node.digest() for n in sim.node_ids if (node := sim.nodes.get(n)) is not None}


def residue(states: dict[str, tuple[tuple[str, int, str], ...]]) -> float:
    """Fraction of (live node, key) pairs where the node lacks the newest entry."""
    newest: dict[str, tuple[int, str]] = {}
    for state in states.values():
        for key, counter, origin in state:
            if (counter, origin) > newest.get(key, (-1, "")):
                newest[key] = (counter, origin)
    if not newest or not states:
        return 0.0
    missing = 0
    for state in states.values():
        held = {key: (counter, origin) for key, counter, origin in state}
        missing += sum(1 for key, stamp in newest.items() if held.get(key) != stamp)
    return missing / (len(newest) * len(states))


class GossipMonitor:
    """Counts gossip traffic during the run and checks convergence at its end."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.messages: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def start(self, sim: Any) -> None:
        sim.add_observer(self._count)  # not a filter: counting is no fault

    def _count(self, src: str, dst: str, msg: Any) -> None:
        if isinstance(msg, GOSSIP_TYPES):
            name = type(msg).__name__
            self.messages[name] += 1
            self.bytes[name] += len(encode(msg))

    def report(self, sim: Any) -> dict[str, Any]:
        states = replica_states(sim)
        return {
            "converged": len(set(states.values())) <= 1,
            "distinct_states": len(set(states.values())),
            "live_replicas": len(states),
            "keys": len({key for state in states.values() for key, _, _ in state}),
            "residue": residue(states),
            "messages": sum(self.messages.values()),
            "bytes": sum(self.bytes.values()),
            "messages_by_type": dict(sorted(self.messages.items())),
            "bytes_by_type": dict(sorted(self.bytes.items())),
        }

    def failures(self, sim: Any) -> list[str]:
        states = replica_states(sim)
        distinct = set(states.values())
        if len(distinct) <= 1:
            return []
        maps = [dict(((k, (c, o)) for k, c, o in s)) for s in distinct]
        keys = sorted({k for m in maps for k in m})
        split = next(k for k in keys if len({m.get(k) for m in maps}) > 1)
        return [
            f"replicas did not converge after settle: {len(distinct)} distinct states among "
            f"{len(states)} live nodes (key {split!r} differs)"
        ]
