"""Many Raft groups in one node: each group's own Env, storage namespace and timers.

A host node runs one replica of each of S Raft groups.  The groups share the host's
``Env`` (one process, one disk, one network address) through this module:

  * messages: a group's message travels as ``GroupMessage(group, msg)`` between the same
    group's replicas on other hosts;
  * timers: a group's timer ``key`` is the host's ``g<group>:<key>``;
  * named records: a group's ``key`` is the host's ``g<group>/<key>``;
  * logs: the host has one log, so the groups' logs are multiplexed into it as a
    journal of ``[group, op, position, records]`` (op append, truncate or compact),
    replayed at start-up into each group's log.  The journal would only grow, so once it
    holds many more records than the groups' live logs, a checkpoint (the live logs, and
    the journal position it covers) is written as the named record ``mux/checkpoint``
    and the journal compacted behind it, in that order: a crash between the two keeps
    the checkpoint and replays nothing it covers twice;
  * randomness: the groups draw from the host's ``rng`` (one seeded source per host).

Every write goes through the host's storage, so the host's durability barrier covers
all groups: a group's message waits for the host's sync like any other.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.storage import MemoryStorage, Storage

CHECKPOINT_KEY = "mux/checkpoint"
APPEND, TRUNCATE, COMPACT = "a", "t", "c"
# Checkpoint once the journal holds this many records more than the live logs.
CHECKPOINT_SLACK = 2048


class Journal:
    """The host log as the groups' logs (see the module rules)."""

    def __init__(self, host: Storage, groups: int) -> None:
        self.host = host
        self.logs = [MemoryStorage() for _ in range(groups)]
        checkpoint = host.get(CHECKPOINT_KEY)
        upto = 0
        if checkpoint is not None:
            upto = checkpoint["upto"]
            for group, first, records in checkpoint["groups"]:
                if 0 <= group < groups:
                    self.logs[group] = MemoryStorage(first, log=list(records))
        position = host.log_first()
        for record in host.log_records():
            if position > upto:
                self._replay(record)
            position += 1

    def _replay(self, record: Any) -> None:
        group, op, position, records = record
        log = self.logs[group]
        if op == APPEND:
            if position != log.log_last() + 1:  # appends are contiguous by construction
                log.log_truncate_from(max(position, log.log_first()))
            log.log_append(list(records))
        elif op == TRUNCATE:
            log.log_truncate_from(position)
        else:
            log.log_compact_to(position)

    def write(self, group: int, op: str, position: int, records: list[Any] | None = None) -> None:
        self.host.log_append([[group, op, position, records or []]])
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        host = self.host
        journal = host.log_last() - host.log_first() + 1
        live = sum(log.log_last() - log.log_first() + 1 for log in self.logs)
        if journal < live + CHECKPOINT_SLACK:
            return
        upto = host.log_last()
        groups = [[g, log.log_first(), log.log_records()] for g, log in enumerate(self.logs)]
        host.put(CHECKPOINT_KEY, {"upto": upto, "groups": groups})
        host.log_compact_to(upto + 1)


class GroupStorage:
    """One group's ``Storage``: its named records under a prefix, its log in the journal."""

    __slots__ = ("group", "journal", "log", "prefix")

    def __init__(self, journal: Journal, group: int) -> None:
        self.journal = journal
        self.group = group
        self.prefix = f"g{group}/"
        self.log = journal.logs[group]

    def get(self, key: str, default: Any = None) -> Any:
        return self.journal.host.get(self.prefix + key, default)

    def put(self, key: str, value: Any) -> None:
        self.journal.host.put(self.prefix + key, value)

    def log_append(self, records: list[Any]) -> None:
        position = self.log.log_last() + 1
        self.log.log_append(list(records))
        self.journal.write(self.group, APPEND, position, list(records))

    def log_truncate_from(self, position: int) -> None:
        self.log.log_truncate_from(position)
        self.journal.write(self.group, TRUNCATE, position)

    def log_compact_to(self, position: int) -> None:
        self.log.log_compact_to(position)
        self.journal.write(self.group, COMPACT, position)

    def log_first(self) -> int:
        return self.log.log_first()

    def log_last(self) -> int:
        return self.log.log_last()

    def log_records(self) -> list[Any]:
        return self.log.log_records()


class GroupEnv:
    """The ``Env`` one group's Raft replica sees inside a host (see the module rules).

    Client answers go to ``on_deliver(group, response)``: the host's transaction layer
    is the only client of its groups."""

    def __init__(self, host: Env, group: int, storage: GroupStorage, on_deliver: Any, wrap: Any) -> None:
        self.host = host
        self.group = group
        self.node_id = host.node_id
        self.storage = storage
        self.rng = host.rng
        self._on_deliver = on_deliver
        self._wrap = wrap
        self._prefix = f"g{group}:"

    def now(self) -> float:
        return self.host.now()

    def send(self, dst: str, msg: Any) -> None:
        self.host.send(dst, self._wrap(self.group, msg))

    def set_timer(self, key: str, delay: float) -> None:
        self.host.set_timer(self._prefix + key, delay)

    def cancel_timer(self, key: str) -> None:
        self.host.cancel_timer(self._prefix + key)

    def deliver(self, response: ClientResponse) -> None:
        self._on_deliver(self.group, response)

    def record(self, kind: str, **fields: Any) -> None:
        self.host.record(kind, group=self.group, **fields)
