"""The simulator's implementation of ``core.env.Env``: one object per node incarnation.

Rules this module owns:
  * sends and client answers produced by a handler are *held* in ``outbox``; the
    simulator releases them only after every storage write made before them is
    durable (see ``Simulation._after_handler``);
  * timers are keyed; re-arming a key bumps its generation so the older queued
    event is ignored when it pops (no search in the queue);
  * an incarnation dies with its node: a crash sets ``dead`` and every queued event
    that still references this env (timers, syncs) is ignored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensuskit.core.client import ClientResponse
from consensuskit.sim.storage import Journal, SimStorage

if TYPE_CHECKING:
    from consensuskit.sim.simulation import Simulation


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


class SimEnv:
    __slots__ = (
        "clock",
        "dead",
        "depth",
        "incarnation",
        "next_outputs",
        "node_id",
        "outbox",
        "rng",
        "sim",
        "storage",
        "sync_batch",
        "sync_outputs",
        "syncing",
        "timer_gen",
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
        self.sim = sim
        self.node_id = node_id
        self.incarnation = incarnation
        self.storage = storage
        self.clock = clock
        self.rng = rng
        self.dead = False
        # Causal message depth of the input being handled: 0 for a client request, a
        # timer or an admin call; d+1 for a message sent while handling depth d.
        self.depth = 0
        self.timer_gen: dict[str, int] = {}
        # Outputs of the handler now running: (dst, msg); dst None = client answer.
        self.outbox: list[tuple[str | None, Any, int]] = []
        # The sync in flight (if any): its writes and the outputs waiting for it.
        self.syncing = False
        self.sync_batch: Journal = []
        self.sync_outputs: list[tuple[str | None, Any, int]] = []
        # Outputs that depend on writes the in-flight sync does not cover.
        self.next_outputs: list[tuple[str | None, Any, int]] = []

    def now(self) -> float:
        c = self.clock
        return c.base_local + (self.sim.now - c.base_global) * c.rate + c.skew

    def send(self, dst: str, msg: Any) -> None:
        self.outbox.append((dst, msg, self.depth + 1))

    def deliver(self, response: ClientResponse) -> None:
        self.outbox.append((None, response, self.depth))

    def set_timer(self, key: str, delay: float) -> None:
        gen = self.timer_gen.get(key, 0) + 1
        self.timer_gen[key] = gen
        self.sim._push_timer(self, key, gen, delay / self.clock.rate)

    def cancel_timer(self, key: str) -> None:
        gen = self.timer_gen.get(key)
        if gen is not None:
            self.timer_gen[key] = gen + 1

    def record(self, kind: str, **fields: Any) -> None:
        if kind == "learned":
            fields["delays"] = self.depth
            self.sim._note_learned(fields, self.depth)
        elif kind == "role" and self.sim._role_watchers:
            self.sim._note_role(self.node_id, fields)
        self.sim._trace_append((self.sim.now, "rec", self.node_id, kind, fields))
