"""A gossip node: a replica of a last-writer-wins map spread by rumor mongering and
repaired by periodic anti-entropy (Demers et al., PODC 1987), as a sans-I/O state machine.

Rules this node owns:
  * writes: any node accepts ``put`` and stamps it ``(max counter seen + 1, own id)``;
    ``get`` reads the local replica (eventual consistency: no linearizability verdict);
    every entry that changes the map is appended to storage before anything is sent, and
    a restart replays it;
  * rumor mongering (``rumor``): an entry that changes the map becomes a hot rumor. With
    ``rumor_mode`` push, every ``rumor_period`` a node with hot rumors sends them to
    ``fanout`` peers, avoiding the peer each was heard from (seeds 000, 003: forwarded
    the next period, not at once); with pull, every node asks one random peer per period
    for its hot rumors; push-pull does both. A receiver answers which ones it already
    knew. Loss of interest with parameter ``rumor_k``, as Demers et al.: with
    ``rumor_feedback`` each "already knew" counts (blind: each round that sent the rumor
    counts); ``rumor_loss`` counter makes it cold at ``rumor_k`` counts, coin with
    probability 1/``rumor_k`` per count;
  * anti-entropy every ``anti_entropy_period`` (0: never) with one random peer, in
    ``mode`` push, pull or push-pull, by ``exchange``: ``full`` ships whole states;
    ``digest`` descends both Merkle trees (replica.py) from the root, only through
    subtrees whose hashes differ, until a subtree is a leaf or holds at most
    ``LIST_BELOW`` of the responder's entries; then the two sides compare stamps and swap
    exactly the entries one side lacks, so the bytes grow with the difference, not with
    the state;
  * peers: all members (``topology`` uniform) or a partial mesh of ``degree`` (peers.py);
  * a malformed message is dropped and counted (``dropped``), never raised; so is a
    peer's entry whose counter is outside 0..``MAX_COUNTER``: counters grow by one per
    write (gossip-kv's by the clock, hlc.py), and merging one near the int64 limit
    would stamp this node's next write beyond it, an entry no peer can decode (each
    drops the connection that carries it: the node cut off for good).
Bug knob ``keep-local``: merge never replaces a key the replica already holds (first
writer wins locally), so concurrent writes leave replicas that never converge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import ClientRequest
from consensuskit.core.env import Env
from consensuskit.protocols.common.number_bounds import CEILING, STEP
from consensuskit.protocols.common.replies import ok, refused
from consensuskit.protocols.gossip.messages import (
    DigestProbe,
    Entries,
    Entry,
    FullState,
    LeafDigest,
    Rumor,
    RumorFeedback,
    RumorRequest,
    StateRequest,
    Want,
)
from consensuskit.protocols.gossip.peers import TOPOLOGIES, peers_of
from consensuskit.protocols.gossip.replica import DEPTH, DIGITS, EMPTY, Replica

FLOWS = ("push", "pull", "push-pull")
LOSSES = ("counter", "coin")
EXCHANGES = ("full", "digest")
BUGS = ("keep-local",)
# A differing subtree holding at most this many of our entries is answered with its
# stamps (a LeafDigest) instead of 16 child hashes: cheaper for small differences.
LIST_BELOW = 8
# The greatest counter a peer's entry may carry (module rules): far below int64's
# limit, so a write stamped above it (by one, or gossip-kv's clock tick) still fits.
MAX_COUNTER = CEILING
RUMOR_TIMER = "rumor"
ANTI_ENTROPY_TIMER = "anti-entropy"

DEFAULTS: dict[str, Any] = {
    "mode": "push-pull",
    "exchange": "digest",
    "anti_entropy_period": 1.0,
    "rumor": True,
    "rumor_period": 0.1,
    "fanout": 2,
    "rumor_k": 2,
    "rumor_feedback": True,
    "rumor_mode": "push",
    "rumor_loss": "counter",
    "topology": "uniform",
    "degree": 4,
    "graph_seed": 0,
}


def validate_options(options: dict[str, Any]) -> None:
    """ValueError (one line) for an option value the node cannot run with."""
    known = set(DEFAULTS) | {"bugs"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown gossip option(s) {', '.join(unknown)}; valid: {', '.join(sorted(DEFAULTS))}"
        )
    merged = {**DEFAULTS, **options}
    choices = (
        ("mode", FLOWS),
        ("exchange", EXCHANGES),
        ("topology", TOPOLOGIES),
        ("rumor_loss", LOSSES),
        ("rumor_mode", FLOWS),
    )
    for name, allowed in choices:
        if merged[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {merged[name]!r}")
    for name in ("anti_entropy_period", "rumor_period"):
        if not isinstance(merged[name], int | float) or merged[name] < 0:
            raise ValueError(f"{name} must be a number >= 0, got {merged[name]!r}")
    if merged["rumor_period"] == 0:
        raise ValueError("rumor_period must be > 0")
    for name, low in (("fanout", 1), ("rumor_k", 1), ("degree", 2), ("graph_seed", 0)):
        if not isinstance(merged[name], int) or isinstance(merged[name], bool) or merged[name] < low:
            raise ValueError(f"{name} must be an int >= {low}, got {merged[name]!r}")
    for name in ("rumor", "rumor_feedback"):
        if not isinstance(merged[name], bool):
            raise ValueError(f"{name} must be true or false, got {merged[name]!r}")


def may_send(flow: str, initiator: bool) -> bool:
    """Whether the exchange's initiator (or its responder) may send entries in ``flow``."""
    return flow == "push-pull" or (flow == "push") == initiator


