"""The SWIM experiment of one simulation: faults the flags ask for, what the SWIM and
Lifeguard papers measure, and strong completeness at the end (ProtocolSpec.make_monitor).

Rules this module owns:
  * faults, from the run's seed: ``--loss P`` sets the network's loss for the run;
    ``--crashes C`` crashes C members at times uniform in [10%, 40%] of the duration;
    ``--slow-members K`` starves K other members of CPU in bursts: while starved, every
    message to or from the member is held (its handling is late) while its timers still
    fire, for 2..10 probe periods, then it runs normally for 5..15 periods;
  * measurements, in probe periods (the base ``probe_interval``): from a crash until the
    first live member holds the crashed one suspect or dead (``first_detection_periods``)
    and until every live member does (``full_detection_periods``), each ``{"mean", "p99"}``
    over the crashes; a member's detection time is when its record last changed state
    (a suspicion from before the crash counts once it turns dead), read by polling
    every 1/20 period;
  * ``messages_per_member_per_period``: messages sent by all members over the member-periods
    they were up, until the end of the duration;
  * accuracy: ``false_positives`` counts (member, incarnation) pairs declared dead while
    the member was up (once per accusation, however many members learn it);
    ``false_positives_healthy`` those of members never starved;
    ``false_positive_observations`` every member's own declaration of such a death;
    ``false_positives_per_member_hour`` divides ``false_positives`` by n x duration;
  * strong completeness (``failures``): a member crashed at least ``completeness_bound``
    before the end of the duration must be dead in the view of every member up at the end
    of the duration.  The bound is 20 periods (to be probed at all: the chance that no one
    has probed it by then is about e^-20) plus the largest suspicion timeout plus 10
    periods of dissemination.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from consensuskit.protocols.swim import DEAD, LEFT, SUSPECT, suspicion_bounds

POLLS_PER_PERIOD = 20


@dataclass(slots=True)
class Crash:
    member: str
    at: float
    first: float | None = None
    full: float | None = None
    pending: set[str] = field(default_factory=set)  # members that have not detected it yet
    detected: dict[str, float] = field(default_factory=dict)


def summary(values: list[float]) -> dict[str, float | None]:
    """{"mean", "p99"} (nearest rank), None when there is nothing to summarise."""
    if not values:
        return {"mean": None, "p99": None}
    ordered = sorted(values)
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return {"mean": round(sum(ordered) / len(ordered), 4), "p99": round(ordered[rank - 1], 4)}


class SwimMonitor:
    def __init__(self, config: Any) -> None:
        flags = config.flags
        self.duration = float(config.duration)
        self.loss = float(flags.get("loss", 0.0))
        self.crash_count = int(flags.get("crashes", 0))
        self.slow_count = int(flags.get("slow_members", 0))
        self.crashes: list[Crash] = []
        self.slow: list[str] = []
        self.starved: set[str] = set()
        self.up_since: dict[str, float] = {}
        self.up_seconds = 0.0
        self.sent_before_crash = 0
        self.logs_before_crash: list[tuple[str, list[tuple[str, int, float]]]] = []
        self.final: dict[str, Any] | None = None
        self.period = 1.0
        self.bound = 0.0

    # ------------------------------------------------------------------ start
    def start(self, sim: Any) -> None:
        n = len(sim.node_ids)
        options = sim.options
        self.period = float(options.get("probe_interval", 1.0))
        mult = int(options.get("suspicion_mult", 4))
        max_mult = int(options.get("suspicion_max_mult", 6))
        low, high = suspicion_bounds(mult, max_mult, n, self.period)
        largest = high if options.get("lifeguard", True) else low
        self.bound = 30 * self.period + largest
        if not 0 <= self.loss <= 1:
            raise ValueError(f"--loss must be a probability in [0, 1], got {self.loss}")
        if self.crash_count < 0 or self.slow_count < 0 or self.crash_count + self.slow_count >= n:
            raise ValueError(
                f"need 0 <= crashes + slow-members < nodes ({n}), got {self.crash_count} + {self.slow_count}"
            )
        if self.loss:
            sim.set_network(loss=self.loss)
        rng = random.Random(f"{sim.seed}/swim-monitor")
        chosen = rng.sample(list(sim.node_ids), self.crash_count + self.slow_count)
        victims, self.slow = chosen[: self.crash_count], sorted(chosen[self.crash_count :])
        self.up_since = dict.fromkeys(sim.node_ids, sim.now)
        for member in victims:
            at = sim.now + rng.uniform(0.1, 0.4) * self.duration
            sim.schedule(at, lambda m=member: self._crash(sim, m), f"swim-monitor crash {member}")
        if self.slow:
            sim.add_filter(self._hold_starved)
            for member in self.slow:
                self._schedule_burst(sim, member, sim.now + rng.uniform(0, 5) * self.period, rng)
        sim.schedule(sim.now + self.duration, lambda: self._finish(sim), "swim-monitor final")

    # ------------------------------------------------------------------ faults
    def _crash(self, sim: Any, member: str) -> None:
        if self.final is not None or not sim.alive(member):
            return
        node = sim.nodes[member]
        self.sent_before_crash += node.sent
        self.logs_before_crash.append((member, list(node.dead_log)))
        self.up_seconds += sim.now - self.up_since.pop(member)
        self.starved.discard(member)
        sim.crash(member)
        crash = Crash(member=member, at=sim.now, pending={m for m in sim.node_ids if sim.alive(m)})
        self.crashes.append(crash)
        self._poll(sim)

    def _hold_starved(self, src: str, dst: str, msg: Any) -> str | None:
        starved = self.starved
        return "hold" if starved and (src in starved or dst in starved) else None

    def _schedule_burst(self, sim: Any, member: str, at: float, rng: random.Random) -> None:
        if at >= self.duration:
            return
        length = rng.uniform(2, 10) * self.period
        gap = rng.uniform(5, 15) * self.period

        def starve() -> None:
            if self.final is None and sim.alive(member):
                self.starved.add(member)

        def feed() -> None:
            self.starved.discard(member)
            starved = self.starved
            sim.release_held(lambda s, d, m: s not in starved and d not in starved)

        sim.schedule(at, starve, f"swim-monitor starve {member}")
        sim.schedule(min(at + length, self.duration), feed, f"swim-monitor feed {member}")
        self._schedule_burst(sim, member, at + length + gap, rng)

    # ------------------------------------------------------------------ detection
    def _poll(self, sim: Any) -> None:
        if self.final is not None:
            return
        waiting = False
        for crash in self.crashes:
            if not crash.pending:
                continue
            for observer in sorted(crash.pending):
                node = sim.nodes.get(observer)
                if node is None:  # crashed since: not a live member any more
                    crash.pending.discard(observer)
                    continue
                rec = node.members.get(crash.member)
                if rec is None or rec.state not in (SUSPECT, DEAD, LEFT):
                    continue
                # A suspicion older than the crash detected nothing: wait for its next
                # change (dead); a member already dead at the crash counts at once.
                if rec.since >= crash.at or rec.state != SUSPECT:
                    crash.detected[observer] = max(rec.since, crash.at)
                    crash.pending.discard(observer)
            if crash.detected and crash.first is None:
                crash.first = min(crash.detected.values())
            if not crash.pending:
                crash.full = max(crash.detected.values(), default=crash.at)
            else:
                waiting = True
        if waiting:
            sim.schedule(
                sim.now + self.period / POLLS_PER_PERIOD, lambda: self._poll(sim), "swim-monitor poll"
            )

    # ------------------------------------------------------------------ the end
    def _finish(self, sim: Any) -> None:
        self._poll(sim)
        now = sim.now
        if self.starved:
            self.starved.clear()
            sim.release_held()
        sent = self.sent_before_crash
        logs = list(self.logs_before_crash)
        views: dict[str, dict[str, str]] = {}
        crashed = {c.member for c in self.crashes}
        for member in sim.node_ids:
            node = sim.nodes.get(member)
            if node is None:
                continue
            sent += node.sent
            logs.append((member, list(node.dead_log)))
            views[member] = {c: node.members[c].state for c in crashed if c in node.members}
        for since in self.up_since.values():
            self.up_seconds += now - since
        self.up_since = {}
        crash_at = {c.member: c.at for c in self.crashes}
        slow = set(self.slow)
        events: set[tuple[str, int]] = set()
        healthy: set[tuple[str, int]] = set()
        observations = 0
        for _observer, log in logs:
            for member, incarnation, t in log:
                if member in crash_at and crash_at[member] <= t:
                    continue
                observations += 1
                events.add((member, incarnation))
                if member not in slow:
                    healthy.add((member, incarnation))
        self.final = {
            "time": now,
            "sent": sent,
            "views": views,
            "false_positives": len(events),
            "false_positives_healthy": len(healthy),
            "false_positive_observations": observations,
        }

    def report(self, sim: Any) -> dict[str, Any]:
        if self.final is None:
            self._finish(sim)
        final = self.final
        assert final is not None
        n = len(sim.node_ids)
        periods = self.up_seconds / self.period
        first = [(c.first - c.at) / self.period for c in self.crashes if c.first is not None]
        full = [(c.full - c.at) / self.period for c in self.crashes if c.full is not None]
        hours = n * self.duration / 3600.0
        return {
            "nodes": n,
            "lifeguard": bool(sim.options.get("lifeguard", True)),
            "loss": self.loss,
            "crashes": len(self.crashes),
            "slow_members": list(self.slow),
            "probe_interval": self.period,
            "first_detection_periods": summary(first),
            "full_detection_periods": summary(full),
            "undetected": sum(1 for c in self.crashes if c.full is None),
            "messages_per_member_per_period": round(final["sent"] / periods, 3) if periods else None,
            "false_positives": final["false_positives"],
            "false_positives_healthy": final["false_positives_healthy"],
            "false_positive_observations": final["false_positive_observations"],
            "false_positives_per_member_hour": round(final["false_positives"] / hours, 4) if hours else None,
            "completeness_bound_periods": round(self.bound / self.period, 2),
        }

    def failures(self, sim: Any) -> list[str]:
        if self.final is None:
            self._finish(sim)
        final = self.final
        assert final is not None
        reasons = []
        for crash in self.crashes:
            if final["time"] - crash.at < self.bound:
                continue
            missing = sorted(
                m for m, view in final["views"].items() if view.get(crash.member) not in (DEAD, LEFT)
            )
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                reasons.append(
                    f"strong completeness: {crash.member} crashed at {crash.at:.2f}s is not dead at {shown} "
                    f"{final['time'] - crash.at:.1f}s later (bound {self.bound:.1f}s)"
                )
        return reasons


def make_monitor(config: Any) -> SwimMonitor:
    return SwimMonitor(config)
