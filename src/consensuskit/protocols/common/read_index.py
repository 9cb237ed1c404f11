"""Linearizable reads on a leader: ReadIndex (Raft dissertation §6.4), Paxos quorum reads
and lease reads, with heartbeat rounds shared by every read of a batch.

A read waits in up to three stages, each first-in first-out:
  1. held: the leader cannot fix a read index yet (Raft: no entry of its own term is
     committed; Multi-Paxos: recovery unfinished or the old leader's lease running);
     ``take_held`` hands these back to be tried again once it can;
  2. awaiting a round: the read index is fixed (the commit index when the read arrived)
     and the read needs a heartbeat round sent after it arrived, round ``r`` = the
     current round + 1; once a quorum acknowledged any round >= ``r`` (``confirm``),
     leadership is proven for it.  Every read that arrives before the next broadcast
     names the same round, so one round serves them all (``round_due`` says whether a
     round must still be sent for them);
  3. awaiting apply: leadership confirmed (or a lease covers the read); it is answered
     as soon as the state machine has applied its index (``release``), in arrival order.
A leader that steps down hands every waiting read back (``drain``): a read has no
effect, so refusing it is a definite answer.

Each entry carries an ``origin`` the protocol chooses (Multi-Paxos: the node the answer
goes back through; Raft: None) and is one tuple ``(round, index, request, origin)`` from
its arrival to its answer: moving stages allocates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensuskit.core.client import ClientRequest

# (round it waits for, read index, request, origin); round 0: no round needed
Pending = tuple[int, int, ClientRequest, Any]


class ReadIndex:
    __slots__ = ("awaiting_apply", "awaiting_round", "held")

    def __init__(self) -> None:
        self.held: list[tuple[ClientRequest, Any]] = []
        self.awaiting_round: list[Pending] = []
        self.awaiting_apply: list[Pending] = []

    def __bool__(self) -> bool:
        return bool(self.held or self.awaiting_round or self.awaiting_apply)

    def hold(self, request: ClientRequest, origin: Any = None) -> None:
        """Stage 1: no read index can be fixed yet."""
        self.held.append((request, origin))

    def take_held(self) -> list[tuple[ClientRequest, Any]]:
        """The held reads, oldest first, to be tried again; the stage is emptied."""
        held, self.held = self.held, []
        return held

    def wait_for_round(self, round_: int, index: int, request: ClientRequest, origin: Any = None) -> None:
        """Stage 2: serve once a quorum acknowledged ``round_`` and ``index`` is applied."""
        self.awaiting_round.append((round_, index, request, origin))

    def wait_for_apply(self, index: int, request: ClientRequest, origin: Any = None) -> None:
        """Stage 3 directly (a lease read): serve once ``index`` is applied."""
        self.awaiting_apply.append((0, index, request, origin))

    def round_due(self, current_round: int) -> bool:
        """A read waits for a round newer than ``current_round``: one must be sent."""
        return any(pending[0] > current_round for pending in self.awaiting_round)

    def confirm(self, quorum_round: int, applied: int, serve: Callable[[ClientRequest, Any], None]) -> None:
        """A quorum acknowledged ``quorum_round``: the reads waiting for it or an older
        round move to stage 3 (in arrival order), then ``release(applied, serve)``.
        Nothing happens when no read waits for a round."""
        waiting = self.awaiting_round
        if not waiting:
            return
        still = []
        apply = self.awaiting_apply
        for pending in waiting:
            if pending[0] <= quorum_round:
                apply.append(pending)
            else:
                still.append(pending)
        self.awaiting_round = still
        self.release(applied, serve)

    def release(self, applied: int, serve: Callable[[ClientRequest, Any], None]) -> None:
        """Answer, in order, every confirmed read whose index is ``<= applied``."""
        waiting = []
        for pending in self.awaiting_apply:
            if pending[1] <= applied:
                serve(pending[2], pending[3])
            else:
                waiting.append(pending)
        self.awaiting_apply = waiting

    def drain(self) -> list[tuple[ClientRequest, Any]]:
        """Every waiting read, stage 1 then 2 then 3, each oldest first; all emptied."""
        reads = self.held
        reads += [(p[2], p[3]) for p in self.awaiting_round]
        reads += [(p[2], p[3]) for p in self.awaiting_apply]
        self.held, self.awaiting_round, self.awaiting_apply = [], [], []
        return reads
