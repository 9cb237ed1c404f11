"""Each node's lessor in a simulation: what services/etcd_api.py runs beside the log on
the real server, driven by the simulator's virtual time and the node's own clock.

The simulator is duck-typed here (services sit below sim/): ``schedule``, ``now``,
``nodes``, ``paused``, ``local_time``, ``clock_of`` and ``send_request`` are all this
module uses.

Rules this module owns:
  * every node start gets a fresh ``Lessor`` (a restarted process remembers no deadline);
    each expiry it asks goes under a client id of its own, ``lessor/NODE/START/N``, seq
    1: the expiries of one look travel side by side and may reach the log in any order,
    and a session refuses a seq older than one it applied (the real server submits such
    a refused write again under a new seq; here no two share a session);
  * every ``LOOK`` seconds (etcd_lessor.py) of virtual time each running node's lessor looks at the leases
    its state machine has applied, leading or not (a follower counts deadlines too; only
    a leader acts on them, as on the real server);
  * a lessor's clock is the node's monotonic clock (``monotonic``): the real one reads
    ``time.monotonic()``, which the node's clock drift moves and a step of its wall clock
    (the simulator's skew) does not;
  * an expiry the leader's lessor asks for is a ``lease_expire(id, stamp)`` request sent
    to that node as a client would, once, with no retry: the lessor proposes it again
    after ``RETRY`` if the lease is still there (services/etcd_lessor.py).  These
    requests are the environment's, not a client's: they are not in the history;
  * ``listener`` (the lease checker) hears each poll's leading state and each expiry
    asked, with the lessor's clock reading, before the request leaves;
  * ``EtcdSimMonitor`` is the etcd service's simulation monitor (core/service.py): the
    lessors, and a checker (check/etcd_leases.py, given by the catalog: services sit
    below check/) that makes each node start's state machine and judges the run.  The
    service's bug knobs split between the lessor's (``no-promote-extend``) and the
    store's (the rest, handed to the state machines).
"""

from __future__ import annotations

from typing import Any, Protocol

from consensuskit.core.capabilities import is_leading
from consensuskit.core.client import ClientRequest
from consensuskit.services.etcd import make_op
from consensuskit.services.etcd_lessor import BUGS as LESSOR_BUGS
from consensuskit.services.etcd_lessor import LOOK, Lessor
from consensuskit.statemachines.mvcc import MVCCStateMachine


class LessorListener(Protocol):
    def polled(self, node_id: str, leading: bool, now: float) -> None: ...

    def asked(self, node_id: str, lease_id: int, stamp: int, now: float) -> None: ...


class _NodeLessor:
    __slots__ = ("asked", "client_id", "lessor", "machine")

    def __init__(self, client_id: str, machine: Any, bugs: frozenset[str]) -> None:
        self.client_id = client_id
        self.machine = machine  # the MVCCStateMachine this start of the node applies to
        self.lessor = Lessor(bugs)
        self.asked = 0  # expiries this start asked


class SimLessors:
    """The lessors of every node of one simulation (see the module rules)."""

    def __init__(self, bugs: frozenset[str] = frozenset(), listener: LessorListener | None = None) -> None:
        self.bugs = bugs
        self.listener = listener
        self._nodes: dict[str, _NodeLessor] = {}
        self._starts: dict[str, int] = {}
        self.sim: Any = None
        self.asked = 0  # expiry requests sent

    def started(self, node_id: str, machine: Any) -> None:
        """``node_id`` (re)starts with state machine ``machine``: a fresh lessor."""
        start = self._starts.get(node_id, 0) + 1
        self._starts[node_id] = start
        self._nodes[node_id] = _NodeLessor(f"lessor/{node_id}/{start}", machine, self.bugs)

    def start(self, sim: Any) -> None:
        self.sim = sim
        self._schedule()

    def _schedule(self) -> None:
        sim = self.sim
        sim.schedule(sim.now + LOOK, self._tick, "lessor")

    def _tick(self) -> None:
        sim = self.sim
        for node_id in sorted(self._nodes):
            node = sim.nodes.get(node_id)
            if node is None or sim.paused(node_id):
                continue  # a crashed or stopped process runs no lessor
            self._poll(node_id, node, self._nodes[node_id])
        self._schedule()

    def monotonic(self, node_id: str) -> float:
        """The node's clock without its steps (see the module rules)."""
        sim = self.sim
        return sim.local_time(node_id) - sim.clock_of(node_id).skew

    def _poll(self, node_id: str, node: Any, mine: _NodeLessor) -> None:
        sim = self.sim
        now = self.monotonic(node_id)
        leading = is_leading(node)
        store = mine.machine.store
        leases = [(i, lease.ttl, lease.stamp) for i, lease in sorted(store.leases.items())]
        if self.listener is not None:
            self.listener.polled(node_id, leading, now)
        for lease_id, stamp in mine.lessor.observe(leases, now, leading):
            if self.listener is not None:
                self.listener.asked(node_id, lease_id, stamp, now)
            mine.asked += 1
            op = make_op("lease_expire", "", {"id": lease_id, "stamp": stamp})
            client_id = f"{mine.client_id}/{mine.asked}"
            sim.send_request(node_id, ClientRequest(client_id=client_id, seq=1, op=op))
            self.asked += 1


class EtcdSimMonitor:
    """The etcd service's simulation monitor (see the module rules)."""

    def __init__(self, config: Any, checker: Any = None) -> None:
        bugs = frozenset(config.bugs)
        self.store_bugs = bugs - frozenset(LESSOR_BUGS)
        self.checker = checker
        self.lessors = SimLessors(bugs & frozenset(LESSOR_BUGS), listener=checker)

    def make_state_machine(self, node_id: str) -> Any:
        make = getattr(self.checker, "make_state_machine", None)
        machine = make(node_id, self.store_bugs) if make is not None else MVCCStateMachine(self.store_bugs)
        self.lessors.started(node_id, machine)
        return machine

    def start(self, sim: Any) -> None:
        start = getattr(self.checker, "start", None)
        if start is not None:
            start(sim)
        self.lessors.start(sim)

    def failures(self, sim: Any) -> list[str]:
        failures = getattr(self.checker, "failures", None)
        return failures(sim) if failures is not None else []

    def report(self, sim: Any) -> dict[str, Any]:
        report = getattr(self.checker, "report", None)
        checked = report(sim) if report is not None else {}
        return {"etcd_lease_expiries_asked": self.lessors.asked, **checked}
