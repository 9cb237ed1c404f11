"""Raft's safety properties (Raft paper, figure 3), checked on every simulation step.

* election safety     - at most one leader per term;
* leader append-only  - a leader never overwrites or deletes entries in its log;
* log matching        - two entries with the same index and term hold the same command
                        and are preceded by the same entry (checked incrementally: every
                        appended (index, term) must agree with the first one ever seen);
* leader completeness - a leader holds every entry committed in an earlier term (a
                        leader of an older term that wins late, e.g. with the votes it
                        got before a long pause, need not hold what a newer term
                        committed: it steps down at the first message of that term);
* state machine safety- no two nodes commit or apply different entries at one index;
* commit rule         - a leader's commit index only ever moves to an entry of its own
                        term (§3.6.2; the rule figure 8 is about);
* stable commit       - when a leader commits an entry, no server lacking it could win
                        an election (so leader completeness cannot break later).  A
                        server rejoining after a disk loss neither votes nor campaigns,
                        so it is no candidate and no supporter here.

Plus two client-visible properties the simulator can check with global knowledge:
* read freshness      - a read reflects every entry committed anywhere before it was
                        invoked (a necessary condition of linearizability);
* acknowledged writes - a write answered ok is committed at the index it names.

And at the end of a run, after every fault was repaired: every member converged to the
same applied index and state.

The checker watches nodes through their ``observer`` hook; it never changes them.
"""

from __future__ import annotations

from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.check.common import check_acknowledged_write, check_converged, check_read_fresh
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.raft import SNAPSHOT_KEY, LogEntry, Snapshot

COVERED = object()  # "this index lies inside the server's snapshot"


