"""A SWIM member with Lifeguard, as a deterministic state machine (README.md here).

Rules this module owns:
  * failure detection: one probe per period (randomised round-robin over the other
    members; the order is reshuffled at each wrap and a new member is inserted at a
    random offset); a ping, then after the probe timeout a ping-req through
    ``indirect_checks`` alive members; no ack by the end of the period makes the target
    suspect at the incarnation it had when the probe started;
  * dissemination: every message carries updates from the broadcast queue
    (``broadcasts.py``: at most ``retransmit_mult * ceil(log10(n + 1))`` sends each);
    a gossip tick sends queued updates to ``gossip_nodes`` members; a push-pull
    exchanges whole tables with one alive member every (scaled) push-pull interval,
    and a joining member push-pulls with its first seed that answers;
  * updates obey the precedence of ``members.py``; a member accused of being suspect or
    dead refutes by raising its own incarnation above the accusation (only it ever
    raises it; with ``persist_incarnation`` it is kept in storage so a restart comes
    back above every accusation of its previous life);
  * a stale alive about a member held suspect or dead is answered with the accusation
    (queued again, and sent to the member itself at most once per probe interval), so a
    member restarted at a low incarnation learns it must refute (memberlist PR #345);
    an accusation about an unknown member is kept as a record, not dropped;
  * Lifeguard (``lifeguard``): probe interval and probe timeout scale with the local
    health score, ping-reqs ask for nacks, suspicion timeouts start at the maximum and
    shrink with independent confirmations, and a probe of a suspect member carries the
    suspicion (the buddy system).  Without it the score stays 0, nobody nacks, and a
    suspicion times out after the fixed minimum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.protocols.common.number_bounds import CEILING, within_reach
from consensuskit.protocols.swim.broadcasts import BroadcastQueue
from consensuskit.protocols.swim.lifeguard import (
    Awareness,
    Suspicion,
    confirmations_wanted,
    push_pull_interval,
    retransmit_limit,
    suspicion_bounds,
)
from consensuskit.protocols.swim.members import Member
from consensuskit.protocols.swim.messages import (
    ALIVE,
    DEAD,
    LEFT,
    STATES,
    SUSPECT,
    Ack,
    Gossip,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Update,
)
from consensuskit.protocols.swim.options import SwimOptions

INCARNATION_KEY = "swim/incarnation"
# Incarnations at or above this are refused as implausible: refuting one would overflow
# the wire's int64 (memberlist #358).  So is one more than a step above what this node
# knows of the member: one update at the bound left the member unable to refute
# (protocols/common/number_bounds.py).
MAX_INCARNATION = CEILING
# How long a dead member still receives gossip (memberlist's GossipToTheDeadTime).
GOSSIP_TO_THE_DEAD = 30.0
# The node keeps at most this many of its newest death declarations (for monitors).
DEAD_LOG_LIMIT = 10_000

PROBE = "probe"
PROBE_TIMEOUT = "probe-timeout"
GOSSIP = "gossip"
PUSH_PULL = "push-pull"
JOIN = "join"
RELAYS = "relays"
SUSPECT_TIMER = "suspect/"


@dataclass(slots=True)
class Probe:
    target: str
    seq: int
    incarnation: int  # the target's, when the probe started
    acked: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class Relay:
    """A ping-req this member is serving: ping ``target`` for ``requester``."""

    requester: str
    seq: int  # the requester's
    deadline: float
    nack: bool


class SwimNode:
    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: SwimOptions) -> None:
        self.id = node_id
        self.env = env
        self.opts = options
        self.bugs = options.bugs
        self.initial = tuple(members)
        self.incarnation = 0
        self.members: dict[str, Member] = {}
        self.live = 0  # members alive or suspect, self included (n for the formulas)
        self.order: list[str] = []
        self.probe_index = 0
        self.seq = 0
        self.probe: Probe | None = None
        self.relays: dict[int, Relay] = {}
        self.suspicions: dict[str, Suspicion] = {}
        self.awareness = Awareness(options.awareness_max)
        self.queue = BroadcastQueue(keep_forever="unbounded-retransmit" in self.bugs)
        self.left = False
        self.joined = not options.join
        self.seed_index = 0
        self.told: dict[str, float] = {}  # member -> when it was last sent its accusation
        # Observability (monitors, checkers, metrics): never read by the protocol.
        self.sent = 0
        self.malformed = 0
        self.refutations = 0
        self.changes: list[tuple[str, str | None, int, str, int]] = []  # of the last input
        self.dead_log: list[tuple[str, int, float]] = []  # (member, incarnation, time)

    # ------------------------------------------------------------------ start
    def on_start(self) -> None:
        env = self.env
        opts = self.opts
        if opts.persist_incarnation:
            stored = env.storage.get(INCARNATION_KEY)
            self.incarnation = stored + 1 if isinstance(stored, int) else 0
            env.storage.put(INCARNATION_KEY, self.incarnation)
        now = env.now()
        self._set(self.id, ALIVE, self.incarnation, now, address=self.id)
        if not opts.join:
            for member in self.initial:
                if member != self.id:
                    self._set(member, ALIVE, 0, now, address=member)
        env.rng.shuffle(self.order)
        self.changes.clear()
        self.queue.push(self._alive_update())
        env.record("member", member=self.id, state=ALIVE, incarnation=self.incarnation)
        env.set_timer(PROBE, env.rng.uniform(0, opts.probe_interval))
        if opts.gossip_interval > 0 and opts.gossip_nodes > 0:
            env.set_timer(GOSSIP, opts.gossip_interval)
        if opts.push_pull_interval > 0:
            env.set_timer(PUSH_PULL, env.rng.uniform(0, opts.push_pull_interval))
        if opts.join:
            self._try_join()

    # ------------------------------------------------------------------ inputs
    def on_message(self, src: str, msg: Any) -> None:
        self.changes.clear()
        kind = type(msg)
        if kind not in _HANDLED:
            self.malformed += 1
            return
        if kind is PushPull:
            self._on_push_pull(src, msg)
            return
        self._apply_updates(msg.updates)
        if kind is Ping:
            if msg.target != self.id:
                self.malformed += 1  # misdirected: not ours to answer
                return
            self._send(src, Ack(seq=msg.seq, updates=self._piggyback()))
        elif kind is Ack:
            self._on_ack(msg.seq)
        elif kind is PingReq:
            self._on_ping_req(src, msg)
        elif kind is Nack:
            probe = self.probe
            if probe is not None and probe.seq == msg.seq:
                probe.nacks += 1

    def on_timer(self, key: str) -> None:
        self.changes.clear()
        if key == PROBE:
            self._finish_probe()
            if not self.left:
                self._start_probe()
                self.env.set_timer(PROBE, self._scaled(self.opts.probe_interval))
        elif key == PROBE_TIMEOUT:
            self._indirect_probe()
        elif key == GOSSIP:
            self._gossip()
            self.env.set_timer(GOSSIP, self.opts.gossip_interval)
        elif key == PUSH_PULL:
            self._push_pull()
            self.env.set_timer(PUSH_PULL, push_pull_interval(self.opts.push_pull_interval, self.live))
        elif key == RELAYS:
            self._expire_relays()
        elif key == JOIN:
            if not self.joined:
                self.seed_index += 1
                self._try_join()
        elif key.startswith(SUSPECT_TIMER):
            self._suspicion_timeout(key[len(SUSPECT_TIMER) :])

    def on_request(self, request: ClientRequest) -> None:
        self.changes.clear()
        op = request.op
        if op.kind == "members":
            result: Any = self.member_list()
        elif op.kind == "member":
            # A member this one never heard of is an answer too: None.
            result = self.member_list(only=op.key)[0] if op.key in self.members else None
        else:
            self._answer(
                request, ok=False, error=f"unknown membership operation {op.kind!r}; valid: members, member"
            )
            return
        self._answer(request, ok=True, result=result)

    def _answer(
        self, request: ClientRequest, *, ok: bool, result: Any = None, error: str | None = None
    ) -> None:
        self.env.deliver(
            ClientResponse(client_id=request.client_id, seq=request.seq, ok=ok, result=result, error=error)
        )

    # ------------------------------------------------------------------ admin
    def leave(self) -> None:
        """Leave gracefully: announce ``left`` (a dead accusation by oneself) and stop probing."""
        if self.left:
            return
        self.changes.clear()
        self.left = True
        self._set(self.id, LEFT, self.incarnation, self.env.now())
        self.queue.push(Update(kind=DEAD, member=self.id, incarnation=self.incarnation, accuser=self.id))
        self.env.cancel_timer(PROBE)
        self.env.cancel_timer(PROBE_TIMEOUT)
        self.env.record("member", member=self.id, state=LEFT, incarnation=self.incarnation)

    def hear(self, kind: str, member: str, incarnation: int, accuser: str = "") -> None:
        """Apply one update as if a peer had piggybacked it (transcripts and operators
        inject facts this way); a malformed one is counted and dropped like any other."""
        self.changes.clear()
        self._apply_updates((Update(kind=kind, member=member, incarnation=incarnation, accuser=accuser),))

    # ------------------------------------------------------------------ probing
    def _start_probe(self) -> None:
        target = self._next_target()
        if target is None:
            return
        rec = self.members[target]
        self.seq += 1
        self.probe = Probe(target=target, seq=self.seq, incarnation=rec.incarnation)
        updates = self._piggyback()
        if (
            self.opts.lifeguard
            and rec.state == SUSPECT
            and not any(u.member == target and u.kind == SUSPECT for u in updates)
        ):
            # Buddy system: tell a suspect member at once, so it can refute in time.
            buddy = Update(kind=SUSPECT, member=target, incarnation=rec.incarnation, accuser=self.id)
            updates = (buddy, *updates[: self.opts.max_piggyback - 1])
        self._send(target, Ping(seq=self.seq, target=target, updates=updates))
        self.env.set_timer(PROBE_TIMEOUT, self._scaled(self.opts.probe_timeout))

    def _next_target(self) -> str | None:
        order = self.order
        for _ in range(2 * len(order) + 1):
            if self.probe_index >= len(order):
                self.env.rng.shuffle(order)
                self.probe_index = 0
                if not order:
                    return None
            member = order[self.probe_index]
            self.probe_index += 1
            if not self.members[member].gone():
                return member
        return None

    def _indirect_probe(self) -> None:
        probe = self.probe
        if probe is None or probe.acked:
            return
        helpers = self._random_members(
            self.opts.indirect_checks, lambda m, r: m != probe.target and r.state == ALIVE
        )
        nack = self.opts.lifeguard
        for helper in helpers:
            self._send(
                helper, PingReq(seq=probe.seq, target=probe.target, nack=nack, updates=self._piggyback())
            )
        if nack:
            probe.expected_nacks = len(helpers)

    def _finish_probe(self) -> None:
        probe = self.probe
        if probe is None:
            return
        self.probe = None
        self.env.cancel_timer(PROBE_TIMEOUT)
        if probe.acked:
            if self.opts.lifeguard:
                self.awareness.apply(-1)
            return
        if self.opts.lifeguard:
            missing = probe.expected_nacks - probe.nacks
            self.awareness.apply(missing if probe.expected_nacks > 0 else 1)
        incarnation = probe.incarnation + (1 if "foreign-incarnation" in self.bugs else 0)
        self._suspect(probe.target, incarnation, self.id)

    def _on_ack(self, seq: int) -> None:
        probe = self.probe
        if probe is not None and probe.seq == seq:
            probe.acked = True
            self.env.cancel_timer(PROBE_TIMEOUT)
            return
        relay = self.relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(seq=relay.seq, updates=self._piggyback()))

    def _on_ping_req(self, src: str, msg: PingReq) -> None:
        self.seq += 1
        deadline = self.env.now() + self.opts.probe_timeout
        self.relays[self.seq] = Relay(requester=src, seq=msg.seq, deadline=deadline, nack=msg.nack)
        self._send(msg.target, Ping(seq=self.seq, target=msg.target, updates=self._piggyback()))
        self._arm_relays()

    def _expire_relays(self) -> None:
        now = self.env.now()
        for seq in [s for s, r in self.relays.items() if r.deadline <= now]:
            relay = self.relays.pop(seq)
            if relay.nack:
                self._send(relay.requester, Nack(seq=relay.seq, updates=self._piggyback()))
        self._arm_relays()

    def _arm_relays(self) -> None:
        if self.relays:
            first = min(r.deadline for r in self.relays.values())
            self.env.set_timer(RELAYS, max(0.0, first - self.env.now()))
        else:
            self.env.cancel_timer(RELAYS)

    # ------------------------------------------------------------------ dissemination
    def _gossip(self) -> None:
        if not self.queue:
            return
        now = self.env.now()

        def eligible(member: str, rec: Member) -> bool:
            if rec.state in (ALIVE, SUSPECT):
                return True
            return rec.state == DEAD and now - rec.since <= GOSSIP_TO_THE_DEAD

        for member in self._random_members(self.opts.gossip_nodes, eligible):
            updates = self._piggyback()
            if not updates:
                return
            self._send(member, Gossip(updates=updates))

    def _push_pull(self) -> None:
        if self.left:
            return
        peers = self._random_members(1, lambda m, r: r.state == ALIVE)
        if peers:
            self._send(peers[0], PushPull(states=self._table(), reply=True))

    def _try_join(self) -> None:
        seeds = [s for s in self.opts.join if s != self.id]
        if not seeds:
            self.joined = True
            return
        seed = seeds[self.seed_index % len(seeds)]
        self._send(seed, PushPull(states=self._table(), reply=True, join=True))
        self.env.set_timer(JOIN, self.opts.probe_interval)

    def _on_push_pull(self, src: str, msg: PushPull) -> None:
        if msg.reply:
            self._send(src, PushPull(states=self._table(), reply=False))
        elif not self.joined:
            self.joined = True
            self.env.cancel_timer(JOIN)
        for update in msg.states:
            if not _valid(update, self._known_incarnation):
                self.malformed += 1
                continue
            kind = update.kind
            if kind == ALIVE:
                rec = self.members.get(update.member)
                if (
                    "push-pull-resurrects" in self.bugs
                    and rec is not None
                    and rec.state == DEAD
                    and update.incarnation >= rec.incarnation
                    and update.member != self.id
                ):
                    self._set(update.member, ALIVE, update.incarnation, self.env.now())
                    continue
                self._alive(update.member, update.incarnation, update.address)
            elif kind == LEFT:
                self._dead(update.member, update.incarnation, update.member, update.address)
            else:
                # A remote dead is only suspected here (memberlist's mergeState): this
                # member gives it the chance to refute before it believes it.
                self._suspect(update.member, update.incarnation, self.id, update.address)

    def _table(self) -> tuple[Update, ...]:
        return tuple(
            Update(kind=rec.state, member=member, incarnation=rec.incarnation, address=rec.address)
            for member, rec in sorted(self.members.items())
        )

    def _piggyback(self) -> tuple[Update, ...]:
        return self.queue.take(self.opts.max_piggyback, self.retransmit_limit())

    def retransmit_limit(self) -> int:
        return retransmit_limit(self.opts.retransmit_mult, self.live)

    # ------------------------------------------------------------------ updates
    def _known_incarnation(self, member: str) -> int:
        if member == self.id:
            return self.incarnation
        rec = self.members.get(member)
        return rec.incarnation if rec is not None else 0

    def _apply_updates(self, updates: Any) -> None:
        if type(updates) is not tuple:
            self.malformed += 1
            return
        for update in updates:
            if not _valid(update, self._known_incarnation):
                self.malformed += 1
                continue
            kind = update.kind
            if kind == ALIVE:
                self._alive(update.member, update.incarnation, update.address)
            elif kind == SUSPECT:
                self._suspect(update.member, update.incarnation, update.accuser or "?", update.address)
            elif kind == DEAD:
                self._dead(update.member, update.incarnation, update.accuser or "?", update.address)
            else:  # LEFT as a state name: the member's own goodbye
                self._dead(update.member, update.incarnation, update.member, update.address)

    def _alive(self, member: str, incarnation: int, address: str = "") -> None:
        if member == self.id:
            # Someone says we are alive at a newer incarnation than ours (a previous
            # life's): refute so that our current one wins.
            if not self.left and incarnation > self.incarnation:
                self._refute(incarnation)
            return
        rec = self.members.get(member)
        update = Update(kind=ALIVE, member=member, incarnation=incarnation, address=address)
        if rec is None:
            self._set(member, ALIVE, incarnation, self.env.now(), address=address or member)
            self.queue.push(update)
            return
        if incarnation <= rec.incarnation:
            if (
                "alive-overrides-suspect" in self.bugs
                and rec.state == SUSPECT
                and incarnation == rec.incarnation
            ):
                self._clear_suspicion(member)
                self._set(member, ALIVE, incarnation, self.env.now())
                self.queue.push(update)
                return
            if rec.state in (SUSPECT, DEAD) and "drop-stale-alive" not in self.bugs:
                self._reaccuse(member, rec)
            return
        self._clear_suspicion(member)
        self._set(member, ALIVE, incarnation, self.env.now(), address=address or rec.address)
        self.queue.push(update)

    def _reaccuse(self, member: str, rec: Member) -> None:
        """A stale alive about a member we hold suspect or dead: the accusation has not
        reached it (it restarted at a lower incarnation, or it never heard); spread it
        again and tell the member itself."""
        accusation = Update(kind=rec.state, member=member, incarnation=rec.incarnation, accuser=self.id)
        queued = self.queue.queued(member)
        if queued is None or (queued.kind, queued.incarnation) != (rec.state, rec.incarnation):
            self.queue.push(accusation)
        now = self.env.now()
        last = self.told.get(member)
        if last is None or now - last >= self.opts.probe_interval:
            self.told[member] = now
            self._send(member, Gossip(updates=(accusation,)))

    def _suspect(self, member: str, incarnation: int, accuser: str, address: str = "") -> None:
        rec = self.members.get(member)
        update = Update(kind=SUSPECT, member=member, incarnation=incarnation, accuser=accuser)
        if rec is None:
            # An accusation about a member we never heard of is kept, not dropped
            # (memberlist PR #345): it may be the only way it reaches the member.
            self._set(member, SUSPECT, incarnation, self.env.now(), address=address or member)
            self.queue.push(update)
            self._start_suspicion(member, incarnation, accuser)
            return
        if incarnation < rec.incarnation:
            return
        suspicion = self.suspicions.get(member)
        if suspicion is not None:
            if suspicion.confirm(accuser):
                self.queue.push(update)
                self._arm_suspicion(member, suspicion)
            return
        if rec.state != ALIVE:
            return
        if member == self.id:
            if not self.left:
                self._refute(incarnation)
            return
        self._set(member, SUSPECT, incarnation, self.env.now())
        self.queue.push(update)
        self._start_suspicion(member, incarnation, accuser)

    def _dead(self, member: str, incarnation: int, accuser: str, address: str = "") -> None:
        rec = self.members.get(member)
        state = LEFT if accuser == member else DEAD
        update = Update(kind=DEAD, member=member, incarnation=incarnation, accuser=accuser)
        if rec is None:
            self._set(member, state, incarnation, self.env.now(), address=address or member)
            self.queue.push(update)
            return
        if incarnation < rec.incarnation:
            return
        self._clear_suspicion(member)
        if rec.gone():
            return
        if member == self.id:
            if not self.left:
                self._refute(incarnation)
            return
        self._set(member, state, incarnation, self.env.now())
        self.queue.push(update)

    def _refute(self, accused: int) -> None:
        incarnation = self.incarnation + 1
        if accused >= incarnation:
            incarnation = accused + 1
        self.incarnation = incarnation
        if self.opts.persist_incarnation:
            self.env.storage.put(INCARNATION_KEY, incarnation)
        self._set(self.id, ALIVE, incarnation, self.env.now())
        self.refutations += 1
        self.env.record("refute", incarnation=incarnation, accused=accused)
        if self.opts.lifeguard:
            self.awareness.apply(1)
        self.queue.push(self._alive_update())

    def _alive_update(self) -> Update:
        return Update(kind=ALIVE, member=self.id, incarnation=self.incarnation, address=self.id)

    # ------------------------------------------------------------------ suspicion
    def _start_suspicion(self, member: str, incarnation: int, accuser: str) -> None:
        low, high = suspicion_bounds(
            self.opts.suspicion_mult, self.opts.suspicion_max_mult, self.live, self.opts.probe_interval
        )
        k = confirmations_wanted(self.opts.suspicion_mult, self.live)
        if not self.opts.lifeguard:
            k, high = 0, low  # SWIM's fixed suspicion timeout
        suspicion = Suspicion(start=self.env.now(), k=k, low=low, high=high, incarnation=incarnation)
        suspicion.accusers.add(accuser)
        self.suspicions[member] = suspicion
        self._arm_suspicion(member, suspicion)

    def _arm_suspicion(self, member: str, suspicion: Suspicion) -> None:
        self.env.set_timer(SUSPECT_TIMER + member, max(0.0, suspicion.deadline() - self.env.now()))

    def _clear_suspicion(self, member: str) -> None:
        if self.suspicions.pop(member, None) is not None:
            self.env.cancel_timer(SUSPECT_TIMER + member)

    def _suspicion_timeout(self, member: str) -> None:
        suspicion = self.suspicions.pop(member, None)
        rec = self.members.get(member)
        if suspicion is None or rec is None or rec.state != SUSPECT:
            return
        if rec.incarnation != suspicion.incarnation or "never-declare-dead" in self.bugs:
            return
        self.env.record(
            "declare", member=member, incarnation=rec.incarnation, confirmations=suspicion.confirmations
        )
        self._dead(member, rec.incarnation, self.id)

    # ------------------------------------------------------------------ the table
    def _set(self, member: str, state: str, incarnation: int, now: float, address: str | None = None) -> None:
        rec = self.members.get(member)
        old_state = rec.state if rec is not None else None
        old_inc = rec.incarnation if rec is not None else -1
        if rec is None:
            rec = Member(state=state, incarnation=incarnation, since=now, address=address or member)
            self.members[member] = rec
            if member != self.id:
                # A random offset keeps the detection bound low for newcomers.
                offset = self.env.rng.randint(0, len(self.order))
                self.order.insert(offset, member)
        else:
            if state != rec.state:
                rec.since = now
            rec.state = state
            rec.incarnation = incarnation
            if address:
                rec.address = address
        was_live = old_state in (ALIVE, SUSPECT)
        is_live = state in (ALIVE, SUSPECT)
        self.live += int(is_live) - int(was_live)
        self.changes.append((member, old_state, old_inc, state, incarnation))
        if state == DEAD and old_state != DEAD:
            self.dead_log.append((member, incarnation, now))
            if len(self.dead_log) > DEAD_LOG_LIMIT:
                del self.dead_log[: len(self.dead_log) - DEAD_LOG_LIMIT]
        if old_state is not None and old_state != state and member != self.id:
            self.env.record("member", member=member, state=state, incarnation=incarnation)

    def _random_members(self, k: int, ok: Any) -> list[str]:
        """Up to ``k`` distinct other members passing ``ok(id, record)`` (memberlist's
        kRandomNodes: random draws, exhaustive on small tables)."""
        order = self.order
        members = self.members
        rng = self.env.rng
        chosen: list[str] = []
        if k <= 0 or not order:
            return chosen
        if len(order) < 3 * k:
            pool = list(order)
            rng.shuffle(pool)
            return [m for m in pool if ok(m, members[m])][:k]
        for _ in range(3 * len(order)):
            if len(chosen) >= k:
                break
            member = order[rng.randrange(len(order))]
            if member not in chosen and ok(member, members[member]):
                chosen.append(member)
        return chosen

    def _scaled(self, timeout: float) -> float:
        return self.awareness.scale(timeout) if self.opts.lifeguard else timeout

    def _send(self, dst: str, msg: Any) -> None:
        self.sent += 1
        self.env.send(dst, msg)

    # ------------------------------------------------------------------ inspection
    def view(self) -> dict[str, tuple[str, int]]:
        """member -> (state, incarnation), as this member sees it."""
        return {m: (r.state, r.incarnation) for m, r in self.members.items()}

    def member_list(self, only: str | None = None) -> list[dict[str, Any]]:
        names = [only] if only is not None else sorted(self.members)
        return [
            {
                "id": m,
                "address": self.members[m].address,
                "state": self.members[m].state,
                "incarnation": self.members[m].incarnation,
            }
            for m in names
        ]

    def status(self) -> dict[str, Any]:
        """For transcripts (``log``): the own incarnation and health, then the table."""
        table = {m: f"{r.state}/{r.incarnation}" for m, r in sorted(self.members.items()) if m != self.id}
        return {"incarnation": self.incarnation, "health": self.awareness.score, **table}

    def node_status(self) -> NodeStatus:
        counts = dict.fromkeys(STATES, 0)
        for rec in self.members.values():
            counts[rec.state] += 1
        return NodeStatus(
            id=self.id,
            role=LEFT if self.left else "member",
            leader=None,
            generation_name="incarnation",
            generation=self.incarnation,
            details={**counts, "health": self.awareness.score, "queued": len(self.queue)},
        )


_HANDLED = frozenset({Ping, Ack, PingReq, Nack, Gossip, PushPull})


def _valid(update: Any, known: Callable[[str], int]) -> bool:
    """A well-formed update whose incarnation is within reach of ``known(member)``."""
    return (
        type(update) is Update
        and update.kind in STATES
        and type(update.member) is str
        and bool(update.member)
        and type(update.incarnation) is int
        and within_reach(update.incarnation, known(update.member), MAX_INCARNATION - 1)
        and type(update.accuser) is str
        and type(update.address) is str
    )
