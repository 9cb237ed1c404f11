"""A 2PC or 3PC node, driven by the transition tables of ``tables.py``.

Every node may coordinate: the node a client asks becomes the coordinator of that
transaction (its id, "n1.2.7", names the coordinator, its incarnation and a counter, so
ids never repeat across restarts).  The first P members are also participants, each
owning a key range (``txn.py``) with its keys and locks (``store.py``).

Rules this module owns (the tables own the protocol's):
  * every input is classified into one event of one role's table (coordinator,
    participant, 3PC termination) and handled by running the table's actions in order;
  * durable state is one write-ahead log of records replayed at start: participant
    records (prepared, precommitted, committed, aborted) and coordinator records
    (decided, ended); the keys' values are rebuilt by re-applying the committed parts, and
    the locks of every undecided prepared transaction are taken again.  After replay each
    undecided transaction gets the event ``recover``: recovery finishes in-doubt
    transactions;
  * a node that coordinates a transaction answers inquiries about it from its
    coordinator role (presumed abort when it knows nothing), any other node from its
    participant role;
  * 3PC rounds: a participant answers a termination round only if it is not lower than
    the highest it answered, and from then on ignores PreCommit/Commit/Abort of lower
    rounds (the original coordinator's is the lowest);
  * what a checker needs it gets through ``observer``: ``outcome(node, txn, outcome,
    role)``, and what base.py sends it; never through records (the trace's).

Messages to itself, incarnations, the participant's records and their replay are
base.py's rules, shared with Paxos Commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import ClientRequest
from consensuskit.core.env import Env
from consensuskit.protocols.commit import coordinator_of, tables
from consensuskit.protocols.commit import txn as txns
from consensuskit.protocols.commit.base import (
    PTxn,
    TxnNode,
    replay_participant_record,
)
from consensuskit.protocols.commit.messages import (
    ABORTED,
    COMMITTED,
    PRECOMMITTED,
    UNCERTAIN,
    UNKNOWN,
    ZERO_ROUND,
    Abort,
    Ack,
    Commit,
    DecisionReply,
    DecisionRequest,
    PreCommit,
    PreCommitAck,
    Prepare,
    Round,
    StateReport,
    StateRequest,
    TxnPart,
    Vote,
)
from consensuskit.protocols.commit.options import CommitOptions


class CTxn:
    """A coordinator's view of one transaction."""

    __slots__ = (
        "acks",
        "body",
        "client",
        "participants",
        "parts",
        "reason",
        "responses",
        "started",
        "state",
        "succeeded",
        "txn",
        "votes",
    )

    def __init__(self, txn: str, participants: tuple[str, ...]) -> None:
        self.txn = txn
        self.state = "start"
        self.participants = participants
        self.parts: dict[str, TxnPart] = {}
        self.body: dict[str, Any] = {}
        self.votes: dict[str, tuple[tuple[str, Any, int], ...]] = {}
        self.acks: set[str] = set()
        self.client: tuple[str, int] | None = None
        self.reason = ""
        self.succeeded = True
        self.responses: list[dict[str, Any]] = []
        self.started = 0.0


class Backup:
    """3PC termination: this participant coordinates ``round`` of ``txn``."""

    __slots__ = ("acks", "reports", "round", "state", "succeeded")

    def __init__(self, round_: Round) -> None:
        self.round = round_
        self.state = "idle"
        self.reports: dict[str, tuple[str, bool]] = {}
        self.acks: set[str] = set()
        self.succeeded = True