class RaftChecker:
    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        # With vote-after-wipe a wiped server votes at once: it is a supporter like any.
        self.wiped_servers_vote = "vote-after-wipe" in bugs
        self.sim: Any = None
        self.leader_of_term: dict[int, str] = {}
        # (index, term) -> (term of index-1, entry): the first sighting of each entry.
        self.entries: dict[tuple[int, int], tuple[int | None, LogEntry]] = {}
        self.committed: dict[int, LogEntry] = {}
        # index -> the term of the node that committed it first (the committing leader's)
        self.commit_term: dict[int, int] = {}
        self.max_commit = 0
        # (global time, max commit index known anywhere) whenever it grew
        self.commit_times: list[float] = []
        self.commit_values: list[int] = []
        self.pending: list[InvariantViolation] = []
        self.watching = False  # True once after_step runs (check_every_step)

    # ------------------------------------------------------------------ sim hooks
    def after_step(self, sim: Any, node_id: str) -> None:
        # Runs after every step: a leader already known for its term is not checked again.
        self.sim = sim
        self.watching = True
        node = sim.nodes.get(node_id)
        if node is not None:
            if node.observer is not self:
                node.observer = self
            if node.role == "leader" and self.leader_of_term.get(node.term) != node.id:
                self._check_leader(node)
        if self.pending:
            violation = self.pending[0]
            self.pending = []
            raise violation

    def on_client_response(
        self, sim: Any, invoke_time: float, request: ClientRequest, response: ClientResponse
    ) -> None:
        self.sim = sim
        if not response.ok or not self.watching:
            return  # without per-step watching there is no commit record to compare with
        if request.op.is_read():  # any service's read kinds (kv: get, list)
            check_read_fresh(
                self.commit_times,
                self.commit_values,
                invoke_time,
                request,
                response,
                unit="index",
                reached="committed",
            )
            return
        entry = self.committed.get(response.index)
        check_acknowledged_write(entry.data if entry is not None else None, request, response, unit="index")

    def final(self, sim: Any) -> None:
        self.sim = sim
        live = [n for n in (sim.nodes.get(i) for i in sim.node_ids) if n is not None]
        if not live:
            return
        newest = max(live, key=lambda n: (n.term, n.commit_index))
        members = set(newest.config.members())
        states = {n.id: (n.last_applied, n.sm.digest()) for n in live if n.id in members}
        check_converged(states, what="applied index")

    # ------------------------------------------------------------------ node observer
    def on_append(self, node: Any, entries: Any) -> None:
        log = node.log
        for e in entries:
            prev_term = log.term_at(e.index - 1)
            key = (e.index, e.term)
            seen = self.entries.get(key)
            if seen is None:
                self.entries[key] = (prev_term, e)
                continue
            seen_prev, seen_entry = seen
            if (seen_entry is not e and seen_entry != e) or (
                seen_prev is not None and prev_term is not None and seen_prev != prev_term
            ):
                self._violate(
                    "log-matching",
                    f"{node.id} appended {e.summary()} after term {prev_term}; the entry "
                    f"first seen at {e.term}/{e.index} was {seen_entry.summary()} after "
                    f"term {seen_prev}",
                )

    def on_truncate(self, node: Any, index: int) -> None:
        if node.role == "leader":
            self._violate("leader-append-only", f"leader {node.id} of term {node.term} truncated at {index}")
        if index <= node.commit_index:
            self._violate(
                "state-machine-safety",
                f"{node.id} truncated its log at {index}, below its commit index {node.commit_index}",
            )

    def on_commit(self, node: Any, index: int) -> None:
        log = node.log
        for i in range(max(node.last_applied, log.offset) + 1, index + 1):
            entry = log.entry(i)
            known = self.committed.get(i)
            if known is None:
                self.committed[i] = entry
                self.commit_term[i] = node.term
            elif known is not entry and known != entry:
                self._violate(
                    "state-machine-safety",
                    f"{node.id} committed {entry.summary()} at index {i}, where "
                    f"{known.summary()} was committed before",
                )
        if node.role == "leader":
            if log.term_at(index) != node.term:
                self._violate(
                    "commit-rule",
                    f"leader {node.id} of term {node.term} advanced its commit index to "
                    f"{index}, an entry of term {log.term_at(index)}: only an entry of the "
                    "current term may be committed by counting replicas (§3.6.2)",
                )
            self._check_commit_is_stable(node, index)
        if index > self.max_commit:
            self.max_commit = index
            now = self.sim.now if self.sim is not None else 0.0
            self.commit_times.append(now)
            self.commit_values.append(index)

    def on_apply(self, node: Any, entry: LogEntry) -> None:
        known = self.committed.get(entry.index)
        if known is not None and known is not entry and known != entry:
            self._violate(
                "state-machine-safety",
                f"{node.id} applied {entry.summary()} at index {entry.index}, where "
                f"{known.summary()} was committed",
            )

    def on_restore(self, node: Any, snapshot: Snapshot) -> None:
        known = self.committed.get(snapshot.last_index)
        if known is not None and known.term != snapshot.last_term:
            self._violate(
                "state-machine-safety",
                f"{node.id} installed a snapshot ending at {snapshot.last_term}/"
                f"{snapshot.last_index}, where term {known.term} was committed",
            )

    # ------------------------------------------------------------------ helpers
    def _check_leader(self, node: Any) -> None:
        term = node.term
        holder = self.leader_of_term.get(term)
        if holder == node.id:
            return
        if holder is not None:
            self._violate("election-safety", f"{holder} and {node.id} both lead term {term}")
            return
        self.leader_of_term[term] = node.id
        log = node.log
        commit_term = self.commit_term
        for index, entry in self.committed.items():
            if index <= log.offset or commit_term[index] >= term:
                continue
            if log.term_at(index) != entry.term:
                self._violate(
                    "leader-completeness",
                    f"{node.id} leads term {term} without committed entry {entry.summary()}",
                )
                return

    def _check_commit_is_stable(self, leader: Any, index: int) -> None:
        """When a leader commits ``index``, no server lacking that entry may be able to
        win an election: otherwise a later leader could overwrite a committed entry.
        This is the lemma behind leader completeness (§3.6.3), checked the moment a
        commit happens instead of the moment it is lost."""
        sim = self.sim
        if sim is None:
            return
        term = leader.log.term_at(index)
        views = {i: _log_view(sim, i) for i in sim.node_ids if not self._rejoining(sim, i)}
        voters = leader.config.voters
        need = len(voters) // 2 + 1
        for candidate, (last_term, last_index, term_of) in views.items():
            held = term_of(index)
            # COVERED: compacted into a snapshot, which holds only committed entries.
            if candidate not in voters or held == term or held is COVERED:
                continue
            supporters = [
                v
                for v in voters
                if v in views
                and (last_term > views[v][0] or (last_term == views[v][0] and last_index >= views[v][1]))
            ]
            if len(supporters) >= need:
                self._violate(
                    "unsafe-commit",
                    f"{leader.id} (term {leader.term}) committed {term}/{index}, yet {candidate}, "
                    f"whose log ends at {last_term}/{last_index} without it, can win the votes of "
                    f"{','.join(supporters)}",
                )
                return

    def _rejoining(self, sim: Any, node_id: str) -> bool:
        """True while a server cannot vote because it lost its disk."""
        if self.wiped_servers_vote:
            return False
        node = sim.nodes.get(node_id)
        if node is not None:
            return bool(getattr(node, "rejoining", False))
        return bool(sim.storage_of(node_id).durable.get(REJOINING_KEY))

    def _violate(self, name: str, detail: str) -> None:
        self.pending.append(InvariantViolation(name, detail))


def _log_view(sim: Any, node_id: str) -> tuple[int, int, Any]:
    """(last term, last index, term_at) of a server's log: the live log, or for a crashed
    server the durable one it will restart with."""
    node = sim.nodes.get(node_id)
    if node is not None:
        log = node.log

        def live_term(index: int) -> Any:
            return COVERED if index <= log.offset else log.term_at(index)

        return log.last_term, log.last_index, live_term
    storage = sim.storage_of(node_id)
    records = storage.log_records()
    first = storage.log_first()
    snapshot = storage.get(SNAPSHOT_KEY)
    base_index = snapshot.last_index if snapshot else 0
    base_term = snapshot.last_term if snapshot else 0
    # Records hold first .. first+n-1, and the snapshot point stands for base_index (its
    # term wins where a record overlaps it); read by position, no per-call index map.
    end = first + len(records)  # one past the last record
    if records and end - 1 > base_index:
        last_index, last_term = end - 1, records[-1].term
    else:
        last_index, last_term = base_index, base_term

    def durable_term(index: int) -> Any:
        if index <= base_index:
            return COVERED
        return records[index - first].term if first <= index < end else None

    return last_term, last_index, durable_term
