"""What every atomic-commit node shares, whatever its protocol (2PC and 3PC in node.py,
Paxos Commit in paxos_commit.py): the plumbing around the protocol's handlers.

Rules this module owns:
  * a message to itself never leaves the node: it is handled right after the input that
    sent it (a server's transport has no link to its own node), after every input;
  * each start is a new incarnation (``EPOCH_KEY``, written before the node does anything),
    so transaction ids (``n1.<incarnation>.<counter>``) never repeat across restarts;
  * durable state is one log of records, replayed by the protocol's ``_replay`` when the
    node is built (``_open_log``); a participant's records (prepared, precommitted,
    committed, aborted) mean the same in every protocol (``replay_participant_record``);
  * a client is answered through ``env.deliver``; a transaction that is not a ``txn``
    operation, or not a valid one, is refused at once (``_refuse``);
  * what a checker needs it gets through ``observer``: ``received(node, src, msg)`` for
    each message from the network and ``local(node, msg)`` for each it sent itself;
  * a peer's message that is malformed past what the codec checks (``malformed``) is
    dropped, counted and recorded as ignored before any handler sees it: a round beyond
    ``MAX_ROUND`` or more than a step above the greatest this node knows for the
    transaction (protocols/common/number_bounds.py), a Prepare whose coordinator is not
    the member its transaction id names, participants that are not participants, a
    promise's accepted values or a vote value's snapshot of the wrong shape.  The codec
    checks declared types (a ``tuple[str, ...]``'s items too), so what is checked here is
    the meaning, and the inside of an ``Any``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.protocols.commit import coordinator_of
from consensuskit.protocols.commit import txn as txns
from consensuskit.protocols.commit.messages import (
    ABORTED,
    COMMITTED,
    PRECOMMITTED,
    UNCERTAIN,
    UNKNOWN,
    ZERO_ROUND,
    Phase1a,
    Phase1b,
    Prepare,
    RMValue,
    Round,
    TxnPart,
    node_numbers,
)
from consensuskit.protocols.commit.options import CommitOptions
from consensuskit.protocols.commit.store import Store
from consensuskit.protocols.common.number_bounds import CEILING, STEP, within_reach

EPOCH_KEY = "commit/epoch"
TXN_KIND = "txn"
# Rounds grow by one per takeover: only a broken or hostile peer sends one beyond this,
# or far above the transaction's rounds this node knows, and adopting it would leave no
# higher round to take over with (every message of the takeover refused, the
# transaction in doubt and its locks held for good).
MAX_ROUND = CEILING
ROUND_FIELDS = ("round", "ballot", "promised")


def _valid_round(value: Any, known: int) -> bool:
    return (
        type(value) is Round and within_reach(value.number, known, MAX_ROUND) and 0 <= value.node <= MAX_ROUND
    )


def _valid_value(value: Any) -> bool:
    return type(value) is RMValue and txns.well_formed_snapshot(value.snapshot)


def malformed(
    msg: Any, members: Collection[str], participants: Collection[str], known_round: int = 0
) -> str | None:
    """Why a peer's ``msg`` must not reach a handler (module rules), or None;
    ``known_round``: the greatest round number this node knows for the message's txn."""
    for name in ROUND_FIELDS:
        value = getattr(msg, name, None)
        if value is not None and not _valid_round(value, known_round):
            return f"{name} {value} out of reach (0..{min(known_round + STEP, MAX_ROUND)})"
    kind = type(msg)
    # Each participant is sent to on the way to a decision: a name that is no
    # participant's (or no string: a node id is a dict key and a destination) would leave
    # the transaction waiting for someone who never answers.
    if (kind is Prepare or kind is Phase1a) and not all(
        type(n) is str and n in participants for n in msg.participants
    ):
        return "participants that are not participants"
    if kind is Prepare and (msg.coordinator not in members or coordinator_of(msg.txn) != msg.coordinator):
        # The coordinator answers a participant's inquiry about a transaction it does not
        # know with presumed abort, so the one its id names must be the one asked.
        return f"coordinator {msg.coordinator!r} of {msg.txn!r}"
    value = getattr(msg, "value", None)
    if value is not None and not _valid_value(value):
        return "a vote value of the wrong shape"
    if kind is Phase1b:
        for item in msg.accepted:
            if not (
                type(item) is tuple
                and len(item) == 3
                and type(item[0]) is str
                and _valid_round(item[1], known_round)
                and _valid_value(item[2])
            ):
                return f"an accepted value of the wrong shape: {item!r}"
    return None


