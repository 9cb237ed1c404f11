"""Check-quorum (Raft dissertation §6.2; the leader side of Chubby's lease): a leader
that has not heard from a quorum of its voters within an election timeout steps down,
so clients find the real leader and lease reads stay safe.

Rules this module owns:
  * any answer a peer sends the leader in its term (replication, heartbeat, snapshot)
    marks that peer active for the current interval (``heard``);
  * at each check (every election timeout) the active voters are counted: the leader
    itself when it is a voter, and each voter heard from in the interval that is not
    excluded (Raft: a voter rejoining after a disk loss counts in no quorum); fewer than
    a majority of the voters means the leader must step down;
  * every check starts a new interval: what was heard before it no longer counts;
  * a new term starts with nobody heard (``reset``); a peer that leaves the
    configuration is forgotten (``forget``), so rejoining later it starts unheard.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from consensuskit.core.quorum import quorum_size


class CheckQuorum:
    __slots__ = ("heard",)

    def __init__(self) -> None:
        # Peers heard from in this interval.  Callers add to it directly on hot paths
        # (``heard.add(peer)``): a set add allocates nothing once the peer is in.
        self.heard: set[str] = set()

    def reset(self) -> None:
        self.heard.clear()

    def forget(self, peer: str) -> None:
        self.heard.discard(peer)

    def check(self, self_id: str, voters: Sequence[str], excluded: Collection[str] = ()) -> bool:
        """End the interval: True when a quorum of ``voters`` was active in it."""
        heard = self.heard
        active = sum(1 for v in voters if (v == self_id or v in heard) and v not in excluded)
        heard.clear()
        return active >= quorum_size(len(voters))
