"""Paxos Commit (Gray and Lamport, "Consensus on Transaction Commit", 2006).

Each participant's vote is the value of its own Paxos instance, decided by 2F+1
acceptors (the first 2F+1 members), so no single coordinator's log holds the outcome:

  * the leader (the node the client asked) sends Prepare to the participants;
  * a participant logs its prepared record and sends Phase2a(ballot 0, prepared) to
    every acceptor (ballot 0 is its own: no phase 1 needed), or Phase2a(0, aborted);
  * an acceptor accepts a ballot not below the one it promised, logs the vote and sends
    Phase2b to the ballot's leader;
  * an instance is chosen when F+1 acceptors accepted it in one ballot; the transaction
    commits when every instance chose prepared and aborts as soon as one chose aborted.
    The leader logs nothing: the decision is already durable in the acceptors' votes,
    which is why Paxos Commit has no extra stable-storage write delay, only one extra
    message delay (participant -> acceptors -> leader instead of participant -> leader);
  * recovery: a participant left uncertain (the leader crashed, or its decision was
    lost) becomes a leader itself: phase 1 with a higher ballot over every instance of
    the transaction, then phase 2 with, per instance, the value accepted in the highest
    ballot reported, or aborted when none was.  It commits through F acceptor failures
    and a leader crash without blocking; with F = 0 the one acceptor is the
    coordinator's log and this is 2PC;
  * a participant told of an abort before the Prepare reached it remembers the
    transaction as aborted (presumed abort, as 2PC), so a late Prepare takes no locks.

Acceptors refuse a lower ballot with a Nack naming their promise, so a leader that
restarted (and forgot its ballots) climbs past it at once.  A message to itself is
handled inside the node (base.py's rule).

Durable records (one log, replayed at start): participant ``prepared`` / ``committed`` /
``aborted`` (as in 2PC) and acceptor ``promised`` / ``accepted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import ClientRequest
from consensuskit.core.env import Env
from consensuskit.protocols.commit import txn as txns
from consensuskit.protocols.commit.base import PTxn, TxnNode, known_ptxn, replay_participant_record
from consensuskit.protocols.commit.messages import (
    ABORTED,
    COMMITTED,
    UNCERTAIN,
    UNKNOWN,
    ZERO_ROUND,
    Abort,
    Commit,
    Nack,
    Phase1a,
    Phase1b,
    Phase2a,
    Phase2b,
    Prepare,
    RMValue,
    Round,
)
from consensuskit.protocols.commit.options import BUGS_PAXOS_COMMIT, CommitOptions

ABORT_VALUE = RMValue(prepared=False)


class LTxn:
    """A leader's view of one transaction (the original leader or a recovery one)."""

    __slots__ = (
        "ballot",
        "body",
        "chosen",
        "client",
        "participants",
        "parts",
        "promises",
        "snapshots",
        "state",
        "tally",
    )

    def __init__(self, ballot: Round, participants: tuple[str, ...]) -> None:
        self.ballot = ballot
        self.participants = participants
        self.parts: dict[str, Any] = {}
        self.body: dict[str, Any] = {}
        self.client: tuple[str, int] | None = None
        self.state = "collecting"  # collecting -> committed | aborted; "phase1" in recovery
        # rm -> ballot -> acceptor -> value
        self.tally: dict[str, dict[Round, dict[str, RMValue]]] = {}
        self.chosen: dict[str, RMValue] = {}
        self.promises: dict[str, tuple[tuple[str, Round, RMValue], ...]] = {}
        self.snapshots: dict[str, Any] = {}


class AcceptorTxn:
    __slots__ = ("accepted", "promised")

    def __init__(self) -> None:
        self.promised = ZERO_ROUND
        self.accepted: dict[str, tuple[Round, RMValue]] = {}


