"""The simulator's implementation of ``core.env.Env``: one object per node incarnation.

Rules this module owns:
  * an env is a durability driver (core/driver.py): sends and client answers are held
    in ``outbox`` and leave only after every storage write made before them is
    durable; a sync takes simulated time (``run_sync`` queues its completion);
  * ``SimEnv`` is the unbatched runtime, ``BatchedSimEnv`` the batched one (the
    server's capabilities: ``calls_batch_end``, ``send_early``, ``deliver_early``); both report
    durability (``reports_durable``);
  * timers are keyed.  ``timers[key]`` is the armed timer's queue entry
    ``(due, seq, TIMER, env, key)`` (its ``seq`` taken when it was set, so it orders
    as if queued then); ``carriers[key]`` is the one queued entry that stands for it,
    due no later than it.  Re-arming a key later (an election timer pushed back on
    every heartbeat) queues nothing: when the carrier pops, the simulator queues the
    armed entry in its place (``Simulation._timer_moved``).  Re-arming earlier queues
    the new entry as the carrier.  An entry that is not its key's carrier is stale and
    ignored when it pops (no search in the queue, and few stale entries in it);
  * a timer with a positive delay fires strictly after now, at the next representable
    instant if the delay is below the float resolution of now (a zero delay fires now);
  * an incarnation dies with its node: a crash sets ``dead`` and every queued event
    that still references this env (timers, syncs) is ignored.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from consensuskit.core.client import ClientResponse
from consensuskit.core.compiled import mypyc_attr
from consensuskit.core.driver import Driver
from consensuskit.sim.events import push_event
from consensuskit.sim.storage import Journal, SimStorage

if TYPE_CHECKING:
    from consensuskit.sim.simulation import Simulation

# Event kinds of sim/simulation.py's queue that an env pushes itself: a timer firing
# (env, key) and a sync's completion (env).
TIMER: Final = 1
SYNC: Final = 4


@dataclass(slots=True)
class Clock:
    """A node's clock: ``local(g) = base_local + (g - base_global) * rate + skew``.

    With a clock set once at time 0 this is exactly ``g * (1 + drift) + skew``.  Later
    drift changes re-anchor the clock so it stays continuous; a skew change is a step
    (the node sees its clock jump, like a VM resumed on another host).
    """

    base_global: float = 0.0
    base_local: float = 0.0
    rate: float = 1.0
    skew: float = 0.0

    def local(self, g: float) -> float:
        return self.base_local + (g - self.base_global) * self.rate + self.skew

    def set(self, g: float, skew: float, drift: float) -> None:
        self.base_local = self.local(g) - self.skew
        self.base_global = g
        self.rate = 1.0 + drift
        self.skew = skew


# Tests subclass the envs (a slow disk): allowed when this module is compiled (mypyc).
@mypyc_attr(allow_interpreted_subclasses=True)
class SimEnv(Driver):
    """The unbatched runtime's env: the simulator ends a batch after every input, no
    message leaves early, and each sync takes ``fsync_latency``.  It reports durability
    (``on_durable``) like the server does."""

    # A node that counts its own log toward a commit quorum counts only what on_durable
    # reported (both runtimes report after every sync).
    reports_durable = True

    __slots__ = (
        "batch_inputs",
        "carriers",
        "clock",
        "dead",
        "depth",
        "durable_input",
        "incarnation",
        "node_id",
        "recs",
        "rng",
        "sim",
        "storage",
        "sync_batch",
        "sync_depth",
        "syncs",
        "timers",
    )

    def __init__(
        self,
        sim: Simulation,
        node_id: str,
        incarnation: int,
        storage: SimStorage,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        Driver.__init__(self, storage)
        self.storage = storage
        self.sim = sim
        self.node_id = node_id
        self.incarnation = incarnation
        self.clock = clock
        self.rng = rng
        self.dead = False
        # Causal message depth of the input being handled: 0 for a client request, a
        # timer or an admin call; d+1 for a message sent while handling depth d.
        self.depth = 0
        # key -> queue entry (due, seq, TIMER, env, key): the armed timers, and the
        # queued entries that stand for them (see the module's rules).
        self.timers: dict[str, tuple[Any, ...]] = {}
        self.carriers: dict[str, tuple[Any, ...]] = {}
        # Outputs (the driver's): (dst, msg, depth); dst None = client answer.
        # The writes of the sync in flight (checkers compare journals with it), and the
        # depth of the input whose batch started it (on_durable runs at that depth).
        self.sync_batch: Journal = []
        self.sync_depth = 0
        self.syncs = 0  # completed syncs of this incarnation (checkers poll on a change)
        # Batched runtime: inputs handled in the open batch (0: no batch open).
        self.batch_inputs = 0
        self.durable_input: Any = None  # the node's on_durable, if it has one
        # Protocol records so far: the simulator checks a batch's end or a durability
        # report when they recorded something (their inputs are checked one by one).
        self.recs = 0

    def now(self) -> float:
        c = self.clock
        return c.base_local + (self.sim.now - c.base_global) * c.rate + c.skew

    def send(self, dst: str, msg: Any) -> None:
        self.outbox.append((dst, msg, self.depth + 1))

    def deliver(self, response: ClientResponse) -> None:
        self.outbox.append((None, response, self.depth))

    def set_timer(self, key: str, delay: float) -> None:
        sim = self.sim
        delay /= self.clock.rate
        due = sim.now
        if delay > 0:
            due += delay
            if due == sim.now:
                # A positive delay below the clock's resolution at this instant: fire at
                # the next representable instant.  Firing at this one would show the node
                # the same local time, short of its deadline, and a node that re-arms for
                # what is left would spin here forever (SWIM's relays did, seed 7142).
                due = math.nextafter(due, math.inf)
        # One boxed tuple, shared by timers, carriers and the queue: the simulator tells
        # a live entry from a stale one by identity (typed as a fixed tuple, mypyc would
        # box a fresh copy at each store).
        entry: tuple[Any, ...] = (due, next(sim._seq), TIMER, self, key)
        self.timers[key] = entry
        carrier = self.carriers.get(key)
        # Timers are re-armed on most deliveries, mostly later than before: queue the
        # entry only when no queued entry of this key pops before it.
        if carrier is None or carrier[0] > due:
            self.carriers[key] = entry
            push_event(sim._queue, entry)

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def record(self, kind: str, **fields: Any) -> None:
        self.recs += 1
        if kind == "read-failed":
            # A bug in a state machine's read: the server goes on without it
            # (protocols/common/replies.py), a simulation must not.
            raise RuntimeError(f"{self.node_id}: a {fields.get('op')} read failed: {fields.get('trace')}")
        if kind == "learned":
            fields["delays"] = self.depth
            self.sim._note_learned(fields, self.depth)
        elif kind == "role" and self.sim._role_watchers:
            self.sim._note_role(self.node_id, fields)
        self.sim._trace_append((self.sim.now, "rec", self.node_id, kind, fields))

    # -- driver hooks -------------------------------------------------------------------
    def release(self, outputs: list[Any]) -> None:
        sim = self.sim
        src = self.node_id
        transmit = sim._transmit
        for dst, msg, depth in outputs:
            if dst is None:
                sim._respond(src, msg)
            else:
                transmit(src, dst, msg, depth)

    def release_early(self, outputs: list[Any]) -> None:
        # Early messages leave like any other.  A method, not an alias of release
        # (``release_early = release``): mypyc cannot compile a class attribute bound to
        # a method, and an extra frame per batch end costs nothing measurable.
        self.release(outputs)

    def run_sync(self, writes: Journal) -> None:
        self.sync_batch = writes
        self.sync_depth = self.depth
        sim = self.sim
        # The disk takes fsync_latency times a factor drawn from the batched runtime's
        # table; a disk the nemesis set (set_disk) takes exactly its latency.
        latency = sim._disk_latency.get(self.node_id)
        if latency is None:
            latency = sim.network.fsync_latency
            factors = sim._sync_factors
            if factors:
                latency *= factors[sim._disk_rng.getrandbits(8)]
        push_event(sim._queue, (sim.now + latency, next(sim._seq), SYNC, self))

    def report_durable(self, position: int) -> None:
        """After a sync: the node's on_durable, an input like any other (checked when it
        changed what the protocol records, e.g. a commit)."""
        on_durable = self.durable_input
        if on_durable is None:
            return
        n = self.recs
        self.depth = self.sync_depth
        on_durable(position)
        if self.batch_inputs:
            self.batch_inputs += 1  # joins the open batch
        elif self.batch_end is not None or self.outbox or self.disk.dirty:
            self.end_batch()  # a batch of its own, at once (the server's next drain)
        after_step = self.sim._after_step
        if after_step is not None and self.recs != n:
            after_step(self.sim, self.node_id)


@mypyc_attr(allow_interpreted_subclasses=True)
class BatchedSimEnv(SimEnv):
    """The batched runtime's env, as on the server: inputs within the batch window form
    one batch, ``on_batch_end`` runs after it and ``send_early`` messages (and
    ``deliver_early`` answers) leave at its end, before the sync."""

    calls_batch_end = True

    __slots__ = ()

    def send_early(self, dst: str, msg: Any) -> None:
        self.early.append((dst, msg, self.depth + 1))

    def deliver_early(self, response: ClientResponse) -> None:
        self.early.append((None, response, self.depth))
