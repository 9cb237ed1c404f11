"""A host of sharded Raft: one replica of each shard's group (a log protocol: Raft in
the catalog), and the transaction
layer that makes them one database.

Rules this module owns:
  * routing: a ``GroupMessage`` goes to its group's replica (an unknown group, or
    anything else, is dropped and counted); a timer ``g<group>:<key>`` to that replica,
    ``tx:<...>`` to the transaction layer;
  * the transaction layer is the only client of its host's groups: each command is a
    ``ClientRequest`` of the host's own session (``<host>.<incarnation>``, the
    incarnation counted in durable storage, so ids never repeat across restarts)
    handed to the local replica, which forwards it to its group's leader and answers
    once it is applied.  Every shard command is idempotent (shard.py), so a command
    without an answer after ``command_timeout`` (or refused: no leader yet) is simply
    proposed again;
  * pushing (CockroachDB's PushTxn): a transaction blocked by another's lock asks the
    holder's coordinator shard for its record at once and, once the holder has blocked
    it for ``push_after``, asks it to abort the holder if still undecided; either way a
    decided holder is then resolved at the shard that holds its lock;
  * recovery: the leader of every shard looks at its prepared transactions every
    ``recover_after / 4``; one prepared for longer than ``recover_after`` (by this
    leader's clock) is pushed the same way.  So while a majority of every group lives,
    no lock is held forever, whoever died: a transaction's outcome lives in its
    coordinator shard's log, and everything else is retried;
  * a host that lost its disk (the platform's REJOINING_KEY in its empty storage) hands
    the key to every group's replica, which rejoins by its protocol's own rule, and
    says it is rejoining until every one of them is readmitted, then clears its own key.
    Its session gets a fresh random incarnation: the lost one's count is gone, and a
    session id used before would have its new commands taken for repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consensuskit.core.capabilities import LEADER, NodeStatus
from consensuskit.core.client import ClientRequest, ClientResponse, ServiceOp
from consensuskit.core.env import Env
from consensuskit.core.storage import REJOINING_KEY
from consensuskit.protocols.sharded.gateway import Gateway
from consensuskit.protocols.sharded.messages import GroupMessage
from consensuskit.protocols.sharded.mux import GroupEnv, GroupStorage, Journal
from consensuskit.protocols.sharded.options import ShardedOptions
from consensuskit.protocols.sharded.shard import ABORT, ShardMachine

INCARNATION_KEY = "sharded/incarnation"
# A host back from a lost disk counts its incarnations from here plus a random 30-bit
# number: no host restarts 2^30 times, so no session id repeats.
REJOIN_INCARNATIONS = 2**30
RECOVER_TIMER = "tx:recover"
RETRY_BACKOFF = 0.02

Answer = Callable[[dict[str, Any]], None]
# make_group(node_id, env, members, options, state_machine=...) -> a log protocol's node
# (ProtocolSpec.make_node of a log protocol).
GroupFactory = Callable[..., Any]


class ShardedNode:
    """Capabilities: none of the optional ones (each group has its own leader).

    ``make_group`` builds one group's replica: any log protocol's ``make_node``
    (core/registry.py), so the sharding layer knows no Raft; the catalog composes them."""

    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: ShardedOptions,
        make_group: GroupFactory,
    ) -> None:
        self.id = node_id
        self.env = env
        self.opts = options
        self.bugs = options.bugs
        self.shards = options.shards
        storage = env.storage
        # Lost its disk: a new random incarnation (see the module rules), above any count
        # a host reaches by restarting.
        self.host_rejoining = bool(storage.get(REJOINING_KEY))
        counted = storage.get(INCARNATION_KEY)
        if counted is None and self.host_rejoining:
            counted = REJOIN_INCARNATIONS + env.rng.getrandbits(30)
        self.incarnation = int(counted or 0) + 1
        storage.put(INCARNATION_KEY, self.incarnation)
        self.session = f"{node_id}.{self.incarnation}"
        journal = Journal(storage, self.shards)
        # One replica per group, built by the log protocol's own factory (the catalog
        # names it: Raft for sharded-raft), each on its shard's state machine.
        self.machines = [ShardMachine(g, self.bugs) for g in range(self.shards)]
        self.groups: list[Any] = []
        for g, sm in enumerate(self.machines):
            group_storage = GroupStorage(journal, g)
            if self.host_rejoining and group_storage.get(REJOINING_KEY) is None:
                group_storage.put(REJOINING_KEY, True)  # its replica clears it when readmitted
            genv = GroupEnv(env, g, group_storage, self._on_group_answer, _wrap)
            self.groups.append(make_group(node_id, genv, members, dict(options.group), state_machine=sm))
        self.next_seq = 1
        # seq -> (group, op, on_answer): commands in flight to the groups.
        self.commands: dict[int, tuple[int, ServiceOp, Answer]] = {}
        # (txn, shard) pushes in flight; (shard, txn) -> when this leader first saw it prepared.
        self.pushing: set[tuple[str, int]] = set()
        self.prepared_since: dict[tuple[int, str], float] = {}
        self.dropped = 0
        self.gateway = Gateway(self)

    # ------------------------------------------------------------------ inspection
    @property
    def rejoining(self) -> bool:
        """Some group's replica has not been readmitted since the host lost its disk."""
        return self.host_rejoining and any(getattr(g, "rejoining", False) for g in self.groups)

    def _check_readmitted(self) -> None:
        if self.host_rejoining and not self.rejoining:
            self.host_rejoining = False
            self.env.storage.put(REJOINING_KEY, False)
            self.env.record("readmitted", groups=self.shards)

    def machine(self, group: int) -> ShardMachine:
        return self.machines[group]

    def group_status(self, group: int) -> NodeStatus:
        status: NodeStatus = self.groups[group].node_status()
        return status

    def node_status(self) -> NodeStatus:
        statuses = [self.group_status(g) for g in range(self.shards)]
        groups = [
            {
                "group": g,
                "role": s.role,
                "leader": s.leader,
                s.generation_name: s.generation,
                # In-doubt transactions this replica has applied, and the locks they hold.
                "prepared": sorted(self.machines[g].prepared)[:16],
                "locks": len(self.machines[g].locks),
            }
            for g, s in enumerate(statuses)
        ]
        return NodeStatus(
            id=self.id,
            role="host",
            leader=None,
            # The host's own generation: each group's term is in ``groups``.
            generation_name="incarnation",
            generation=self.incarnation,
            details={
                "shards": self.shards,
                "groups": groups,
                "transactions": len(self.gateway.runs),
                "dropped": self.dropped,
                "rejoining": self.rejoining,
            },
        )

    def status(self) -> dict[str, Any]:
        return self.node_status().to_dict()

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        for group in self.groups:
            group.on_start()
        self.env.set_timer(RECOVER_TIMER, self.opts.recover_after / 4)

    def on_message(self, src: str, msg: Any) -> None:
        if type(msg) is GroupMessage and type(msg.group) is int and 0 <= msg.group < self.shards:
            self.groups[msg.group].on_message(src, msg.msg)
            if self.host_rejoining:
                self._check_readmitted()
            return
        self.dropped += 1
        self.env.record("ignored", src=src, reason=f"not a sharded-raft message: {type(msg).__name__}")

    def on_timer(self, key: str) -> None:
        if key.startswith("g"):
            group, _, inner = key.partition(":")
            self.groups[int(group[1:])].on_timer(inner)
            if self.host_rejoining:
                self._check_readmitted()
        elif key == RECOVER_TIMER:
            self._recover()
            self.env.set_timer(RECOVER_TIMER, self.opts.recover_after / 4)
        elif key.startswith("tx:cmd:"):
            self._command_timeout(int(key[7:]))
        else:
            self.gateway.on_timer(key)

    def on_request(self, request: ClientRequest) -> None:
        self.gateway.on_request(request)

    # ------------------------------------------------------------------ commands
    def propose(self, group: int, kind: str, txn: str, value: dict[str, Any], on_answer: Answer) -> None:
        """Run one shard command on ``group`` until it is applied; ``on_answer(result)``."""
        seq = self.next_seq
        self.next_seq += 1
        op = ServiceOp(kind=kind, key=txn, value=value)
        self.commands[seq] = (group, op, on_answer)
        self.env.set_timer(f"tx:cmd:{seq}", self.opts.command_timeout)
        self.groups[group].on_request(ClientRequest(client_id=self.session, seq=seq, op=op))

    def _command_timeout(self, seq: int) -> None:
        command = self.commands.pop(seq, None)
        if command is not None:
            group, op, on_answer = command
            self.propose(group, op.kind, op.key, op.value, on_answer)

    def _on_group_answer(self, group: int, response: ClientResponse) -> None:
        if response.client_id != self.session:
            return
        command = self.commands.get(response.seq)
        if command is None:
            return  # answered already (a retry's twin)
        result = response.result
        if not response.ok or not isinstance(result, dict) or "error" in result:
            # No leader yet, or a transfer: the same command again shortly.
            self.env.set_timer(f"tx:cmd:{response.seq}", RETRY_BACKOFF)
            return
        del self.commands[response.seq]
        self.env.cancel_timer(f"tx:cmd:{response.seq}")
        command[2](result)

    # ------------------------------------------------------------------ push and recovery
    def push(self, txn: str, coord: int, at: int, *, abort: bool) -> None:
        """Learn ``txn``'s outcome from its coordinator shard (deciding abort if asked and
        still undecided) and, once decided, resolve it at shard ``at``."""
        if (txn, at) in self.pushing or not 0 <= coord < self.shards:
            return
        self.pushing.add((txn, at))

        def decided(result: dict[str, Any]) -> None:
            outcome = result.get("outcome")
            if outcome is None:
                self.pushing.discard((txn, at))
                return
            writes = result.get("writes") or {}

            def resolved(_: dict[str, Any]) -> None:
                self.pushing.discard((txn, at))

            self.propose(at, "resolve", txn, {"outcome": outcome, "writes": writes}, resolved)

        self.propose(coord, "decide", txn, {"outcome": ABORT if abort else None}, decided)

    def _recover(self) -> None:
        now = self.env.now()
        seen: dict[tuple[int, str], float] = {}
        for g in range(self.shards):
            if self.group_status(g).role != LEADER:
                continue
            for txn, prepared in self.machine(g).prepared.items():
                since = self.prepared_since.get((g, txn), now)
                seen[(g, txn)] = since
                if now - since >= self.opts.recover_after:
                    self.push(txn, prepared["coord"], g, abort=True)
        self.prepared_since = seen


def _wrap(group: int, msg: Any) -> GroupMessage:
    return GroupMessage(group=group, msg=msg)