class PaxosCommitNode(TxnNode):
    DOUBT_STATES = (UNCERTAIN,)

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        protocol = "paxos-commit"
        opts = CommitOptions.from_dict(options, protocol, BUGS_PAXOS_COMMIT)
        super().__init__(node_id, env, members, opts, protocol)
        n_acceptors = 2 * self.opts.faults + 1
        if n_acceptors > len(self.members):
            raise ValueError(
                f"paxos-commit: faults={self.opts.faults} needs {n_acceptors} acceptors, "
                f"got {len(self.members)} nodes"
            )
        self.acceptors = self.members[:n_acceptors]
        self.quorum = self.opts.faults + 1
        self.is_acceptor = node_id in self.acceptors
        self.leading: dict[str, LTxn] = {}
        self.acc: dict[str, AcceptorTxn] = {}
        self.seen: dict[str, Round] = {}  # the highest ballot a Nack reported, per txn
        self.recoveries = 0
        self._open_log()

    def _round_known(self, txn: str) -> int:
        acceptor, leader = self.acc.get(txn), self.leading.get(txn)
        return max(
            super()._round_known(txn),
            acceptor.promised.number if acceptor is not None else 0,
            leader.ballot.number if leader is not None else 0,
        )

    def _replay(self, records: list[Any]) -> None:
        for record in records:
            if replay_participant_record(record, self.ptx, self.store):
                continue
            kind, txn = record[0], record[1]
            if kind == "promised":
                self.acc.setdefault(txn, AcceptorTxn()).promised = record[2]
            elif kind == "accepted":
                a = self.acc.setdefault(txn, AcceptorTxn())
                _, _, rm, ballot, value = record
                a.accepted[rm] = (ballot, value)
                a.promised = max(a.promised, ballot)

    def _on_start(self) -> None:
        roles = [r for r, on in (("participant", self.is_participant), ("acceptor", self.is_acceptor)) if on]
        self.env.record("role", role="+".join(roles) or "leader", epoch=self.epoch)
        for p in self.ptx.values():
            if p.state == UNCERTAIN:
                p.since = self.env.now()
                self.env.set_timer(f"p/{p.txn}", self.opts.decision_timeout)

    # ------------------------------------------------------------------ client
    def on_request(self, request: ClientRequest) -> None:
        if self._refuse(request):
            return
        key = (request.client_id, request.seq)
        known = self.clients.get(key)
        if known is not None:
            lead = self.leading.get(known)
            if lead is not None and lead.state != ABORTED:
                return  # under way (or answered: the answer was sent when decided)
        self.begin(txns.normalize(request.op.value), key)

    def begin(self, body: dict[str, Any], client: tuple[str, int] | None = None) -> str:
        txn = self._new_txn_id()
        parts = txns.split(body, self.participants)
        lead = LTxn(ZERO_ROUND, tuple(parts))
        lead.parts = parts
        lead.body = body
        lead.client = client
        self.leading[txn] = lead
        if client is not None:
            self.clients[client] = txn
        self.env.record("begin", txn=txn, participants=",".join(parts))
        for rm, part in parts.items():
            self._send(rm, Prepare(txn=txn, coordinator=self.id, participants=lead.participants, part=part))
        self.env.set_timer(f"c/{txn}", self.opts.vote_timeout)
        self._drain()
        return txn

    # ------------------------------------------------------------------ inputs
    def _on_timer(self, key: str) -> None:
        kind, _, txn = key.partition("/")
        if kind == "c":
            lead = self.leading.get(txn)
            if lead is not None and lead.state in ("collecting", "phase1"):
                self._recover(txn, lead.participants)
        elif kind == "p":
            p = self.ptx.get(txn)
            if p is not None and p.state == UNCERTAIN:
                if p.blocked_since is None:
                    p.blocked_since = self.env.now()
                lead = self.leading.get(txn)
                if lead is not None and lead.state in (COMMITTED, ABORTED):
                    self._send_decision(txn, lead)  # this node decided; a copy was lost
                else:
                    self._recover(txn, p.participants)
                # Back off a random part of the timeout: two recovering participants
                # rarely duel twice.
                self.env.set_timer(key, self.opts.decision_timeout * (1 + self.env.rng.random()))
        elif kind == "log":
            records = self.deferred.pop(txn, [])
            if records:
                self.env.storage.log_append(records)

    # -- participant (resource manager)
    def _on_prepare(self, src: str, msg: Prepare) -> None:
        if not self.is_participant or msg.txn in self.ptx:
            return
        if not txns.well_formed_part(msg.part):
            self.malformed += 1
            return
        p = PTxn(msg.txn, msg.coordinator, tuple(msg.participants), msg.part)
        self.ptx[msg.txn] = p
        keys = msg.part.keys()
        conflict = self.store.conflict(msg.txn, keys)
        if conflict is not None:
            p.state = ABORTED
            self._outcome(p)
            self._phase2a_all(msg.txn, self.id, ZERO_ROUND, ABORT_VALUE, msg.coordinator)
            return
        self.store.lock(msg.txn, keys)
        p.snapshot = self.store.snapshot(keys)
        p.state = UNCERTAIN
        p.since = self.env.now()
        record = ("prepared", msg.txn, msg.coordinator, p.participants, msg.part, p.snapshot)
        if "vote-before-log" in self.bugs:
            self.deferred.setdefault(msg.txn, []).append(record)
            self.env.set_timer(f"log/{msg.txn}", self.opts.lazy_log_delay)
        else:
            self.env.storage.log_append([record])
        view = {k: (v, ver) for k, v, ver in p.snapshot if ver}
        value = RMValue(prepared=True, snapshot=p.snapshot, holds=txns.holds(msg.part.compare, view))
        self._phase2a_all(msg.txn, self.id, ZERO_ROUND, value, msg.coordinator)
        self.env.set_timer(f"p/{msg.txn}", self.opts.decision_timeout)

    def _on_commit(self, src: str, msg: Commit) -> None:
        p = self.ptx.get(msg.txn)
        if p is None:
            if not self.is_participant:
                return
            self.env.record("lost-vote", txn=msg.txn)  # a commit for a vote this node lost
            self._abort_unknown(msg.txn)
            return
        if p.state != UNCERTAIN:
            return
        p.state = COMMITTED
        p.succeeded = msg.succeeded
        self.env.storage.log_append([("committed", p.txn, p.succeeded)])
        assert p.part is not None
        self.store.apply(p.part, p.succeeded)
        self.store.unlock(p.txn, p.part.keys())
        self._outcome(p, src)

    def _on_abort(self, src: str, msg: Abort) -> None:
        p = self.ptx.get(msg.txn)
        if p is None:
            if not self.is_participant:
                return
            # The abort of a transaction whose Prepare never arrived (its leader died
            # first), as 2PC's ("unknown", "abort").
            self._abort_unknown(msg.txn)
            return
        if p.state != UNCERTAIN:
            return
        p.state = ABORTED
        self.env.storage.log_append([("aborted", p.txn)])
        if p.part is not None:
            self.store.unlock(p.txn, p.part.keys())
        self._outcome(p)

    def _abort_unknown(self, txn: str) -> None:
        """A decision for a transaction this participant never prepared: it ends aborted,
        with nothing to apply or unlock, and is remembered, so a Prepare still in the
        network cannot take its locks.  Not logged: presumed abort covers a restart."""
        p = known_ptxn(self.ptx, txn)
        p.state = ABORTED
        self._outcome(p)

    # -- acceptor
    def _on_phase2a(self, src: str, msg: Phase2a) -> None:
        if not self.is_acceptor:
            return
        if not txns.well_formed_snapshot(msg.value.snapshot):
            self.malformed += 1
            return
        a = self.acc.setdefault(msg.txn, AcceptorTxn())
        if msg.ballot < a.promised:
            self._send(msg.leader, Nack(txn=msg.txn, ballot=msg.ballot, promised=a.promised))
            return
        a.promised = msg.ballot
        a.accepted[msg.rm] = (msg.ballot, msg.value)
        self.env.storage.log_append([("accepted", msg.txn, msg.rm, msg.ballot, msg.value)])
        self._send(msg.leader, Phase2b(txn=msg.txn, rm=msg.rm, ballot=msg.ballot, value=msg.value))

    def _on_phase1a(self, src: str, msg: Phase1a) -> None:
        if not self.is_acceptor:
            return
        a = self.acc.setdefault(msg.txn, AcceptorTxn())
        if msg.ballot <= a.promised:
            self._send(msg.leader, Nack(txn=msg.txn, ballot=msg.ballot, promised=a.promised))
            return
        a.promised = msg.ballot
        self.env.storage.log_append([("promised", msg.txn, msg.ballot)])
        accepted = tuple((rm, b, v) for rm, (b, v) in sorted(a.accepted.items()))
        self._send(msg.leader, Phase1b(txn=msg.txn, ballot=msg.ballot, accepted=accepted))

    # -- leader
    def _on_phase2b(self, src: str, msg: Phase2b) -> None:
        lead = self.leading.get(msg.txn)
        if lead is None or lead.state not in ("collecting", "phase1") or msg.rm in lead.chosen:
            return
        votes = lead.tally.setdefault(msg.rm, {}).setdefault(msg.ballot, {})
        votes[src] = msg.value
        if len(votes) < self.quorum:
            return
        lead.chosen[msg.rm] = msg.value
        self.env.record("chosen", txn=msg.txn, rm=msg.rm, value=msg.value.summary())
        if not msg.value.prepared:
            self._decide(msg.txn, lead, commit=False)
        elif len(lead.chosen) == len(lead.participants):
            self._decide(msg.txn, lead, commit=True)

    def _on_phase1b(self, src: str, msg: Phase1b) -> None:
        lead = self.leading.get(msg.txn)
        if lead is None or lead.state != "phase1" or msg.ballot != lead.ballot:
            return
        lead.promises[src] = msg.accepted
        if len(lead.promises) != self.quorum:
            return
        lead.state = "collecting"
        best: dict[str, tuple[Round, RMValue]] = {}
        for accepted in lead.promises.values():
            for rm, ballot, value in accepted:
                if rm not in best or best[rm][0] < ballot:
                    best[rm] = (ballot, value)
        for rm in lead.participants:
            value = best[rm][1] if rm in best else ABORT_VALUE
            self._phase2a_all(msg.txn, rm, lead.ballot, value, self.id)

    def _on_nack(self, src: str, msg: Nack) -> None:
        seen = self.seen.get(msg.txn)
        if seen is None or seen < msg.promised:
            self.seen[msg.txn] = msg.promised

    _handlers: dict[type, Any] = {
        Nack: _on_nack,
        Prepare: _on_prepare,
        Commit: _on_commit,
        Abort: _on_abort,
        Phase2a: _on_phase2a,
        Phase2b: _on_phase2b,
        Phase1a: _on_phase1a,
        Phase1b: _on_phase1b,
    }

    # ------------------------------------------------------------------ helpers
    def _phase2a_all(self, txn: str, rm: str, ballot: Round, value: RMValue, leader: str) -> None:
        for acceptor in self.acceptors:
            self._send(acceptor, Phase2a(txn=txn, rm=rm, ballot=ballot, value=value, leader=leader))

    def _recover(self, txn: str, participants: tuple[str, ...]) -> None:
        """Lead every instance of ``txn`` in a ballot above any this node saw."""
        old = self.leading.get(txn)
        top = old.ballot.number if old is not None else 0
        a = self.acc.get(txn)
        if a is not None:
            top = max(top, a.promised.number)
        if txn in self.seen:
            top = max(top, self.seen[txn].number)
        lead = LTxn(Round(top + 1, self.numbers[self.id]), participants)
        if old is not None:
            lead.parts, lead.body, lead.client = old.parts, old.body, old.client
        lead.state = "phase1"
        self.leading[txn] = lead
        self.recoveries += 1
        self.env.record("recover", txn=txn, ballot=str(lead.ballot))
        for acceptor in self.acceptors:
            self._send(
                acceptor, Phase1a(txn=txn, ballot=lead.ballot, participants=participants, leader=self.id)
            )
        self.env.set_timer(f"c/{txn}", self.opts.decision_timeout * (1 + self.env.rng.random()))

    def _decide(self, txn: str, lead: LTxn, commit: bool) -> None:
        lead.state = COMMITTED if commit else ABORTED
        self.env.cancel_timer(f"c/{txn}")
        succeeded = all(v.holds for v in lead.chosen.values()) if commit else False
        self.env.record("decide", txn=txn, outcome=lead.state)
        if self.observer is not None:
            self.observer.outcome(self.id, txn, lead.state, "coordinator")
        self._send_decision(txn, lead)
        if lead.client is None:
            return
        if commit:
            view = txns.view_of([lead.chosen[rm].snapshot for rm in sorted(lead.chosen)])
            ops = lead.body.get("success" if succeeded else "failure", ())
            responses = txns.run_ops(ops, dict(view))
            self._answer(
                lead.client, True, result={"succeeded": succeeded, "responses": responses, "txn": txn}
            )
        else:
            refused = sorted(rm for rm, v in lead.chosen.items() if not v.prepared)
            why = f"{','.join(refused)} refused" if refused else "no decision in time"
            self._answer(lead.client, False, error=f"aborted {txn}: {why}")

    def _send_decision(self, txn: str, lead: LTxn) -> None:
        succeeded = all(v.holds for v in lead.chosen.values())
        for rm in lead.participants:
            if lead.state == COMMITTED:
                self._send(rm, Commit(txn=txn, succeeded=succeeded))
            else:
                self._send(rm, Abort(txn=txn))

    def _outcome(self, p: PTxn, src: str = "") -> None:
        self.env.cancel_timer(f"p/{p.txn}")
        lead = self.leading.get(p.txn)
        if lead is not None and lead.client is None and lead.state in ("collecting", "phase1"):
            # A recovery this participant started is moot: it knows the outcome.
            lead.state = p.state
            self.env.cancel_timer(f"c/{p.txn}")
        if p.state == COMMITTED:
            self.committed += 1
        else:
            self.aborted += 1
        if p.blocked_since is not None:
            self.blocked_seconds += self.env.now() - p.blocked_since
            self.blocked_count += 1
            p.blocked_since = None
        self.env.record("outcome", txn=p.txn, outcome=p.state)
        if p.state == COMMITTED and src != self.id:
            # Message delays until a participant other than the leader learns.
            self.env.record("learned", slot=p.txn)
        if self.observer is not None:
            self.observer.outcome(self.id, p.txn, p.state, "participant")

    # ------------------------------------------------------------------ status
    def node_status(self) -> NodeStatus:
        roles = [r for r, on in (("participant", self.is_participant), ("acceptor", self.is_acceptor)) if on]
        return NodeStatus(
            id=self.id,
            role="+".join(roles) or "leader",
            leader=None,
            generation_name="incarnation",
            generation=self.epoch,
            details={
                "in_doubt": self.in_doubt(),
                "blocked": self.blocked(),
                "locks": dict(sorted(self.store.locks.items())),
                "committed": self.committed,
                "aborted": self.aborted,
                "recoveries": self.recoveries,
                "blocked_seconds": round(self.blocked_seconds, 6),
                "malformed": self.malformed,
            },
        )


__all__ = ["UNKNOWN", "PaxosCommitNode"]
