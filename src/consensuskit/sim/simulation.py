"""The deterministic simulator: one event queue, one virtual clock, seeded faults.

Rules this module owns:
  * the queue holds tuples ``(time, seq, kind, ...)``; ``seq`` is unique and
    increasing, so events at equal times run in insertion order and nothing past
    ``seq`` is ever compared.  It is a heap (sim/events.py ``push_event``/``pop_event``:
    heapq's order, kept cheaper when compiled) plus a FIFO of batch ends (``_batches``,
    batched runtime): a batch ends ``batch_window`` after it opened, so batch ends arrive in
    deadline order and need no heap; the next event is the smaller of the two heads (a
    batch end that would break the FIFO's order goes to the queue);
  * every random choice comes from generators derived from ``config.seed`` by string
    seeds (``f"{seed}/network"``, ``f"{seed}/{node}/{incarnation}"``, ...), so adding
    a fault or a client never perturbs the choices of another source;
  * the durability barrier is core/driver.py's (each SimEnv is a driver): what a
    handler sends or answers leaves only after every storage write made before it is
    durable, one sync in flight per node, group commit.  A crash keeps only durable
    storage and discards held outputs, timers and the sync in flight (a crash during a
    sync loses that batch's writes);
  * the runtime (``config.runtime``, resolved per seed when "random"): "unbatched" ends
    a batch after every input and syncs take ``fsync_latency``; "batched" models the
    server: an input opens a batch that ends ``batch_window`` later (a BATCH event), so
    inputs reaching the node meanwhile share it; at its end ``on_batch_end`` runs and
    ``send_early`` messages leave; a sync takes ``fsync_latency`` times a seeded
    log-normal factor.  In both, after each sync the node's ``on_durable(position)``
    runs as an input (joining an open batch, else a batch of its own).  Invariants are
    checked after every input, and after a batch's end or a durability report when it
    made a protocol record (a silent change is seen by the next check);
  * a paused node handles nothing: events addressed to it are deferred and replayed in
    order when it resumes;
  * a wipe is a crash that also loses the durable storage: the node restarts at once from
    an empty storage holding only the platform's REJOINING_KEY (core/storage.py), and
    only protocols that declare ``survives_disk_loss`` can be wiped;
  * clients sit outside the partition model: client<->node links only have latency
    (and scripted filters); a crashed or paused node simply does not answer;
  * ``run(wall_limit=S)`` raises ``WallClockExceeded`` once the run has taken S seconds
    of wall time, checked whenever the trace buffer flushes (every few thousand
    records: off the per-event path), so a livelock ends as an error instead of a hang.
    The clock is only read, never consulted by the run: same trace until it fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import itertools
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from consensuskit.catalog import default_registry, service_for
from consensuskit.core.capabilities import Inspectable, MembershipChange, implements, leader_of
from consensuskit.core.client import ClientRequest, ClientResponse, Op, ServiceOp
from consensuskit.core.env import ProtocolNode
from consensuskit.core.registry import ProtocolSpec, Registry, flag_options
from consensuskit.core.service import ServiceSpec
from consensuskit.core.storage import REJOINING_KEY, MemoryStorage
from consensuskit.sim.config import LINK_FIELDS, NetworkConfig, SimConfig
from consensuskit.sim.env import SYNC, TIMER, BatchedSimEnv, Clock, SimEnv
from consensuskit.sim.errors import InvariantViolation, WallClockExceeded
from consensuskit.sim.events import pop_event, push_event
from consensuskit.sim.history import History
from consensuskit.sim.storage import SimStorage
from consensuskit.sim.trace import Trace
from consensuskit.sim.workload import Client, OpRun, WorkloadClient

# Event kinds (third tuple element).  Layouts after (time, seq, kind):
MSG: Final = 0  # dst, src, msg, mid, depth
# TIMER = 1  env, key             (sim/env.py: the envs push these two themselves)
REQ: Final = 2  # node, request, None
RESP: Final = 3  # client_id, response, node
# SYNC = 4   env
FN: Final = 5  # fn, arg            internal callbacks (clients, nemesis), not traced
CALL: Final = 6  # fn, label         scripted actions, traced as "sched"
BATCH: Final = 7  # env              the end of a batch (batched runtime), traced as "batch"

FILTER_VERDICTS = ("drop", "deliver", "hold")

# The cyclic collector's first threshold while run() runs (see Simulation.run).
GC_YOUNG_THRESHOLD: Final = 50_000

LinkParams = tuple[float, float, float, float, float, float]


def _link_params(net: NetworkConfig, overrides: dict[str, float] | None = None) -> LinkParams:
    o = overrides or {}
    lo = o.get("latency_min", net.latency_min)
    hi = o.get("latency_max", net.latency_max)
    if hi < lo:
        hi = lo
    return (
        lo,
        hi - lo,
        o.get("loss", net.loss),
        o.get("duplicate", net.duplicate),
        o.get("reorder", net.reorder),
        o.get("reorder_delay", net.reorder_delay),
    )


@functools.cache
def _lognormal_factors(sigma: float) -> tuple[float, ...]:
    """256 equally likely sync-time factors: the quantiles of a log-normal distribution
    of mean 1 and this sigma (a seeded byte picks one: cheaper than drawing a variate).
    Empty when sigma is 0: every sync takes the mean."""
    if sigma <= 0:
        return ()
    import statistics  # here: its imports cost every process's start-up

    normal = statistics.NormalDist(-sigma * sigma / 2, sigma)
    factors = [math.exp(normal.inv_cdf((i + 0.5) / 256)) for i in range(256)]
    mean = sum(factors) / len(factors)
    return tuple(f / mean for f in factors)


def summarize_delays(delays: Iterable[int]) -> dict[str, Any]:
    """count, mean, max and a histogram {delays: commands} of learned-command delays."""
    values = list(delays)
    if not values:
        return {"count": 0, "mean": None, "max": None, "histogram": {}}
    histogram: dict[int, int] = {}
    for v in values:
        histogram[v] = histogram.get(v, 0) + 1
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 3),
        "max": max(values),
        "histogram": {str(k): histogram[k] for k in sorted(histogram)},
    }


@dataclass(slots=True, kw_only=True)
class SimResult:
    protocol: str
    node_ids: tuple[str, ...]
    seed: int
    duration: float
    settle: float
    ops: dict[str, int]
    invariant_violations: list[dict[str, Any]]
    linearizable: bool | None
    trace_sha256: str
    events: int
    wall_seconds: float
    virtual_time: float
    faults: dict[str, int]
    message_delays: dict[str, Any] = field(default_factory=dict)
    # The linearizability checker's CheckResult (None when not checked).
    linearizability: Any = None
    history: History = field(default_factory=History)
    violations: list[InvariantViolation] = field(default_factory=list)
    service: str = ""  # the service the clients used
    # False when the service has no linearizability model: no verdict was due.
    verdict_due: bool = True
    runtime: str = "unbatched"  # the runtime this seed ran ("random" resolved)
    # What the protocol's monitor reported (ProtocolSpec.make_monitor), else empty.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.invariant_violations and self.linearizable is not False

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "service": self.service,
            "nodes": len(self.node_ids),
            "node_ids": list(self.node_ids),
            "seed": self.seed,
            "runtime": self.runtime,
            "duration": self.duration,
            "settle": self.settle,
            "ops": dict(self.ops),
            "invariant_violations": list(self.invariant_violations),
            "linearizable": self.linearizable,
            "trace_sha256": self.trace_sha256,
            "events": self.events,
            "wall_seconds": round(self.wall_seconds, 3),
            "events_per_second": (round(self.events / self.wall_seconds) if self.wall_seconds > 0 else None),
            "virtual_time": round(self.virtual_time, 6),
            "faults": dict(self.faults),
            "message_delays": dict(self.message_delays),
            "linearizability": self._linearizability_json(),
            "metrics": dict(self.metrics),
        }

    def _linearizability_json(self) -> dict[str, Any] | None:
        check = self.linearizability
        if check is None or not hasattr(check, "to_json"):
            return None
        summary = check.to_json()
        return {k: summary[k] for k in ("verdict", "ops", "seconds", "timed_out", "failing_partition")}


class Simulation:
    def __init__(self, config: SimConfig, registry: Registry | None = None) -> None:
        config.validate()
        self.config = config
        registry = registry or default_registry()
        self.spec: ProtocolSpec = registry.get(config.protocol)
        # The client API this run drives: its state machine, workload and checker model.
        self.service: ServiceSpec = service_for(registry, self.spec, config.service)
        known_bugs = (*self.spec.bugs, *self.service.bugs)
        unknown_bugs = sorted(set(config.bugs) - set(known_bugs))
        if unknown_bugs:
            valid = ", ".join(known_bugs) or "(none)"
            raise ValueError(
                f"unknown bug(s) {', '.join(unknown_bugs)} for {config.protocol}; valid: {valid}"
            )
        self.node_ids: tuple[str, ...] = tuple(config.node_ids)
        seed = config.seed
        self.seed = seed
        self.rng = random.Random(seed)  # master; sources below are derived by name
        self._net_rng = random.Random(f"{seed}/network")
        self._rnd = self._net_rng.random
        runtime = config.runtime
        if runtime == "random":
            runtime = "batched" if random.Random(f"{seed}/runtime").random() < 0.5 else "unbatched"
        self.runtime = runtime
        self.batched = runtime == "batched"
        self._env_class = BatchedSimEnv if self.batched else SimEnv
        self._disk_rng = random.Random(f"{seed}/disk")
        self._sync_factors: tuple[float, ...] = ()
        self._batch_window = 0.0
        self.now = 0.0
        self.events = 0
        self._wall_limit = math.inf  # run(wall_limit=), and the perf_counter() instant it ends
        self._wall_deadline = math.inf
        self._queue: list[tuple[Any, ...]] = []  # a heap (sim/events.py)
        self._batches: deque[tuple[Any, ...]] = deque()  # BATCH entries, in order
        self._seq = itertools.count()
        self.trace = Trace(config.trace_path)
        self._trace_append = self.trace.append
        self.history = History()
        self.responses: list[tuple[float, str, ClientResponse]] = []
        self.violations: list[InvariantViolation] = []
        self.faults: Counter[str] = Counter()

        # Network state.
        self.network = dataclasses.replace(config.network)
        self._default_params = _link_params(self.network)
        self._set_disk_and_batches()
        self._link_overrides: dict[tuple[str, str], dict[str, float]] = {}
        self._link_params: dict[tuple[str, str], LinkParams] = {}
        self._partition_cut: set[tuple[str, str]] = set()
        self._blocked: set[tuple[str, str]] = set()
        self._cut: set[tuple[str, str]] = set()
        self._filters: dict[int, Callable[[str, str, Any], str | None]] = {}
        self._observers: list[Callable[[str, str, Any], None]] = []
        self._filter_ids = itertools.count(1)
        self.held: list[tuple[str, str, int, Any]] = []
        self._held_depth: dict[int, int] = {}
        self._mid = 0
        # Slot -> message delays when the first node learned it (see ``message_delays``).
        self.learned_delays: dict[Any, int] = {}

        # Nodes.
        self.nodes: dict[str, ProtocolNode | None] = {}
        self._envs: dict[str, SimEnv] = {}
        self._storages: dict[str, SimStorage] = {n: SimStorage() for n in self.node_ids}
        self._clocks: dict[str, Clock] = {n: Clock() for n in self.node_ids}
        self._incarnation: dict[str, int] = dict.fromkeys(self.node_ids, 0)
        self._paused: set[str] = set()
        self._deferred: dict[str, list[tuple[Any, ...]]] = {}
        # Per node: sync latency overriding network.fsync_latency (a slow disk, set_disk).
        self._disk_latency: dict[str, float] = {}
        # Called with (node, fields) whenever a node records a role change (watch_roles).
        self._role_watchers: list[Callable[[str, dict[str, Any]], None]] = []
        known_flags = {f.key for f in self.spec.flags}
        unknown_flags = sorted(set(config.flags) - known_flags)
        if unknown_flags:
            valid = ", ".join(sorted(known_flags)) or "(none)"
            raise ValueError(
                f"unknown flag(s) {', '.join(unknown_flags)} for {config.protocol}; valid: {valid}"
            )
        # Every flag's value, defaults filled: what the monitor and the options read.
        self.flags: dict[str, Any] = {f.key: f.default for f in self.spec.flags} | config.flags
        self.options: dict[str, Any] = {
            **self.spec.default_options,
            **flag_options(self.spec.flags, self.flags),
            **config.options,
            # The protocol's own knobs; the service's are its monitor's (from the config).
            "bugs": frozenset(config.bugs) & frozenset(self.spec.bugs),
        }

        # Checker: duck-typed, call only what exists.
        make_checker = self.spec.make_checker
        self.checker: Any = make_checker(self.options["bugs"]) if make_checker else None
        self._after_step: Callable[[Simulation, str], None] | None = (
            getattr(self.checker, "after_step", None) if config.check_every_step else None
        )
        self._on_client_response = getattr(self.checker, "on_client_response", None)
        # Monitor: the protocol's measurements and end-of-run properties (duck-typed:
        # start(sim), report(sim) -> dict, failures(sim) -> list[str]).
        make_monitor = self.spec.make_monitor
        self.monitor: Any = make_monitor(config) if make_monitor else None
        # The service's monitor (core/service.py): the same interface, and it may make
        # the state machine each node starts with.
        make_service_monitor = self.service.make_monitor
        self.service_monitor: Any = make_service_monitor(config) if make_service_monitor else None
        self._make_state_machine: Callable[[str], Any] | None = (
            getattr(self.service_monitor, "make_state_machine", None) if self.spec.log else None
        )

        # Clients.
        self._clients: dict[str, Client] = {}
        self._ops: dict[tuple[str, int], OpRun] = {}
        self._raw: dict[tuple[str, int], tuple[float, ClientRequest]] = {}
        self._adhoc = itertools.count(1)
        self.workload: list[WorkloadClient] = []
        self.nemesis: Any = None

        for node_id in self.node_ids:
            self._boot(node_id)

    # ------------------------------------------------------------------ queries
    def alive(self, node_id: str) -> bool:
        return self.nodes[node_id] is not None

    def paused(self, node_id: str) -> bool:
        return node_id in self._paused

    def rejoining(self, node_id: str) -> bool:
        """The node lost its storage and is not readmitted yet (it says so itself; a
        crashed one by the key in its durable storage)."""
        node = self.nodes[node_id]
        if node is not None:
            return bool(getattr(node, "rejoining", False))
        return bool(self._storages[node_id].durable.get(REJOINING_KEY))

    def syncing(self, node_id: str) -> bool:
        """A sync of the running node is in flight (its writes are not durable yet)."""
        return self.nodes[node_id] is not None and self._envs[node_id].syncing

    def storage_of(self, node_id: str) -> SimStorage:
        """The node's storage (working view; ``.durable`` is what survives a crash)."""
        return self._storages[node_id]

    def env_of(self, node_id: str) -> SimEnv | None:
        return self._envs.get(node_id) if self.nodes[node_id] is not None else None

    def armed_timers(self, node_id: str) -> list[tuple[float, str]]:
        """(due time, key) of the node's armed timers, earliest first (for scripted
        tests that fire timers by hand; a scan of the queue, not for hot paths)."""
        env = self.env_of(node_id)
        if env is None:
            return []
        # An armed timer without a carrier is a firing deferred while the node is paused.
        carriers = env.carriers
        return sorted((entry[0], key) for key, entry in env.timers.items() if key in carriers)

    def clock_of(self, node_id: str) -> Clock:
        """The node's clock model (skew, drift); checkers read it, faults change it."""
        return self._clocks[node_id]

    def local_time(self, node_id: str) -> float:
        return self._clocks[node_id].local(self.now)

    # ------------------------------------------------------------------ stepping
    def step(self) -> bool:
        """Process one event; False when the queue is empty."""
        ev = self._pop_next(math.inf)
        if ev is None:
            return False
        self._dispatch(ev)
        self._maybe_flush()
        return True

    def _maybe_flush(self) -> None:
        """Flush a full trace buffer, and then hold the run to its wall-clock limit."""
        trace = self.trace
        if len(trace._buf) >= trace.batch:
            trace.flush()
            self._check_wall_clock()

    def _check_wall_clock(self) -> None:
        if time.perf_counter() > self._wall_deadline:
            cfg = self.config
            raise WallClockExceeded(
                f"the run did not end in {self._wall_limit:g} s of wall time (stopped at virtual "
                f"time {self.now:.6f} of {cfg.duration + cfg.settle:g}, {self.events:,} events)"
            )

    def _pop_next(self, t: float) -> tuple[Any, ...] | None:
        """Take the next event if it is due at or before ``t`` (the slow paths' pop;
        ``run_until`` inlines it)."""
        q = self._queue
        bq = self._batches
        if bq and (not q or bq[0] < q[0]):
            return bq.popleft() if bq[0][0] <= t else None
        return pop_event(q) if q and q[0][0] <= t else None

    def _push_batch_end(self, entry: tuple[Any, ...]) -> None:
        bq = self._batches
        if not bq or bq[-1][0] <= entry[0]:
            bq.append(entry)
        else:  # the window shrank meanwhile: out of the FIFO's order
            push_event(self._queue, entry)

    def run_until(self, t: float) -> None:
        """Process every event due at or before ``t``; then the clock reads ``t``.

        The hot loop: deliveries, timers, batch ends and syncs of running nodes, callbacks,
        client requests and answers are handled inline (the common cases); everything else
        goes through ``_dispatch``.  Keep it lean.
        """
        q = self._queue
        bq = self._batches
        bq_pop = bq.popleft
        nodes = self.nodes
        envs = self._envs
        paused = self._paused
        dispatch = self._dispatch
        on_req = self._on_req
        on_resp = self._on_resp
        after_step = self._after_step
        batched = self.batched
        window = self._batch_window  # a change takes effect at the next run_until
        seq = self._seq
        trace = self.trace
        buf = trace._buf
        record = buf.append
        batch = trace.batch
        ev: tuple[Any, ...] = ()
        try:
            while True:
                if bq:
                    # A batch end is due first unless the heap's head sorts before it.
                    ev = bq[0]
                    if q and q[0] < ev:
                        if q[0][0] > t:
                            break
                        ev = pop_event(q)
                    else:
                        if ev[0] > t:
                            break
                        bq_pop()
                elif q and q[0][0] <= t:
                    ev = pop_event(q)
                else:
                    break
                kind: int = ev[2]
                if kind == MSG:
                    dst = ev[3]
                    node = nodes.get(dst)
                    if node is None or dst in paused:
                        dispatch(ev)
                    else:
                        now = self.now = ev[0]
                        self.events += 1
                        record((now, "deliver", ev[4], dst, ev[6], ev[5]))
                        env = envs[dst]
                        env.depth = ev[7]
                        node.on_message(ev[4], ev[5])
                        if batched:
                            if after_step is not None:
                                after_step(self, dst)
                            if env.batch_inputs:
                                env.batch_inputs += 1
                            else:
                                # A new batch.  When the queue holds nothing up to its
                                # end (within t), nothing can join it: it ends right
                                # here, at its deadline, exactly as its BATCH event
                                # would have been the next one popped.
                                deadline = now + window
                                if bq or (q and q[0][0] <= deadline) or deadline > t:
                                    env.batch_inputs = 1
                                    if not bq or bq[-1][0] <= deadline:
                                        bq.append((deadline, next(seq), BATCH, env))
                                    else:
                                        push_event(q, (deadline, next(seq), BATCH, env))
                                else:
                                    self.now = deadline
                                    n = env.recs
                                    env.end_batch()
                                    if after_step is not None and env.recs != n:
                                        after_step(self, dst)
                        else:
                            if env.outbox or env.storage.journal:
                                env.end_batch()
                            if after_step is not None:
                                after_step(self, dst)
                elif kind == TIMER:
                    env = ev[3]
                    key = ev[4]
                    if env.dead or env.carriers.get(key) is not ev:
                        continue  # stale: re-armed earlier, or crashed (not counted)
                    if env.timers.get(key) is not ev:
                        self._timer_moved(env, key)  # re-armed later or cancelled
                        continue
                    del env.carriers[key]
                    node_id = env.node_id
                    if node_id in paused:
                        dispatch(ev, True)  # deferred: counted, as before
                    else:
                        now = self.now = ev[0]
                        self.events += 1
                        record((now, "timer", node_id, key))
                        env.depth = 0
                        del env.timers[key]
                        node = nodes[node_id]
                        assert node is not None  # a crashed node's timers are dropped with its env
                        node.on_timer(key)
                        if batched:
                            if after_step is not None:
                                after_step(self, node_id)
                            if env.batch_inputs:
                                env.batch_inputs += 1
                            else:
                                # A new batch (see above).
                                deadline = now + window
                                if bq or (q and q[0][0] <= deadline) or deadline > t:
                                    env.batch_inputs = 1
                                    if not bq or bq[-1][0] <= deadline:
                                        bq.append((deadline, next(seq), BATCH, env))
                                    else:
                                        push_event(q, (deadline, next(seq), BATCH, env))
                                else:
                                    self.now = deadline
                                    n = env.recs
                                    env.end_batch()
                                    if after_step is not None and env.recs != n:
                                        after_step(self, node_id)
                        else:
                            if env.outbox or env.storage.journal:
                                env.end_batch()
                            if after_step is not None:
                                after_step(self, node_id)
                elif kind == BATCH:
                    env = ev[3]
                    if env.dead:
                        continue  # the crash lost the batch's outputs
                    node_id = env.node_id
                    if node_id in paused:
                        dispatch(ev)
                    else:
                        now = self.now = ev[0]
                        if env.batch_inputs > 1:  # a lone input's batch shows in its sends
                            record((now, "batch", node_id, env.batch_inputs))
                        env.batch_inputs = 0
                        n = env.recs
                        env.end_batch()
                        # Checked when the batch's end changed what the protocol records
                        # (its inputs were checked one by one already; a silent change is
                        # seen by the next check).
                        if after_step is not None and env.recs != n:
                            after_step(self, node_id)
                elif kind == SYNC:
                    env = ev[3]
                    if env.dead or env.node_id in paused:
                        dispatch(ev)
                    else:
                        # _on_sync, inlined: one completes every few events.
                        now = self.now = ev[0]
                        self.events += 1
                        writes = env.sync_batch
                        env.storage.finish_sync(writes)
                        env.syncs += 1
                        record((now, "sync", env.node_id, len(writes)))
                        env.sync_batch = []
                        env.advance()
                elif kind == FN:
                    # A client's or the nemesis's callback (about a quarter of the
                    # events): no _dispatch frame.
                    self.now = ev[0]
                    self.events += 1
                    ev[3](ev[4])
                elif kind == REQ:
                    self.now = ev[0]
                    self.events += 1
                    on_req(ev)
                elif kind == RESP:
                    self.now = ev[0]
                    self.events += 1
                    on_resp(ev)
                else:
                    dispatch(ev)
                if len(buf) >= batch:
                    trace.flush()
                    self._check_wall_clock()
        except InvariantViolation as exc:
            self._violation(exc)
            raise
        except Exception as exc:
            self._note(exc, ev)
            raise
        if self.now < t:
            self.now = t

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_until_true(self, pred: Callable[[], object], timeout: float) -> bool:
        # ``pred`` is read for its truth (callers pass dict lookups, counts...): typed
        # object, or a compiled build would insist on a bool.
        deadline = self.now + timeout
        while True:
            if pred():
                return True
            ev = self._pop_next(deadline)
            if ev is None:
                self.now = max(self.now, deadline)
                return bool(pred())
            self._dispatch(ev)
            self._maybe_flush()

    def _dispatch(self, ev: tuple[Any, ...], live: bool = False) -> None:
        """Any event, the slow way (``run_until`` inlines the common cases).  ``live``:
        a timer's entry already found live (its carrier dropped)."""
        kind = ev[2]
        if kind == TIMER and not live:
            env: SimEnv = ev[3]
            key = ev[4]
            if env.dead or env.carriers.get(key) is not ev:
                return  # stale timer: not an event
            if env.timers.get(key) is not ev:
                self._timer_moved(env, key)
                return
            del env.carriers[key]
        elif kind == BATCH:
            # The tail of its inputs' handling: not an event of its own.
            self._on_batch(ev)
            return
        self.now = ev[0]
        self.events += 1
        try:
            if kind == MSG:
                self._on_msg(ev)
            elif kind == TIMER:
                self._on_timer(ev)
            elif kind == SYNC:
                self._on_sync(ev)
            elif kind == FN:
                ev[3](ev[4])
            elif kind == REQ:
                self._on_req(ev)
            elif kind == RESP:
                self._on_resp(ev)
            else:
                self._trace_append((self.now, "sched", ev[4]))
                ev[3]()
        except InvariantViolation as exc:
            self._violation(exc)
            raise
        except Exception as exc:
            self._note(exc, ev)
            raise

    def _timer_moved(self, env: SimEnv, key: str) -> None:
        """A key's carrier popped but the timer it stood for was re-armed later (queue
        the armed entry as the new carrier) or cancelled (nothing is queued)."""
        entry = env.timers.get(key)
        if entry is None:
            del env.carriers[key]
        else:
            env.carriers[key] = entry
            push_event(self._queue, entry)

    def _note(self, exc: Exception, ev: tuple[Any, ...]) -> None:
        # Say which event a protocol (or script) blew up in, once.
        if not getattr(exc, "_sim_noted", False):
            exc.add_note(f"in simulation event {ev[2:]!r} at t={self.now:.6f}")
            with contextlib.suppress(AttributeError):
                exc._sim_noted = True  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- handlers
    def _on_msg(self, ev: tuple[Any, ...]) -> None:
        _, _, _, dst, src, msg, mid, depth = ev
        node = self.nodes.get(dst)
        if node is None:
            self._trace_append((self.now, "drop", src, dst, mid, msg, "crashed"))
            return
        if dst in self._paused:
            self._deferred[dst].append(ev)
            return
        self._trace_append((self.now, "deliver", src, dst, mid, msg))
        env = self._envs[dst]
        env.depth = depth
        node.on_message(src, msg)
        self._after_handler(env)
        if self._after_step is not None:
            self._after_step(self, dst)

    def _on_timer(self, ev: tuple[Any, ...]) -> None:
        env: SimEnv = ev[3]
        key = ev[4]
        node_id = env.node_id
        if node_id in self._paused:
            # Still armed, without a carrier: resume() queues it again.
            self._deferred[node_id].append(ev)
            return
        self._trace_append((self.now, "timer", node_id, key))
        node = self.nodes[node_id]
        assert node is not None
        env.depth = 0
        del env.timers[key]
        node.on_timer(key)
        self._after_handler(env)
        if self._after_step is not None:
            self._after_step(self, node_id)

    def _on_req(self, ev: tuple[Any, ...]) -> None:
        node_id = ev[3]
        request: ClientRequest = ev[4]
        node = self.nodes.get(node_id)
        if node is None:
            self._trace_append((self.now, "drop", request.client_id, node_id, 0, request, "crashed"))
            return
        if node_id in self._paused:
            self._deferred[node_id].append(ev)
            return
        self._trace_append((self.now, "request", request.client_id, node_id, request.seq))
        env = self._envs[node_id]
        env.depth = 0
        node.on_request(request)
        self._after_handler(env)
        if self._after_step is not None:
            self._after_step(self, node_id)

    def _on_sync(self, ev: tuple[Any, ...]) -> None:
        env: SimEnv = ev[3]
        if env.dead:
            return  # the crash discarded this sync
        node_id = env.node_id
        if node_id in self._paused:
            # A stopped process does not run the code after its fsync; model the
            # whole completion as deferred (the writes stay non-durable meanwhile).
            self._deferred[node_id].append(ev)
            return
        batch = env.sync_batch
        env.storage.finish_sync(batch)
        env.syncs += 1
        self._trace_append((self.now, "sync", node_id, len(batch)))
        env.sync_batch = []
        env.advance()

    def _on_batch(self, ev: tuple[Any, ...]) -> None:
        env: SimEnv = ev[3]
        if env.dead:
            return
        node_id = env.node_id
        if node_id in self._paused:
            self._deferred[node_id].append(ev)
            return
        self.now = ev[0]
        if env.batch_inputs > 1:
            self._trace_append((self.now, "batch", node_id, env.batch_inputs))
        env.batch_inputs = 0
        n = env.recs
        env.end_batch()
        if self._after_step is not None and env.recs != n:
            self._after_step(self, node_id)

    def _on_resp(self, ev: tuple[Any, ...]) -> None:
        client_id = ev[3]
        response: ClientResponse = ev[4]
        node_id = ev[5]
        now = self.now
        self.responses.append((now, node_id, response))
        self._trace_append((now, "response", node_id, client_id, response.seq, response.ok, response.error))
        key = (client_id, response.seq)
        run = self._ops.get(key)
        if self._on_client_response is not None:
            if run is not None:
                self._on_client_response(self, run.record.invoke, run.request, response)
            else:
                raw = self._raw.get(key)
                if raw is not None:
                    self._on_client_response(self, raw[0], raw[1], response)
        if run is None:
            return
        if run.status is not None:
            self._trace_append((now, "late", node_id, client_id, response.seq))
            return
        run.on_response(node_id, response)

    # ------------------------------------------------------- durability barrier
    def _after_handler(self, env: SimEnv) -> None:
        """An input of ``env``'s node was handled: end its batch now (unbatched) or
        make sure a batch is open, ending ``batch_window`` later (batched)."""
        if self.batched:
            if not env.batch_inputs:
                self._push_batch_end((self.now + self._batch_window, next(self._seq), BATCH, env))
            env.batch_inputs += 1
        else:
            env.end_batch()

    # ------------------------------------------------------------------ network
    def _transmit(self, src: str, dst: str, msg: Any, depth: int = 1, use_filters: bool = True) -> None:
        mid = self._mid = self._mid + 1
        now = self.now
        tr = self._trace_append
        tr((now, "send", src, dst, mid, msg))
        if self._observers and use_filters:  # a held message is observed once, when sent
            for observe in self._observers:
                observe(src, dst, msg)
        if self._filters and use_filters:
            verdict = self._filter(src, dst, msg)
            if verdict is not None:
                if verdict == "drop":
                    tr((now, "drop", src, dst, mid, msg, "filter"))
                    return
                if verdict == "hold":
                    self.held.append((src, dst, mid, msg))
                    self._held_depth[mid] = depth
                    tr((now, "hold", src, dst, mid, msg))
                    return
                # "deliver": bypass partitions, loss, duplication and reordering.
                lo, span = self._link_params.get((src, dst), self._default_params)[:2]
                delay = lo + span * self._rnd()
                push_event(self._queue, (now + delay, next(self._seq), MSG, dst, src, msg, mid, depth))
                return
        if self._cut and (src, dst) in self._cut:
            tr((now, "drop", src, dst, mid, msg, "partition"))
            return
        links = self._link_params
        lo, span, loss, dup, reorder, reorder_delay = (
            links.get((src, dst), self._default_params) if links else self._default_params
        )
        rnd = self._rnd
        if loss and rnd() < loss:
            tr((now, "drop", src, dst, mid, msg, "loss"))
            return
        delay = lo + span * rnd()
        if reorder and rnd() < reorder:
            delay += reorder_delay * rnd()
        push_event(self._queue, (now + delay, next(self._seq), MSG, dst, src, msg, mid, depth))
        if dup and rnd() < dup:
            delay = lo + span * rnd()
            if reorder and rnd() < reorder:
                delay += reorder_delay * rnd()
            tr((now, "dup", src, dst, mid, msg))
            push_event(self._queue, (now + delay, next(self._seq), MSG, dst, src, msg, mid, depth))

    def _filter(self, src: str, dst: str, msg: Any) -> str | None:
        for fn in list(self._filters.values()):
            verdict = fn(src, dst, msg)
            if verdict is not None:
                if verdict not in FILTER_VERDICTS:
                    raise ValueError(
                        f"filter returned {verdict!r}; valid: {', '.join(FILTER_VERDICTS)}, None"
                    )
                return verdict
        return None

    def _client_latency(self) -> float:
        net = self.network
        return net.latency_min + (net.latency_max - net.latency_min) * self._rnd()

    def _respond(self, node_id: str, response: ClientResponse) -> None:
        """A node's answer leaves for its client (released by the barrier)."""
        self._mid += 1
        mid = self._mid
        client_id = response.client_id
        self._trace_append((self.now, "send", node_id, client_id, mid, response))
        if self._filters:
            verdict = self._filter(node_id, client_id, response)
            if verdict == "drop":
                self._trace_append((self.now, "drop", node_id, client_id, mid, response, "filter"))
                return
            if verdict == "hold":
                self.held.append((node_id, client_id, mid, response))
                self._trace_append((self.now, "hold", node_id, client_id, mid, response))
                return
        push_event(
            self._queue,
            (self.now + self._client_latency(), next(self._seq), RESP, client_id, response, node_id),
        )

    def _send_request(self, node_id: str, request: ClientRequest, attempt: int) -> None:
        self._check_node(node_id)
        now = self.now
        client_id = request.client_id
        self._trace_append((now, "invoke", client_id, request.seq, node_id, attempt, request.op.describe()))
        if self._filters:
            verdict = self._filter(client_id, node_id, request)
            if verdict == "drop":
                self._trace_append((now, "drop", client_id, node_id, 0, request, "filter"))
                return
            if verdict == "hold":
                self.held.append((client_id, node_id, 0, request))
                self._trace_append((now, "hold", client_id, node_id, 0, request))
                return
        push_event(
            self._queue,
            (now + self._client_latency(), next(self._seq), REQ, node_id, request, None),
        )

    def release_held(self, pred: Callable[[str, str, Any], object] | None = None) -> int:
        """Send held messages whose ``pred(src, dst, msg)`` is true (all if None) now.

        Released messages skip the filters (or they would be held again) but meet the
        network as usual.  Returns how many were released.
        """
        keep: list[tuple[str, str, int, Any]] = []
        released = 0
        for src, dst, mid, msg in self.held:
            if pred is not None and not pred(src, dst, msg):
                keep.append((src, dst, mid, msg))
                continue
            released += 1
            self._trace_append((self.now, "release", src, dst, mid, msg))
            if isinstance(msg, ClientResponse):
                push_event(
                    self._queue,
                    (self.now + self._client_latency(), next(self._seq), RESP, dst, msg, src),
                )
            elif isinstance(msg, ClientRequest):
                push_event(
                    self._queue,
                    (self.now + self._client_latency(), next(self._seq), REQ, dst, msg, None),
                )
            else:
                self._transmit(src, dst, msg, self._held_depth.pop(mid, 1), use_filters=False)
        self.held = keep
        return released

    # ------------------------------------------------------------------ internals
    def _push_fn(self, t: float, fn: Callable[[Any], None], arg: Any) -> None:
        push_event(self._queue, (max(t, self.now), next(self._seq), FN, fn, arg))

    def _check_node(self, node_id: str) -> None:
        if node_id not in self._storages:
            raise KeyError(f"unknown node {node_id!r}; valid: {', '.join(self.node_ids)}")

    def _boot(self, node_id: str) -> None:
        inc = self._incarnation[node_id] + 1
        self._incarnation[node_id] = inc
        env = self._env_class(
            self,
            node_id,
            inc,
            self._storages[node_id],
            self._clocks[node_id],
            random.Random(f"{self.seed}/{node_id}/{inc}"),
        )
        make_sm = self._make_state_machine
        sm = make_sm(node_id) if make_sm is not None else None
        node = self.spec.build(node_id, env, self.node_ids, dict(self.options), self.service, sm)
        if self.batched:
            env.batch_end = getattr(node, "on_batch_end", None)
        env.durable_input = getattr(node, "on_durable", None)
        self._envs[node_id] = env
        self.nodes[node_id] = node
        self._deferred[node_id] = []
        self._trace_append((self.now, "start", node_id, inc))
        node.on_start()
        self._after_handler(env)

    def _fault(self, kind: str, **args: Any) -> None:
        self.faults[kind] += 1
        self._trace_append((self.now, "fault", kind, args))

    def _checked(self, node_id: str) -> None:
        if self._after_step is not None:
            try:
                self._after_step(self, node_id)
            except InvariantViolation as exc:
                self._violation(exc)
                raise

    def _violation(self, exc: InvariantViolation) -> None:
        if any(v is exc for v in self.violations):
            return
        if exc.time is None:
            exc.time = self.now
        self._trace_append((self.now, "violation", exc.name, exc.detail))
        exc.trace_tail = self.trace.tail(40)
        self.violations.append(exc)

    # -------------------------------------------------------------------- faults
    def crash(self, node_id: str) -> None:
        """Kill the node: only durable storage survives; held outputs, timers and the
        sync in flight are lost.  Messages already on the wire still arrive (and are
        dropped as "crashed")."""
        self._check_node(node_id)
        if self.nodes[node_id] is None:
            return
        env = self._envs[node_id]
        env.dead = True
        lost_writes = len(env.storage.journal) + len(env.sync_batch)
        lost_outputs = env.held
        self.nodes[node_id] = None
        self._paused.discard(node_id)
        self._deferred[node_id] = []
        self._storages[node_id] = SimStorage(env.storage.durable)
        self._fault("crash", node=node_id, lost_writes=lost_writes, lost_outputs=lost_outputs)
        self._checked(node_id)

    def restart(self, node_id: str) -> None:
        """Start a new incarnation from durable storage (crashing it first if alive)."""
        self._check_node(node_id)
        if self.nodes[node_id] is not None:
            self.crash(node_id)
        self._fault("restart", node=node_id, incarnation=self._incarnation[node_id] + 1)
        self._boot(node_id)
        self._checked(node_id)

    def wipe(self, node_id: str) -> None:
        """Crash the node, lose all its storage (durable included), and restart it on an
        empty storage that holds only REJOINING_KEY: a replaced disk, restarted as
        ``consensuskit server --rejoin`` would."""
        self._check_node(node_id)
        if not self.spec.survives_disk_loss:
            raise ValueError(
                f"{self.spec.name} cannot survive the loss of a node's storage "
                "(its registry entry lacks survives_disk_loss): no wipe"
            )
        if self.nodes[node_id] is not None:
            self.crash(node_id)
        fresh = MemoryStorage()
        fresh.put(REJOINING_KEY, True)
        self._storages[node_id] = SimStorage(fresh)
        self._fault("wipe", node=node_id)
        self.restart(node_id)

    def pause(self, node_id: str) -> None:
        self._check_node(node_id)
        if self.nodes[node_id] is None or node_id in self._paused:
            return
        self._paused.add(node_id)
        self._fault("pause", node=node_id)

    def resume(self, node_id: str) -> None:
        self._check_node(node_id)
        if node_id not in self._paused:
            return
        self._paused.discard(node_id)
        deferred = self._deferred[node_id]
        self._deferred[node_id] = []
        self._fault("resume", node=node_id, deferred=len(deferred))
        for ev in deferred:
            entry = (self.now, next(self._seq), *ev[2:])
            if ev[2] == TIMER:
                env = ev[3]
                key = ev[4]
                if env.timers.get(key) is ev:
                    # Still armed as it was deferred: the new entry is the timer now.
                    env.timers[key] = env.carriers[key] = entry
            push_event(self._queue, entry)

    def partition(self, groups: list[list[str]]) -> None:
        """Nodes in different groups cannot talk; unlisted nodes form one more group."""
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            for node_id in group:
                self._check_node(node_id)
                if node_id in group_of:
                    raise ValueError(f"node {node_id} listed in two partition groups")
                group_of[node_id] = i
        extra = len(groups)
        cut = {
            (a, b)
            for a in self.node_ids
            for b in self.node_ids
            if group_of.get(a, extra) != group_of.get(b, extra)
        }
        desc = "|".join(",".join(g) for g in groups)
        self._set_partition(cut, "partition", groups=desc)

    def partition_links(self, pairs: Iterable[tuple[str, str]], pattern: str) -> None:
        """A partition given as the directed links it cuts (bridge, ring, ...)."""
        cut = set()
        for a, b in pairs:
            self._check_node(a)
            self._check_node(b)
            cut.add((a, b))
        self._set_partition(cut, "partition", pattern=pattern, links=len(cut))

    def _set_partition(self, cut: set[tuple[str, str]], kind: str, **args: Any) -> None:
        self._partition_cut = cut
        self._cut = self._partition_cut | self._blocked
        self._fault(kind, **args)

    def block(self, src: str, dst: str) -> None:
        """Cut the one-way link src -> dst."""
        self._check_node(src)
        self._check_node(dst)
        self._blocked.add((src, dst))
        self._cut = self._partition_cut | self._blocked
        self._fault("block", src=src, dst=dst)

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((src, dst))
        self._cut = self._partition_cut | self._blocked
        self._fault("unblock", src=src, dst=dst)

    def heal(self) -> None:
        """Clear partitions and blocks (link overrides and filters stay)."""
        self._partition_cut = set()
        self._blocked = set()
        self._cut = set()
        self._fault("heal")

    def set_link(self, src: str, dst: str, **overrides: float) -> None:
        """Per directed link overrides of the network defaults; no overrides clears."""
        self._check_node(src)
        self._check_node(dst)
        bad = sorted(set(overrides) - set(LINK_FIELDS))
        if bad:
            raise ValueError(f"unknown link field(s) {bad}; valid: {', '.join(LINK_FIELDS)}")
        if overrides:
            self._link_overrides[(src, dst)] = dict(overrides)
        else:
            self._link_overrides.pop((src, dst), None)
        self._rebuild_links()
        self._fault("link", src=src, dst=dst, **overrides)

    def set_network(self, **fields: float) -> None:
        """Change the global network defaults (e.g. a loss burst)."""
        valid = [f.name for f in dataclasses.fields(NetworkConfig)]
        bad = sorted(set(fields) - set(valid))
        if bad:
            raise ValueError(f"unknown network field(s) {bad}; valid: {', '.join(valid)}")
        net = dataclasses.replace(self.network, **fields)
        net.validate()
        self.network = net
        self._rebuild_links()
        self._fault("network", **fields)

    def set_disk(self, node_id: str, latency: float | None = None) -> None:
        """A slow (or fast) disk: the node's syncs take ``latency`` virtual seconds from
        the next one on; None restores the network's ``fsync_latency``."""
        self._check_node(node_id)
        if latency is None:
            self._disk_latency.pop(node_id, None)
        elif latency < 0:
            raise ValueError(f"disk latency must be >= 0, got {latency}")
        else:
            self._disk_latency[node_id] = latency
        self._fault("disk", node=node_id, latency=latency)

    def watch_roles(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``fn(node_id, fields)`` whenever a node records a ``role`` change, inside
        that node's handler (before its writes are synced): faults aimed at the moment
        a node becomes leader.  ``fn`` must not run nodes; it may change faults."""
        self._role_watchers.append(fn)

    def _note_role(self, node_id: str, fields: dict[str, Any]) -> None:
        for fn in list(self._role_watchers):
            fn(node_id, fields)

    def _set_disk_and_batches(self) -> None:
        """The batched runtime's window and sync-time factors, from the network config."""
        if self.batched:
            self._batch_window = self.network.batch_window
            self._sync_factors = _lognormal_factors(self.network.fsync_sigma)

    def _rebuild_links(self) -> None:
        self._set_disk_and_batches()
        self._default_params = _link_params(self.network)
        self._link_params = {link: _link_params(self.network, o) for link, o in self._link_overrides.items()}

    def set_clock(self, node_id: str, skew: float = 0.0, drift: float = 0.0) -> None:
        """Node-local clock = global * (1 + drift) + skew (re-anchored, see Clock)."""
        self._check_node(node_id)
        if not -0.5 < drift < 0.5:
            raise ValueError(f"drift must be within (-0.5, 0.5), got {drift}")
        self._clocks[node_id].set(self.now, skew, drift)
        self._fault("clock", node=node_id, skew=skew, drift=drift)

    def add_filter(self, fn: Callable[[str, str, Any], str | None]) -> int:
        """``fn(src, dst, msg) -> "drop" | "deliver" | "hold" | None`` at send time.

        The first filter with an opinion decides.  "deliver" bypasses partitions, loss,
        duplication and reordering; "hold" parks the message in ``held`` until
        ``release_held``.  Client requests/answers are filtered too (src or dst is the
        client id).  Returns a handle for ``remove_filter``.
        """
        handle = next(self._filter_ids)
        self._filters[handle] = fn
        self._fault("filter", handle=handle)
        return handle

    def add_observer(self, fn: Callable[[str, str, Any], None]) -> None:
        """``fn(src, dst, msg)`` sees every message a node sends to a node, once, before
        filters and the network decide its fate; it cannot change that fate.  Unlike a
        filter it is not a fault: it leaves the trace as it was (a monitor counting
        traffic uses it)."""
        self._observers.append(fn)

    def remove_filter(self, handle: int) -> None:
        self._filters.pop(handle, None)
        self._fault("unfilter", handle=handle)

    def clear_filters(self) -> None:
        """Remove every message filter."""
        for handle in sorted(self._filters):
            self.remove_filter(handle)

    def invoke(self, node_id: str, fn: Callable[[Any], Any], label: str) -> Any:
        """Run ``fn(node)`` now as an input of the node (an admin call such as a
        campaign, leadership transfer or membership change), under the same durability
        barrier and checks as any other input.  Returns what ``fn`` returned."""
        self._check_node(node_id)
        node = self.nodes[node_id]
        if node is None:
            raise RuntimeError(f"cannot invoke on {node_id}: it is crashed")
        self._trace_append((self.now, "sched", label))
        env = self._envs[node_id]
        env.depth = 0
        result = fn(node)
        self._after_handler(env)
        self._checked(node_id)  # a violation gets its time and trace tail attached
        return result

    def membership_leader(self) -> str | None:
        """A running (neither crashed nor paused) node that says it leads and changes
        membership (``MembershipChange``); of two, the newer generation (term, round)."""
        running = [(n, self.nodes[n]) for n in self.node_ids if n not in self._paused]
        able = [n for n in leader_of(running) if implements(self.nodes[n], MembershipChange)]
        generation = {n: cast("Inspectable", self.nodes[n]).node_status().generation for n in able}
        return max(able, key=generation.__getitem__, default=None)

    def change_membership(self, change: str, node_id: str) -> str | None:
        """Ask the leader (``membership_leader``) to make ``change`` (CONFIG_CHANGES of
        core/capabilities.py) to ``node_id`` through the protocol, as an operator's
        ``consensuskit admin`` call would.  None once proposed, else why not (no such
        leader, or its refusal).  Traced as a fault when a leader was asked."""
        self._check_node(node_id)
        leader = self.membership_leader()
        if leader is None:
            return "no running leader that changes membership"
        error = self.invoke(leader, lambda n: n.propose_config_change(change, node_id), f"{change} {node_id}")
        self._fault("membership", change=change, node=node_id, via=leader, error=error)
        return error

    def schedule(self, at: float, fn: Callable[[], None], label: str) -> None:
        """Run ``fn`` at virtual time ``at`` (not earlier than now), traced as ``label``."""
        push_event(self._queue, (max(at, self.now), next(self._seq), CALL, fn, label))

    # ------------------------------------------------------------------ clients
    def _client(self, client_id: str) -> Client:
        client = self._clients.get(client_id)
        if client is None:
            client = Client(self, client_id, random.Random(f"{self.seed}/client/{client_id}"))
            self._clients[client_id] = client
        return client

    def submit(
        self,
        op: Op | ServiceOp,
        node: str | None = None,
        client_id: str | None = None,
        seq: int | None = None,
        consistency: str | None = None,
    ) -> OpRun:
        """Run ``op`` through a client with the workload's retry rules; returns its handle.

        Without ``client_id`` each call gets a fresh client ("s1", "s2", ...), so
        concurrent submits never trip session dedup.  ``consistency`` is the request's
        (a read's; None: the protocol's default).
        """
        if client_id is None:
            client_id = f"s{next(self._adhoc)}"
        return self._start_op(self._client(client_id), op, node, seq, None, consistency)

    def _start_op(
        self,
        client: Client,
        op: Op | ServiceOp,
        node: str | None,
        seq: int | None,
        on_done: Callable[[OpRun], None] | None,
        consistency: str | None = None,
    ) -> OpRun:
        if node is not None:
            self._check_node(node)
        if seq is None:
            seq = client.next_seq
        client.next_seq = max(client.next_seq, seq + 1)
        request = ClientRequest(client_id=client.client_id, seq=seq, op=op, consistency=consistency)
        run = OpRun(self, client, request, on_done)
        self._ops[(client.client_id, seq)] = run
        self.history.append(run.record)
        run.start(node)
        return run

    def send_request(self, node_id: str, request: ClientRequest) -> None:
        """Raw path: deliver ``request`` to ``node_id`` after client latency, no retries.

        Answers land in ``responses`` as (time, node, ClientResponse).
        """
        self._raw.setdefault((request.client_id, request.seq), (self.now, request))
        self._send_request(node_id, request, 0)

    def submitted_request(self, client_id: str, seq: int) -> ClientRequest | None:
        """The request a client sent with this id, through ``submit`` or ``send_request``
        (None if none was): what a checker compares a chosen value with."""
        run = self._ops.get((client_id, seq))
        if run is not None:
            return run.request
        raw = self._raw.get((client_id, seq))
        return raw[1] if raw is not None else None

    def pending_ops(self) -> list[OpRun]:
        return [run for run in self._ops.values() if run.status is None]

    # ------------------------------------------------------------------ full run
    def start_workload(self) -> None:
        for i in range(1, self.config.clients + 1):
            cid = f"c{i}"
            client = WorkloadClient(
                self,
                cid,
                self.service.make_workload(i, self.config.keys),
                random.Random(f"{self.seed}/client/{cid}"),
            )
            self._clients[cid] = client
            self.workload.append(client)
            client.start()

    def start_nemesis(self) -> None:
        from consensuskit.sim.nemesis import Nemesis

        self.nemesis = Nemesis(
            self,
            self.config.nemesis,
            self.config.nemesis_interval,
            random.Random(f"{self.seed}/nemesis"),
        )
        self.nemesis.start()

    def settle(self) -> None:
        """Stop faults and clients, heal everything, bring every node back."""
        self._trace_append((self.now, "phase", "settle"))
        if self.nemesis is not None:
            self.nemesis.stop()
        for client in self.workload:
            client.stopped = True
        if self._partition_cut or self._blocked:
            self.heal()
        for node_id in sorted(self._disk_latency):
            self.set_disk(node_id, None)
        if self.network != self.config.network or self._link_overrides:
            self._link_overrides = {}
            self.network = dataclasses.replace(self.config.network)
            self._rebuild_links()
            self._fault("network", reset=True)
        for node_id in self.node_ids:
            clock = self._clocks[node_id]
            if clock.rate != 1.0 or clock.skew != 0.0:
                self.set_clock(node_id, 0.0, 0.0)
        for node_id in self.node_ids:
            if node_id in self._paused:
                self.resume(node_id)
            if self.nodes[node_id] is None:
                self.restart(node_id)

    def run(self, wall_limit: float | None = None) -> SimResult:
        """Run the workload and faults for ``duration``, settle, check; the result.

        ``wall_limit``: seconds of wall time the run may take before it raises
        ``WallClockExceeded`` (the history's check after it has its own budget,
        ``config.linearizability_timeout``).

        The collector's first threshold is raised to ``GC_YOUNG_THRESHOLD`` meanwhile
        (restored after): a run allocates containers on every event (queue entries,
        trace records, messages) and frees nearly all of them by reference counting, so
        at Python's default (700) the collector walked the survivors of the last few
        dozen events again and again (about 4% of a run's instructions).  Nothing a run
        computes depends on when the collector runs: same trace, same digest."""
        old = gc.get_threshold()
        raise_it = 0 < old[0] < GC_YOUNG_THRESHOLD
        if raise_it:
            gc.set_threshold(GC_YOUNG_THRESHOLD, *old[1:])
        if wall_limit is not None:
            self._wall_limit = wall_limit
            self._wall_deadline = time.perf_counter() + wall_limit
        try:
            return self._run()
        finally:
            self._wall_deadline = math.inf
            if raise_it:
                gc.set_threshold(*old)

    def _run(self) -> SimResult:
        cfg = self.config
        wall0 = time.perf_counter()
        start = self.now
        try:
            for monitor in (self.monitor, self.service_monitor):
                start_monitor = getattr(monitor, "start", None)
                if start_monitor is not None:
                    start_monitor(self)
            self.start_workload()
            if cfg.nemesis:
                self.start_nemesis()
            self.run_until(start + cfg.duration)
            self.settle()
            self.run_until(start + cfg.duration + cfg.settle)
            self._trace_append((self.now, "phase", "final"))
            for run in self.pending_ops():
                run.abandon()
            final = getattr(self.checker, "final", None)
            if final is not None:
                try:
                    final(self)
                except InvariantViolation as exc:
                    self._violation(exc)
            monitors = ((self.monitor, cfg.protocol), (self.service_monitor, self.service.name))
            for monitor, name in monitors:
                monitor_failures = getattr(monitor, "failures", None)
                for reason in monitor_failures(self) if monitor_failures is not None else ():
                    self._violation(InvariantViolation(f"{name}-monitor", reason))
        except InvariantViolation:
            pass  # recorded by _violation; the run stops at the first one
        except BaseException:
            self.trace.close()  # keep the trace file up to the failure
            raise
        for run in self.pending_ops():
            run.abandon()
        linearizable, linearizability = self._check_history()
        metrics: dict[str, Any] = {}
        for monitor in (self.monitor, self.service_monitor):
            report = getattr(monitor, "report", None)
            if report is not None:
                metrics.update(report(self))
        self.trace.close()
        if cfg.history_path:
            self.history.to_jsonl(cfg.history_path)
        return SimResult(
            service=self.service.name,
            verdict_due=self.service.model is not None or linearizable is not None,
            protocol=cfg.protocol,
            node_ids=self.node_ids,
            seed=cfg.seed,
            duration=cfg.duration,
            settle=cfg.settle,
            ops=self.history.counts(),
            invariant_violations=[v.to_json() for v in self.violations],
            linearizable=linearizable,
            linearizability=linearizability,
            trace_sha256=self.trace.sha256(),
            events=self.events,
            wall_seconds=time.perf_counter() - wall0,
            virtual_time=self.now,
            faults=dict(sorted(self.faults.items())),
            message_delays=self.message_delays,
            history=self.history,
            violations=list(self.violations),
            runtime=self.runtime,
            metrics=metrics,
        )

    def _note_learned(self, fields: dict[str, Any], depth: int) -> None:
        """A node learned that slot ``fields["slot"]`` (or ``first..slot``) is chosen.

        Only the first learner of a slot counts: that is when the command was decided
        from the point of view of the fastest possible reply."""
        slot = fields.get("slot")
        first = fields.get("first", slot)
        if isinstance(slot, int) and isinstance(first, int):
            slots: Iterable[Any] = range(first, slot + 1)
        else:
            slots = (slot,)
        learned = self.learned_delays
        for s in slots:
            if s not in learned:
                learned[s] = depth

    @property
    def message_delays(self) -> dict[str, Any]:
        """Message delays from the client request to the first learner, per command."""
        return summarize_delays(self.learned_delays.values())

    def _check_history(self) -> tuple[bool | None, Any]:
        """(verdict, details): the protocol's own history check if it offers one, else
        the linearizability checker with the service's model (none: no verdict)."""
        fn = getattr(self.checker, "check_history", None) or getattr(self.spec, "check_history", None)
        if fn is not None:
            verdict = fn(self.history)
            if verdict is None:
                return None, None
            return bool(getattr(verdict, "ok", verdict)), verdict
        model = self.service.model
        if not self.config.check_linearizability or model is None:
            return None, None
        from consensuskit.check.linearizability import check_history

        if not isinstance(model, str):
            model = model()
        result = check_history(self.history, model=model, timeout=self.config.linearizability_timeout)
        return result.ok, result

    def close(self) -> None:
        """Flush and close the trace file (run() does this itself)."""
        self.trace.close()
