"""Heartbeat rounds: numbered broadcasts whose acknowledgements confirm leadership.

Raft's ReadIndex (dissertation §6.4) and lease (§6.4.1), and Multi-Paxos's quorum reads
and Chubby-style lease, both need "the newest broadcast a majority answered".

Rules this module owns:
  * a leader numbers its heartbeat broadcasts 1, 2, 3, ... in its term (ballot);
    ``reset`` on taking office starts again from 0 and forgets every acknowledgement;
  * a peer's acknowledgement counts only when it names a round newer than the one that
    peer acknowledged before (a late answer to an old round changes nothing);
  * the leader has acknowledged its own newest round;
  * the quorum round of a set of voters is the newest round that a majority of them
    acknowledged (a voter's newest ack covers every earlier round: its answer proves the
    leader still led when that round left); 0 when there is none;
  * ``settle(q)`` forgets the send times of rounds older than ``q``: only the newest
    quorum round's send time can start a lease, and it never goes back.

Invariant: every key of ``sent_at`` is in 1..current, in increasing insertion order.
"""

from __future__ import annotations

from collections.abc import Sequence


class HeartbeatRounds:
    __slots__ = ("acked", "current", "self_id", "sent_at")

    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self.current = 0  # the newest round sent (0: none in this term)
        self.sent_at: dict[int, float] = {}  # round -> when it was sent
        self.acked: dict[str, int] = {}  # peer -> newest round it acknowledged

    def reset(self) -> None:
        """A new term (ballot): no round sent, none acknowledged."""
        self.current = 0
        self.sent_at = {}
        self.acked = {}

    def start(self, now: float) -> int:
        """Number a new round sent at ``now``; returns its number."""
        self.current += 1
        self.sent_at[self.current] = now
        return self.current

    def ack(self, peer: str, round_: int) -> bool:
        """``peer`` answered ``round_``; True when that is news (a newer round)."""
        if round_ > self.acked.get(peer, 0):
            self.acked[peer] = round_
            return True
        return False

    def forget(self, peer: str) -> None:
        """``peer`` left the configuration: its acknowledgements count no more."""
        self.acked.pop(peer, None)

    def quorum_round(self, voters: Sequence[str]) -> int:
        """The newest round a majority of ``voters`` acknowledged (we count for our
        newest); 0 if none.  Same arithmetic as ``core.quorum.committed_index``."""
        if not voters:
            return 0
        acked, me, current = self.acked, self.self_id, self.current
        rounds = sorted([current if v == me else acked.get(v, 0) for v in voters], reverse=True)
        return rounds[len(rounds) // 2]

    def settle(self, quorum_round: int) -> float | None:
        """When ``quorum_round`` was sent (None if unknown); forget older rounds."""
        sent_at = self.sent_at
        sent = sent_at.get(quorum_round)
        while sent_at:
            oldest = next(iter(sent_at))
            if oldest >= quorum_round:
                break
            del sent_at[oldest]
        return sent
