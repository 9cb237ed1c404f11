"""PBFT's safety, checked on every step (after heidihoward/pbft-tlaplus's invariants).

Only *correct* replicas count: the ids the ``byzantine`` option names are faulty, and
nothing they claim is evidence (they may say anything).  Each replica appends what it
did to its ``events`` list (protocols/pbft/node.py); the checker reads every correct
replica's new events after each step, prepared ones first (a replica's commit always
follows other replicas' prepared events of earlier steps).

* one-result           (OneReplyInv) a request (client, seq) never gets two different
                       results from correct replicas;
* one-request-per-seq  (OneResultInv) no sequence number is committed-local for two
                       different batches at correct replicas;
* committed-prepared   (CommittedInv) a batch committed-local at a correct replica in
                       view v was prepared in v at f+1 correct replicas;
* committed-keeps-seq  a batch committed-local at n keeps n in every later view: no
                       correct replica accepts another batch for n in a later view;
* checkpoint-agreement correct replicas agree on the state digest of every stable
                       checkpoint.
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.protocols.pbft import fault_bound, parse_byzantine, replica_of


def _short(digest: Any) -> str:
    return digest[:3].hex() if isinstance(digest, bytes) else repr(digest)


class PbftChecker:
    def __init__(self) -> None:
        self.correct: tuple[str, ...] | None = None
        self.f = 0
        self.seen: dict[str, tuple[Any, int]] = {}
        self.results: dict[tuple[str, int], tuple[bytes, str]] = {}
        self.committed: dict[int, tuple[bytes, int, str]] = {}
        self.prepared: dict[tuple[int, int, bytes], set[str]] = {}
        self.accepted: dict[int, set[tuple[int, bytes]]] = {}
        self.stable: dict[int, tuple[bytes, str]] = {}

    def after_step(self, sim: Any, node_id: str) -> None:
        if self.correct is None:
            faulty = parse_byzantine(sim.options.get("byzantine", ""))
            self.correct = tuple(n for n in sim.node_ids if n not in faulty)
            self.f = fault_bound(len(sim.node_ids))
        fresh: list[tuple[str, tuple[Any, ...]]] = []
        for nid in self.correct:
            replica = replica_of(sim.nodes.get(nid))
            if replica is None:
                continue
            obj, offset = self.seen.get(nid, (None, 0))
            if obj is not replica:
                offset = 0
            events = replica.events
            if len(events) > offset:
                fresh.extend((nid, ev) for ev in events[offset:])
                self.seen[nid] = (replica, len(events))
            elif obj is not replica:
                self.seen[nid] = (replica, 0)
        if not fresh:
            return
        for nid, ev in fresh:
            if ev[0] in ("prepared", "preprepared"):
                self._early(nid, ev)
        for nid, ev in fresh:
            if ev[0] not in ("prepared", "preprepared"):
                self._late(nid, ev)

    def _early(self, nid: str, ev: tuple[Any, ...]) -> None:
        kind, seq, view, digest = ev
        if kind == "prepared":
            self.prepared.setdefault((seq, view, digest), set()).add(nid)
            return
        self.accepted.setdefault(seq, set()).add((view, digest))
        done = self.committed.get(seq)
        if done is not None and view > done[1] and digest != done[0]:
            raise InvariantViolation(
                "committed-keeps-seq",
                f"n={seq} committed {_short(done[0])} in view {done[1]} at {done[2]}, "
                f"but {nid} accepted {_short(digest)} for it in view {view}",
            )

    def _late(self, nid: str, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "committed":
            _, seq, view, digest = ev
            done = self.committed.get(seq)
            if done is not None and done[0] != digest:
                raise InvariantViolation(
                    "one-request-per-seq",
                    f"n={seq} committed {_short(done[0])} at {done[2]} and {_short(digest)} at {nid}",
                )
            preparers = self.prepared.get((seq, view, digest), set())
            if len(preparers) < self.f + 1:
                who = "no correct replica"
                if preparers:
                    who = f"only {', '.join(sorted(preparers))} of the correct replicas"
                raise InvariantViolation(
                    "committed-prepared",
                    f"{nid} committed n={seq} v={view} {_short(digest)} but {who} prepared it"
                    f" (need {self.f + 1})",
                )
            for other_view, other in self.accepted.get(seq, ()):
                if other_view > view and other != digest:
                    raise InvariantViolation(
                        "committed-keeps-seq",
                        f"n={seq} committed {_short(digest)} in view {view} at {nid}, but a correct "
                        f"replica accepted {_short(other)} for it in view {other_view}",
                    )
            if done is None or view > done[1]:
                self.committed[seq] = (digest, view, nid)
        elif kind == "executed":
            _, client, seq, _number, result = ev
            first = self.results.get((client, seq))
            if first is None:
                self.results[(client, seq)] = (result, nid)
            elif first[0] != result:
                raise InvariantViolation(
                    "one-result", f"{client}#{seq} got two results: at {first[1]} and at {nid}"
                )
        elif kind == "stable":
            _, seq, digest = ev
            first_cp = self.stable.get(seq)
            if first_cp is None:
                self.stable[seq] = (digest, nid)
            elif first_cp[0] != digest:
                raise InvariantViolation(
                    "checkpoint-agreement",
                    f"checkpoint {seq} stable with {_short(first_cp[0])} at {first_cp[1]} "
                    f"and {_short(digest)} at {nid}",
                )


POLL = 0.005  # seconds of virtual time between the monitor's looks


class PbftMonitor:
    """Liveness, measured (no verdict: it is not guaranteed under asynchrony): from the
    moment correct replicas are in a view whose primary is faulty (the ``byzantine``
    option) to the next request a correct replica executes under a correct primary.

    It looks every ``POLL`` seconds at the correct replicas' view and executed number."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.correct: tuple[str, ...] = ()
        self.faulty: dict[str, str] = {}
        self.since: float | None = None
        self.recoveries: list[float] = []
        self.executed = 0
        self.max_view = 0

    def start(self, sim: Any) -> None:
        self.faulty = parse_byzantine(sim.options.get("byzantine", ""))
        self.correct = tuple(n for n in sim.node_ids if n not in self.faulty)
        sim.schedule(sim.now, lambda: self._poll(sim), "pbft-monitor")

    def _poll(self, sim: Any) -> None:
        replicas = [r for r in (replica_of(sim.nodes.get(n)) for n in self.correct) if r is not None]
        if replicas:
            view = max(r.view for r in replicas if r.active) if any(r.active for r in replicas) else None
            executed = max(r.executed for r in replicas)
            self.max_view = max(self.max_view, *(r.view for r in replicas))
            if view is not None:
                primary = replicas[0].primary(view)
                if primary in self.faulty:
                    if self.since is None:
                        self.since = sim.now
                elif self.since is not None and executed > self.executed:
                    self.recoveries.append(round(sim.now - self.since, 6))
                    self.since = None
            self.executed = max(self.executed, executed)
        if sim.now < sim.config.duration + sim.config.settle:
            sim.schedule(sim.now + POLL, lambda: self._poll(sim), "pbft-monitor")

    def report(self, sim: Any) -> dict[str, Any]:
        rec = self.recoveries
        return {
            "faulty": dict(sorted(self.faulty.items())),
            "faulty_primary_episodes": len(rec) + (1 if self.since is not None else 0),
            "recovered": len(rec),
            "recovery_seconds": rec,
            "recovery_max": max(rec) if rec else None,
            "recovery_mean": round(sum(rec) / len(rec), 6) if rec else None,
            "views": self.max_view,
            "executed": self.executed,
        }
