"""Safety of atomic commit (2PC, 3PC, Paxos Commit), checked on every step.

* vote-not-durable      - a yes vote (2PC/3PC ``Vote``, Paxos Commit's ballot-0 ``Phase2a``
                          "prepared") leaves a participant only once its prepared record
                          is in the participant's durable storage;
* decision-not-durable  - a 2PC/3PC ``Commit`` leaves only once the sender's commit
                          decision is durable; a participant's ``Ack`` only once its
                          commit is; a Paxos Commit acceptor's ``Phase2b`` / ``Phase1b``
                          only once the vote / promise it reports is;
* atomicity             - never one participant committed while another aborted the same
                          transaction (TCommit.tla's TCConsistent), nor a client told the
                          opposite of what the participants did.  A coordinator's decision
                          counts once it is visible (a participant or the client learned
                          it): one that died with its decision unsynced decided nothing;
                          a participant's outcome counts once its disk holds what the
                          node had written when it reached it (a coordinator tells its
                          own participant at once: a crash before the sync erases both);
* validity              - a transaction commits only if every participant voted yes
                          (and none voted no);
* decision-changed      - a node never changes its outcome of a transaction, across its
                          crashes (decisions survive crashes);
* undecided-after-settle - at the end, after every fault was repaired and nodes ran for
                          the settle time, no participant is still in doubt.

3PC under faults other than crashes: 3PC is safe only when failures are crashes and
timeouts are a perfect failure detector.  Once the run has had a partition, a pause,
message loss or reordering (any fault but crash/restart, or a lossy network), a 3PC
atomicity failure is the protocol's documented behaviour (the seed's anomaly), not a
bug: the checker counts it (``anomalies``, reported by the monitor) instead of failing.
Validity and every durability rule still hold for 3PC under partitions, and are checked.

The checker sees messages as they leave (a simulator filter that never changes their
fate), outcomes through each node's ``observer`` hook, and durability by reading the
node's durable storage (the durable write-ahead log is a prefix of what it wrote).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.protocols.commit import (
    ACCEPTED_RECORD,
    COMMITTED_RECORD,
    DECIDED_RECORD,
    PREPARED_RECORD,
    PROMISED_RECORD,
)
from consensuskit.protocols.commit.messages import (
    ZERO_ROUND,
    Ack,
    Commit,
    DecisionRequest,
    Phase1a,
    Phase1b,
    Phase2a,
    Phase2b,
    Prepare,
    StateRequest,
    Vote,
)

CRASH_FAULTS = frozenset({"crash", "restart"})


class CommitChecker:
    def __init__(
        self, protocol: str, bugs: frozenset[str] = frozenset(), *, durability_rules: bool = True
    ) -> None:
        self.protocol = protocol
        # False: only the consequences count (atomicity, validity, ...): a test shows a
        # knob breaking durability is caught by what it leads to, too.
        self.durability_rules = durability_rules
        self.sim: Any = None
        self.filter_handle: int | None = None
        self.durable: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
        self.cursor: dict[str, int] = {}
        self.participants: dict[str, tuple[str, ...]] = {}
        self.yes: dict[str, set[str]] = defaultdict(set)
        self.no: dict[str, set[str]] = defaultdict(set)
        self.outcomes: dict[str, dict[str, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
        self.by_node: dict[tuple[str, str, str], str] = {}
        # Outcomes not durable yet: (node, its storage, log position written, txn, outcome, role).
        self.pending: list[tuple[str, Any, int, str, str, str]] = []
        self.anomalies: set[str] = set()
        self.errors: list[InvariantViolation] = []
        # Accounting (the monitor reports it): messages per transaction, and blocked
        # time: from a participant's first DecisionRequest / StateRequest / Phase1a about
        # a transaction (it stopped waiting and asked) to its outcome.
        self.messages: dict[str, int] = defaultdict(int)
        self.blocked_from: dict[tuple[str, str], float] = {}
        self.blocked: list[float] = []

    # ------------------------------------------------------------------ sim hooks
    def attach(self, sim: Any) -> None:
        """Start watching ``sim`` (at its first step, or earlier: the monitor's start)."""
        if self.sim is None:
            self.sim = sim
            self.filter_handle = sim.add_filter(self._see)
            for nid in sim.node_ids:
                self._attach(nid)

    def after_step(self, sim: Any, node_id: str) -> None:
        if self.sim is None:
            self.attach(sim)
        else:
            self._attach(node_id)
        if self.pending:
            self._settle()
        if self.errors:
            raise self.errors.pop(0)

    def _attach(self, node_id: str) -> None:
        node = self.sim.nodes.get(node_id)
        if node is not None and getattr(node, "observer", self) is None:
            node.observer = self

    def final(self, sim: Any) -> None:
        for node_id in sim.node_ids:
            node = sim.nodes.get(node_id)
            doubt = node.in_doubt() if node is not None and hasattr(node, "in_doubt") else []
            if doubt:
                raise InvariantViolation(
                    "undecided-after-settle",
                    f"{node_id} is still in doubt about {', '.join(doubt[:5])}"
                    + (f" (+{len(doubt) - 5})" if len(doubt) > 5 else ""),
                )

    # ------------------------------------------------------------------ durability
    def _durable(self, node_id: str) -> set[tuple[Any, ...]]:
        """What ``node_id``'s durable log holds, as (kind, txn[, rm, round]) keys."""
        log = self.sim.storage_of(node_id).durable
        last = log.log_last()
        seen = self.cursor.get(node_id, log.log_first() - 1)
        if last > seen:
            keys = self.durable[node_id]
            for record in log.log_records()[seen - log.log_first() + 1 :]:
                kind = record[0]
                if kind == ACCEPTED_RECORD:
                    keys.add((kind, record[1], record[2], record[3]))
                elif kind == PROMISED_RECORD:
                    keys.add((kind, record[1], record[2]))
                else:
                    keys.add((kind, record[1]))
            self.cursor[node_id] = last
        return self.durable[node_id]

    def received(self, node_id: str, src: str, msg: Any) -> None:
        """A node's observer hook: ``node_id`` got ``msg`` from ``src``.  The durability
        rules are checked here too (durable storage only grows, so what had to be
        durable when sent must be now): a filter added before the checker's (a
        transcript's "hold everything", a scenario's fault) can keep it from seeing a
        message leave, never from seeing it arrive."""
        try:
            self._see(src, node_id, msg, sent=False)
        except InvariantViolation as exc:
            self.errors.append(exc)

    def local(self, node_id: str, msg: Any) -> None:
        """A node's observer hook: it handles ``msg``, which it sent itself (it never
        left the node: no durability rule applies; a later message that leaves and
        depends on it is checked).  Votes and participant lists count."""
        self._see(node_id, node_id, msg, sent=False, durable=False)

    def _see(self, src: str, dst: str, msg: Any, sent: bool = True, durable: bool = True) -> None:
        """Every message as it leaves (a filter that never decides its fate), and again
        as it arrives (``received``)."""
        kind = type(msg)
        txn = getattr(msg, "txn", None)
        if txn is not None and sent:
            self.messages[txn] += 1
            if kind is DecisionRequest or kind is StateRequest or kind is Phase1a:
                self.blocked_from.setdefault((src, txn), self.sim.now)
        if kind is Prepare:
            self.participants.setdefault(msg.txn, tuple(msg.participants))
        elif kind is Vote:
            if msg.yes:
                what = f"{src}'s yes vote on {msg.txn}"
                self._require(src, (PREPARED_RECORD, msg.txn), "vote-not-durable", what, durable)
                self.yes[msg.txn].add(src)
            else:
                self.no[msg.txn].add(src)
        elif kind is Phase2a:
            if msg.ballot == ZERO_ROUND and msg.rm == src:
                if msg.value.prepared:
                    what = f"{src}'s prepared vote on {msg.txn}"
                    self._require(src, (PREPARED_RECORD, msg.txn), "vote-not-durable", what, durable)
                    self.yes[msg.txn].add(src)
                else:
                    self.no[msg.txn].add(src)
        elif kind is Commit:
            if self.protocol != "paxos-commit":
                what = f"{src}'s commit of {msg.txn}"
                self._require(src, (DECIDED_RECORD, msg.txn), "decision-not-durable", what, durable)
        elif kind is Ack:
            what = f"{src}'s ack of {msg.txn}"
            self._require(src, (COMMITTED_RECORD, msg.txn), "decision-not-durable", what, durable)
        elif kind is Phase2b:
            key = (ACCEPTED_RECORD, msg.txn, msg.rm, msg.ballot)
            what = f"acceptor {src}'s vote on {msg.txn}/{msg.rm}"
            self._require(src, key, "decision-not-durable", what, durable)
        elif kind is Phase1b:
            key = (PROMISED_RECORD, msg.txn, msg.ballot)
            self._require(src, key, "decision-not-durable", f"acceptor {src}'s promise on {msg.txn}", durable)
        return None

    def _require(self, node_id: str, key: tuple[Any, ...], name: str, what: str, durable: bool) -> None:
        if durable and self.durability_rules and key not in self._durable(node_id):
            raise InvariantViolation(name, f"{what} was sent before it was durable")

    # ------------------------------------------------------------------ outcomes
    def on_client_response(self, sim: Any, invoke: float, request: Any, response: Any) -> None:
        """What the client was told is an outcome too ("client" role)."""
        if self.sim is None:
            self.attach(sim)
        if response.ok and isinstance(response.result, dict) and isinstance(response.result.get("txn"), str):
            self.outcome(request.client_id, response.result["txn"], "committed", "client")
        elif not response.ok and (response.error or "").startswith("aborted "):
            self.outcome(request.client_id, response.error.split()[1].rstrip(":"), "aborted", "client")

    def outcome(self, node_id: str, txn: str, outcome: str, role: str) -> None:
        """A node's observer hook: ``node_id`` (as ``role``) reached ``outcome``.  A
        coordinator's own decision is not one (see the module docstring).  A node's
        outcome counts once its disk holds what the node had written when it reached it:
        before that, a crash erases it unseen (every output after it waits for that sync;
        a coordinator's decision reaches its own participant at once, not through the
        network)."""
        if role == "coordinator":
            return
        since = self.blocked_from.pop((node_id, txn), None)
        if since is not None and role == "participant":
            self.blocked.append(self.sim.now - since)  # it stopped waiting now, durable or not
        if role != "client" and self.sim is not None and node_id in self.sim.node_ids:
            storage = self.sim.storage_of(node_id)
            written = storage.working.log_last()
            if storage.durable.log_last() < written:
                self.pending.append((node_id, storage, written, txn, outcome, role))
                return
        self._counted_outcome(node_id, txn, outcome, role)

    def _settle(self) -> None:
        """Count the pending outcomes that became durable; forget those a crash erased."""
        pending, self.pending = self.pending, []
        for entry in pending:
            node_id, storage, written, txn, outcome, role = entry
            if self.sim.storage_of(node_id) is not storage:
                continue  # the node restarted from a disk without it
            if storage.durable.log_last() >= written:
                self._counted_outcome(node_id, txn, outcome, role)
            else:
                self.pending.append(entry)

    def _counted_outcome(self, node_id: str, txn: str, outcome: str, role: str) -> None:
        previous = self.by_node.get((node_id, txn, role))
        if previous is not None and previous != outcome:
            self._fail("decision-changed", f"{node_id} ({role}) had {previous} {txn}, now {outcome}")
            return
        self.by_node[(node_id, txn, role)] = outcome
        seen = self.outcomes[txn]
        seen[outcome].add((node_id, role))
        if outcome == "committed":
            self._validity(txn)
        if seen.get("committed") and seen.get("aborted"):
            committed = ",".join(sorted(f"{n}({r[0]})" for n, r in seen["committed"]))
            aborted = ",".join(sorted(f"{n}({r[0]})" for n, r in seen["aborted"]))
            if self.protocol == "3pc" and not self._crash_only():
                self.anomalies.add(txn)
            else:
                self._fail("atomicity", f"{txn} committed at {committed} and aborted at {aborted}")

    def _validity(self, txn: str) -> None:
        participants = self.participants.get(txn)
        if self.no.get(txn):
            self._fail("validity", f"{txn} committed though {','.join(sorted(self.no[txn]))} voted no")
        elif participants is not None:
            missing = sorted(set(participants) - self.yes[txn])
            if missing:
                self._fail("validity", f"{txn} committed without a yes vote from {','.join(missing)}")

    def _crash_only(self) -> bool:
        sim = self.sim
        if set(sim.faults) - CRASH_FAULTS:
            return False
        net = sim.config.network
        return not (net.loss or net.reorder)

    def _fail(self, name: str, detail: str) -> None:
        self.errors.append(InvariantViolation(name, detail))

    # ------------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        committed = [t for t, o in self.outcomes.items() if o.get("committed")]
        aborted = sum(1 for o in self.outcomes.values() if o.get("aborted") and not o.get("committed"))
        per_commit: dict[int, list[int]] = defaultdict(list)
        for t in committed:
            per_commit[len(self.participants.get(t, ()))].append(self.messages[t])
        still = [self.sim.now - t for t in self.blocked_from.values()] if self.sim is not None else []
        return {
            "transactions": len(self.outcomes),
            "committed": len(committed),
            "aborted": aborted,
            "partition_anomalies": len(self.anomalies),
            # By the number of participants of the transaction.
            "messages_per_commit": {str(n): _summary(sorted(v)) for n, v in sorted(per_commit.items())},
            "blocked": {
                "resolved": len(self.blocked),
                "still_blocked": len(still),
                "seconds_total": round(sum(self.blocked) + sum(still), 6),
                "seconds_max": round(max([*self.blocked, *still], default=0.0), 6),
            },
        }


def _summary(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "median": values[len(values) // 2],
        "mean": round(sum(values) / len(values), 3),
        "max": values[-1],
    }


# The paper's fault-free accounting for N participants and F tolerated faults (Gray and
# Lamport 2006, section 7), next to this implementation's: here the coordinator is a
# separate role (its messages to a co-located participant still count), acceptors send
# one Phase2b per participant (no bundling) and 2PC participants acknowledge commits.
def paper_accounting(protocol: str, n: int, f: int) -> dict[str, Any]:
    if protocol == "paxos-commit":
        return {
            "message_delays": 5,  # request, Prepare, Phase2a, Phase2b, Commit
            "write_delays": 2,  # prepared record, acceptor's vote
            "messages_this_implementation": 2 * n + 2 * n * (2 * f + 1),
        }
    if protocol == "3pc":
        return {"message_delays": 6, "write_delays": 2, "messages_this_implementation": 5 * n}
    return {
        "message_delays": 4,  # request, Prepare, Vote, Commit
        "write_delays": 2,  # prepared record, coordinator's decision
        "messages_this_implementation": 4 * n,  # Prepare, Vote, Commit, Ack
    }


class CommitMonitor:
    """The simulation's measurements (``SimResult.metrics``): the checker's accounting,
    the message delays until the first participant learned each commit, and the
    paper's figures to compare them with."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def start(self, sim: Any) -> None:
        if isinstance(sim.checker, CommitChecker) and sim.config.check_every_step:
            sim.checker.attach(sim)  # before the first request: every Prepare counted

    def report(self, sim: Any) -> dict[str, Any]:
        checker = sim.checker
        metrics: dict[str, Any] = checker.report() if isinstance(checker, CommitChecker) else {}
        metrics["message_delays_to_first_commit"] = dict(sim.message_delays)
        f = int(sim.options.get("faults", 1))
        metrics["accounting"] = {str(n): paper_accounting(self.config.protocol, n, f) for n in (2, 3)}
        return metrics
