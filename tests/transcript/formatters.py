"""How ``log`` and ``state`` print a node, per protocol: the one protocol-aware table of
the transcript harness.  A protocol missing here falls back to its ``status()``.

Each formatter reads the node's public attributes only and prints one line per log
position, in position order, so a transcript shows exactly what a node holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def _describe(value: Any) -> str:
    if value is None:
        return "none"
    op = getattr(value, "op", None)
    if op is not None:  # a ClientRequest
        return f"{value.client_id}#{value.seq}:{op.describe()}"
    summary = getattr(value, "summary", None)
    return str(summary()) if callable(summary) else str(value)


def raft_log(node: Any, storage: Any) -> Iterable[str]:
    log = node.log
    snap = node.snapshot
    if snap is not None:
        yield f"snapshot {snap.last_term}/{snap.last_index}"
    for index in range(log.first_index, log.last_index + 1):
        yield log.entry(index).summary()
    vote = node.voted_for or "none"
    yield f"term={node.term} vote={vote} commit={node.commit_index} applied={node.last_applied}"


def multipaxos_log(node: Any, storage: Any) -> Iterable[str]:
    snap = node.snapshot
    if snap is not None:
        yield f"snapshot slot={snap.last_slot}"
    slots = sorted(set(node.log.votes) | set(node.chosen))
    for slot in slots:
        vote = node.log.votes.get(slot)
        chosen = node.chosen.get(slot)
        parts = [f"slot {slot}:"]
        if vote is not None:
            parts.append(f"voted ({vote.ballot}, {_describe(vote.entry)})")
        if chosen is not None:
            parts.append(f"chosen {_describe(chosen)}")
        yield " ".join(parts)
    yield f"promised={node.promised} executed={node.executed}"


def slot_paxos_log(node: Any, storage: Any) -> Iterable[str]:
    """Basic and Fast Paxos: per slot, the acceptor's record and the chosen value."""
    slots = set(node.chosen)
    slots |= {s for s, rec in node.acceptor_records.items() if rec.promised.round}
    for slot in sorted(slots):
        parts = [f"slot {slot}:"]
        rec = node.acceptor_records.get(slot)
        if rec is not None and rec.promised.round:
            parts.append(f"promised={rec.promised}")
            if rec.accepted_ballot.round:
                fast = " fast" if rec.accepted_fast else ""
                parts.append(f"accepted=({rec.accepted_ballot}, {_describe(rec.accepted_value)}){fast}")
        if slot in node.chosen:
            parts.append(f"chosen {_describe(node.chosen[slot])}")
        yield " ".join(parts)
    yield f"executed={node.executed}"


def zab_log(node: Any, storage: Any) -> Iterable[str]:
    snap = node.snapshot
    if snap is not None:
        yield snap.summary()
    log = node.log
    for index in range(log.first_index, log.last_index + 1):
        yield log.entry(index).summary()
    yield (
        f"accepted={node.accepted_epoch} current={node.current_epoch} "
        f"commit={node.commit_index} applied={node.last_applied}"
    )


LOG_FORMATTERS: dict[str, Callable[[Any, Any], Iterable[str]]] = {
    "zab": zab_log,
    "raft": raft_log,
    "multipaxos": multipaxos_log,
    "basic-paxos": slot_paxos_log,
    "fast-paxos": slot_paxos_log,
}


# Records a protocol makes that say nothing a transcript line does not already say
# (Raft's and ZAB's "learned" repeat their "commit").
HIDDEN_RECORDS: dict[str, tuple[str, ...]] = {
    "raft": ("learned",),
    "zab": ("learned",),
    # The commit protocols' "learned" repeats a participant's commit outcome.
    "2pc": ("learned",),
    "3pc": ("learned",),
    "paxos-commit": ("learned",),
}


def format_log(protocol: str, node: Any, storage: Any) -> Iterable[str]:
    fn = LOG_FORMATTERS.get(protocol)
    if fn is not None:
        return fn(node, storage)
    status = node.status() if callable(getattr(node, "status", None)) else {}
    return [f"{k}={v}" for k, v in dict(status).items()]


def kv_state(sm: Any) -> list[str]:
    flat = sm.snapshot()["flat"]  # in the store's order: in key order here, for the eye
    starts = sorted(range(0, len(flat), 3), key=flat.__getitem__)
    return [f"{flat[i]}={flat[i + 1]!r} v{flat[i + 2]}" for i in starts]


# State machine class name -> formatter (state machines come from services, not protocols).
STATE_FORMATTERS: dict[str, Callable[[Any], list[str]]] = {"KVStateMachine": kv_state}


def format_state(node: Any) -> Iterable[str]:
    """The replicated state machine's contents (every log protocol's node has ``sm``)."""
    sm = getattr(node, "sm", None)
    if sm is None:
        return ["no state machine"]
    fn = STATE_FORMATTERS.get(type(sm).__name__)
    lines = fn(sm) if fn is not None else [repr(sm.snapshot())]
    return lines or ["empty"]
