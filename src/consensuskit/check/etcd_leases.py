"""The etcd service's lease rules, checked in a simulation on what every node applies.

``LeaseChecker`` is what the etcd service's simulation monitor
(services/etcd_sim_lessor.py, which runs each node's lessor as the real server does)
reports to; catalog.py puts the two together.  The checker makes the state machine of
every node start, one it watches (``WatchedMVCC``): it sees each command a node applies,
in log order, and the node's leases right before and after; the lessors tell it when
they look and what they ask.
What it judges comes from the log and the node's clock, the environment, not from what
the implementation says it did.

Invariants (a broken one fails the run as ``etcd-monitor``, naming the rule):
  * ``lease-keys-deleted``: once a node has applied the revoke or the expiry of lease L,
    none of its live keys names L;
  * ``expire-honours-keepalive``: an expiry ``(L, stamp)`` removes L on a node only if
    L's stamp there is still ``stamp``: no keep-alive of L was applied in between;
  * ``promote-extends``: a node's lessor asks to expire L only a whole TTL after the
    moment it last became leader and after the first look at its node's leases that
    showed L's current stamp (the grant or the last keep-alive), both by the lessor's own
    clock (the node's monotonic clock: its drift counts, a step of its wall clock does
    not), read when the lessor reads it: a new leader never expires a lease it could not
    have seen kept alive (etcd's Promote), and no leader expires a lease within a TTL of
    its last keep-alive;
  * ``lease-expires`` (at the end of a run, after the faults have healed): the leader
    holds no lease more than ``EXPIRY_SLACK`` past its deadline (a whole TTL after its
    current stamp's first look or the leader's promotion, whichever is later).
The leased keys' disappearance itself is the linearizability model's business
(check/linearizability/etcd_model.py: a leased key may vanish once attached).

Bug knobs (``ServiceSpec.bugs`` of the etcd service), one per invariant:
``lease-keys-survive`` and ``expire-ignores-keepalive`` (the store, statemachines/mvcc.py),
``no-promote-extend`` and ``ignore-new-leases`` (the lessor, services/etcd_lessor.py).

Report (beside the monitor's ``etcd_lease_expiries_asked``): ``etcd_leases_granted``,
``etcd_leases_expired``, ``etcd_leases_revoked``, ``etcd_lease_keys_expired`` (keys
deleted by expiries) and ``etcd_lease_expiries_stale`` (leases whose expiry reached the
log after a keep-alive: how often the race ``expire-honours-keepalive`` judges happened).
"""

from __future__ import annotations

from typing import Any

from consensuskit.statemachines.mvcc import MVCCStateMachine, MVCCStore

_WATCHED = frozenset({"lease_grant", "lease_keepalive", "lease_revoke", "lease_expire"})
MAX_FAILURES = 10  # a broken rule breaks again and again: the first few say it
EPS = 1e-9  # float sums of clock readings
# Seconds a lapsed lease may outlive its deadline on a leader: the lessor's retry after
# a lost expiry (1 s), its polls (0.1 s each) and the expiry's commit, with room to spare.
EXPIRY_SLACK = 2.0


class WatchedMVCC(MVCCStateMachine):
    """The etcd state machine, reporting each lease command it applies to the checker."""

    __slots__ = ("_monitor", "_node_id")

    def __init__(self, node_id: str, monitor: LeaseChecker, bugs: frozenset[str]) -> None:
        super().__init__(bugs)
        self._node_id = node_id
        self._monitor = monitor

    def apply(self, command: Any) -> Any:
        op = command.op
        if op.kind not in _WATCHED:
            return super().apply(command)
        body = op.value if isinstance(op.value, dict) else {}
        lease_id = body.get("id")
        lease = self.store.leases.get(lease_id) if type(lease_id) is int else None
        before = lease.stamp if lease is not None else None
        result = super().apply(command)
        self._monitor.applied(self._node_id, self.store, op.kind, body, before, result)
        return result


