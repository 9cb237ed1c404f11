"""Options of sharded Raft (protocol options; ``--shards`` is also a flag).

``shards``: how many Raft groups (each owning a key range, routing.py); every host runs
one replica of each.  ``push_after``: how long a gateway lets a lock block it before it
pushes the holder (asks the holder's coordinator shard to abort it if undecided).
``recover_after``: how long a shard's leader lets a transaction stay prepared before it
asks the coordinator shard for the outcome itself (the gateway may have died).
``attempts``: how many times a gateway retries a transaction that lost a lock conflict
before it answers ``conflict``.  ``group``: options for every group's replica (the log
protocol's own, e.g. Raft's ``election_timeout``), validated by that protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BUGS = ("read-ignores-locks",)
FIELDS = ("shards", "push_after", "recover_after", "command_timeout", "attempts", "group", "bugs")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardedOptions:
    shards: int = 2
    push_after: float = 0.2
    recover_after: float = 1.0
    command_timeout: float = 0.5
    attempts: int = 30
    group: dict[str, Any] = field(default_factory=dict)
    bugs: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> ShardedOptions:
        unknown = sorted(set(options) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"unknown sharded-raft option(s) {', '.join(unknown)}; valid: {', '.join(FIELDS)}"
            )
        bugs = frozenset(options.get("bugs") or ())
        bad = sorted(bugs - set(BUGS))
        if bad:
            raise ValueError(f"unknown bug(s) {', '.join(bad)}; valid: {', '.join(BUGS)}")
        made = cls(
            shards=int(options.get("shards", 2)),
            push_after=float(options.get("push_after", 0.2)),
            recover_after=float(options.get("recover_after", 1.0)),
            command_timeout=float(options.get("command_timeout", 0.5)),
            attempts=int(options.get("attempts", 30)),
            group=dict(options.get("group") or {}),
            bugs=bugs,
        )
        if not 1 <= made.shards <= 64:
            raise ValueError(f"shards must be 1..64, got {made.shards}")
        if min(made.push_after, made.recover_after, made.command_timeout) <= 0 or made.attempts < 1:
            raise ValueError("push_after, recover_after and command_timeout must be > 0, attempts >= 1")
        return made