class PTxn:
    """A participant's view of one transaction."""

    __slots__ = (
        "blocked_since",
        "coordinator",
        "part",
        "participants",
        "promised",
        "since",
        "snapshot",
        "state",
        "succeeded",
        "txn",
    )

    def __init__(
        self, txn: str, coordinator: str, participants: tuple[str, ...], part: TxnPart | None
    ) -> None:
        self.txn = txn
        self.state = UNKNOWN
        self.coordinator = coordinator
        self.participants = participants
        self.part = part
        self.snapshot: tuple[tuple[str, Any, int], ...] = ()
        self.succeeded = True
        self.since = 0.0
        self.blocked_since: float | None = None
        self.promised = ZERO_ROUND


def known_ptxn(ptx: dict[str, PTxn], txn: str) -> PTxn:
    """A participant's record of ``txn`` (a bare one if the log has none)."""
    p = ptx.get(txn)
    if p is None:
        p = ptx[txn] = PTxn(txn, coordinator_of(txn), (), None)
    return p


def replay_participant_record(record: Any, ptx: dict[str, PTxn], store: Store) -> bool:
    """Rebuild a participant's state from one of its log records (prepared, precommitted,
    committed, aborted): the record's transaction, its key values and its locks.  False
    when the record is not a participant's (the caller's role replays it)."""
    kind, txn = record[0], record[1]
    if kind == "prepared":
        _, _, coordinator, participants, part, snapshot = record
        p = PTxn(txn, coordinator, tuple(participants), part)
        p.state = UNCERTAIN
        p.snapshot = tuple(snapshot)
        ptx[txn] = p
        store.lock(txn, part.keys())
    elif kind == "precommitted":
        p = known_ptxn(ptx, txn)
        p.state = PRECOMMITTED
        p.succeeded = record[2]
    elif kind == "committed":
        p = known_ptxn(ptx, txn)
        p.state = COMMITTED
        p.succeeded = record[2]
        if p.part is not None:  # None only if the prepared record was never written (a bug knob)
            store.apply(p.part, p.succeeded)
            store.unlock(txn, p.part.keys())
    elif kind == "aborted":
        p = known_ptxn(ptx, txn)
        p.state = ABORTED
        if p.part is not None:
            store.unlock(txn, p.part.keys())
    else:
        return False
    return True