class LeaseChecker:
    """See the module rules."""

    def __init__(self) -> None:
        self.sim: Any = None
        self.machines: dict[str, WatchedMVCC] = {}
        # Per node (this start): lease id -> (stamp, the lessor's clock when a look first
        # showed it).
        self.seen: dict[str, dict[int, tuple[int, float]]] = {}
        # Node -> its lessor's clock when it last became leader.
        self.lead_since: dict[str, float] = {}
        self.last_look: dict[str, float] = {}  # node -> its lessor's clock at its last look
        self.problems: list[str] = []
        self.granted: set[int] = set()
        self.expired: dict[int, int] = {}  # lease id -> keys its expiry deleted
        self.revoked: set[int] = set()
        self.stale: set[int] = set()  # leases whose expiry met a newer keep-alive

    # ------------------------------------------------------------------ the monitor's
    def make_state_machine(self, node_id: str, bugs: frozenset[str]) -> WatchedMVCC:
        """The state machine of a node's start (and a fresh record of what it saw)."""
        machine = WatchedMVCC(node_id, self, bugs)
        self.machines[node_id] = machine
        self.seen[node_id] = {}
        self.lead_since.pop(node_id, None)
        return machine

    def start(self, sim: Any) -> None:
        self.sim = sim

    def failures(self, sim: Any) -> list[str]:
        """The broken rules; ``lease-expires`` is judged when asked (the end of a run)."""
        overdue = [text for node_id in sorted(self.lead_since) for text in self._overdue(sim, node_id)]
        return self.problems + overdue[: max(0, MAX_FAILURES - len(self.problems))]

    def _overdue(self, sim: Any, node_id: str) -> list[str]:
        if sim.nodes.get(node_id) is None:
            return []
        since, now = self.lead_since[node_id], self.last_look[node_id]
        late = []
        for lease_id, lease in sorted(self.machines[node_id].store.leases.items()):
            seen = self.seen[node_id].get(lease_id)
            if seen is None or seen[0] != lease.stamp:
                continue  # a change its lessor has not looked at yet
            deadline = max(seen[1], since) + lease.ttl
            if now > deadline + EXPIRY_SLACK:
                late.append(
                    f"lease-expires: leader {node_id} still holds lease {lease_id} (TTL {lease.ttl}s) "
                    f"{now - deadline:.3f}s past its deadline"
                )
        return late

    def report(self, sim: Any) -> dict[str, Any]:
        return {
            "etcd_leases_granted": len(self.granted),
            "etcd_leases_expired": len(self.expired),
            "etcd_leases_revoked": len(self.revoked),
            "etcd_lease_keys_expired": sum(self.expired.values()),
            "etcd_lease_expiries_stale": len(self.stale),
        }

    # ------------------------------------------------------------------ observations
    def _fail(self, rule: str, text: str) -> None:
        if len(self.problems) < MAX_FAILURES:
            when = f"t={self.sim.now:.3f} " if self.sim is not None else ""
            self.problems.append(f"{rule}: {when}{text}")

    def applied(
        self, node_id: str, store: MVCCStore, kind: str, body: dict[str, Any], before: int | None, result: Any
    ) -> None:
        """``node_id`` applied a lease command; ``before``: the lease's stamp before it
        (None: no such lease)."""
        if not isinstance(result, dict) or "error" in result:
            return
        lease_id = result.get("id") if kind == "lease_grant" else body.get("id")
        if type(lease_id) is not int:
            return
        if kind in ("lease_grant", "lease_keepalive"):
            if kind == "lease_grant" and lease_id in store.leases:
                self.granted.add(lease_id)
            return
        if before is None or lease_id in store.leases:
            if kind == "lease_expire" and before is not None and body.get("stamp") != before:
                self.stale.add(lease_id)  # a keep-alive came first: the race the stamp settles
            return  # nothing ended here
        if kind == "lease_expire":
            stamp = body.get("stamp")
            if stamp != before:
                self._fail(
                    "expire-honours-keepalive",
                    f"{node_id} applied the expiry of lease {lease_id} at stamp {stamp} "
                    f"though a keep-alive had brought it to stamp {before}",
                )
            self.expired[lease_id] = max(self.expired.get(lease_id, 0), int(result.get("deleted", 0)))
        else:
            self.revoked.add(lease_id)
        left = sorted(kv[0] for kv in store.live().values() if kv[5] == lease_id)
        if left:
            ended = "expiry" if kind == "lease_expire" else "revoke"
            self._fail(
                "lease-keys-deleted",
                f"{node_id} applied the {ended} of lease {lease_id}, and keys {left!r} still name it",
            )

    # ------------------------------------------------------------------ the lessors'
    def polled(self, node_id: str, leading: bool, now: float) -> None:
        """The node's lessor is about to look at its leases, its clock reading ``now``."""
        seen = self.seen[node_id]
        leases = self.machines[node_id].store.leases
        for lease_id in [i for i in seen if i not in leases]:
            del seen[lease_id]
        for lease_id, lease in leases.items():
            known = seen.get(lease_id)
            if known is None or known[0] != lease.stamp:
                seen[lease_id] = (lease.stamp, now)
        self.last_look[node_id] = now
        if not leading:
            self.lead_since.pop(node_id, None)
        elif node_id not in self.lead_since:
            self.lead_since[node_id] = now

    def asked(self, node_id: str, lease_id: int, stamp: int, now: float) -> None:
        lease = self.machines[node_id].store.leases.get(lease_id)
        if lease is None:
            return
        ttl = lease.ttl
        since = self.lead_since.get(node_id)
        if since is not None and now + EPS < since + ttl:
            self._fail(
                "promote-extends",
                f"{node_id} asked to expire lease {lease_id} (TTL {ttl}s) {now - since:.3f}s after "
                "it became leader: a new leader gives every lease a whole TTL",
            )
            return
        seen = self.seen[node_id].get(lease_id)
        if seen is not None and seen[0] == stamp and now + EPS < seen[1] + ttl:
            self._fail(
                "promote-extends",
                f"{node_id} asked to expire lease {lease_id} (TTL {ttl}s) {now - seen[1]:.3f}s after "
                f"it first saw its stamp {stamp}",
            )
