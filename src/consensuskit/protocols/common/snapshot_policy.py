"""When a log protocol snapshots its state machine, so that a snapshot's cost per log
entry stays constant however large the state grows, and replicas do not all pay it at once.

Rules this module owns:
  * no snapshot when ``threshold`` <= 0 (snapshots disabled) or fewer than
    ``threshold`` applied entries sit in the log after the last one;
  * a state larger than ``AMORTIZE_FLOOR`` keys (``len(state machine)``, what a
    snapshot copies) also waits for as many applied entries as it has keys, at most
    ``AMORTIZE_CAP`` (which bounds the log): a snapshot copies, encodes and writes the
    whole state, so taking one every ``threshold`` entries would cost each entry a share
    proportional to the state's size (a 1,000-key kv store every 200 puts: five copies of
    the state per 1,000 puts instead of one);
  * such a large snapshot is also staggered across the replicas: the log positions are
    cut into turns of ``interval // replicas`` entries, dealt round-robin, and a replica
    takes its snapshot in its own turn (``turn()`` gives its rank and the number of
    replicas).  Writing a large snapshot holds the replica's disk for a while (half a
    second at a million keys) and every fsync behind it waits; replicas that all
    reached the same position at once would leave no quorum free to commit, whereas one
    writing at a time leaves the others one.  (ZooKeeper draws a random point between
    half and all of ``snapCount`` for the same reason; turns are deterministic, so a seed
    replays, and keep the replicas apart rather than probably apart.)  Any placement is
    safe (when to snapshot is a local choice), and all replicas compute the same turns
    at one position because ``keys`` is a function of the commands applied.  A replica
    that jumped past its turn (a catch-up applying many entries at once) snapshots
    anyway at twice the interval, so the log stays bounded;
  * after a large state's snapshot the log keeps at least a ``TRAIL_FRACTION`` of the
    interval (``entries_kept``), not just ``trailing`` entries: a follower that fell a
    few seconds behind (its own snapshot write held its disk) catches up from the log
    instead of being sent the whole state, which costs the leader a transfer and the
    follower a restore of the whole state on its loop.  At the cap that is 25,000
    entries, a few MB of log, where etcd keeps 5,000 and hashicorp/raft 10,240.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

# States above FLOOR keys wait for as many entries as keys between snapshots, at most
# CAP; smaller ones snapshot every ``threshold`` entries.
AMORTIZE_FLOOR: Final = 512
AMORTIZE_CAP: Final = 100_000
# A large state's snapshot keeps at least interval // TRAIL_FRACTION entries in the log.
TRAIL_FRACTION: Final = 4


def snapshot_due(
    applied_since: int,
    threshold: int,
    keys: int,
    position: int = 0,
    turn: Callable[[], tuple[int, int]] | None = None,
) -> bool:
    """Whether to snapshot now: ``applied_since`` entries were applied after the last
    snapshot, the last one applied is at ``position``; the state holds ``keys`` keys.
    ``turn`` (asked only for a large state) returns this replica's rank and how many
    replicas take turns; without it the replica does not wait for a turn."""
    if threshold <= 0 or applied_since < threshold:
        return False
    if keys <= AMORTIZE_FLOOR:
        return True
    interval = min(keys, AMORTIZE_CAP)
    rank, replicas = turn() if turn is not None else (0, 1)
    if replicas <= 1:
        return applied_since >= interval
    width = interval // replicas
    # One cycle of turns is width * replicas entries (interval, less the remainder): a
    # replica that snapshotted in its turn is due again in the same turn a cycle later.
    if applied_since < width * replicas:
        return False
    return applied_since >= 2 * interval or (position // width) % replicas == rank % replicas


def stagger_turn(node_id: str, voters: Iterable[str]) -> tuple[int, int]:
    """A replica's rank among the voters (itself included, sorted), and their number."""
    members = sorted(set(voters) | {node_id})
    return members.index(node_id), len(members)


def entries_kept(trailing: int, keys: int) -> int:
    """How many applied entries a snapshot of a ``keys``-key state leaves in the log
    before its position (``trailing``: the protocol's option for small states)."""
    if keys <= AMORTIZE_FLOOR:
        return trailing
    return max(trailing, min(keys, AMORTIZE_CAP) // TRAIL_FRACTION)
