"""How the leader synchronises a learner: ``LearnerHandler.syncFollower``.

Given the learner's last zxid (from ACKEPOCH) and the leader's retained history
(``ZabLog``: a snapshot point, then txns), choose:

  * empty DIFF   - the learner's last zxid is the leader's last: nothing to send;
  * DIFF         - the leader's log holds the learner's last zxid: send what follows;
  * TRUNC        - the learner holds txns beyond the leader's last (proposals of a dead
                   leader that were never committed): cut them off;
  * TRUNC+DIFF   - the learner's last zxid lies inside the leader's history but the
                   leader lacks it: cut the learner back to the leader's txn just below
                   it, then send what follows;
  * SNAP         - the learner is behind the leader's retained history, or the cut
                   would cross an epoch boundary.

Never TRUNC across an epoch boundary: the learner is known to hold the cut point only
when it has the same epoch as the learner's last zxid (both came from that epoch's
leader, in order).  Otherwise its history may have diverged earlier, and the cut would
leave a hole ("We cannot send TRUNC that cross epoch boundary", queueCommittedProposals);
the ``trunc-across-epoch`` knob sends the TRUNC anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.protocols.zab.log import ZabLog
from consensuskit.protocols.zab.messages import DIFF, SNAP, TRUNC, TRUNC_DIFF


def epoch_of(zxid: int) -> int:
    return zxid >> 32


@dataclass(frozen=True, slots=True)
class SyncPlan:
    mode: str
    # TRUNC / TRUNC+DIFF: the learner keeps its txns up to this zxid (at this index in
    # the leader's log); DIFF: the learner's last txn.  SNAP: (0, 0), the leader sends
    # a snapshot of what it has applied, then the txns after it.
    base_index: int
    base_zxid: int


def choose_sync(log: ZabLog, peer_last_zxid: int, *, trunc_across_epoch: bool = False) -> SyncPlan:
    if peer_last_zxid == log.last_zxid:
        return SyncPlan(DIFF, log.last_index, log.last_zxid)
    if peer_last_zxid < log.offset_zxid:
        return SyncPlan(SNAP, 0, 0)
    found = log.index_of(peer_last_zxid)
    if found is not None:
        return SyncPlan(DIFF, found, peer_last_zxid)
    # The learner holds a txn the leader does not: cut it back to the leader's txn
    # just below, if that txn is certainly in the learner's log.
    below = log.last_at_or_below(peer_last_zxid)
    assert below is not None  # peer_last_zxid >= offset_zxid
    below_zxid = log.zxid_at(below)
    assert below_zxid is not None
    if epoch_of(below_zxid) != epoch_of(peer_last_zxid) and not trunc_across_epoch:
        return SyncPlan(SNAP, 0, 0)
    mode = TRUNC if below == log.last_index else TRUNC_DIFF
    return SyncPlan(mode, below, below_zxid)
