"""Byzantine replicas for the simulator's nemesis: a correct replica inside a wrapper that
lies on its behalf.  Chosen by the ``byzantine`` option (``n1:equivocate,n2:twin``).

Rules this module owns:
  * a faulty replica runs the correct code (``node.py``) on an env of this module, so it
    speaks the protocol well enough to be dangerous; the strategy rewrites, drops, delays
    or adds to what it sends, with its own keys only (it can forge nothing a MAC or a
    signature protects: what it forges is caught and counted by the receivers);
  * peers fall in two groups by their position in the member list (even: A, odd: B), the
    same for every faulty replica, so colluding liars split the correct replicas alike;
  * strategies:
      equivocate  every PRE-PREPARE, PREPARE and COMMIT names, for the same (v, n), a
                  batch of its own to each replica of group B (the batch plus a no-op
                  request naming that replica) and the true one to group A: conflicting
                  pre-prepares from a primary, double votes from a backup;
      silent      sends nothing and answers no client;
      forge       sends everything honestly, adds copies that claim another replica's
                  identity (bad MACs) and checkpoints "signed" for another replica, and
                  answers clients with a made-up result of the true one's shape (a kv
                  read: another value and version);
      replay      sends everything honestly and, with each message, an old one again;
      delay       holds every message to one victim (the next replica) ``byzantine_delay``;
      twin        two copies of the replica under one id, each talking to one group and
                  getting every other client request (Twins, Bano et al. 2021);
  * a faulty replica's state is not checked (check/pbft.py excludes faulty ids).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.env import Env
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.pbft.auth import Macs
from consensuskit.protocols.pbft.messages import (
    Batch,
    Checkpoint,
    Commit,
    Prepare,
    PrePrepare,
    batch_digest,
    payload,
)
from consensuskit.protocols.pbft.node import PbftNode
from consensuskit.protocols.pbft.options import PbftOptions

NOISE_CLIENT = "byzantine"
REPLAY_HISTORY = 64


def clone(obj: Any) -> Any:
    """A deep copy of a fresh state machine for a twin.  A part that cannot be copied
    field by field (the session table's encoder) says how with ``__deepcopy__``."""
    return copy.deepcopy(obj)


def noisy(batch: Batch, seq: int, dst: str) -> Batch:
    """The batch an equivocator names to ``dst``: the batch plus a no-op read naming it."""
    return (*batch, ClientRequest(client_id=NOISE_CLIENT, seq=seq, op=Op(kind="get", key=dst)))


def plain(batch: Batch) -> Batch:
    if batch and batch[-1].client_id == NOISE_CLIENT:
        return batch[:-1]
    return batch


class _CopyEnv:
    """The env one inner copy sees: its effects pass through the wrapper."""

    def __init__(self, outer: ByzantineNode, index: int, storage: Any) -> None:
        self.outer = outer
        self.index = index
        self.node_id = outer.id
        self.rng = outer.env.rng
        self.storage = storage

    def now(self) -> float:
        return self.outer.env.now()

    def send(self, dst: str, msg: Any) -> None:
        self.outer.outgoing(self.index, dst, msg)

    def deliver(self, response: ClientResponse) -> None:
        self.outer.reply(response)

    def set_timer(self, key: str, delay: float) -> None:
        self.outer.env.set_timer(f"t{self.index}:{key}", delay)

    def cancel_timer(self, key: str) -> None:
        self.outer.env.cancel_timer(f"t{self.index}:{key}")

    def record(self, kind: str, **fields: Any) -> None:
        if self.index == 0 and kind != "learned":
            self.outer.env.record(kind, **fields)


class ByzantineNode:
    def __init__(
        self,
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: PbftOptions,
        strategy: str,
        make_replica: Callable[..., PbftNode],
    ) -> None:
        self.id = node_id
        self.env = env
        self.members = tuple(members)
        self.strategy = strategy
        self.opts = options
        self.group_b = frozenset(m for i, m in enumerate(self.members) if i % 2 == 1 and m != node_id)
        others = [m for m in self.members if m != node_id]
        idx = self.members.index(node_id) if node_id in self.members else 0
        self.victim = self.members[(idx + 1) % len(self.members)] if others else None
        self.inner = make_replica(_CopyEnv(self, 0, env.storage))
        # Its own keys, as its correct replica has them (the runtime's, in real mode).
        self.macs: Macs = self.inner.macs
        self.twin: PbftNode | None = None
        if strategy == "twin":
            self.twin = make_replica(_CopyEnv(self, 1, MemoryStorage()), clone(self.inner.sm))
        self.sent: dict[str, list[Any]] = {}
        self.delayed: dict[int, tuple[str, Any]] = {}
        self.delay_ids = 0
        self.requests = 0
        self.lies = 0  # messages this replica rewrote, forged, replayed or held

    # ------------------------------------------------------------------ inputs
    def copies(self) -> list[PbftNode]:
        return [self.inner] if self.twin is None else [self.inner, self.twin]

    def on_start(self) -> None:
        for node in self.copies():
            node.on_start()

    def on_message(self, src: str, msg: Any) -> None:
        if self.twin is not None:
            (self.twin if src in self.group_b else self.inner).on_message(src, msg)
            return
        self.inner.on_message(src, msg)

    def on_request(self, request: ClientRequest) -> None:
        self.requests += 1
        if self.twin is not None and self.requests % 2 == 0:
            self.twin.on_request(request)
            return
        self.inner.on_request(request)

    def on_timer(self, key: str) -> None:
        head, _, rest = key.partition(":")
        if head == "t0":
            self.inner.on_timer(rest)
        elif head == "t1" and self.twin is not None:
            self.twin.on_timer(rest)
        elif head == "delay":
            held = self.delayed.pop(int(rest), None)
            if held is not None:
                self.env.send(*held)

    # ------------------------------------------------------------------ effects
    def reply(self, response: ClientResponse) -> None:
        if self.strategy == "silent":
            return
        if self.strategy == "forge" and response.ok:
            self.lies += 1
            response = dataclasses.replace(response, result=self.lie(response.result))
        self.env.deliver(response)

    def lie(self, result: Any) -> Any:
        """A made-up result in the shape of the true one, so a client that trusts one
        replica takes it for an answer (a kv read: another value and version)."""
        if not isinstance(result, dict) or "version" not in result:
            return {"forged": self.id}
        forged = {**result, "version": int(result.get("version") or 0) + 1000}
        if "value" in result:
            forged["value"] = f"forged-by-{self.id}"
        return forged

    def outgoing(self, index: int, dst: str, msg: Any) -> None:
        strategy = self.strategy
        if strategy == "silent":
            return
        if strategy == "twin":
            # Each copy lives on one side: copy 0 talks to group A, copy 1 to group B.
            if (dst in self.group_b) == (index == 1):
                self.env.send(dst, msg)
            return
        if strategy == "equivocate":
            msg = self._equivocate(dst, msg)
        elif strategy == "delay" and dst == self.victim:
            self.delay_ids += 1
            self.delayed[self.delay_ids] = (dst, msg)
            self.lies += 1
            self.env.set_timer(f"delay:{self.delay_ids}", self.opts.byzantine_delay)
            return
        self.env.send(dst, msg)
        if strategy == "forge":
            self._forge(dst, msg)
        elif strategy == "replay":
            history = self.sent.setdefault(dst, [])
            if history:
                self.lies += 1
                self.env.send(dst, history[self.env.rng.randrange(len(history))])
            history.append(msg)
            if len(history) > REPLAY_HISTORY:
                del history[0]

    def _mac(self, dst: str, msg: Any) -> Any:
        return dataclasses.replace(msg, mac=self.macs.mac(dst, payload(msg)))

    def _equivocate(self, dst: str, msg: Any) -> Any:
        to_b = dst in self.group_b
        if isinstance(msg, PrePrepare):
            base = plain(msg.batch)
            batch = noisy(base, msg.seq, dst) if to_b else base
            if batch == msg.batch:
                return msg
            self.lies += 1
            return self._mac(dst, dataclasses.replace(msg, batch=batch, digest=batch_digest(batch)))
        if isinstance(msg, Prepare | Commit):
            entry = self.inner.log.get(msg.seq)
            if entry is None or entry.digest != msg.digest:
                return msg
            base = plain(entry.batch)
            digest = batch_digest(noisy(base, msg.seq, dst) if to_b else base)
            if digest == msg.digest:
                return msg
            self.lies += 1
            return self._mac(dst, dataclasses.replace(msg, digest=digest))
        return msg

    def _forge(self, dst: str, msg: Any) -> None:
        """Claim another replica's identity: the MAC or signature gives it away."""
        others = [m for m in self.members if m not in (self.id, dst)]
        if not others:
            return
        claimed = others[self.env.rng.randrange(len(others))]
        if isinstance(msg, Prepare | Commit):
            self.lies += 1
            forged = dataclasses.replace(msg, replica=claimed, digest=bytes(16))
            self.env.send(dst, self._mac(dst, forged))
        elif isinstance(msg, Checkpoint):
            self.lies += 1
            fake = Checkpoint(seq=msg.seq, digest=bytes(16), replica=claimed)
            self.env.send(dst, dataclasses.replace(fake, sig=self.inner.signer.sign(payload(fake))))

    # ------------------------------------------------------------------ inspection
    def node_status(self) -> Any:
        status = self.inner.node_status()
        details = {**status.details, "byzantine": self.strategy, "lies": self.lies}
        return dataclasses.replace(status, details=details)

    def is_leader(self) -> bool:
        return self.inner.is_leader()

    def current_leader(self) -> str | None:
        return self.inner.current_leader()
