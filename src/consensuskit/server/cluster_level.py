"""The cluster level on the server: what each node offers, when the cluster's level is
raised, and which peers are refused for it.

statemachines/levels.py keeps the level in the replicated state and says what each level
adds; this module decides when to raise it, as etcd's leader decides the cluster version
from the versions its members publish, so a rolling upgrade needs no flag day: the
cluster keeps the previous release's rules until its last member runs the new one.

Rules this module owns:
  * a node *offers* its config's ``cluster_level`` (default: this release's,
    ``RELEASE_LEVEL``), the highest level it agrees to raise the cluster's to, and
    *applies* this release's.  An operator may set a lower offer on upgraded nodes to
    keep the cluster at the previous release's rules, and so the option of going back
    to it.  Once the cluster's level is raised a lower offer changes nothing (a
    cluster's level never falls; the node logs so once);
  * it introduces both to each peer it dials (``PeerLevel``, the first frame of the
    connection, before its hello: transport.py).  A peer's levels are the ones its
    current inbound connection introduced; ``BASE_LEVEL`` both when that connection's
    first frame is another (an earlier release, which sends none: known as soon as it
    dialed); unknown while no frame arrived.  Once the applied level is above the base,
    a peer whose level is unknown (it restarted: maybe on an earlier release) gets
    nothing until it is known, even on a connection this node dialed (``raised``);
  * raising (``LevelRaiser``): every ``POLL`` seconds the node that writes the session
    clock (the leader: node_interface.clock_writer) computes the lowest offer of itself
    and every member (the protocol's voters and learners, else the configured members).
    When every member's offer is known (each one connected now) and that lowest offer is
    above the applied level, it submits ``level_op`` of it through its runtime, as any
    write: one in flight, a failure retried at the next look.  Every node logs each
    level it applies;
  * refusing: a peer whose release applies less than the applied level would apply this
    cluster's commands by another release's rules, so it is refused both ways: its
    connection is foreign (its messages dropped; the reason logged once per connection
    and shown in ``/v1/status`` ``peers.ID.refused``) and nothing is sent to it.  A
    connection is judged once its levels are known and again when the applied level
    rises; a new connection that applies enough lifts the refusal (the peer was
    upgraded).  A peer's offer never gets it refused: a cluster whose every node was
    given a lower ``cluster_level`` after the raise keeps serving;
  * a node whose state machine keeps no level (a protocol that is not a log, or a
    service with a state machine of its own) introduces its offer and refuses no one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from consensuskit.core.capabilities import MembershipChange
from consensuskit.core.client import ClientRequest
from consensuskit.server.node_interface import clock_writer
from consensuskit.server.peer_hello import PeerLevel
from consensuskit.server.runtime import LeadershipLost, NodeHalted, NodeRuntime, RequestTimeout
from consensuskit.server.tasks import Background
from consensuskit.statemachines.levels import BASE_LEVEL, RELEASE_LEVEL, level_of, level_op
from consensuskit.statemachines.sessions import ANON_PREFIX, refusal

log = logging.getLogger("consensuskit.server")

POLL = 0.2  # seconds between looks at the members' levels (a few dict lookups)


class ClusterLevels:
    """This node's offer, and its judgment of a peer's (see the module rules)."""

    __slots__ = ("_applied", "applies", "offered")

    def __init__(self, offered: int, applied: Callable[[], int | None], applies: int = RELEASE_LEVEL) -> None:
        self.offered = offered  # the highest level it agrees to raise the cluster's to
        self.applies = applies  # the highest its release applies (another only in tests)
        self._applied = applied  # the level the node's state machine applied; None: it keeps none

    def introduce(self) -> PeerLevel:
        return PeerLevel(self.offered, self.applies)

    def applied(self) -> int | None:
        return self._applied()

    def raised(self) -> bool:
        """Whether the applied level is above every earlier release's: from then on a
        peer gets nothing before its level is known (transport.py)."""
        applied = self._applied()
        return applied is not None and applied > BASE_LEVEL

    def refusal(self, applies: int) -> str | None:
        """Why a peer whose release applies levels up to ``applies`` must be refused now
        (None: it need not be)."""
        applied = self._applied()
        if applied is None or applies >= applied:
            return None
        return (
            f"it applies cluster level {applies} at most, this cluster's level is {applied}: it "
            "would apply this cluster's commands by other rules; run this release on it"
        )


def members_of(node: Any, configured: Sequence[str]) -> tuple[str, ...]:
    """The members a raise waits for: the protocol's voters and learners, else ``configured``."""
    if isinstance(node, MembershipChange):
        membership = node.membership()
        return tuple(sorted({*membership.voters, *membership.learners}))
    return tuple(configured)


class LevelRaiser(Background):
    """Raises the cluster's level once every member offers it (see the module rules)."""

    def __init__(
        self,
        runtime: NodeRuntime,
        node_id: str,
        levels: ClusterLevels,
        peer_levels: Callable[[], dict[str, int]],
        *,
        members: Sequence[str] = (),
        timeout: float,
        on_raised: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.node_id = node_id
        self.levels = levels
        self.peer_levels = peer_levels
        self.members = tuple(members)
        self.timeout = timeout
        self.on_raised = on_raised
        # The reserved anon. prefix: no client can send this id (http_api refuses it).
        self.client_id = f"{ANON_PREFIX}level.{node_id}.{os.urandom(6).hex()}"
        self._seq = itertools.count(1)
        self._seen = BASE_LEVEL  # so a level restored above it is logged

    def target(self) -> int | None:
        """The level to raise the cluster's to now, or None (module rules)."""
        node = self.runtime.node
        applied = level_of(node)
        if applied is None:
            return None
        offers = self.peer_levels()
        lowest = self.levels.offered
        for member in members_of(node, self.members):
            if member == self.node_id:
                continue
            offer = offers.get(member)
            if offer is None:
                return None  # not connected now, or its offer not in yet
            lowest = min(lowest, offer)
        return lowest if lowest > applied else None

    def look(self) -> None:
        """Tell ``on_raised`` about a level applied since the last look (and say once
        when it is above this node's offer)."""
        applied = self.levels.applied()
        if applied is not None and applied != self._seen:
            self._seen = applied
            log.info("node %s: the cluster's level is now %d", self.node_id, applied)
            if applied > self.levels.offered:
                log.warning(
                    "node %s: cluster_level = %d is below the level this cluster applied (%d), "
                    "which never falls: the setting changes nothing now",
                    self.node_id,
                    self.levels.offered,
                    applied,
                )
            if self.on_raised is not None:
                self.on_raised(applied)

    async def _run(self) -> None:
        while not self.runtime.closed and self.runtime.failure is None:
            self.look()
            if clock_writer(self.runtime.node, self.node_id, self.members):
                level = self.target()
                if level is not None:
                    await self.raise_to(level)
                    self.look()
            await asyncio.sleep(POLL)

    async def raise_to(self, level: int) -> bool:
        """Submit the raise and wait for it; True when it was applied."""
        request = ClientRequest(client_id=self.client_id, seq=next(self._seq), op=level_op(level))
        try:
            response = await self.runtime.request(request, self.timeout)
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            log.debug("raising the cluster's level to %d: not answered: %s", level, exc)
            return False
        if not response.ok or refusal(response.result) is not None:
            log.warning(
                "raising the cluster's level to %d refused: %s", level, response.error or response.result
            )
            return False
        return True


__all__ = ["POLL", "ClusterLevels", "LevelRaiser", "members_of"]
