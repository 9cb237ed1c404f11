"""Clients: how an operation is sent, retried and classified.

Rules this module owns:
  * one ``ClientRequest(client_id, seq, op)`` per operation; every retry reuses the
    same ``seq`` (the state machine's session dedup relies on it);
  * target: the last ``leader_hint`` the client saw, else a random node;
  * a definite rejection (``ok=False``) -> retry after a short backoff at the hint or
    another node; a per-attempt timeout -> retry elsewhere at once, and the op may
    have been applied;
  * a new attempt starts only if a whole ``op_timeout`` fits before ``op_deadline``,
    so no attempt is left hanging when the deadline passes;
  * at ``op_deadline``: "unknown" if any attempt timed out or is still outstanding,
    "fail" only if every attempt was definitely refused.  A late answer to a finished
    op is traced and otherwise ignored;
  * a protocol with a ``reply_quorum`` (core/registry.py: Byzantine fault tolerance)
    has an op finish only when that many distinct nodes answered ok with equal results
    (a node's later answer replaces its earlier one); a refusal from one node proves
    nothing and is ignored; a timed-out attempt is retransmitted to every node;
  * what a workload client asks comes from the service (``ServiceSpec.make_workload``:
    the ops, and what the client learns from their results); this module only sends,
    retries and classifies, and tells a workload that has a ``now`` the virtual time
    before each of its calls; such a workload may answer ``next_op`` with None, to be
    asked again at its ``wake_at`` (a client idle until its next keep-alive).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.service import Workload
from consensuskit.sim.history import OpRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from consensuskit.sim.simulation import Simulation

# Backoff after a definite rejection: short when the answer named a leader to try.
HINT_BACKOFF: Final = (0.001, 0.005)
BLIND_BACKOFF: Final = (0.01, 0.05)
THINK_TIME: Final = (0.0, 0.01)


class Client:
    """A client id with its own seq counter, rng and leader guess."""

    __slots__ = ("client_id", "leader", "next_seq", "rng", "sim")

    def __init__(self, sim: Simulation, client_id: str, rng: random.Random) -> None:
        self.sim = sim
        self.client_id = client_id
        self.rng = rng
        self.leader: str | None = None
        self.next_seq = 1

    def target(self) -> str:
        if self.leader is not None:
            return self.leader
        return self.rng.choice(self.sim.node_ids)

    def other_than(self, node: str) -> str:
        if self.leader is not None and self.leader != node:
            return self.leader
        others = [n for n in self.sim.node_ids if n != node]
        return self.rng.choice(others) if others else node


class OpRun:
    """One operation across its attempts; the handle ``Simulation.submit`` returns."""

    __slots__ = (
        "_gen",
        "_outstanding",
        "_uncertain",
        "_votes",
        "attempts",
        "client",
        "need",
        "node",
        "on_done",
        "record",
        "request",
        "response",
        "sim",
        "status",
    )

    def __init__(
        self,
        sim: Simulation,
        client: Client,
        request: ClientRequest,
        on_done: Callable[[OpRun], None] | None = None,
    ) -> None:
        self.sim = sim
        self.client = client
        self.request = request
        self.on_done = on_done
        op = request.op
        self.record = OpRecord(
            process=request.client_id,
            seq=request.seq,
            op=op.kind,
            key=op.key,
            value=op.value,
            expected=op.expected,
            expected_version=op.expected_version,
            invoke=sim.now,
        )
        self.status: str | None = None
        self.response: ClientResponse | None = None
        self.attempts = 0
        self.node: str | None = None
        self._gen = 0  # invalidates the timers of superseded attempts
        self._outstanding = False  # an attempt is in flight without an answer
        self._uncertain = False  # some attempt timed out: the op may have applied
        quorum = sim.spec.reply_quorum
        # Matching answers needed from distinct nodes (1: the first ok answer decides).
        self.need = quorum(len(sim.node_ids), op.is_read(), sim.options) if quorum is not None else 1
        self._votes: dict[str, tuple[str, ClientResponse]] = {}  # node -> (result key, answer)

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def result(self) -> Any:
        return self.record.result

    def start(self, node: str | None) -> None:
        sim = self.sim
        sim._push_fn(sim.now + sim.config.op_deadline, self._on_deadline, 0)
        self._attempt(node if node is not None else self.client.target())

    def _attempt(self, node: str) -> None:
        sim = self.sim
        self._gen += 1
        self.attempts += 1
        self.record.attempts = self.attempts
        self.node = node
        self._outstanding = True
        sim._send_request(node, self.request, self.attempts)
        sim._push_fn(sim.now + sim.config.op_timeout, self._on_timeout, self._gen)

    def _time_for_attempt(self) -> bool:
        cfg = self.sim.config
        # 1e-9: sums of float timeouts must not lose an attempt to rounding.
        return self.sim.now + cfg.op_timeout <= self.record.invoke + cfg.op_deadline + 1e-9

    def _on_timeout(self, gen: int) -> None:
        if self.status is not None or gen != self._gen:
            return
        self._uncertain = True
        self._outstanding = False
        if not self._time_for_attempt():
            return  # the deadline will call it unknown
        assert self.node is not None
        if self.need > 1:
            self._attempt_all()
            return
        self._attempt(self.client.other_than(self.node))

    def _attempt_all(self) -> None:
        """Retransmit to every node (a reply quorum: no single node is trusted)."""
        sim = self.sim
        self._gen += 1
        self.attempts += 1
        self.record.attempts = self.attempts
        self._outstanding = True
        for node in sim.node_ids:
            sim._send_request(node, self.request, self.attempts)
        sim._push_fn(sim.now + sim.config.op_timeout, self._on_timeout, self._gen)

    def _retry(self, gen: int) -> None:
        if self.status is not None or gen != self._gen:
            return
        if not self._time_for_attempt():
            return  # the deadline decides: fail unless some attempt timed out
        hint = self.client.leader
        assert self.node is not None
        self._attempt(hint if hint is not None else self.client.other_than(self.node))

    def on_response(self, node: str, response: ClientResponse) -> None:
        if self.need > 1:
            self._on_quorum_response(node, response)
            return
        self.response = response
        client = self.client
        if response.ok:
            client.leader = node
            self._finish("ok", response.result, response.index)
            return
        if node != self.node or not self._outstanding:
            return  # refusal from a superseded attempt: the current one decides
        self._outstanding = False
        self._gen += 1
        hint = response.leader_hint
        rng = client.rng
        if hint is not None and hint != node:
            client.leader = hint
            delay = rng.uniform(*HINT_BACKOFF)
        else:
            client.leader = None
            delay = rng.uniform(*BLIND_BACKOFF)
        self.sim._push_fn(self.sim.now + delay, self._retry, self._gen)

    def _on_quorum_response(self, node: str, response: ClientResponse) -> None:
        if not response.ok:
            return  # one node's refusal proves nothing; the deadline decides
        key = repr(response.result)
        self._votes[node] = (key, response)
        agreeing = [r for k, r in self._votes.values() if k == key]
        if len(agreeing) < self.need:
            return
        self.response = response
        if response.leader_hint is not None:
            self.client.leader = response.leader_hint
        self._finish("ok", response.result, min(r.index for r in agreeing))

    def _on_deadline(self, _: int) -> None:
        if self.status is not None:
            return
        if self._uncertain or self._outstanding:
            self._finish("unknown", None, None)
        else:
            self._finish("fail", None, None)

    def abandon(self) -> None:
        """End of the run: whatever is still pending may or may not have applied."""
        if self.status is None:
            self._finish("unknown", None, None)

    def _finish(self, status: str, result: Any, index: int | None) -> None:
        sim = self.sim
        self.status = status
        self._gen += 1
        rec = self.record
        rec.status = status
        rec.result = result
        rec.index = index
        # An unknown op's interval stays open: complete is null.
        rec.complete = None if status == "unknown" else sim.now
        sim._trace_append((sim.now, "complete", rec.process, rec.seq, status, result))
        if self.on_done is not None:
            self.on_done(self)


class WorkloadClient(Client):
    """A sequential client: op, wait for its outcome, think, next op, until stopped."""

    __slots__ = ("ops", "stopped", "timed")

    def __init__(self, sim: Simulation, client_id: str, ops: Workload, rng: random.Random) -> None:
        super().__init__(sim, client_id, rng)
        self.ops = ops  # the service's choice of operations for this client
        self.stopped = False
        self.timed = hasattr(ops, "now")  # a workload that paces itself reads the clock

    def start(self) -> None:
        self.sim._push_fn(self.sim.now + self.rng.uniform(*THINK_TIME), self._next, 0)

    def make_op(self) -> Any:
        if self.timed:
            self.ops.now = self.sim.now  # type: ignore[attr-defined]
        return self.ops.next_op(self.rng)

    def _next(self, _: int) -> None:
        if self.stopped:
            return
        op = self.make_op()
        if op is None:  # a timed workload waits for its moment: ask again at its wake_at
            wake = self.ops.wake_at  # type: ignore[attr-defined]
            self.sim._push_fn(max(wake, self.sim.now), self._next, 0)
            return
        self.sim._start_op(self, op, None, None, self._after)

    def _after(self, run: OpRun) -> None:
        if run.status == "ok":
            if self.timed:
                self.ops.now = self.sim.now  # type: ignore[attr-defined]
            self.ops.learn(run.request.op, run.record.result)
        if not self.stopped:
            self.sim._push_fn(self.sim.now + self.rng.uniform(*THINK_TIME), self._next, 0)
