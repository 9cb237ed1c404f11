"""What the gossip kv (an AP store) is checked for and measured by, in a simulation.

There is no linearizability verdict (the eventual-kv service has no model): the gossip kv
never promised one. What it does promise, and what this monitor holds it to:

Rules this module owns:
  * convergence (a failure): when the run ends, after the settle phase (faults healed,
    crashed nodes restarted, clients stopped: the settle time is the bound), every live
    replica holds the same versions (check/gossip.py's rule, inherited); measured: how far
    into the settle phase they last differed (polled every 0.1 virtual seconds);
  * causality (a failure): every version is stamped above the version it replaced where
    it was written (``prev``): a write that saw a version must win over it. The hybrid
    logical clock guarantees it; a physical clock alone does not (bug knob
    ``physical-clock-only`` under clock skew);
  * lost acknowledged writes (measured, never a failure; Jepsen measured Riak's
    last-writer-wins the same way): for each key, the final version is the greatest
    version any live replica holds. An acknowledged put or delete of that key is
    ``survived`` if it is the final version, ``superseded`` if the final version descends
    from it through ``prev`` links (it was overwritten by a write that had seen it: an
    ordinary overwrite), and ``lost`` otherwise: overwritten by a write concurrent with
    it, so its value is never visible in the final state although the client was told
    it was stored. ``prev`` links come from every version any node persisted (each
    node's storage log) and from the acknowledged answers. Writes of a key no live
    replica holds any more (its tombstone was collected) are counted apart, unclassified.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from consensuskit.check.gossip import GossipMonitor, replica_states
from consensuskit.protocols.gossip import unpack_hlc
from consensuskit.protocols.gossip.messages import KVEntry

Stamp = tuple[int, str]
WRITES = ("put", "delete")


def versions_known(sim: Any) -> dict[Stamp, tuple[str, Stamp | None]]:
    """stamp -> (key, prev stamp) for every version any node persisted or any live
    replica holds."""
    known: dict[Stamp, tuple[str, Stamp | None]] = {}

    def add(entries: Iterable[Any]) -> None:
        for entry in entries:
            if isinstance(entry, KVEntry):
                known.setdefault(entry.stamp, (entry.key, entry.replaces))

    for node_id in sim.node_ids:
        storage = sim.storage_of(node_id)
        add(record for record in storage.log_records() if isinstance(record, KVEntry))
        node = sim.nodes.get(node_id)
        if node is not None:
            add(node.replica.entries.values())
    return known


def acknowledged_writes(sim: Any) -> list[tuple[str, Stamp, Stamp | None, Any]]:
    """(key, stamp, prev, value) of every put and delete the history says took effect."""
    writes = []
    for record in sim.history:
        result = record.result
        if record.op not in WRITES or record.status != "ok" or not isinstance(result, dict):
            continue
        stamp = (int(result["version"]), str(result["origin"]))
        prev = result.get("prev")
        writes.append(
            (record.key, stamp, None if prev is None else (int(prev[0]), str(prev[1])), record.value)
        )
    return writes


def final_versions(states: dict[str, tuple[tuple[str, int, str], ...]]) -> dict[str, Stamp]:
    """Each key's greatest version over the live replicas (the converged state, when
    they converged)."""
    final: dict[str, Stamp] = {}
    for state in states.values():
        for key, counter, origin in state:
            if (counter, origin) > final.get(key, (-1, "")):
                final[key] = (counter, origin)
    return final


def classify_writes(
    writes: list[tuple[str, Stamp, Stamp | None, Any]],
    final: dict[str, Stamp],
    links: dict[Stamp, Stamp | None],
) -> dict[str, list[tuple[str, Stamp, Any]]]:
    """Split acknowledged writes into survived / superseded / lost (the module rules),
    and ``collected``: writes of a key no live replica holds any more (a collected
    tombstone), which nothing can classify."""
    ancestors: dict[str, set[Stamp]] = {}
    for key, stamp in final.items():
        seen: set[Stamp] = set()
        cursor: Stamp | None = links.get(stamp)
        while cursor is not None and cursor not in seen:
            seen.add(cursor)
            cursor = links.get(cursor)
        ancestors[key] = seen
    out: dict[str, list[tuple[str, Stamp, Any]]] = {
        "survived": [],
        "superseded": [],
        "lost": [],
        "collected": [],
    }
    for key, stamp, _prev, value in writes:
        if key not in final:
            # No replica holds the key: its tombstone was collected, and with it the
            # versions that would say what replaced what. Not counted as lost.
            out["collected"].append((key, stamp, value))
        elif final.get(key) == stamp:
            out["survived"].append((key, stamp, value))
        elif stamp in ancestors.get(key, ()):
            out["superseded"].append((key, stamp, value))
        else:
            out["lost"].append((key, stamp, value))
    return out


def describe(stamp: Stamp) -> str:
    """A version's stamp for people: HLC time in seconds, counter, origin."""
    l, c = unpack_hlc(stamp[0])  # noqa: E741
    return f"{l / 1e3:.3f}s+{c}@{stamp[1]}"