class GossipNode:
    # A peer's entry is merged only this far above the greatest counter this node holds
    # (protocols/common/number_bounds.py): a counter at MAX_COUNTER itself would stamp
    # the node's next write beyond it.  None: the ceiling alone.
    COUNTER_STEP: int | None = STEP
    # What a node reports as its role (a family built on this node may name its own).
    role_name = "member"

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.id = node_id
        self.env = env
        opts = {**DEFAULTS, **{k: v for k, v in options.items() if k != "bugs"}}
        validate_options(opts)
        self.opts = opts
        self.bugs: frozenset[str] = frozenset(options.get("bugs", ()))
        self.members = tuple(members)
        self.peers = peers_of(node_id, self.members, opts["topology"], opts["degree"], opts["graph_seed"])
        self.replica = Replica()
        # Hot rumors: key -> times heard back as already known; and who told us each.
        self.hot: dict[str, int] = {}
        self.heard_from: dict[str, str] = {}
        self.dropped = 0
        self.sent_rumors = 0
        for record in env.storage.log_records():
            if isinstance(record, Entry):
                self._merge(record)

    # ------------------------------------------------------------------ inputs
    def on_start(self) -> None:
        env = self.env
        env.set_timer(RUMOR_TIMER, self.opts["rumor_period"])
        period = self.opts["anti_entropy_period"]
        if period > 0:
            # A random phase, so the nodes' exchanges do not all start together.
            env.set_timer(ANTI_ENTROPY_TIMER, period * (0.5 + env.rng.random()))
        env.record("role", role=self.role_name)

    def on_timer(self, key: str) -> None:
        if key == RUMOR_TIMER:
            self.env.set_timer(RUMOR_TIMER, self.opts["rumor_period"])
            self._spread_rumors()
        elif key == ANTI_ENTROPY_TIMER:
            self.env.set_timer(ANTI_ENTROPY_TIMER, self.opts["anti_entropy_period"])
            self._start_anti_entropy()

    def on_message(self, src: str, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.dropped += 1
            return
        try:
            handler(self, src, msg)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            self.dropped += 1  # a peer's malformed message: dropped and counted, never raised

    def on_request(self, request: ClientRequest) -> None:
        op = request.op
        if op.kind == "get":
            entry = self.replica.get(op.key)
            self.env.deliver(ok(request, None if entry is None else entry.value, None, len(self.replica)))
            return
        if op.kind != "put":
            self.env.deliver(refused(request, f"unknown gossip operation {op.kind!r}; valid: put, get", None))
            return
        entry = Entry(key=op.key, counter=self.replica.max_counter + 1, origin=self.id, value=op.value)
        self._learn([entry], source=None)
        self.env.deliver(
            ok(request, {"counter": entry.counter, "origin": entry.origin}, None, len(self.replica))
        )

    # ------------------------------------------------------------------ the replica
    def _merge(self, entry: Entry) -> bool:
        if "keep-local" in self.bugs and entry.key in self.replica.entries:
            self.replica.max_counter = max(self.replica.max_counter, entry.counter)
            return False
        return self.replica.merge(entry)

    def _learn(self, entries: Sequence[Entry], source: str | None) -> list[Entry]:
        """Merge ``entries``; persist and make hot those that changed the map."""
        if source is not None:
            step = self.COUNTER_STEP
            reach = MAX_COUNTER if step is None else min(self.replica.max_counter + step, MAX_COUNTER)
            fit = [e for e in entries if 0 <= e.counter <= reach]
            self.dropped += len(entries) - len(fit)
            entries = fit
        changed = [e for e in entries if self._merge(e)]
        if changed:
            self.env.storage.log_append(list(changed))
            if self.opts["rumor"]:
                for entry in changed:
                    self.hot[entry.key] = 0
                    if source is None:
                        self.heard_from.pop(entry.key, None)
                    else:
                        self.heard_from[entry.key] = source
        return changed

    # ------------------------------------------------------------------ rumor mongering
    def _spread_rumors(self) -> None:
        if not self.peers:
            return
        rng = self.env.rng
        if self.opts["rumor_mode"] != "push":
            # Pull: ask one peer for its hot rumors every period, knowing nothing is hot or not.
            self.env.send(rng.choice(self.peers), RumorRequest())
        if not self.hot or self.opts["rumor_mode"] == "pull":
            return
        told_us = {self.heard_from.get(key) for key in self.hot}
        candidates = [p for p in self.peers if p not in told_us] or list(self.peers)
        targets = rng.sample(candidates, min(self.opts["fanout"], len(candidates)))
        for peer in targets:
            entries = tuple(
                self.replica.entries[key] for key in sorted(self.hot) if self.heard_from.get(key) != peer
            )
            if entries:
                self.sent_rumors += 1
                self.env.send(peer, Rumor(entries=entries))
        if not self.opts["rumor_feedback"]:  # blind: every round that sent a rumor counts
            for key in sorted(self.hot):
                self._count_loss(key)

    def _on_rumor_request(self, src: str, msg: RumorRequest) -> None:
        entries = tuple(self.replica.entries[k] for k in sorted(self.hot) if self.heard_from.get(k) != src)
        if entries:
            self.sent_rumors += 1
            self.env.send(src, Rumor(entries=entries))
            if not self.opts["rumor_feedback"]:  # blind: every answer that sent them counts
                for entry in entries:
                    self._count_loss(entry.key)

    def _on_rumor(self, src: str, msg: Rumor) -> None:
        changed = {e.key for e in self._learn(msg.entries, source=src)}
        known = tuple(
            e.key
            for e in msg.entries
            if e.key not in changed
            and (mine := self.replica.get(e.key)) is not None
            and mine.stamp >= e.stamp
        )
        if known:
            self.env.send(src, RumorFeedback(known=known))

    def _on_feedback(self, src: str, msg: RumorFeedback) -> None:
        if self.opts["rumor_feedback"]:
            for key in msg.known:
                if key in self.hot:
                    self._count_loss(key)

    def _count_loss(self, key: str) -> None:
        """One count toward losing interest in ``key``: counter or coin, parameter k."""
        k = self.opts["rumor_k"]
        if self.opts["rumor_loss"] == "counter":
            self.hot[key] += 1
            cold = self.hot[key] >= k
        else:
            cold = self.env.rng.random() * k < 1.0
        if cold:
            del self.hot[key]
            self.heard_from.pop(key, None)

    # ------------------------------------------------------------------ anti-entropy
    def anti_entropy_now(self) -> None:
        """Admin input (like Raft's ``campaign()``): start one exchange now."""
        self._start_anti_entropy()

    def _start_anti_entropy(self) -> None:
        if not self.peers:
            return
        peer = self.env.rng.choice(self.peers)
        flow = self.opts["mode"]
        if self.opts["exchange"] == "full":
            if flow == "pull":
                self.env.send(peer, StateRequest())
            else:
                self.env.send(peer, FullState(entries=self.replica.all_entries(), reply=flow == "push-pull"))
            return
        self.env.send(peer, DigestProbe(flow=flow, initiator=True, nodes=(("", self.replica.root()),)))

    def _on_full_state(self, src: str, msg: FullState) -> None:
        self._learn(msg.entries, source=src)
        if msg.reply:
            self.env.send(src, FullState(entries=self.replica.all_entries(), reply=False))

    def _on_state_request(self, src: str, msg: StateRequest) -> None:
        self.env.send(src, FullState(entries=self.replica.all_entries(), reply=False))

    def _on_probe(self, src: str, msg: DigestProbe) -> None:
        flow = self._flow(msg.flow)
        me_first = not msg.initiator
        replica = self.replica
        probes: list[tuple[str, bytes]] = []
        leaves: list[str] = []
        wanted: list[str] = []
        giving: list[Entry] = []
        for prefix, theirs in msg.nodes:
            if not isinstance(prefix, str) or len(prefix) > DEPTH or not isinstance(theirs, bytes):
                raise ValueError(f"bad probe node {prefix!r}")
            mine = replica.hash_at(prefix)
            if mine == theirs:
                continue
            if mine == EMPTY:
                if may_send(flow, msg.initiator):
                    wanted.append(prefix)
            elif theirs == EMPTY:
                if may_send(flow, me_first):
                    giving.extend(replica.under(prefix))
            elif len(prefix) == DEPTH or replica.size_at(prefix) <= LIST_BELOW:
                leaves.append(prefix)  # list this subtree's stamps rather than descend
            else:
                probes.extend((prefix + d, replica.hash_at(prefix + d)) for d in DIGITS)
        env = self.env
        if probes:
            env.send(src, DigestProbe(flow=flow, initiator=me_first, nodes=tuple(probes)))
        if leaves:
            stamps = tuple((e.key, e.counter, e.origin) for p in leaves for e in replica.under(p))
            env.send(src, LeafDigest(flow=flow, initiator=me_first, prefixes=tuple(leaves), stamps=stamps))
        if wanted:
            env.send(src, Want(flow=flow, initiator=me_first, prefixes=tuple(wanted)))
        if giving:
            env.send(src, Entries(entries=tuple(giving)))

    def _on_leaf_digest(self, src: str, msg: LeafDigest) -> None:
        flow = self._flow(msg.flow)
        me_first = not msg.initiator
        theirs = {key: (counter, origin) for key, counter, origin in msg.stamps}
        replica = self.replica
        if may_send(flow, me_first):
            giving = tuple(
                e
                for p in msg.prefixes
                for e in replica.under(p)
                if e.key not in theirs or self._supersedes(e.stamp, theirs[e.key])
            )
            if giving:
                self.env.send(src, Entries(entries=giving))
        if may_send(flow, msg.initiator):
            wanted = tuple(
                key
                for key, stamp in sorted(theirs.items())
                if (mine := replica.get(key)) is None or self._supersedes(stamp, mine.stamp)
            )
            if wanted:
                self.env.send(src, Want(flow=flow, initiator=me_first, keys=wanted))

    def _on_want(self, src: str, msg: Want) -> None:
        flow = self._flow(msg.flow)
        if not may_send(flow, not msg.initiator):
            raise ValueError("a want in a flow that forbids the answer")
        replica = self.replica
        giving = [e for key in msg.keys if (e := replica.get(key)) is not None]
        for prefix in msg.prefixes:
            giving.extend(replica.under(prefix))
        if giving:
            self.env.send(src, Entries(entries=tuple(giving)))

    def _on_entries(self, src: str, msg: Entries) -> None:
        self._learn(msg.entries, source=src)

    def _supersedes(self, stamp: tuple[int, str], other: tuple[int, str]) -> bool:
        """Whether a version stamped ``stamp`` should replace one stamped ``other`` (what a
        digest exchange offers and asks for): the greater stamp wins."""
        return stamp > other

    @staticmethod
    def _flow(flow: str) -> str:
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}")
        return flow

    _handlers: dict[type, Any] = {
        Rumor: _on_rumor,
        RumorRequest: _on_rumor_request,
        RumorFeedback: _on_feedback,
        FullState: _on_full_state,
        StateRequest: _on_state_request,
        DigestProbe: _on_probe,
        LeafDigest: _on_leaf_digest,
        Want: _on_want,
        Entries: _on_entries,
    }

    # ------------------------------------------------------------------ inspection
    def digest(self) -> tuple[tuple[str, int, str], ...]:
        """The replica's whole content as (key, counter, origin), sorted: what the
        convergence check compares."""
        return self.replica.digest()

    def status(self) -> dict[str, Any]:
        """``node_status()`` as a flat dict (what transcripts print)."""
        return self.node_status().to_dict()

    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.role_name,
            leader=None,
            generation_name="counter",
            generation=self.replica.max_counter,
            details={
                "keys": len(self.replica),
                "hot_rumors": len(self.hot),
                "root": self.replica.root().hex(),
                "peer_count": len(self.peers),
                "dropped": self.dropped,
            },
        )
