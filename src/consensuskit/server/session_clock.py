"""The leader's clock, written into the log: what makes client sessions expire.

The state machine has no clock of its own (it must reach the same state on every
replica), so time reaches it as commands (``statemachines/sessions.py``, Raft
dissertation §6.3).  This module is the writer; it is protocol-agnostic: it submits an
ordinary ``ClientRequest`` through the runtime, as a client write would, so every log
protocol the server runs (Raft, Multi-Paxos, ...) carries the clock with no change.

Rules this module owns:
  * while this node is the clock writer (``node_interface.clock_writer``: the leader, or
    in a protocol without a leader one fixed member), it submits a clock
    command as soon as it notices (polling every ``POLL`` seconds at most) and then every
    ``interval`` = session_ttl / 4, within [``MIN_INTERVAL``, ``MAX_INTERVAL``]: sessions
    expire between ttl and ttl + interval of idleness, plus the moments without a leader;
  * a command carries this process's epoch (node id + a random nonce drawn at start),
    its ``time.monotonic`` in milliseconds, and the settings ``session_ttl`` and
    ``max_sessions``: the state machine advances its clock by the difference between two
    commands of one epoch, so no two machines' clocks are ever compared;
  * one command in flight at a time; a refusal or a timeout (leadership lost, no quorum)
    is logged at debug level and the next period tries again;
  * ``session_ttl = 0`` writes no clock command at all: sessions never expire and are
    not capped (the previous release's behaviour, for a rolling upgrade from it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from consensuskit.core.client import ClientRequest
from consensuskit.server.node_interface import clock_writer
from consensuskit.server.runtime import LeadershipLost, NodeHalted, NodeRuntime, RequestTimeout
from consensuskit.server.tasks import Background
from consensuskit.statemachines.sessions import ANON_PREFIX, clock_op

log = logging.getLogger("consensuskit.server.sessions")

MAX_INTERVAL = 60.0  # seconds between clock commands at most
MIN_INTERVAL = 0.05  # ... and at least (a tiny session_ttl must not flood the log)
POLL = 0.5  # seconds between looks at the node's role at most


def clock_interval(session_ttl: float) -> float:
    return max(MIN_INTERVAL, min(session_ttl / 4, MAX_INTERVAL))


class SessionClock(Background):
    """Submits clock commands while the node leads (see the module rules)."""

    def __init__(
        self,
        runtime: NodeRuntime,
        node_id: str,
        *,
        members: Sequence[str] = (),
        session_ttl: float,
        max_sessions: int,
        timeout: float,
    ) -> None:
        if session_ttl <= 0:
            raise ValueError("a session clock needs session_ttl > 0")
        self.runtime = runtime
        self.node_id = node_id
        self.members = tuple(members)
        # The reserved anon. prefix: no client can send this id (http_api refuses it).
        self.epoch = f"{ANON_PREFIX}clock.{node_id}.{os.urandom(6).hex()}"
        self.ttl_ms = max(1, round(session_ttl * 1000))
        self.max_sessions = max_sessions
        self.interval = clock_interval(session_ttl)
        self.timeout = timeout
        self.ticks = 0  # clock commands answered ok
        self._seq = itertools.count(1)

    def _leading(self) -> bool:
        return clock_writer(self.runtime.node, self.node_id, self.members)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        was_leading = False
        next_at = 0.0
        while not self.runtime.closed and self.runtime.failure is None:
            leading = self._leading()
            if leading and (not was_leading or loop.time() >= next_at):
                await self.tick()
                next_at = loop.time() + self.interval
            was_leading = leading
            await asyncio.sleep(min(POLL, self.interval))

    async def tick(self) -> Any:
        """Submit one clock command and wait for it; its result, or None if it failed."""
        now_ms = time.monotonic_ns() // 1_000_000
        request = ClientRequest(
            client_id=self.epoch,
            seq=next(self._seq),
            op=clock_op(self.epoch, now_ms, self.ttl_ms, self.max_sessions),
        )
        try:
            response = await self.runtime.request(request, self.timeout)
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            log.debug("clock command not answered: %s", exc)
            return None
        if not response.ok:
            log.debug("clock command refused: %s", response.error)
            return None
        self.ticks += 1
        result = response.result
        if isinstance(result, dict) and result.get("forgotten"):
            log.debug("sessions: %s forgotten, %s kept", result["forgotten"], result.get("sessions"))
        return result