class CommitNode(TxnNode):
    """2PC (``three_phase=False``) or 3PC, coordinator and participant in one node."""

    DOUBT_STATES = (UNCERTAIN, PRECOMMITTED)

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: dict[str, Any],
        *,
        three_phase: bool,
        protocol: str,
        bugs: Sequence[str],
    ) -> None:
        super().__init__(node_id, env, members, CommitOptions.from_dict(options, protocol, bugs), protocol)
        self.three_phase = three_phase
        self.coordinator_table = tables.COORDINATOR_3PC if three_phase else tables.COORDINATOR_2PC
        self.participant_table = tables.PARTICIPANT_3PC if three_phase else tables.PARTICIPANT_2PC
        self.ctx: dict[str, CTxn] = {}
        self.backups: dict[str, Backup] = {}
        self._open_log()

    # ------------------------------------------------------------------ recovery
    def _round_known(self, txn: str) -> int:
        backup = self.backups.get(txn)
        return max(super()._round_known(txn), backup.round.number if backup is not None else 0)

    def _replay(self, records: list[Any]) -> None:
        for record in records:
            if replay_participant_record(record, self.ptx, self.store):
                continue
            kind, txn = record[0], record[1]
            if kind == "decided":
                c = CTxn(txn, tuple(record[3]))
                c.state = COMMITTED
                c.succeeded = record[2]
                self.ctx[txn] = c
            elif kind == "ended" and txn in self.ctx:  # else: decided never written (a bug knob)
                self.ctx[txn].state = "ended"

    def _on_start(self) -> None:
        self.env.record(
            "role", role="participant" if self.is_participant else "coordinator", epoch=self.epoch
        )
        for c in list(self.ctx.values()):
            self._coordinator(c, "recover")
        for p in list(self.ptx.values()):
            if p.state in (UNCERTAIN, PRECOMMITTED):
                p.since = self.env.now()
                self._participant(p, "recover")

    # ------------------------------------------------------------------ inputs
    def on_request(self, request: ClientRequest) -> None:
        if self._refuse(request):
            return
        key = (request.client_id, request.seq)
        known = self.clients.get(key)
        if known is not None:
            c = self.ctx.get(known)
            if c is not None and c.state in ("collecting", "precommitting"):
                return  # a retry of a transaction under way: its answer comes
            if c is not None and c.state in (COMMITTED, "ended"):
                self._answer(
                    key, True, result={"succeeded": c.succeeded, "responses": c.responses, "txn": c.txn}
                )
                return
        self.begin(txns.normalize(request.op.value), key)

    def begin(self, body: dict[str, Any], client: tuple[str, int] | None = None) -> str:
        """Start a transaction (``body`` as txn.normalize makes it); returns its id.
        Public for scripted tests: ``call n1 begin ...`` in transcripts."""
        txn = self._new_txn_id()
        parts = txns.split(body, self.participants)
        c = CTxn(txn, tuple(parts))
        c.parts = parts
        c.body = body
        c.client = client
        c.started = self.env.now()
        self.ctx[txn] = c
        if client is not None:
            self.clients[client] = txn
        self.env.record("begin", txn=txn, participants=",".join(parts))
        self._coordinator(c, "begin")
        self._drain()
        return txn

    def _on_timer(self, key: str) -> None:
        kind, _, txn = key.partition("/")
        if kind == "c":
            c = self.ctx.get(txn)
            if c is not None:
                self._coordinator(c, "timeout")
        elif kind == "p":
            p = self.ptx.get(txn)
            if p is not None:
                self._participant(p, "timeout")
        elif kind == "t":
            backup = self.backups.get(txn)
            p = self.ptx.get(txn)
            if backup is not None and p is not None:
                if backup.state == "collecting":
                    self._termination(p, backup, self._termination_event(p, backup))
                else:
                    self._termination(p, backup, "timeout")
        elif kind == "log":
            records = self.deferred.pop(txn, [])
            if records:
                self.env.storage.log_append(records)

    # ------------------------------------------------------------------ messages
    def _on_prepare(self, src: str, msg: Prepare) -> None:
        if not self.is_participant:
            return
        if not txns.well_formed_part(msg.part):
            self.malformed += 1
            return
        p = self.ptx.get(msg.txn)
        if p is None:
            p = PTxn(msg.txn, msg.coordinator, tuple(msg.participants), msg.part)
            self.ptx[msg.txn] = p
            conflict = self.store.conflict(msg.txn, msg.part.keys())
            if conflict is not None:
                self._participant(p, "prepare-refused", reason=f"{conflict} locked")
                return
            p.snapshot = self.store.snapshot(msg.part.keys())
            p.since = self.env.now()
        elif p.part is None:  # known only as aborted (an inquiry came first)
            p.part = msg.part
        self._participant(p, "prepare")

    def _on_vote(self, src: str, msg: Vote) -> None:
        if not txns.well_formed_snapshot(msg.snapshot):
            self.malformed += 1
            return
        c = self.ctx.get(msg.txn)
        if c is None:
            if coordinator_of(msg.txn) == self.id:
                self._coordinator(self._forgotten(msg.txn), "yes" if msg.yes else "no", dst=src)
            return
        if src not in c.parts and c.state in ("collecting",):
            return
        if not msg.yes:
            c.reason = f"{src} voted no ({msg.reason})" if msg.reason else f"{src} voted no"
            self._coordinator(c, "no", dst=src)
            return
        c.votes[src] = msg.snapshot
        self._coordinator(c, "all-yes" if len(c.votes) == len(c.participants) else "yes", dst=src)

    def _on_ack(self, src: str, msg: Ack) -> None:
        c = self.ctx.get(msg.txn)
        if c is not None:
            c.acks.add(src)
            self._coordinator(c, "all-acked" if c.acks >= set(c.participants) else "ack")

    def _on_precommit_ack(self, src: str, msg: PreCommitAck) -> None:
        if msg.round != ZERO_ROUND:
            backup = self.backups.get(msg.txn)
            p = self.ptx.get(msg.txn)
            if backup is not None and p is not None and backup.round == msg.round:
                backup.acks.add(src)
                self._termination(p, backup, "all-acked" if backup.acks >= set(p.participants) else "ack")
            return
        c = self.ctx.get(msg.txn)
        if c is not None:
            c.acks.add(src)
            self._coordinator(c, "all-acked" if c.acks >= set(c.participants) else "ack")

    def _on_decision_request(self, src: str, msg: DecisionRequest) -> None:
        if coordinator_of(msg.txn) == self.id:
            c = self.ctx.get(msg.txn)
            self._coordinator(c or self._forgotten(msg.txn), "inquiry", dst=src)
            return
        p = self.ptx.get(msg.txn)
        if p is None:
            if not self.is_participant:
                return
            p = self.ptx[msg.txn] = PTxn(msg.txn, coordinator_of(msg.txn), (), None)
        self._participant(p, "inquiry", dst=src)

    def _on_decision_reply(self, src: str, msg: DecisionReply) -> None:
        p = self.ptx.get(msg.txn)
        if p is None:
            return
        if msg.state == COMMITTED:
            p.succeeded = msg.succeeded
            self._participant(p, "commit")
        elif msg.state == ABORTED:
            self._participant(p, "abort")

    def _on_decision(self, src: str, msg: Commit | Abort | PreCommit) -> None:
        p = self.ptx.get(msg.txn)
        if p is None:
            if not self.is_participant:
                return
            p = self.ptx[msg.txn] = PTxn(msg.txn, coordinator_of(msg.txn), (), None)
        if msg.round < p.promised:
            return  # a coordinator of an older round: superseded
        if isinstance(msg, Commit):
            if p.state in (UNCERTAIN, PRECOMMITTED, UNKNOWN):
                p.succeeded = msg.succeeded
            self._participant(p, "commit", dst=src, rnd=msg.round)
        elif isinstance(msg, PreCommit):
            if p.state == UNCERTAIN:
                p.succeeded = msg.succeeded
            self._participant(p, "precommit", dst=src, rnd=msg.round)
        else:
            self._participant(p, "abort", dst=src, rnd=msg.round)

    def _on_state_request(self, src: str, msg: StateRequest) -> None:
        p = self.ptx.get(msg.txn)
        if p is None:
            if not self.is_participant:
                return
            p = self.ptx[msg.txn] = PTxn(msg.txn, coordinator_of(msg.txn), (), None)
        if msg.round < p.promised:
            return
        p.promised = msg.round
        backup = self.backups.get(msg.txn)
        if backup is not None and backup.round < msg.round:
            self._termination(p, backup, "superseded")
        self._participant(p, "state-request", dst=src, rnd=msg.round)

    def _on_state_report(self, src: str, msg: StateReport) -> None:
        backup = self.backups.get(msg.txn)
        p = self.ptx.get(msg.txn)
        if backup is None or p is None or backup.round != msg.round or backup.state != "collecting":
            return
        backup.reports[src] = (msg.state, msg.succeeded)
        if set(backup.reports) >= set(p.participants):
            self._termination(p, backup, self._termination_event(p, backup))
        else:
            self._termination(p, backup, "report")

    _handlers: dict[type, Any] = {
        Prepare: _on_prepare,
        Vote: _on_vote,
        Ack: _on_ack,
        PreCommitAck: _on_precommit_ack,
        DecisionRequest: _on_decision_request,
        DecisionReply: _on_decision_reply,
        Commit: _on_decision,
        Abort: _on_decision,
        PreCommit: _on_decision,
        StateRequest: _on_state_request,
        StateReport: _on_state_report,
    }

    # ------------------------------------------------------------------ the tables
    def _coordinator(self, c: CTxn, event: str, dst: str = "") -> None:
        tr = tables.step(self.coordinator_table, c.state, event)
        if tr is None:
            return
        before = c.state
        if event == "all-yes":
            view = txns.view_of([c.votes[p] for p in sorted(c.votes)])
            c.succeeded, c.responses = txns.outcome(c.body, view)
        if event == "timeout" and before == "collecting":
            missing = sorted(set(c.participants) - set(c.votes))
            c.reason = f"no vote from {','.join(missing)} in time"
        c.state = tr.next
        env = self.env
        for action in tr.actions:
            if action == "send-prepare":
                for p, part in c.parts.items():
                    self._send(
                        p, Prepare(txn=c.txn, coordinator=self.id, participants=c.participants, part=part)
                    )
            elif action == "arm-timer":
                delay = {
                    "collecting": self.opts.vote_timeout,
                    "precommitting": self.opts.ack_timeout,
                }.get(c.state, self.opts.resend_interval)
                env.set_timer(f"c/{c.txn}", delay)
            elif action == "log-commit":
                self._log(c.txn, ("decided", c.txn, c.succeeded, c.participants), "decide-before-log")
            elif action == "send-commit":
                for p in c.participants:
                    if p not in c.acks or self.three_phase:
                        self._send(p, Commit(txn=c.txn, succeeded=c.succeeded))
            elif action == "send-precommit":
                for p in c.participants:
                    self._send(p, PreCommit(txn=c.txn, succeeded=c.succeeded))
            elif action == "send-abort":
                for p in c.participants:
                    self._send(p, Abort(txn=c.txn))
            elif action == "answer-client":
                self._answer_txn(c)
            elif action == "log-end":
                env.storage.log_append([("ended", c.txn)])
            elif action == "reply-commit":
                self._send(dst, DecisionReply(txn=c.txn, state=COMMITTED, succeeded=c.succeeded))
            elif action == "reply-abort":
                if isinstance(dst, str) and dst:
                    self._send(dst, DecisionReply(txn=c.txn, state=ABORTED))
            else:  # pragma: no cover - a table names an action this role lacks
                raise AssertionError(f"unknown coordinator action {action!r}")
        if c.state != before and c.state in (COMMITTED, ABORTED):
            env.record("decide", txn=c.txn, outcome=c.state)
            self._notify(c.txn, c.state, "coordinator")
            if c.state == ABORTED:
                env.cancel_timer(f"c/{c.txn}")

    def _participant(
        self, p: PTxn, event: str, dst: str = "", reason: str = "", rnd: Round = ZERO_ROUND
    ) -> None:
        tr = tables.step(self.participant_table, p.state, event)
        if tr is None:
            return
        before = p.state
        p.state = tr.next
        env = self.env
        keys = p.part.keys() if p.part is not None else []
        for action in tr.actions:
            if action == "lock":
                self.store.lock(p.txn, keys)
            elif action == "log-prepared":
                record = ("prepared", p.txn, p.coordinator, p.participants, p.part, p.snapshot)
                self._log(p.txn, record, "vote-before-log")
            elif action == "send-yes":
                self._send(p.coordinator, Vote(txn=p.txn, yes=True, snapshot=p.snapshot))
            elif action == "send-no":
                self._send(p.coordinator, Vote(txn=p.txn, yes=False, reason=reason or "aborted"))
            elif action == "arm-timer":
                env.set_timer(f"p/{p.txn}", self.opts.decision_timeout)
            elif action == "log-commit":
                env.storage.log_append([("committed", p.txn, p.succeeded)])
            elif action == "log-precommitted":
                env.storage.log_append([("precommitted", p.txn, p.succeeded)])
            elif action == "log-abort":
                env.storage.log_append([("aborted", p.txn)])
            elif action == "apply":
                assert p.part is not None
                self.store.apply(p.part, p.succeeded)
            elif action == "unlock":
                self.store.unlock(p.txn, keys)
            elif action == "send-ack":
                self._send(dst or p.coordinator, Ack(txn=p.txn))
            elif action == "send-precommit-ack":
                self._send(dst or p.coordinator, PreCommitAck(txn=p.txn, round=rnd))
            elif action == "ask-everyone":
                if p.blocked_since is None:
                    p.blocked_since = env.now()
                    env.record("blocked", txn=p.txn, locks=",".join(self.store.held_by(p.txn)))
                for node in (p.coordinator, *p.participants):
                    if node != self.id:
                        self._send(node, DecisionRequest(txn=p.txn))
            elif action in ("reply-uncertain", "reply-commit", "reply-abort"):
                state = {"reply-uncertain": UNCERTAIN, "reply-commit": COMMITTED, "reply-abort": ABORTED}[
                    action
                ]
                self._send(dst, DecisionReply(txn=p.txn, state=state, succeeded=p.succeeded))
            elif action == "report":
                self._send(dst, StateReport(txn=p.txn, round=rnd, state=p.state, succeeded=p.succeeded))
            elif action == "start-termination":
                self._start_termination(p)
            elif action == "lost-vote":
                env.record("lost-vote", txn=p.txn)
            else:  # pragma: no cover
                raise AssertionError(f"unknown participant action {action!r}")
        if p.state != before and p.state in (COMMITTED, ABORTED):
            env.cancel_timer(f"p/{p.txn}")
            if p.state == COMMITTED:
                self.committed += 1
            else:
                self.aborted += 1
            if p.blocked_since is not None:
                self.blocked_seconds += env.now() - p.blocked_since
                self.blocked_count += 1
                p.blocked_since = None
            env.record("outcome", txn=p.txn, outcome=p.state)
            if p.state == COMMITTED and dst != self.id:
                # Message delays until a participant other than the coordinator learns.
                env.record("learned", slot=p.txn)
            self._notify(p.txn, p.state, "participant")
            backup = self.backups.pop(p.txn, None)
            if backup is not None:
                env.cancel_timer(f"t/{p.txn}")

    # ------------------------------------------------------------------ 3PC termination
    def _start_termination(self, p: PTxn) -> None:
        if p.blocked_since is None:
            p.blocked_since = self.env.now()
        round_ = Round(max(p.promised.number, 0) + 1, self.numbers[self.id])
        p.promised = round_
        backup = Backup(round_)
        self.backups[p.txn] = backup
        backup.reports[self.id] = (p.state, p.succeeded)
        self._termination(p, backup, "start")

    def _termination_event(self, p: PTxn, backup: Backup) -> str:
        backup.reports[self.id] = (p.state, p.succeeded)
        states = [backup.reports[n] for n in sorted(backup.reports)]
        for state, succeeded in states:
            if state == COMMITTED:
                backup.succeeded = succeeded
                return "saw-committed"
        if any(state in (ABORTED, UNKNOWN) for state, _ in states):
            return "saw-aborted"
        for state, succeeded in states:
            if state == PRECOMMITTED:
                backup.succeeded = succeeded
                return "saw-precommitted"
        if "3pc-commit-when-uncertain" in self.bugs:
            return "saw-committed"  # the bug: commits straight from all-uncertain
        return "all-uncertain"

    def _termination(self, p: PTxn, backup: Backup, event: str) -> None:
        tr = tables.step(tables.TERMINATION_3PC, backup.state, event)
        if tr is None:
            return
        backup.state = tr.next
        env = self.env
        others = [n for n in p.participants if n != self.id]
        for action in tr.actions:
            if action == "send-state-request":
                env.record("terminate", txn=p.txn, round=str(backup.round))
                for node in others:
                    self._send(node, StateRequest(txn=p.txn, round=backup.round))
            elif action == "arm-timer":
                delay = self.opts.report_timeout if backup.state == "collecting" else self.opts.ack_timeout
                env.set_timer(f"t/{p.txn}", delay)
            elif action == "log-commit":
                self._log(p.txn, ("decided", p.txn, backup.succeeded, p.participants), "decide-before-log")
            elif action == "send-commit":
                for node in p.participants:
                    self._send(node, Commit(txn=p.txn, succeeded=backup.succeeded, round=backup.round))
            elif action == "send-abort":
                for node in p.participants:
                    self._send(node, Abort(txn=p.txn, round=backup.round))
            elif action == "send-precommit":
                for node in p.participants:
                    self._send(node, PreCommit(txn=p.txn, succeeded=backup.succeeded, round=backup.round))
            else:  # pragma: no cover
                raise AssertionError(f"unknown termination action {action!r}")
        if backup.state in ("done", "idle"):
            if self.backups.get(p.txn) is backup:
                del self.backups[p.txn]
            env.cancel_timer(f"t/{p.txn}")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _forgotten(txn: str) -> CTxn:
        """A transaction this coordinator has no record of (never logged a commit)."""
        c = CTxn(txn, ())
        c.state = UNKNOWN
        return c

    def _log(self, txn: str, record: Any, bug: str) -> None:
        """Write ``record`` now, or, with the bug knob ``bug``, a moment later (so the
        message that depends on it leaves first)."""
        if bug in self.bugs:
            self.deferred.setdefault(txn, []).append(record)
            self.env.set_timer(f"log/{txn}", self.opts.lazy_log_delay)
        else:
            self.env.storage.log_append([record])

    def _notify(self, txn: str, outcome: str, role: str) -> None:
        if self.observer is not None:
            self.observer.outcome(self.id, txn, outcome, role)

    def _answer_txn(self, c: CTxn) -> None:
        if c.client is None:
            return
        if c.state == COMMITTED:
            self._answer(
                c.client, True, result={"succeeded": c.succeeded, "responses": c.responses, "txn": c.txn}
            )
        else:
            self._answer(c.client, False, error=f"aborted {c.txn}: {c.reason or 'a participant refused'}")

    # ------------------------------------------------------------------ status
    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role="participant" if self.is_participant else "coordinator",
            leader=None,
            generation_name="incarnation",
            generation=self.epoch,
            details={
                "in_doubt": self.in_doubt(),
                "blocked": self.blocked(),
                "locks": dict(sorted(self.store.locks.items())),
                "committed": self.committed,
                "aborted": self.aborted,
                "coordinating": sum(
                    1 for c in self.ctx.values() if c.state in ("collecting", "precommitting")
                ),
                "blocked_seconds": round(self.blocked_seconds, 6),
                "malformed": self.malformed,
            },
        )