class TxnNode:
    """A commit protocol's node: subclasses own ``_handlers`` (message type -> function),
    ``_replay``, ``_on_start``, ``_on_timer`` and ``begin``; ``DOUBT_STATES`` names the
    participant states in which a transaction is in doubt."""

    DOUBT_STATES: tuple[str, ...] = ()
    _handlers: dict[type, Any] = {}

    def __init__(
        self, node_id: str, env: Env, members: Sequence[str], opts: CommitOptions, protocol: str
    ) -> None:
        self.id = node_id
        self.env = env
        self.protocol = protocol
        self.opts = opts
        self.bugs = opts.bugs
        self.members = tuple(members)
        self.participants = opts.participants_of(self.members, protocol)
        self.is_participant = node_id in self.participants
        self.numbers = node_numbers(self.members)
        self.store = Store()
        self.ptx: dict[str, PTxn] = {}
        self.clients: dict[tuple[str, int], str] = {}
        self.deferred: dict[str, list[Any]] = {}  # bug knobs: records written late
        self.observer: Any = None
        self.local: list[Any] = []  # messages to itself, handled after the current input
        self.counter = 0
        self.malformed = 0  # peer messages dropped as malformed
        self.committed = 0
        self.aborted = 0
        self.blocked_seconds = 0.0
        self.blocked_count = 0
        self.epoch = 0

    def _open_log(self) -> None:
        """Replay the durable log, then begin a new incarnation.  Called last by the
        subclass's constructor, once the state ``_replay`` fills exists."""
        self._replay(self.env.storage.log_records())
        self.epoch = int(self.env.storage.get(EPOCH_KEY, 0)) + 1
        self.env.storage.put(EPOCH_KEY, self.epoch)

    def _replay(self, records: list[Any]) -> None:
        raise NotImplementedError

    def _new_txn_id(self) -> str:
        self.counter += 1
        return f"{self.id}.{self.epoch}.{self.counter}"

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        self._on_start()
        self._drain()

    def _on_start(self) -> None:
        raise NotImplementedError

    def on_message(self, src: str, msg: Any) -> None:
        if self.observer is not None:
            self.observer.received(self.id, src, msg)
        reason = None
        if type(msg) in self._handlers:
            txn = getattr(msg, "txn", None)
            known = self._round_known(txn) if type(txn) is str else 0
            reason = malformed(msg, self.members, self.participants, known)
        if reason is not None:
            self.malformed += 1
            self.env.record("ignored", src=src, reason=reason)
            return
        self._handle(src, msg)
        self._drain()

    def on_timer(self, key: str) -> None:
        self._on_timer(key)
        self._drain()

    def _round_known(self, txn: str) -> int:
        """The greatest round number this node knows for ``txn`` (0: none yet); a
        protocol with more round-holding roles adds theirs."""
        p = self.ptx.get(txn)
        return p.promised.number if p is not None else 0

    def _on_timer(self, key: str) -> None:
        raise NotImplementedError

    def _refuse(self, request: ClientRequest) -> bool:
        """Answer a request that is no valid transaction with an error; True if refused."""
        op = request.op
        key = (request.client_id, request.seq)
        if getattr(op, "kind", None) != TXN_KIND:
            self._answer(key, False, error=f"{self.protocol} serves only txn operations")
            return True
        try:
            txns.validate(op.value)
        except ValueError as exc:
            self._answer(key, False, error=f"bad transaction: {exc}")
            return True
        return False

    def begin(self, body: dict[str, Any], client: tuple[str, int] | None = None) -> str:
        raise NotImplementedError

    def put(self, *pairs: str) -> str:
        """Scripted tests: a transaction of blind puts, ``put k1:a k2:b``."""
        ops = [("put", *str(pair).partition(":")[::2]) for pair in pairs]
        return self.begin(txns.normalize({"success": ops}))

    # ------------------------------------------------------------------ delivery
    def _send(self, dst: str, msg: Any) -> None:
        if dst == self.id:
            self.local.append(msg)
        else:
            self.env.send(dst, msg)

    def _drain(self) -> None:
        while self.local:
            msg = self.local.pop(0)
            if self.observer is not None:
                self.observer.local(self.id, msg)
            self._handle(self.id, msg)

    def _handle(self, src: str, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is not None:  # else not ours: dropped
            handler(self, src, msg)

    def _answer(
        self, client: tuple[str, int], ok: bool, result: Any = None, error: str | None = None
    ) -> None:
        self.env.deliver(
            ClientResponse(client_id=client[0], seq=client[1], ok=ok, result=result, error=error)
        )

    # ------------------------------------------------------------------ status
    def in_doubt(self) -> list[str]:
        return sorted(t for t, p in self.ptx.items() if p.state in self.DOUBT_STATES)

    def blocked(self) -> list[dict[str, Any]]:
        """Transactions this participant waits on after asking, with the locks it holds."""
        return [
            {"txn": t, "since": round(p.blocked_since, 6), "locks": self.store.held_by(t)}
            for t, p in sorted(self.ptx.items())
            if p.blocked_since is not None and p.state in self.DOUBT_STATES
        ]

    def status(self) -> dict[str, Any]:
        return self.node_status().to_dict()

    def node_status(self) -> Any:
        raise NotImplementedError
