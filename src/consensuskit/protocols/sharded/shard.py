"""One shard's replicated state: its keys, its lock table, its prepared transactions and
the records of the transactions it coordinates.  Applied in log order by the shard's
Raft group, identically on every replica; nothing here reads a clock.

Commands (a ``ServiceOp`` whose ``key`` is the transaction id), all idempotent, so the
gateway may propose one again after a lost answer or a change of leader:
  * ``prepare`` {keys, coord, read_only}: every key free or already this transaction's
    -> lock them all, remember the transaction as prepared (with its coordinator shard)
    and vote yes with the snapshot of the keys; a key locked by another transaction ->
    vote no naming the holder and its coordinator (no waiting: no deadlock); a
    transaction already resolved here -> its outcome (a prepare arriving after a pusher
    aborted it must not lock anything again);
  * ``read`` {keys}: a single-shard read-only transaction, served at one point of the
    log without locks: the snapshot, or no when a key is locked;
  * ``one-phase`` {txn}: a transaction whose keys all live here: checks the locks,
    computes its outcome (txn.outcome), applies its writes and records it as committed,
    in one entry (one-phase commit);
  * ``decide`` {outcome, writes, result}: the transaction record at its coordinator shard.  The first
    decision wins and every later ``decide`` answers it: the gateway's commit and a
    pusher's abort race through the log and exactly one of them takes effect;
    ``outcome`` None only asks (the answer may be None: undecided);
  * ``resolve`` {outcome, writes}: apply the writes of a committed transaction (each
    key's new value and version, written by this transaction), release its locks and
    remember it as resolved.

Invariant: ``locks[k] == t`` iff ``t`` is prepared here and names ``k``.

Bug knob ``read-ignores-locks``: read-only transactions neither check nor take locks,
so a read can see one shard after a transfer's commit and another before it (the
serializability checker's proof that it can fail).
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest
from consensuskit.protocols.sharded import txn as txns

COMMIT = "commit"
ABORT = "abort"
OUTCOMES = (COMMIT, ABORT)
COMMANDS = ("prepare", "read", "one-phase", "decide", "resolve")


class ShardMachine:
    """Keys, locks, prepared transactions and transaction records of one shard."""

    def __init__(self, shard: int, bugs: frozenset[str] = frozenset()) -> None:
        self.shard = shard
        self.bugs = bugs
        # key -> [value, version, writer, prev]; a deleted key keeps its writers with
        # version 0 (an absent key), so a later reader still learns who deleted it.
        self.data: dict[str, list[Any]] = {}
        self.locks: dict[str, str] = {}
        # txn -> {"keys": [...], "coord": shard, "read_only": bool}
        self.prepared: dict[str, dict[str, Any]] = {}
        # The records this shard coordinates: txn -> {"outcome", "writes", "result"} (a
        # committed transaction's writes on every shard, so whoever resolves it can apply
        # them, and the client's answer, so any gateway running it can give it).
        self.decisions: dict[str, dict[str, Any]] = {}
        self.resolved: dict[str, str] = {}  # participant side: outcome once resolved
        self.one_phase: dict[str, Any] = {}  # one-phase answers, for idempotent retries

    # ------------------------------------------------------------------ StateMachine
    def apply(self, command: ClientRequest) -> Any:
        op = command.op
        handler = _HANDLERS.get(getattr(op, "kind", ""))
        value = getattr(op, "value", None)
        txn = getattr(op, "key", "")
        if handler is None or not isinstance(value, dict) or not isinstance(txn, str) or not txn:
            return {"error": f"not a shard command: {getattr(op, 'kind', op)!r}"}
        try:
            return handler(self, txn, value)
        except (KeyError, TypeError, ValueError) as exc:  # a malformed command changes nothing
            return {"error": f"malformed {op.kind}: {exc}"}

    def read(self, request: ClientRequest) -> Any:
        raise ValueError("a shard serves every command through its log")

    def snapshot(self) -> Any:
        return {
            "data": sorted([k, *v] for k, v in self.data.items()),
            "prepared": sorted([t, p] for t, p in self.prepared.items()),
            "decisions": sorted([t, d] for t, d in self.decisions.items()),
            "resolved": sorted(self.resolved.items()),
            "one_phase": sorted([t, r] for t, r in self.one_phase.items()),
        }

    def restore(self, snapshot: Any) -> None:
        self.data = {row[0]: list(row[1:]) for row in snapshot["data"]}
        self.prepared = {t: dict(p) for t, p in snapshot["prepared"]}
        self.locks = {k: t for t, p in self.prepared.items() for k in p["keys"]}
        self.decisions = {t: dict(d) for t, d in snapshot["decisions"]}
        self.resolved = dict(snapshot["resolved"])
        self.one_phase = dict(snapshot["one_phase"])

    def digest(self) -> Any:
        return tuple((k, v[0], v[1]) for k, v in sorted(self.data.items()))

    def __len__(self) -> int:
        return len(self.data) + len(self.prepared) + len(self.decisions) + len(self.resolved)

    # ------------------------------------------------------------------ reading
    def snapshot_of(self, keys: list[str]) -> list[list[Any]]:
        rows = []
        for key in keys:
            value, version, writer, prev = self.data.get(key, (None, 0, None, None))
            rows.append([key, value, version, writer, prev])
        return rows

    def _conflict(self, txn: str, keys: list[str]) -> dict[str, Any] | None:
        for key in keys:
            holder = self.locks.get(key)
            if holder is not None and holder != txn:
                return {"vote": "no", "holder": holder, "holder_coord": self.prepared[holder]["coord"]}
        return None

    # ------------------------------------------------------------------ commands
    def _prepare(self, txn: str, value: dict[str, Any]) -> Any:
        if txn in self.resolved:
            return {"vote": "resolved", "outcome": self.resolved[txn]}
        keys = [str(k) for k in value["keys"]]
        read_only = bool(value.get("read_only"))
        if read_only and "read-ignores-locks" in self.bugs:
            return {"vote": "yes", "snapshot": self.snapshot_of(keys)}
        if txn not in self.prepared:
            conflict = self._conflict(txn, keys)
            if conflict is not None:
                return conflict
            self.prepared[txn] = {"keys": keys, "coord": int(value["coord"]), "read_only": read_only}
            for key in keys:
                self.locks[key] = txn
        return {"vote": "yes", "snapshot": self.snapshot_of(self.prepared[txn]["keys"])}

    def _read(self, txn: str, value: dict[str, Any]) -> Any:
        keys = [str(k) for k in value["keys"]]
        if "read-ignores-locks" not in self.bugs:
            conflict = self._conflict(txn, keys)
            if conflict is not None:
                return conflict
        return {"vote": "yes", "snapshot": self.snapshot_of(keys)}

    def _one_phase(self, txn: str, value: dict[str, Any]) -> Any:
        done = self.one_phase.get(txn)
        if done is not None:
            return done
        body = value["txn"]
        keys = txns.keys_of(body)
        conflict = self._conflict(txn, keys)
        if conflict is not None:
            return conflict
        snapshot = self.snapshot_of(keys)
        succeeded, responses, writes = txns.outcome(body, txns.view_of([snapshot]))
        self._write(txn, writes)
        result = {"vote": "committed", "succeeded": succeeded, "responses": responses, "snapshot": snapshot}
        self.one_phase[txn] = result
        return result

    def _decide(self, txn: str, value: dict[str, Any]) -> Any:
        wanted = value.get("outcome")
        if wanted is not None and txn not in self.decisions:
            if wanted not in OUTCOMES:
                raise ValueError(f"outcome {wanted!r}")
            if wanted == COMMIT:
                record = {
                    "outcome": COMMIT,
                    "writes": dict(value.get("writes") or {}),
                    "result": value.get("result"),
                }
            else:
                record = {"outcome": ABORT, "writes": {}, "result": None}
            self.decisions[txn] = record
        return self.decisions.get(txn) or {"outcome": None}

    def _resolve(self, txn: str, value: dict[str, Any]) -> Any:
        outcome = value["outcome"]
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r}")
        if txn in self.resolved:
            return {"outcome": self.resolved[txn]}
        prepared = self.prepared.pop(txn, None)
        if prepared is not None:
            for key in prepared["keys"]:
                if self.locks.get(key) == txn:
                    del self.locks[key]
            if outcome == COMMIT:
                mine = set(prepared["keys"])
                self._write(txn, {k: w for k, w in (value.get("writes") or {}).items() if k in mine})
        self.resolved[txn] = outcome
        return {"outcome": outcome}

    def _write(self, txn: str, writes: dict[str, Any]) -> None:
        for key, new in sorted(writes.items()):
            prev = self.data.get(key, (None, 0, None, None))[2]
            if new is None:
                self.data[key] = [None, 0, txn, prev]
            else:
                self.data[key] = [new[0], int(new[1]), txn, prev]


_HANDLERS = {
    "prepare": ShardMachine._prepare,
    "read": ShardMachine._read,
    "one-phase": ShardMachine._one_phase,
    "decide": ShardMachine._decide,
    "resolve": ShardMachine._resolve,
}