def causality_breaks(links: dict[Stamp, Stamp | None]) -> list[tuple[Stamp, Stamp]]:
    """(version, the version it replaced) where the replacing one is not stamped above."""
    return sorted((stamp, prev) for stamp, prev in links.items() if prev is not None and not stamp > prev)


POLL = 0.1  # virtual seconds between two looks at the replicas during the settle phase


class GossipKVMonitor(GossipMonitor):
    """The gossip monitor's traffic and convergence, plus lost writes and causality."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        # The last settle-phase poll that found the live replicas different (None: none did).
        self.last_split: float | None = None
        self.polled = False

    def start(self, sim: Any) -> None:
        super().start(sim)
        start = float(getattr(self.config, "duration", 0.0))
        end = start + float(getattr(self.config, "settle", 0.0))
        steps = round((end - start) / POLL)
        for i in range(steps + 1):
            sim.schedule(start + i * POLL, lambda: self._poll(sim), "gossip-kv-monitor poll")

    def _poll(self, sim: Any) -> None:
        self.polled = True
        if len(set(replica_states(sim).values())) > 1:
            self.last_split = sim.now

    def _settle_seconds(self) -> float | None:
        """How long into the settle phase the replicas last differed (the convergence time
        after the heal, to within one poll); None when no poll ran."""
        if not self.polled:
            return None
        start = float(getattr(self.config, "duration", 0.0))
        return 0.0 if self.last_split is None else round(self.last_split - start + POLL, 3)

    def _analysis(self, sim: Any) -> dict[str, Any]:
        known = versions_known(sim)
        writes = acknowledged_writes(sim)
        links: dict[Stamp, Stamp | None] = {stamp: prev for stamp, (_key, prev) in known.items()}
        for _key, stamp, prev, _value in writes:
            links.setdefault(stamp, prev)
        final = final_versions(replica_states(sim))
        return {"writes": writes, "links": links, "final": final}

    def report(self, sim: Any) -> dict[str, Any]:
        report = super().report(sim)
        analysis = self._analysis(sim)
        classes = classify_writes(analysis["writes"], analysis["final"], analysis["links"])
        acked = len(analysis["writes"])
        lost = classes["lost"]
        report.update(
            {
                "acknowledged_writes": acked,
                "survived_writes": len(classes["survived"]),
                "superseded_writes": len(classes["superseded"]),
                "lost_writes": len(lost),
                "writes_of_collected_keys": len(classes["collected"]),
                "lost_write_fraction": round(len(lost) / acked, 4) if acked else 0.0,
                "lost_write_examples": [f"{k}={v!r} {describe(s)}" for k, s, v in lost[:5]],
                "causality_breaks": len(causality_breaks(analysis["links"])),
                "converged_within_seconds_of_settle": self._settle_seconds(),
            }
        )
        return report

    def failures(self, sim: Any) -> list[str]:
        failures = super().failures(sim)
        breaks = causality_breaks(self._analysis(sim)["links"])
        if breaks:
            (stamp, prev) = breaks[0]
            failures.append(
                f"{len(breaks)} version(s) stamped at or below the version they replaced where they "
                f"were written (e.g. {describe(stamp)} replaced {describe(prev)}): an overwrite "
                "that saw a value lost to it"
            )
        return failures
