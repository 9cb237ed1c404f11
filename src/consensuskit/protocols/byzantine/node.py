"""The generals as protocol nodes: OM(m)/SM(m) over the simulator's (or TCP's) network.

Rules this module owns:
  * time is cut into instances of m+2 rounds of ``round`` seconds on each node's own
    clock, instance k starting at k * (m+2) * round: in its round 1 the commander (the
    first member) sends its order, in rounds 2..m+1 lieutenants relay, at the start of
    round m+2 every lieutenant decides.  This is LSP82's synchronous model (A1-A3):
    it holds while every message arrives within its round and clocks agree; a message
    that arrives in another round or another instance is dropped and counted, and
    then counts as missing (the default order);
  * the per-general rules are oral.py's and signed.py's, unchanged; this module only
    moves their messages (``OralOrder``, ``SignedOrder``) and keeps the clock;
  * signed mode in the simulator uses tokens (signing.py) whose CPU cost delays a
    node's messages: a round's sends leave once the CPU time spent since the last
    sends has elapsed;
  * a message of this instance that arrives a hair before its round begins here (the
    sender's clock, or its event loop, ran ahead of ours) is held until our round
    catches up, then judged as if it had arrived then: clocks that agree only within a
    bound still meet A1-A3.  At most ``EARLY_LIMIT`` are held; more are dropped and
    counted;
  * a node that (re)starts joins at the next instance boundary; it keeps nothing on
    storage (an instance is short-lived and a restarted general is simply absent);
  * ``decisions()`` (instance -> order; the commander's own order for its instances)
    is what check/byzantine.py's checker reads; a decision is never changed;
  * malformed or misrouted messages are dropped and counted (``dropped``), never raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from consensuskit.core.capabilities import NodeStatus
from consensuskit.core.client import ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.protocols.byzantine.messages import OralOrder, SignedOrder
from consensuskit.protocols.byzantine.options import GeneralsOptions, parse
from consensuskit.protocols.byzantine.oral import OralGeneral
from consensuskit.protocols.byzantine.signed import Signed, SignedGeneral
from consensuskit.protocols.byzantine.signing import Keys, make_keys
from consensuskit.protocols.byzantine.strategies import strategy

ROUND_TIMER = "round"
FLUSH_TIMER = "flush"
NOT_SERVED = "not-served"
# A boundary fires this much after its instant, so that a timer set "at" the boundary
# never lands a hair before it through float rounding.
EPSILON = 1e-9
# The most early messages held (OM(m) sends a lieutenant at most (n-1)^m per round).
EARLY_LIMIT = 1024


class GeneralNode:
    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.id = node_id
        self.env = env
        self.generals = tuple(members)
        self.opts: GeneralsOptions = parse(options)
        self.commander = self.generals[0]
        self.traitor = node_id in self.opts.traitors
        self.keys: Keys | None = (
            make_keys(self.opts.scheme, self.generals, self.opts.key_seed)
            if self.opts.mode == "signed"
            else None
        )
        # Traitors collude: each holds every traitor's key.
        self.signer = (
            self.keys.signer(self.opts.traitors if self.traitor else {node_id}) if self.keys else None
        )
        self.period = (self.opts.m + 2) * self.opts.round
        self.instance = -1
        self.round = 0
        self.general: OralGeneral | SignedGeneral | None = None
        self._decisions: dict[int, str] = {}
        self.sent = 0
        self.sent_by_instance: dict[int, int] = {}
        self.dropped = 0
        self._cpu_flushed = 0.0
        self._held: list[tuple[str, Any]] = []
        self._early: list[tuple[str, Any]] = []  # this instance's, for a round still ahead

    # ------------------------------------------------------------------ lifecycle
    def on_start(self) -> None:
        self.env.record("role", role=self.role())
        self._arm_next_instance()

    def role(self) -> str:
        return "commander" if self.id == self.commander else "lieutenant"

    def _arm_next_instance(self) -> None:
        now = self.env.now()
        k = max(self.instance + 1, math.ceil((now - EPSILON) / self.period))
        if self.opts.instances and k >= self.opts.instances:
            self.general = None
            return
        self.instance = k
        self.round = 0
        self.general = None
        self.dropped += len(self._early)  # the last instance's, never reached
        self._early = []
        self.env.set_timer(ROUND_TIMER, max(0.0, k * self.period - now) + EPSILON)

    def _new_general(self, k: int) -> OralGeneral | SignedGeneral:
        lie = strategy(self.opts.strategy) if self.traitor else None
        rng = self.env.rng
        common: dict[str, Any] = dict(
            order=self.opts.order_of(k),
            strategy=lie,
            traitors=self.opts.traitors,
            rng=rng,
            bugs=self.opts.bugs,
        )
        if self.opts.mode == "oral":
            return OralGeneral(self.id, self.generals, self.opts.m, **common)
        assert self.signer is not None
        return SignedGeneral(self.id, self.generals, self.opts.m, self.signer, instance=k, **common)

    # ------------------------------------------------------------------ rounds
    def on_timer(self, key: str) -> None:
        if key == FLUSH_TIMER:
            self._flush()
            return
        if key != ROUND_TIMER or self.instance < 0:
            return
        self.round += 1
        if self.round == 1:
            self.general = self._new_general(self.instance)
        general = self.general
        assert general is not None
        if self._early:
            early, self._early = self._early, []
            for src, msg in early:
                self.on_message(src, msg)  # judged in this round; later rounds' held again
        if self.round <= general.rounds:
            self._send(general.sends(self.round))
            self.env.set_timer(ROUND_TIMER, self.opts.round)
            return
        # Round m+2: every message of the instance is in; decide.
        decision = general.decide()
        self._decisions[self.instance] = decision
        self.env.record("decide", instance=self.instance, order=decision, loyal=not self.traitor)
        self._arm_next_instance()

    def _send(self, sends: list[Any]) -> None:
        k = self.instance
        for dst, *rest in sends:
            if self.opts.mode == "oral":
                path, value = rest
                self._held.append((dst, OralOrder(instance=k, path=path, value=value)))
            else:
                held: Signed = rest[0]
                msg = SignedOrder(
                    instance=k, value=held.value, signers=held.signers, signatures=held.signatures
                )
                self._held.append((dst, msg))
        spent = (self.signer.cpu_seconds if self.signer is not None else 0.0) - self._cpu_flushed
        if spent > 0:
            self.env.set_timer(FLUSH_TIMER, spent)  # the CPU is busy signing and verifying
        else:
            self._flush()

    def _flush(self) -> None:
        if self.signer is not None:
            self._cpu_flushed = self.signer.cpu_seconds
        held, self._held = self._held, []
        for dst, msg in held:
            self.env.send(dst, msg)
            self.sent_by_instance[msg.instance] = self.sent_by_instance.get(msg.instance, 0) + 1
        self.sent += len(held)

    # ------------------------------------------------------------------ messages
    def on_message(self, src: str, msg: Any) -> None:
        general = self.general
        if getattr(msg, "instance", None) != self.instance or src not in self.generals:
            self.dropped += 1
            return
        if general is None or _round_of(msg) > self.round:
            if len(self._early) < EARLY_LIMIT and self.instance >= 0:
                self._early.append((src, msg))
            else:
                self.dropped += 1
            return
        if isinstance(msg, OralOrder) and isinstance(general, OralGeneral):
            ok = general.receive(src, msg.path, msg.value, self.round)
        elif isinstance(msg, SignedOrder) and isinstance(general, SignedGeneral):
            ok = general.receive(src, Signed(msg.value, msg.signers, msg.signatures), self.round)
        else:
            ok = False
        if not ok:
            self.dropped += 1

    def on_request(self, request: ClientRequest) -> None:
        # The generals serve no client operations: orders come from the schedule.
        self.env.deliver(
            ClientResponse(client_id=request.client_id, seq=request.seq, ok=False, error=NOT_SERVED)
        )

    # ------------------------------------------------------------------ inspection
    def decisions(self) -> dict[int, str]:
        return dict(self._decisions)

    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.role(),
            leader=None,
            generation_name="instance",
            generation=max(self.instance, 0),
            details={
                "loyal": not self.traitor,
                "mode": self.opts.mode,
                "m": self.opts.m,
                "decided": len(self._decisions),
                "last_decision": self._decisions[max(self._decisions)] if self._decisions else None,
                "sent": self.sent,
                "dropped": self.dropped,
            },
        )


def _round_of(msg: Any) -> int:
    """The round a message belongs to: the length of its path (oral) or of its chain of
    signers (signed); 0 for anything else (judged, and dropped, at once)."""
    if isinstance(msg, OralOrder) and isinstance(msg.path, tuple):
        return len(msg.path)
    if isinstance(msg, SignedOrder) and isinstance(msg.signers, tuple):
        return len(msg.signers)
    return 0
