"""ZAB's safety properties, checked on every simulation step.

From the Zab paper (Junqueira, Reed, Serafini, DSN 2011) as zookeeper-specifications'
protocol-spec states them, with "delivered" read as "committed" (a server applies
exactly its committed prefix, in order):

* leadership          - at most one established leader per epoch (a leader is
                        established once a quorum ACKed its NEWLEADER);
* prefix consistency  - no two servers commit different txns at one position, and no
                        server truncates a committed txn (agreement and total order
                        follow: every committed sequence is a prefix of one sequence);
* integrity           - a committed txn was proposed by some leader, as committed;
* local primary order - within an epoch the committed txns are that epoch's counters
                        1, 2, 3, ... in order (a primary's a-before-b is kept, with no
                        hole);
* global primary order- committed zxids strictly increase along the committed sequence
                        (a txn of epoch e is committed before any of e' > e);
* primary integrity   - an established leader's history holds every txn of an earlier
                        epoch committed before, and once the leader of epoch e
                        broadcasts, no txn of an earlier epoch that its history lacks
                        is ever committed (it delivered every such txn before
                        broadcasting);
* zxid order          - zxids strictly increase along every server's log;
* known commits       - a server commits only txns it holds (commit <= last index);
* epochs              - a server's accepted epoch is never below its current epoch.

Implementation rules whose violations were ZooKeeper's data-loss bugs (wave2 §1.4):

* durable ack         - when the leader receives an ACK (of NEWLEADER or of PROPOSALs),
                        the learner's durable storage holds what it acknowledged
                        (ZOOKEEPER-3911, -4646); an ACK that arrives after the learner
                        lost its disk, before its new life synced, was sent by the old
                        one and is not judged against the new disk;
* epoch after history - a server whose durable current epoch is e durably holds the
                        history it synced in e (ZOOKEEPER-4643);
* trunc within epoch  - a TRUNC cuts back to a zxid of the learner's last epoch, which
                        the learner holds (never across an epoch boundary);
* election order      - a server leaving LOOKING by a quorum of its round's votes picks
                        a vote no received vote beats (totalOrderPredicate: epoch, zxid,
                        id).

Plus, as for Raft: a write answered ok is committed at the position it names with that
command; at the end of a run every live server converged to one applied state.

The checker watches servers through their ``observer`` hook; it never changes them.
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.check.common import check_acknowledged_write, check_converged
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.protocols.zab import (
    ACCEPTED_EPOCH_KEY,
    CURRENT_EPOCH_KEY,
    SNAPSHOT_KEY,
    Snapshot,
    Txn,
    beats,
    zxid_str,
)


def _epoch(zxid: int) -> int:
    return zxid >> 32


def _counter(zxid: int) -> int:
    return zxid & 0xFFFFFFFF


class ZabChecker:
    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.sim: Any = None
        self.established: dict[int, str] = {}  # epoch -> its established leader
        self.proposed: dict[int, Txn] = {}  # zxid -> the txn its leader proposed
        self.committed: dict[int, Txn] = {}  # position -> the committed txn
        # epoch -> the last zxid of its leader's history when it first broadcast
        self.history_end: dict[int, int] = {}
        # (server, epoch) -> (index, zxid) of the history it synced in that epoch
        self.synced: dict[tuple[str, int], tuple[int, int]] = {}
        # server -> the disk its last sync went to (a wipe gives it a new one; a crash
        # keeps it)
        self.synced_on: dict[str, Any] = {}
        self.pending: list[InvariantViolation] = []

    # ------------------------------------------------------------------ sim hooks
    def after_step(self, sim: Any, node_id: str) -> None:
        self.sim = sim
        node = sim.nodes.get(node_id)
        if node is not None:
            if node.observer is not self:
                node.observer = self
            if node.commit_index > node.log.last_index:
                self._violate(
                    "known-commits",
                    f"{node_id} committed up to {node.commit_index} but holds txns only up to "
                    f"{node.log.last_index}",
                )
            if node.accepted_epoch < node.current_epoch:
                self._violate(
                    "epochs",
                    f"{node_id} accepted epoch {node.accepted_epoch} < current epoch {node.current_epoch}",
                )
            self._check_durable_epoch(sim, node_id)
        if self.pending:
            violation = self.pending[0]
            self.pending = []
            raise violation

    def on_client_response(
        self, sim: Any, invoke_time: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        if not response.ok or request.op.is_read() or self.sim is None:
            # self.sim is None: no step was checked (check_every_step off), so no server
            # reports its commits to us and there is nothing to compare the answer with.
            return
        txn = self.committed.get(response.index)
        check_acknowledged_write(txn.data if txn is not None else None, request, response, unit="position")

    def final(self, sim: Any) -> None:
        live = [n for n in (sim.nodes.get(i) for i in sim.node_ids) if n is not None]
        if not live:
            return
        check_converged({n.id: (n.last_applied, n.sm.digest()) for n in live}, what="applied position")

    # ------------------------------------------------------------------ node observer
    def on_established(self, node: Any) -> None:
        epoch = node.epoch
        holder = self.established.get(epoch)
        if holder is not None and holder != node.id:
            self._violate(
                "leadership", f"{holder} and {node.id} are both established leaders of epoch {epoch}"
            )
        self.established[epoch] = node.id
        # Its history holds every txn of an earlier epoch committed so far (Zab's primary
        # integrity, at the moment it holds: a leader that never broadcasts must not lose
        # them either).  Not those of later epochs: a leader-elect paused through them
        # establishes its stale epoch on the NEWLEADER acks queued for it (as ZooKeeper's
        # would), and can commit nothing, every quorum having moved past its epoch.
        log = node.log
        for pos, c in self.committed.items():
            if _epoch(c.zxid) < epoch and pos > log.offset and log.zxid_at(pos) != c.zxid:
                self._violate(
                    "primary-integrity",
                    f"{node.id} is established in epoch {epoch} with a history that lacks "
                    f"{c.summary()}, committed at position {pos}",
                )
                return

    def on_propose(self, node: Any, txn: Txn) -> None:
        epoch = _epoch(txn.zxid)
        known = self.proposed.get(txn.zxid)
        if known is not None and known.data != txn.data:
            self._violate(
                "integrity",
                f"{node.id} proposed {txn.summary()}, a zxid already proposed as {known.summary()}",
            )
        self.proposed[txn.zxid] = txn
        if epoch in self.history_end:
            return
        end = node.log.zxid_at(txn.index - 1) or 0
        self.history_end[epoch] = end
        for pos, c in self.committed.items():
            if _epoch(c.zxid) < epoch and c.zxid > end:
                self._violate(
                    "primary-integrity",
                    f"{node.id} broadcasts in epoch {epoch} with a history ending at {zxid_str(end)}, "
                    f"without {c.summary()} committed at position {pos}",
                )
                return

    def on_append(self, node: Any, txns: Any) -> None:
        log = node.log
        for t in txns:
            prev = log.zxid_at(t.index - 1)
            if prev is not None and t.zxid <= prev and t.index - 1 > 0:
                self._violate(
                    "zxid-order",
                    f"{node.id} logged {t.summary()} after zxid {zxid_str(prev)} at {t.index - 1}",
                )
                return

    def on_truncate(self, node: Any, index: int) -> None:
        if index <= node.commit_index:
            self._violate(
                "prefix-consistency",
                f"{node.id} truncated its log at {index}, below its commit position {node.commit_index}",
            )
            return
        # Nor a txn someone committed: every later leader's history holds it at its
        # position, so no TRUNC reaches it (a server restarted since its commit, or one
        # that never learned the commit, does not know it is committed; we do).
        log = node.log
        for i in range(max(index, log.offset + 1), log.last_index + 1):
            committed = self.committed.get(i)
            if committed is not None and log.zxid_at(i) == committed.zxid:
                self._violate(
                    "prefix-consistency",
                    f"{node.id} truncated {committed.summary()}, committed at position {i}",
                )
                return

    def on_commit(self, node: Any, index: int) -> None:
        log = node.log
        for i in range(max(node.last_applied, log.offset) + 1, index + 1):
            txn = log.entry(i)
            known = self.committed.get(i)
            if known is not None:
                if known.zxid != txn.zxid or known.data != txn.data:
                    self._violate(
                        "prefix-consistency",
                        f"{node.id} committed {txn.summary()} at position {i}, where "
                        f"{known.summary()} was committed",
                    )
                    return
                continue
            self._first_commit(node, i, txn)

    def _first_commit(self, node: Any, i: int, txn: Txn) -> None:
        self.committed[i] = txn
        proposed = self.proposed.get(txn.zxid)
        if proposed is None or proposed.data != txn.data:
            self._violate("integrity", f"{node.id} committed {txn.summary()}, which no leader proposed")
            return
        prev = self.committed.get(i - 1)
        if prev is not None:
            if txn.zxid <= prev.zxid:
                self._violate(
                    "global-primary-order",
                    f"{node.id} committed {txn.summary()} after {prev.summary()}",
                )
                return
            if _epoch(prev.zxid) == _epoch(txn.zxid) and _counter(txn.zxid) != _counter(prev.zxid) + 1:
                self._violate(
                    "local-primary-order",
                    f"{node.id} committed {txn.summary()} right after {prev.summary()}: a txn of "
                    "that epoch in between is missing",
                )
                return
        nxt = self.committed.get(i + 1)
        if nxt is not None and nxt.zxid <= txn.zxid:
            self._violate(
                "global-primary-order", f"{node.id} committed {txn.summary()} before {nxt.summary()}"
            )
            return
        epoch = _epoch(txn.zxid)
        for later, end in self.history_end.items():
            if later > epoch and txn.zxid > end:
                self._violate(
                    "primary-integrity",
                    f"{node.id} committed {txn.summary()} of epoch {epoch}, after the leader of epoch "
                    f"{later} broadcast with a history ending at {zxid_str(end)}",
                )
                return

    def on_apply(self, node: Any, txn: Txn) -> None:
        known = self.committed.get(txn.index)
        if known is not None and known.zxid != txn.zxid:
            self._violate(
                "prefix-consistency",
                f"{node.id} applied {txn.summary()} at position {txn.index}, where "
                f"{known.summary()} was committed",
            )

    def on_restore(self, node: Any, snapshot: Snapshot) -> None:
        known = self.committed.get(snapshot.last_index)
        if known is not None and known.zxid != snapshot.last_zxid:
            self._violate(
                "prefix-consistency",
                f"{node.id} installed {snapshot.summary()}, where {known.summary()} was committed",
            )

    def on_elected(self, node: Any, vote: tuple[str, int, int], votes: dict[str, Any]) -> None:
        sid = node.sid

        def key(v: tuple[str, int, int]) -> tuple[int, int, int]:
            return (v[2], v[1], sid.get(v[0], 0) if v[0] in node.voters else 0)

        # Every vote it received, and its own: a LOOKING server adopts only a better vote,
        # so the one it decides for beats its own (its epoch and zxid do not change while
        # it looks).
        epoch, zxid, own_sid = node.my_vote()
        candidates = {**votes, f"{node.id} (its own vote)": (node.id if own_sid else "", zxid, epoch)}
        for voter, v in candidates.items():
            if beats(key(v), key(vote)):
                self._violate(
                    "election-order",
                    f"{node.id} elected ({vote[2]}, {zxid_str(vote[1])}, {vote[0]}) although {voter} "
                    f"voted for ({v[2]}, {zxid_str(v[1])}, {v[0]}) in round {node.logicalclock}",
                )
                return

    def on_sync(self, node: Any, m: Any) -> None:
        if m.mode not in ("TRUNC", "TRUNC+DIFF"):
            return
        last = node.log.last_zxid
        if _epoch(m.trunc_zxid) != _epoch(last) or node.log.index_of(m.trunc_zxid) is None:
            self._violate(
                "trunc-within-epoch",
                f"{node.id} (last zxid {zxid_str(last)}) told to TRUNC to {zxid_str(m.trunc_zxid)} "
                f"in epoch {m.epoch}: across an epoch boundary",
            )

    def on_illegal_commit(self, node: Any, m: Any) -> None:
        self._violate(
            "commit-order",
            f"{node.id} got COMMIT {zxid_str(m.zxid)}#{m.index} with its txns committed only up to "
            f"{node.commit_index}: a COMMIT it cannot take (the spec's illegal COMMIT)",
        )

    def on_synced(self, node: Any, epoch: int, index: int, zxid: int) -> None:
        self.synced[(node.id, epoch)] = (index, zxid)
        if self.sim is not None:
            self.synced_on[node.id] = self.sim.storage_of(node.id).durable

    def on_ack(self, leader: Any, src: str, ack: Any) -> None:
        sim = self.sim
        if sim is None:
            return
        learner = sim.nodes.get(src)
        storage = sim.storage_of(src).durable
        if self.synced_on.get(src, storage) is not storage:
            # Sent by its life before a wipe, when that disk held it (seed 11300609: the
            # ACK left, the server lost its disk a few ms later, the ACK arrived after).
            # Its new life has not synced yet, so it acknowledges nothing itself.
            return
        accepted = learner.accepted_epoch if learner is not None else storage.get(ACCEPTED_EPOCH_KEY)
        if accepted != ack.epoch:
            return  # it moved on (and may have truncated since): a late ACK
        if not _durable_holds(storage, ack.index, ack.zxid):
            what = "NEWLEADER" if ack.newleader else "PROPOSALs"
            self._violate(
                "durable-ack",
                f"{src} ACKed {what} up to {zxid_str(ack.zxid)}#{ack.index} in epoch {ack.epoch} "
                "before its disk held them",
            )

    def _check_durable_epoch(self, sim: Any, node_id: str) -> None:
        storage = sim.storage_of(node_id).durable
        epoch = storage.get(CURRENT_EPOCH_KEY) or 0
        point = self.synced.get((node_id, epoch))
        if point is None:
            return
        if not _durable_holds(storage, *point):
            self._violate(
                "epoch-after-history",
                f"{node_id}'s disk says current epoch {epoch} without the history it synced in it "
                f"(up to {zxid_str(point[1])}#{point[0]})",
            )

    # ------------------------------------------------------------------ helpers
    def _violate(self, name: str, detail: str) -> None:
        self.pending.append(InvariantViolation(name, detail))


def _durable_holds(storage: Any, index: int, zxid: int) -> bool:
    """The durable storage (what survives a crash) holds txn ``zxid`` at ``index``, or a
    snapshot covering it."""
    snap = storage.get(SNAPSHOT_KEY)
    if snap is not None and index <= snap.last_index:
        return True
    if index == 0:
        return True
    first = storage.log_first()
    records = storage.log_records()
    pos = index - first
    return 0 <= pos < len(records) and records[pos].zxid == zxid
