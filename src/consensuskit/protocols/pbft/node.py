"""A PBFT replica (Castro & Liskov, OSDI 1999; TOCS 2002), as a sans-I/O state machine.

Rules this module owns (n = 3f+1 replicas, the primary of view v is members[v mod n]):
  * normal case: the primary assigns a sequence number to a batch of waiting requests
    and multicasts PRE-PREPARE; a backup accepts it when it is in its view, inside the
    watermarks (h, h+L], authentic, and no other digest was accepted for (v, n); it then
    multicasts PREPARE.  *Prepared*: the pre-prepare plus 2f matching prepares from
    distinct backups (its own counts).  A prepared replica multicasts COMMIT;
    *committed-local*: prepared plus 2f+1 matching commits.  Batches execute in
    sequence order; every replica answers the client itself (the client waits for f+1
    matching replies);
  * checkpoints: after executing a multiple of K a replica signs CHECKPOINT(n, digest of
    the state); 2f+1 matching ones make it stable: the low watermark moves to n and the
    log, votes and certificates at or below n are discarded.  A replica that sees a
    stable checkpoint it has not reached fetches the state (FETCH-STATE / STATE-REPLY,
    checked against the certified digest);
  * view change: a request waiting longer than the timeout (from its arrival, so a
    primary that proposes nothing is replaced too) makes the replica multicast a signed
    VIEW-CHANGE for v+1 with its stable checkpoint proof and its P and Q sets; once it
    holds 2f+1 of them its timer runs again, doubled after each view change that did not
    complete; f+1 view changes for higher views make it join the smallest; the new
    primary multicasts NEW-VIEW with the view changes, and every replica derives the
    re-issued batches from them (selection.py);
  * persist before sending: the view, each log entry (accepted pre-prepare, prepared,
    commit sent, committed, P and Q) and the stable checkpoint are written before the
    messages that depend on them leave (the durability driver holds them), so a replica
    restarted from its disk never contradicts what it sent; the view is stored with
    the checkpoint it started from (its floor: nothing at or below it is accepted or
    numbered in that view), and with ``read_only`` the highest number executed (a
    restarted replica behind it orders reads instead of answering them);
  * anything not authentic (bad MAC or signature, a replica field that is not the
    sender) is dropped and counted in ``dropped``; it never raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.capabilities import LEADER, LogPosition, NodeStatus
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.messages import encode
from consensuskit.core.service import StateMachine
from consensuskit.protocols.common.replies import applied, command_answer, read_answer
from consensuskit.protocols.pbft.auth import Macs, Signer
from consensuskit.protocols.pbft.messages import (
    Batch,
    Cert,
    Checkpoint,
    Commit,
    FetchState,
    NewView,
    Prepare,
    PrePrepare,
    ReadOnly,
    Relay,
    StateReply,
    ViewChange,
    batch_digest,
    payload,
    state_digest,
)
from consensuskit.protocols.pbft.options import PbftOptions
from consensuskit.protocols.pbft.selection import Selection, select
from consensuskit.statemachines.sessions import refusal

VIEW_KEY = "pbft/view"
CHECKPOINT_KEY = "pbft/checkpoint"
EXECUTED_KEY = "pbft/executed"  # with read_only: the highest number executed (read floor)
TIMER_VIEW_CHANGE = "view-change"
TIMER_FETCH = "fetch-state"
FETCH_RETRY = 0.2
READS_REMEMBERED = 4096
# What a state machine's read raises for a kind it serves only as an ordered command.
ORDERED_READS: tuple[type[Exception], ...] = (TypeError, ValueError)
BACKUP = "backup"
VIEW_CHANGE = "view-change"


@dataclass(slots=True)
class Entry:
    """The log entry for one sequence number (in the view of its pre-prepare)."""

    seq: int
    view: int
    digest: bytes
    batch: Batch
    prepared: bool = False
    committed: bool = False
    commit_sent: bool = False


@dataclass(slots=True)
class Votes:
    """Prepares and commits received for one (view, seq): replica -> digest."""

    prepares: dict[str, bytes] = field(default_factory=dict)
    commits: dict[str, bytes] = field(default_factory=dict)


def fault_bound(n: int) -> int:
    """f, the most faulty replicas n = 3f+1 (or more) tolerates."""
    return (n - 1) // 3


def byzantine_quorum(n: int) -> int:
    """The replicas a certificate needs: ceil((n+f+1)/2), so that any two such sets share
    f+1 replicas, one of them correct.  2f+1 when n = 3f+1 (the paper's); with more
    replicas than that, 2f+1 would not do (n = 5, f = 1: two sets of 3 share one
    replica, which may be the faulty one)."""
    return (n + fault_bound(n)) // 2 + 1


class PbftNode:
    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: PbftOptions,
        *,
        state_machine: StateMachine,
        signer: Signer,
        macs: Macs,
    ) -> None:
        self.id = node_id
        self.env = env
        self.members = tuple(members)
        self.others = tuple(m for m in self.members if m != node_id)
        self.n = len(self.members)
        self.f = fault_bound(self.n)
        self.quorum = byzantine_quorum(self.n)  # 2f+1 when n = 3f+1
        self.opts = options
        self.bugs = options.bugs
        self.sm = state_machine
        self.signer = signer
        self.macs = macs
        self.view = 0
        self.active = True  # False while changing view
        # The stable checkpoint the current view started from (its NEW-VIEW's min-s):
        # every number at or below it is settled, so this view accepts and proposes
        # only above it, even while this replica's own checkpoint is older (its state
        # still being fetched, or its checkpoint write lost in a crash).  Persisted with
        # the view (seed 143015: a new primary restarted before its fetched checkpoint
        # was on disk came back with its old low watermark and numbered a request at a
        # number committed two views before).
        self.view_floor = 0
        # Stable checkpoint: low watermark h, its digest and its 2f+1 signed proof.
        self.low = 0
        self.stable_digest = state_digest(state_machine.snapshot())
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.snapshots: dict[int, tuple[bytes, Any]] = {0: (self.stable_digest, state_machine.snapshot())}
        self.executed = 0
        # With read_only: the highest number this replica ever executed (persisted).  A
        # restart rebuilds the state from the stable checkpoint and the log's committed
        # entries only; entries a later view re-issued are no longer committed here, so
        # the state can come back older than replies this replica already gave.  It
        # answers reads from its state again only once it is back at this point (seed
        # 141000: two replicas restarted at their checkpoint outvoted the third with a
        # value two writes old).
        self.read_floor = 0
        self.next_seq = 1  # the primary's next number
        self.log: dict[int, Entry] = {}
        self.votes: dict[tuple[int, int], Votes] = {}
        # The P and Q sets (carried across views until a checkpoint discards them):
        # seq -> (view, digest) prepared last; seq -> digest -> (view, batch) pre-prepared.
        self.p_info: dict[int, tuple[int, bytes]] = {}
        self.q_info: dict[int, dict[bytes, tuple[int, Batch]]] = {}
        self.cp_votes: dict[int, dict[str, Checkpoint]] = {}
        self.vc_msgs: dict[int, dict[str, ViewChange]] = {}
        self.new_view_sent: set[int] = set()
        self.new_view: NewView | None = None  # the last NEW-VIEW this replica sent
        self.vc_failures = 0
        self.timer_armed = False
        self.escalate = False  # 2f+1 view changes for the view being entered were seen
        # Requests waiting to execute, in arrival order; those the primary has assigned.
        self.pending: dict[tuple[str, int], ClientRequest] = {}
        self.assigned: set[tuple[str, int]] = set()
        self.replies: dict[str, ClientResponse] = {}
        self.fetching: tuple[int, bytes, tuple[Checkpoint, ...]] | None = None
        self.dropped = 0
        # Reads answered by the read-only optimisation, oldest first (a second sighting
        # is ordered): insertion-ordered keys, at most READS_REMEMBERED.
        self.reads_seen: dict[tuple[str, int], None] = {}
        # Pre-prepares that arrived before their view's NEW-VIEW.
        self.early: list[tuple[str, PrePrepare]] = []
        # What happened, in order, for the checker (check/pbft.py reads it from an offset):
        # ("preprepared"|"prepared"|"committed", seq, view, digest), ("executed", client,
        # seq, number, result bytes), ("stable", seq, digest).
        self.events: list[tuple[Any, ...]] = []
        self._restore()

    # ------------------------------------------------------------------ helpers
    def primary(self, view: int | None = None) -> str:
        return self.members[(self.view if view is None else view) % self.n]

    @property
    def high(self) -> int:
        return self.low + self.opts.watermark_window

    def _prepare_quorum(self) -> int:
        return self.f if "small-quorums" in self.bugs else self.quorum - 1

    def _commit_quorum(self) -> int:
        return self.f + 1 if "small-quorums" in self.bugs else self.quorum

    def _authentic(self, src: str, msg: Any) -> bool:
        if getattr(msg, "replica", None) != src or src not in self.others:
            self.dropped += 1
            return False
        if not self.macs.check(src, payload(msg), getattr(msg, "mac", None)):
            self.dropped += 1
            return False
        return True

    def _signed_by(self, msg: Any, signer: str) -> bool:
        try:
            return self.signer.verify(signer, payload(msg), msg.sig)
        except Exception:  # an unencodable field from a peer is just not authentic
            return False

    def _send(self, dst: str, msg: Any) -> None:
        self.env.send(dst, dataclasses.replace(msg, mac=self.macs.mac(dst, payload(msg))))

    def _multicast(self, msg: Any) -> None:
        data = payload(msg)
        for dst in self.others:
            self.env.send(dst, dataclasses.replace(msg, mac=self.macs.mac(dst, data)))

    def _sign(self, msg: Any) -> Any:
        return dataclasses.replace(msg, sig=self.signer.sign(payload(msg)))

    def _broadcast_signed(self, msg: Any) -> None:
        for dst in self.others:
            self.env.send(dst, msg)

    def _vote(self, view: int, seq: int) -> Votes:
        votes = self.votes.get((view, seq))
        if votes is None:
            votes = self.votes[(view, seq)] = Votes()
        return votes

    # ------------------------------------------------------------------ persistence
    def _persist_view(self) -> None:
        self.env.storage.put(VIEW_KEY, (self.view, self.active, self.view_floor))

    def _persist_entry(self, seq: int) -> None:
        e = self.log.get(seq)
        body = None if e is None else (e.view, e.digest, e.batch, e.prepared, e.committed, e.commit_sent)
        q = tuple(sorted((d, v, b) for d, (v, b) in self.q_info.get(seq, {}).items()))
        self.env.storage.log_append([(seq, body, self.p_info.get(seq), q)])

    def _restore(self) -> None:
        storage = self.env.storage
        view = storage.get(VIEW_KEY)
        if view is not None:
            # (view, active) before the floor was kept: the view's floor unknown, 0.
            self.view, self.active = view[0], view[1]
            self.view_floor = view[2] if len(view) > 2 else 0
        self.read_floor = storage.get(EXECUTED_KEY) or 0
        cp = storage.get(CHECKPOINT_KEY)
        if cp is not None:
            seq, digest, proof, snapshot = cp
            self.sm.restore(snapshot)
            self.low = self.executed = seq
            self.stable_digest, self.stable_proof = digest, tuple(proof)
            self.snapshots = {seq: (digest, snapshot)}
        for seq, body, p, q in storage.log_records():
            if seq <= self.low:
                continue
            if body is None:
                self.log.pop(seq, None)
            else:
                view_, digest, batch, prepared, committed, sent = body
                self.log[seq] = Entry(seq, view_, digest, batch, prepared, committed, sent)
            if p is not None:
                self.p_info[seq] = p
            self.q_info[seq] = {d: (v, b) for d, v, b in q}
        self.next_seq = max([self.low, self.view_floor, *self.log]) + 1

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        self.env.record("role", role=self._role(), view=self.view)
        self._execute()
        if not self.active:
            self._arm_view_change_timer()
            self._send_view_change()

    def on_request(self, request: ClientRequest) -> None:
        if self._read_only(request):
            for dst in self.others:
                self._send(dst, ReadOnly(request=request, replica=self.id))
            return
        self._order(request)

    def _order(self, request: ClientRequest) -> None:
        """A request for the three phases (the primary proposes it, a backup relays it)."""
        key = (request.client_id, request.seq)
        last = self.replies.get(request.client_id)
        if last is not None and last.seq > request.seq:
            return
        if last is not None and last.seq == request.seq and self._still_true(last):
            self.env.deliver(last)  # a retransmission: the reply again
            return
        self.pending.setdefault(key, request)
        if not self.active:
            return
        if self.primary() == self.id:
            self._propose()
        else:
            # To every replica, not only the primary: a client that reached one backup
            # (the HTTP front door does not retransmit to all) still gets every correct
            # replica's timer running, so a dead primary is replaced (f+1 view changes).
            relay = Relay(request=request, replica=self.id)
            for dst in self.others:
                self._send(dst, relay)
        self._arm_timer()

    def on_timer(self, key: str) -> None:
        if key == TIMER_VIEW_CHANGE:
            self.timer_armed = False
            if self.active:
                if self.pending:
                    self._start_view_change(self.view + 1)
                return
            if self.escalate:
                self._start_view_change(self.view + 1)  # 2f+1 wanted this view: it failed
            else:
                self._send_view_change()  # nobody answered yet: say it again
                self._arm_view_change_timer()
        elif key == TIMER_FETCH and self.fetching is not None:
            self._fetch()

    def on_message(self, src: str, msg: Any) -> None:
        handler = _HANDLERS.get(type(msg))
        if handler is None or not _well_formed(msg):
            self.dropped += 1
            return
        handler(self, src, msg)

    def request_view_change(self) -> None:
        """Admin input: this replica suspects the primary now (its timer firing early)."""
        self._start_view_change(self.view + 1)

    # ------------------------------------------------------------------ normal case
    def _on_relay(self, src: str, msg: Relay) -> None:
        if not self._authentic(src, msg) or not isinstance(msg.request, ClientRequest):
            return
        if self.active and self.primary() == self.id:
            self._order(msg.request)  # relayed: to be ordered, even a read
            return
        request = msg.request
        if not self._answered(request):
            self.pending.setdefault((request.client_id, request.seq), request)
            self._arm_timer()

    def _read_only(self, request: ClientRequest) -> bool:
        """The read-only optimisation (TOCS §5.1.3): the first time this replica sees a
        read, it answers from its executed state -- every request it executed committed
        -- without ordering it and changes nothing; the client needs 2f+1 matching
        answers.  A second sighting is the client retrying (no 2f+1 agreed): ordered."""
        if not self.opts.read_only or not request.op.is_read():
            return False
        if self.executed < self.read_floor:
            return False  # restarted behind what it executed before: ordered
        key = (request.client_id, request.seq)
        if key in self.reads_seen:
            return False
        self.reads_seen[key] = None
        if len(self.reads_seen) > READS_REMEMBERED:
            del self.reads_seen[next(iter(self.reads_seen))]
        hint = self.primary() if self.active else None
        try:
            # Any other exception is a bug in the read: refused, the node goes on.
            answer = read_answer(self.sm, request, self.env, hint, self.executed, passing=ORDERED_READS)
        except ORDERED_READS:
            return False  # a kind the state machine does not serve as a read: ordered
        self.env.deliver(answer)
        return True

    def _on_read_only(self, src: str, msg: ReadOnly) -> None:
        if not self._authentic(src, msg) or not isinstance(msg.request, ClientRequest):
            return
        if self.opts.read_only and msg.request.op.is_read():
            key = (msg.request.client_id, msg.request.seq)
            if key not in self.reads_seen:
                self._read_only(msg.request)

    def _propose(self) -> None:
        """The primary assigns numbers to waiting requests, a batch per number, while
        the window (watermarks, ``max_inflight``) allows."""
        while self.active and self.primary() == self.id:
            if self.next_seq > self.high or self.next_seq - 1 - self.executed >= self.opts.max_inflight:
                return
            batch: list[ClientRequest] = []
            for key, request in self.pending.items():
                if key not in self.assigned:
                    batch.append(request)
                    if len(batch) >= self.opts.batch_size:
                        break
            if not batch:
                return
            for request in batch:
                self.assigned.add((request.client_id, request.seq))
            seq = self.next_seq
            self.next_seq += 1
            pp = PrePrepare(
                view=self.view,
                seq=seq,
                digest=batch_digest(tuple(batch)),
                batch=tuple(batch),
                replica=self.id,
            )
            self._accept(pp)
            self._multicast(pp)
            self._check_prepared(seq)  # n = 1 (f = 0): no prepare will come

    def _accept(self, pp: PrePrepare) -> None:
        self.log[pp.seq] = Entry(pp.seq, pp.view, pp.digest, pp.batch)
        self.q_info.setdefault(pp.seq, {})[pp.digest] = (pp.view, pp.batch)
        self.events.append(("preprepared", pp.seq, pp.view, pp.digest))
        self._persist_entry(pp.seq)

    def _on_preprepare(self, src: str, pp: PrePrepare) -> None:
        if not self._authentic(src, pp):
            return
        if src != self.primary(pp.view) or not isinstance(pp.view, int):
            return
        if pp.view > self.view or (pp.view == self.view and not self.active):
            # Ahead of its NEW-VIEW (reordered): kept until this replica enters the view.
            if pp.view <= self.view + 2 and len(self.early) < 4 * self.opts.watermark_window:
                self.early.append((src, pp))
            return
        if pp.view != self.view:
            return
        if not max(self.low, self.view_floor) < pp.seq <= self.high or batch_digest(pp.batch) != pp.digest:
            self.dropped += 1
            return
        if not all(isinstance(r, ClientRequest) for r in pp.batch):
            self.dropped += 1
            return
        entry = self.log.get(pp.seq)
        if entry is not None and entry.view >= pp.view:
            return  # one pre-prepare per (v, n): a second digest is the primary lying
        self._accept(pp)
        self._prepare(pp.view, pp.seq, pp.digest)

    def _prepare(self, view: int, seq: int, digest: bytes) -> None:
        """A backup's PREPARE for an accepted pre-prepare (or a new view's re-issue)."""
        self._vote(view, seq).prepares[self.id] = digest
        self._multicast(Prepare(view=view, seq=seq, digest=digest, replica=self.id))
        if "early-commit" in self.bugs:
            self._send_commit(self.log[seq])
        self._check_prepared(seq)

    def _on_prepare(self, src: str, msg: Prepare) -> None:
        if not self._authentic(src, msg) or not self._votable(msg.view, msg.seq):
            return
        if src == self.primary(msg.view):
            return  # the primary's vote is its pre-prepare
        self._vote(msg.view, msg.seq).prepares[src] = msg.digest
        self._check_prepared(msg.seq)

    def _on_commit(self, src: str, msg: Commit) -> None:
        if not self._authentic(src, msg) or not self._votable(msg.view, msg.seq):
            return
        self._vote(msg.view, msg.seq).commits[src] = msg.digest
        self._check_committed(msg.seq)

    def _votable(self, view: int, seq: int) -> bool:
        # Votes for the next views are kept: a replica a little behind on a new view
        # must not lose the prepares of the replicas ahead of it.
        if not isinstance(view, int) or not isinstance(seq, int):
            return False
        return self.view <= view <= self.view + 2 and self.low < seq <= self.high

    def _check_prepared(self, seq: int) -> None:
        e = self.log.get(seq)
        if e is None or e.prepared or e.view != self.view or not self.active:
            return
        votes = self._vote(e.view, seq)
        primary = self.primary(e.view)
        count = sum(1 for r, d in votes.prepares.items() if d == e.digest and r != primary)
        if count < self._prepare_quorum():
            return
        e.prepared = True
        self.p_info[seq] = (e.view, e.digest)
        self.events.append(("prepared", seq, e.view, e.digest))
        self._send_commit(e)

    def _send_commit(self, e: Entry) -> None:
        if not e.commit_sent:
            e.commit_sent = True
            self._vote(e.view, e.seq).commits[self.id] = e.digest
            self._persist_entry(e.seq)
            self._multicast(Commit(view=e.view, seq=e.seq, digest=e.digest, replica=self.id))
        else:
            self._persist_entry(e.seq)
        self._check_committed(e.seq)

    def _check_committed(self, seq: int) -> None:
        e = self.log.get(seq)
        if e is None or e.committed or e.view != self.view:
            return
        if not (e.prepared or (e.commit_sent and "early-commit" in self.bugs)):
            return
        votes = self.votes.get((e.view, seq))
        if votes is None:
            return
        count = sum(1 for d in votes.commits.values() if d == e.digest)
        if count < self._commit_quorum():
            return
        e.committed = True
        self._persist_entry(seq)
        self.events.append(("committed", seq, e.view, e.digest))
        self.env.record("learned", slot=seq)
        self._execute()

    def _execute(self) -> None:
        ran = False
        while True:
            e = self.log.get(self.executed + 1)
            if e is None or not e.committed:
                break
            seq = e.seq
            hint = self.primary()
            for request in e.batch:
                key = (request.client_id, request.seq)
                self.pending.pop(key, None)
                self.assigned.discard(key)
                if self._answered(request):
                    continue  # executed before (a batch re-issued after a view change)
                # New, or a retry whose cached reply the session table no longer backs
                # (expired): the state machine judges it (a refusal, never a second apply).
                result = applied(self.sm, request, self.env)
                answer = command_answer(request, result, hint, seq)
                self.replies[request.client_id] = answer
                if refusal(result) is None:
                    # A session refusal is no decided result: a duplicate met after a
                    # state transfer (which carries sessions but not our replies).
                    self.events.append(("executed", request.client_id, request.seq, seq, encode(result)))
                self.env.deliver(answer)
            self.executed = seq
            ran = True
            if seq % self.opts.checkpoint_interval == 0:
                self._take_checkpoint(seq)
        if not ran:
            return
        if self.opts.read_only and self.executed > self.read_floor:
            # Written with the replies it backs: they leave only once it is durable.
            self.read_floor = self.executed
            self.env.storage.put(EXECUTED_KEY, self.executed)
        self.env.cancel_timer(TIMER_VIEW_CHANGE)
        self.timer_armed = False
        self._arm_timer()
        self._propose()

    def _answered(self, request: ClientRequest) -> bool:
        """``request`` was executed here and its cached answer still stands (or a newer
        request of its client was executed: this one is stale)."""
        last = self.replies.get(request.client_id)
        if last is None or last.seq < request.seq:
            return False
        return last.seq > request.seq or self._still_true(last)

    def _still_true(self, reply: ClientResponse) -> bool:
        """The cached ``reply`` may answer a retransmission: a refusal always (it stays
        refused), a result only while the state machine's session table still holds
        the client's session at that seq.  Once the session expired (the log clock,
        statemachines/sessions.py), the retry is ordered again and the table refuses
        it as expired: a cache here must not outlive the session it stands for."""
        if not reply.ok:
            return True
        table = getattr(self.sm, "sessions", None)
        last_seq = getattr(table, "last_seq", None)
        if last_seq is None:
            return True  # a state machine without sessions: the cache is the session
        return last_seq(reply.client_id) == reply.seq

    def _arm_timer(self) -> None:
        if self.pending and self.active and not self.timer_armed:
            self.timer_armed = True
            self.env.set_timer(TIMER_VIEW_CHANGE, self._timeout())

    def _timeout(self) -> float:
        return self.opts.view_change_timeout * (2 ** min(self.vc_failures, 6))

    # ------------------------------------------------------------------ checkpoints
    def _take_checkpoint(self, seq: int) -> None:
        snapshot = self.sm.snapshot()
        digest = state_digest(snapshot)
        self.snapshots[seq] = (digest, snapshot)
        cp = self._sign(Checkpoint(seq=seq, digest=digest, replica=self.id))
        self.cp_votes.setdefault(seq, {})[self.id] = cp
        self._broadcast_signed(cp)
        self._check_stable(seq)

    def _on_checkpoint(self, src: str, cp: Checkpoint) -> None:
        if cp.replica != src or src not in self.others or not self._signed_by(cp, src):
            self.dropped += 1
            return
        if (
            not isinstance(cp.seq, int)
            or cp.seq <= self.low
            or cp.seq > self.high + self.opts.watermark_window
        ):
            return
        self.cp_votes.setdefault(cp.seq, {})[src] = cp
        self._check_stable(cp.seq)

    def _check_stable(self, seq: int) -> None:
        if seq <= self.low:
            return
        by_digest: dict[bytes, list[Checkpoint]] = {}
        for cp in self.cp_votes.get(seq, {}).values():
            by_digest.setdefault(cp.digest, []).append(cp)
        for digest, cps in sorted(by_digest.items()):
            if len(cps) < self.quorum:
                continue
            proof = tuple(sorted(cps, key=lambda c: c.replica))[: self.quorum]
            mine = self.snapshots.get(seq)
            if mine is not None and mine[0] == digest:
                self._make_stable(seq, digest, proof, mine[1])
            elif self.fetching is None or self.fetching[0] < seq:
                self.fetching = (seq, digest, proof)
                self._fetch()
            return

    def _make_stable(
        self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...], snapshot: Any, propose: bool = True
    ) -> None:
        """Adopt the stable checkpoint ``seq``; then a primary fills the moved window
        (not while it installs a new view: the numbers above the checkpoint are the view
        changes' to settle first)."""
        self.low = seq
        self.stable_digest = digest
        self.stable_proof = proof
        self.env.storage.put(CHECKPOINT_KEY, (seq, digest, proof, snapshot))
        self.events.append(("stable", seq, digest))
        # Garbage collection: nothing at or below the stable checkpoint is needed again.
        self.snapshots = {s: v for s, v in self.snapshots.items() if s >= seq}
        for n in [n for n in self.log if n <= seq]:
            del self.log[n]
        self.votes = {k: v for k, v in self.votes.items() if k[1] > seq}
        self.p_info = {n: v for n, v in self.p_info.items() if n > seq}
        self.q_info = {n: v for n, v in self.q_info.items() if n > seq}
        self.cp_votes = {n: v for n, v in self.cp_votes.items() if n > seq}
        if self.fetching is not None and self.fetching[0] <= seq:
            self.fetching = None
            self.env.cancel_timer(TIMER_FETCH)
        storage = self.env.storage
        first_live = storage.log_last() + 1
        for n in sorted(set(self.log) | set(self.p_info) | set(self.q_info)):
            self._persist_entry(n)
        storage.log_compact_to(first_live)
        self.next_seq = max(self.next_seq, seq + 1)
        if propose:
            self._propose()

    # ------------------------------------------------------------------ state transfer
    def _fetch(self) -> None:
        assert self.fetching is not None
        seq, _, proof = self.fetching
        for cp in proof:
            if cp.replica != self.id:
                self._send(cp.replica, FetchState(seq=seq, replica=self.id))
        self.env.set_timer(TIMER_FETCH, FETCH_RETRY)

    def _on_fetch_state(self, src: str, msg: FetchState) -> None:
        if not self._authentic(src, msg):
            return
        mine = self.snapshots.get(msg.seq)
        if mine is not None:
            self._send(src, StateReply(seq=msg.seq, snapshot=mine[1], replica=self.id))

    def _on_state_reply(self, src: str, msg: StateReply) -> None:
        if not self._authentic(src, msg) or self.fetching is None:
            return
        seq, digest, proof = self.fetching
        if msg.seq != seq or seq <= self.executed:
            return
        try:
            if state_digest(msg.snapshot) != digest:
                self.dropped += 1
                return
            self.sm.restore(msg.snapshot)
        except (TypeError, ValueError):
            self.dropped += 1
            return
        self.executed = seq
        self.env.record("state-transfer", seq=seq)
        self.snapshots[seq] = (digest, msg.snapshot)
        self._make_stable(seq, digest, proof, msg.snapshot)
        self._execute()

    # ------------------------------------------------------------------ view change
    def _valid_proof(self, seq: int, digest: bytes, proof: Any) -> bool:
        if seq == 0:
            return True  # the initial state needs no proof
        if not isinstance(proof, tuple):
            return False
        signers = set()
        for cp in proof:
            if not isinstance(cp, Checkpoint) or cp.seq != seq or cp.digest != digest:
                return False
            if cp.replica in self.members and self._signed_by(cp, cp.replica):
                signers.add(cp.replica)
        return len(signers) >= self.quorum

    def _start_view_change(self, view: int) -> None:
        if view <= self.view and not self.active:
            return
        if not self.active:
            self.vc_failures += 1  # the view change to self.view did not complete
        self.view = view
        self.active = False
        self.env.cancel_timer(TIMER_VIEW_CHANGE)
        self.timer_armed = False
        self._persist_view()
        self.env.record("role", role=VIEW_CHANGE, view=view)
        self.escalate = False
        self._arm_view_change_timer()
        self._send_view_change()

    def _arm_view_change_timer(self) -> None:
        """While changing view the timer always runs: before 2f+1 replicas want the view
        it re-sends this replica's view change (a lost one would leave it alone in the
        view change for good); after, it moves on to the next view."""
        self.timer_armed = True
        self.env.set_timer(TIMER_VIEW_CHANGE, self._timeout())

    def _send_view_change(self) -> None:
        view = self.view
        prepared = tuple(
            Cert(seq=n, view=v, digest=d) for n, (v, d) in sorted(self.p_info.items()) if n > self.low
        )
        preprepared = tuple(
            Cert(seq=n, view=v, digest=d, batch=b)
            for n, q in sorted(self.q_info.items())
            if n > self.low
            for d, (v, b) in sorted(q.items())
        )
        vc = self._sign(
            ViewChange(
                view=view,
                replica=self.id,
                stable_seq=self.low,
                stable_digest=self.stable_digest,
                proof=self.stable_proof,
                prepared=prepared,
                preprepared=preprepared,
            )
        )
        self.vc_msgs.setdefault(view, {})[self.id] = vc
        self._broadcast_signed(vc)
        self._after_view_change_vote(view)

    def _on_view_change(self, src: str, vc: ViewChange) -> None:
        if vc.replica != src or src not in self.others or not self._signed_by(vc, src):
            self.dropped += 1
            return
        if vc.view < self.view or (vc.view == self.view and self.active):
            # A replica behind: the primary that started this view shows it the way in.
            if self.active and self.new_view is not None and self.new_view.view == self.view:
                self.env.send(src, self.new_view)
            return
        if vc.view > self.view + self.n:  # no unbounded memory for a liar's far views
            return
        if not self._valid_proof(vc.stable_seq, vc.stable_digest, vc.proof):
            self.dropped += 1
            return
        self.vc_msgs.setdefault(vc.view, {})[src] = vc
        # Liveness: f+1 replicas want a higher view: join the smallest of those views.
        higher: dict[str, int] = {}
        for v, msgs in self.vc_msgs.items():
            if v > self.view:
                for r in msgs:
                    higher[r] = min(higher.get(r, v), v)
        if len(higher) >= self.f + 1:
            self._start_view_change(min(higher.values()))
        self._after_view_change_vote(vc.view)

    def _after_view_change_vote(self, view: int) -> None:
        if self.active or view != self.view:
            return
        if len(self.vc_msgs.get(view, {})) >= self.quorum and not self.escalate:
            self.escalate = True  # the paper's timer starts now (sawtooth-pbft PR #133)
            self._arm_view_change_timer()
        if self.primary(view) == self.id and view not in self.new_view_sent:
            vcs = tuple(vc for _, vc in sorted(self.vc_msgs.get(view, {}).items()))
            selection = select(vcs, self.f, "new-view-ignores-prepared" in self.bugs, quorum=self.quorum)
            if selection is None:
                return
            self.new_view_sent.add(view)
            nv = self._sign(NewView(view=view, replica=self.id, view_changes=vcs))
            self.new_view = nv
            self._broadcast_signed(nv)
            self._install(view, selection)

    def _on_new_view(self, src: str, nv: NewView) -> None:
        if nv.replica != src or src not in self.others or not isinstance(nv.view, int):
            self.dropped += 1
            return
        if src != self.primary(nv.view) or not self._signed_by(nv, src):
            self.dropped += 1
            return
        if nv.view < self.view or (nv.view == self.view and self.active):
            return
        seen: set[str] = set()
        for vc in nv.view_changes:
            if (
                not isinstance(vc, ViewChange)
                or vc.view != nv.view
                or vc.replica in seen
                or vc.replica not in self.members
                or not self._signed_by(vc, vc.replica)
                or not self._valid_proof(vc.stable_seq, vc.stable_digest, vc.proof)
            ):
                self.dropped += 1
                return
            seen.add(vc.replica)
        ignore_prepared = "new-view-ignores-prepared" in self.bugs
        selection = select(nv.view_changes, self.f, ignore_prepared, quorum=self.quorum)
        if selection is None:
            self.dropped += 1
            return
        self._install(nv.view, selection)

    def _install(self, view: int, sel: Selection) -> None:
        """Enter ``view`` with the batches the view changes settle re-issued."""
        self.view = view
        self.active = True
        self.view_floor = sel.min_s
        self.vc_failures = 0
        self.env.cancel_timer(TIMER_VIEW_CHANGE)
        self.timer_armed = False
        self._persist_view()
        self.env.record("role", role=self._role(), view=view)
        if sel.min_s > self.low:
            mine = self.snapshots.get(sel.min_s)
            proof = sel.source.proof if sel.source is not None else ()
            if mine is not None and mine[0] == sel.min_digest:
                # No proposal here: it would number a new batch at next_seq, a number
                # the decisions below may give to a prepared batch (two digests for
                # one number in this view).
                self._make_stable(sel.min_s, sel.min_digest, proof, mine[1], propose=False)
            elif self.executed < sel.min_s:
                self.fetching = (sel.min_s, sel.min_digest, proof)
                self._fetch()
        for n in [n for n, e in self.log.items() if e.view < view]:
            del self.log[n]
            self._persist_entry(n)
        self.votes = {k: v for k, v in self.votes.items() if k[0] >= view}
        self.vc_msgs = {v: m for v, m in self.vc_msgs.items() if v > view}
        primary = self.primary(view) == self.id
        self.assigned = set()
        for n, (digest, batch) in sorted(sel.decisions.items()):
            if n <= self.low:
                continue
            self._accept(PrePrepare(view=view, seq=n, digest=digest, batch=batch, replica=self.primary(view)))
            self.assigned.update((r.client_id, r.seq) for r in batch)
            if not primary:
                self._prepare(view, n, digest)
        self.next_seq = max(sel.max_s, self.low) + 1
        early, self.early = self.early, []
        for src, pp in early:
            if pp.view == view and pp.seq > sel.max_s:
                self._on_preprepare(src, pp)
            elif pp.view > view:
                self.early.append((src, pp))
        if not primary:
            # The new primary may not have seen the requests still waiting here.
            for request in self.pending.values():
                self._send(self.primary(view), Relay(request=request, replica=self.id))
        for n in sorted(self.log):
            self._check_prepared(n)
            self._check_committed(n)
        self._arm_timer()
        self._propose()

    # ------------------------------------------------------------------ capabilities
    def _role(self) -> str:
        if not self.active:
            return VIEW_CHANGE
        return LEADER if self.primary() == self.id else BACKUP

    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self._role(),
            leader=self.primary() if self.active else None,
            generation_name="view",
            generation=self.view,
            details={
                "executed": self.executed,
                "low_watermark": self.low,
                "pending": len(self.pending),
                "dropped": self.dropped,
                # Whose keys sign (auth.py): a member's own pair, a shared secret, tokens.
                "signatures": getattr(self.signer, "source", "other"),
            },
        )

    def status(self) -> dict[str, Any]:
        """The status as one flat dict (transcripts, debugging)."""
        return {**self.node_status().to_dict(), "view": self.view, "active": self.active}

    def is_leader(self) -> bool:
        return self.active and self.primary() == self.id

    def current_leader(self) -> str | None:
        return self.primary() if self.active else None

    def log_position(self) -> LogPosition:
        last = max([self.executed, *self.log])
        return LogPosition(
            commit=self.executed, applied=self.executed, last_index=last, snapshot_index=self.low
        )


_INT_FIELDS = ("view", "seq", "stable_seq")


def _well_formed(msg: Any) -> bool:
    """Scalar fields of the declared types (the codec checks them on the wire; a message
    built in memory by a liar gets the same scrutiny here)."""
    for name in _INT_FIELDS:
        value = getattr(msg, name, 0)
        if type(value) is not int or value < 0:
            return False
    return isinstance(getattr(msg, "replica", ""), str) and isinstance(getattr(msg, "digest", b""), bytes)


_HANDLERS: dict[type, Any] = {
    Relay: PbftNode._on_relay,
    ReadOnly: PbftNode._on_read_only,
    PrePrepare: PbftNode._on_preprepare,
    Prepare: PbftNode._on_prepare,
    Commit: PbftNode._on_commit,
    Checkpoint: PbftNode._on_checkpoint,
    ViewChange: PbftNode._on_view_change,
    NewView: PbftNode._on_new_view,
    FetchState: PbftNode._on_fetch_state,
    StateReply: PbftNode._on_state_reply,
}
