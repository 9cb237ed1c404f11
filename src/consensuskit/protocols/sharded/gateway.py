"""The gateway: any host turns a client's request into a transaction over the shards
and drives it (CockroachDB's TxnCoordSender; Spanner's coordinator leader, here a plain
host because every decision it needs lives in a shard's log).

Rules this module owns:
  * requests: a kv ``Op`` (get, put, delete, cas) is a transaction on one key; a
    ``ServiceOp`` ``txn`` carries a transaction (txn.py); the bank's ``transfer``
    ({from, to, amount}) adds ``-amount`` and ``amount``; ``balances`` ({accounts}) reads
    them all.  ``list`` spans every shard and is refused;
  * one shard: one command (``read`` or ``one-phase``), answered when applied;
  * several shards, two-phase commit over replicated records: ``prepare`` at every
    shard (locks + snapshot, in the shard's log); all yes -> the outcome is computed from
    the snapshots (txn.outcome) and ``decide commit`` (with every shard's writes) goes to
    the coordinator shard; the client is answered once that record is applied, and
    ``resolve`` then applies the writes and releases the locks at every shard
    (asynchronously, as CockroachDB resolves intents).  A read-only transaction needs
    its record too: without one, a shard's leader that found it prepared too long could
    abort it and release its locks at one shard while another was still preparing, and
    the snapshots would no longer be of one moment (the bank sweep caught exactly that);
    a commit record proves every lock was still held when the last one was taken;
  * a no vote (a lock held by another transaction): the holder is pushed (node.py) and
    the attempt abandoned -- ``decide abort`` at the coordinator shard, then ``resolve
    abort`` at every shard -- and the transaction retried as the next attempt after a
    random backoff, at most ``attempts`` times; then ``conflict`` (definitely not
    applied).  A ``decide commit`` answered ``abort`` (a pusher got there first) is
    retried the same way;
  * exactly once, whichever hosts a client's retries reach: a transaction's id is
    ``<client>:<seq>`` on one shard (the shard remembers a one-phase answer by id) and
    ``<client>:<seq>#<attempt>`` across shards.  Every gateway running the request runs
    the same attempts, and moves past attempt k only once attempt k's record says abort,
    so at most one attempt ever commits; a gateway that finds its attempt committed
    (by the record, or a ``resolved commit`` vote) answers from the record, which holds
    the client's answer;
  * a client's retry of a request in flight on this host joins it; answers of the last
    ``ANSWER_CACHE`` requests are kept for retries that come after them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from consensuskit.core.client import ClientRequest, ClientResponse, Op, ServiceOp
from consensuskit.protocols.sharded import txn as txns
from consensuskit.protocols.sharded.shard import ABORT, COMMIT

if TYPE_CHECKING:
    from consensuskit.protocols.sharded.node import ShardedNode

ANSWER_CACHE = 4096
BACKOFF = (0.002, 0.02)
BLOCKED_MEMORY = 10.0  # seconds a blocker is remembered for the push_after clock


class TxnRun:
    """One client request across its attempts."""

    def __init__(self, gateway: Gateway, number: int, request: ClientRequest, body: Any, kind: str) -> None:
        self.gw = gateway
        self.host = gateway.host
        self.number = number
        self.request = request
        self.body = body
        self.kind = kind
        shards = self.host.shards
        self.parts = txns.split(body, shards)
        self.coord = txns.coordinator(body, shards)
        self.read_only = txns.is_read_only(body)
        self.attempt = 0
        self.txn = ""
        self.snapshots: dict[int, list[Any]] = {}
        self.failed = False
        self.done = False

    # ------------------------------------------------------------------ attempts
    def start(self) -> None:
        self.attempt += 1
        self.snapshots = {}
        self.failed = False
        base = f"{self.request.client_id}:{self.request.seq}"
        if len(self.parts) == 1:
            # One command, applied at most once (the shard keeps its answer by id): every
            # attempt, at any gateway, is the same transaction.
            self.txn = txn = base
            shard, keys = next(iter(self.parts.items()))
            if self.read_only:
                self.host.propose(shard, "read", txn, {"keys": keys}, lambda r: self._single(txn, shard, r))
            else:
                self.host.propose(
                    shard, "one-phase", txn, {"txn": self.body}, lambda r: self._single(txn, shard, r)
                )
            return
        self.txn = txn = f"{base}#{self.attempt}"
        for shard, keys in self.parts.items():
            value = {"keys": keys, "coord": self.coord, "read_only": self.read_only}
            self.host.propose(shard, "prepare", txn, value, self._on_vote(txn, shard))

    def _single(self, txn: str, shard: int, result: dict[str, Any]) -> None:
        if txn != self.txn or self.done:
            return
        vote = result.get("vote")
        if vote == "committed":
            self._finish_ok(result["succeeded"], result["responses"], result["snapshot"], self._wrote(result))
        elif vote == "yes":
            snapshot = result["snapshot"]
            succeeded, responses, _ = txns.outcome(self.body, txns.view_of([snapshot]))
            self._finish_ok(succeeded, responses, snapshot, [])
        else:
            self._conflict(shard, result)
            self._retry()

    def _wrote(self, result: dict[str, Any]) -> list[str]:
        _, _, writes = txns.outcome(self.body, txns.view_of([result["snapshot"]]))
        return sorted(writes)

    def _on_vote(self, txn: str, shard: int) -> Any:
        def vote(result: dict[str, Any]) -> None:
            if txn != self.txn or self.done or self.failed:
                return
            if result.get("vote") == "yes":
                self.snapshots[shard] = result["snapshot"]
                if len(self.snapshots) == len(self.parts):
                    self._all_prepared(txn)
                return
            self.failed = True
            self._conflict(shard, result)
            # Another gateway may run this very attempt (a client's retry): the record
            # says how it ended -- commit (answer from it) or abort (next attempt).
            self.host.propose(self.coord, "decide", txn, {"outcome": ABORT}, self._on_record(txn))

        return vote

    def _all_prepared(self, txn: str) -> None:
        snapshots = [self.snapshots[s] for s in self.parts]
        succeeded, responses, writes = txns.outcome(self.body, txns.view_of(snapshots))
        rows = [row for snapshot in snapshots for row in snapshot]
        result = _shape(self.kind, self.request.op, txn, succeeded, responses, rows, sorted(writes))
        value = {"outcome": COMMIT, "writes": writes, "result": result}
        self.host.propose(self.coord, "decide", txn, value, self._on_record(txn))

    def _on_record(self, txn: str) -> Any:
        """What to do with the transaction record of attempt ``txn``."""

        def recorded(record: dict[str, Any]) -> None:
            if txn != self.txn or self.done:
                return
            if record.get("outcome") == COMMIT:
                self._finish(ClientResponse(client_id=self.request.client_id, seq=self.request.seq, ok=True,
                                            result=record.get("result")))  # fmt: skip
                self._resolve_all(txn, COMMIT, record.get("writes") or {})
            else:  # aborted (by a conflict, or a pusher got there first)
                self._resolve_all(txn, ABORT, {})
                self._retry()

        return recorded

    def _resolve_all(self, txn: str, outcome: str, writes: dict[str, Any]) -> None:
        for shard, keys in self.parts.items():
            mine = {k: writes[k] for k in keys if k in writes}
            self.host.propose(shard, "resolve", txn, {"outcome": outcome, "writes": mine}, _ignore)

    def _conflict(self, shard: int, result: dict[str, Any]) -> None:
        holder = result.get("holder")
        if isinstance(holder, str):
            self.gw.blocked(holder, result.get("holder_coord"), shard)

    def _retry(self) -> None:
        if self.attempt >= self.host.opts.attempts:
            self._finish(
                ClientResponse(
                    client_id=self.request.client_id, seq=self.request.seq, ok=False, error="conflict"
                )
            )
            return
        low, high = BACKOFF
        delay = self.host.env.rng.uniform(low, high) * min(self.attempt, 5)
        self.host.env.set_timer(f"tx:retry:{self.number}", delay)

    # ------------------------------------------------------------------ answers
    def _finish_ok(self, succeeded: bool, responses: list[Any], rows: list[Any], wrote: list[str]) -> None:
        result = _shape(self.kind, self.request.op, self.txn, succeeded, responses, rows, wrote)
        self._finish(
            ClientResponse(client_id=self.request.client_id, seq=self.request.seq, ok=True, result=result)
        )

    def _finish(self, response: ClientResponse) -> None:
        self.done = True
        self.host.env.cancel_timer(f"tx:retry:{self.number}")
        self.gw.finished(self, response)


class Gateway:
    """Client requests in flight on one host (see the module rules)."""

    def __init__(self, host: ShardedNode) -> None:
        self.host = host
        self.runs: dict[tuple[str, int], TxnRun] = {}
        self.by_number: dict[int, TxnRun] = {}
        self.answers: OrderedDict[tuple[str, int], ClientResponse] = OrderedDict()
        self.counter = 0
        self.blocked_since: dict[str, float] = {}

    def on_request(self, request: ClientRequest) -> None:
        key = (request.client_id, request.seq)
        if key in self.runs:
            return  # a retry of a request in flight: answered when it finishes
        cached = self.answers.get(key)
        if cached is not None:
            self.host.env.deliver(cached)
            return
        try:
            kind, body = to_txn(request.op)
            txns.validate(body)
        except (ValueError, TypeError, KeyError) as exc:
            self.host.env.deliver(
                ClientResponse(
                    client_id=request.client_id, seq=request.seq, ok=False, error=f"bad request: {exc}"
                )
            )
            return
        self.counter += 1
        run = TxnRun(self, self.counter, request, body, kind)
        self.runs[key] = run
        self.by_number[run.number] = run
        run.start()

    def on_timer(self, key: str) -> None:
        if key.startswith("tx:retry:"):
            run = self.by_number.get(int(key[9:]))
            if run is not None and not run.done:
                run.start()

    def blocked(self, holder: str, coord: Any, shard: int) -> None:
        if type(coord) is not int:
            return
        now = self.host.env.now()
        if len(self.blocked_since) > 1024:
            self.blocked_since = {t: s for t, s in self.blocked_since.items() if now - s < BLOCKED_MEMORY}
        since = self.blocked_since.setdefault(holder, now)
        self.host.push(holder, coord, shard, abort=now - since >= self.host.opts.push_after)

    def finished(self, run: TxnRun, response: ClientResponse) -> None:
        key = (run.request.client_id, run.request.seq)
        self.runs.pop(key, None)
        self.by_number.pop(run.number, None)
        self.answers[key] = response
        while len(self.answers) > ANSWER_CACHE:
            self.answers.popitem(last=False)
        self.host.env.deliver(response)


def _ignore(_: dict[str, Any]) -> None:
    pass


# ---------------------------------------------------------------------- translation
def to_txn(op: Any) -> tuple[str, dict[str, Any]]:
    """(kind, transaction) of a client op; ValueError (one line) for what is not one."""
    if isinstance(op, Op):
        key = op.key
        if op.kind == "get":
            return "get", {"success": [("get", key, None)]}
        if op.kind == "put":
            return "put", {"success": [("put", key, op.value)]}
        if op.kind == "delete":
            return "delete", {"success": [("delete", key, None)]}
        if op.kind == "cas":
            target = (
                ("version", op.expected_version)
                if op.expected_version is not None
                else ("value", op.expected)
            )
            return "cas", {
                "compare": [(key, target[0], target[1])],
                "success": [("put", key, op.value)],
                "failure": [("get", key, None)],
            }
        raise ValueError(f"{op.kind} is not served by sharded-raft (valid: get, put, delete, cas, txn)")
    if isinstance(op, ServiceOp):
        value = op.value
        if op.kind == "txn":
            return "txn", value
        if op.kind == "transfer" and isinstance(value, dict):
            amount = value["amount"]
            if type(amount) is not int or value["from"] == value["to"]:
                raise ValueError("a transfer moves an integer amount between two accounts")
            return "transfer", {
                "success": [("add", str(value["from"]), -amount), ("add", str(value["to"]), amount)]
            }
        if op.kind == "balances" and isinstance(value, list | tuple) and value:
            return "balances", {"success": [("get", str(a), None) for a in value]}
        raise ValueError(f"{op.kind} is not served by sharded-raft (valid: txn, transfer, balances)")
    raise ValueError(f"not an operation: {type(op).__name__}")


def _shape(
    kind: str, op: Any, txn: str, succeeded: bool, responses: list[Any], rows: list[Any], wrote: list[str]
) -> Any:
    """The client's answer: a kv op's in the kv service's shape; a transaction's with what
    it read (each key's writer and that writer's predecessor) and wrote, for checkers."""
    if kind in ("get", "put", "delete", "cas"):
        first = responses[0] if responses else {}
        if kind == "get":
            got = first["get"]
            return {"value": got["value"], "version": got["version"]}
        if kind == "put":
            return {"version": first["put"]["version"]}
        if kind == "delete":
            return {"deleted": bool(first["delete"]["deleted"])}
        if succeeded:
            return {"swapped": True, "version": first["put"]["version"]}
        got = first["get"]
        return {"swapped": False, "value": got["value"], "version": got["version"]}
    reads = [[row[0], row[3], row[4]] for row in rows]
    result: dict[str, Any] = {
        "txn": txn,
        "succeeded": succeeded,
        "responses": responses,
        "reads": reads,
        "wrote": wrote,
    }
    if kind == "balances":
        result["balances"] = {r["get"]["key"]: r["get"]["value"] or 0 for r in responses}
    return result
