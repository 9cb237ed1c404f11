"""SM(m), the signed messages algorithm (Lamport, Shostak, Pease 1982, §4), one general.

Rules this module owns:
  * round 1: the commander signs its order and sends it to every lieutenant ("v:0");
  * a lieutenant i that receives a valid "v:0:j1:...:jk" whose v is not in its set V_i
    adds v to V_i and, if k < m, signs it and sends "v:0:j1:...:jk:i" to every
    lieutenant not among j1..jk (in the next round); after round m+1 it obeys
    choice(V_i) (orders.py);
  * valid means: the first signer is the commander, then distinct lieutenants, not the
    receiver, the last signer is the sender, at most m+1 signers, each signature good
    over the value and every earlier signature (signing.py ``payload``), and it came in
    the round its length says.  Anything else is dropped and counted (a forgery shows
    up here);
  * a traitor runs the same code with a strategy; a lie it can sign (every signer of
    the chain is a traitor: they share their keys) goes out validly signed, any other
    lie goes out with forged signatures (counted in ``forged``) and is dropped;
  * the number of messages depends on what the traitors do (a lieutenant relays each
    value at most once), so there is no formula: with a loyal commander it is (n-1)
    for m = 0 and (n-1)^2 for any m >= 1 (each lieutenant relays the one order once).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consensuskit.protocols.byzantine.orders import DEFAULT, choice
from consensuskit.protocols.byzantine.signing import Signer, payload
from consensuskit.protocols.byzantine.strategies import Lie, Strategy


@dataclass(frozen=True, slots=True)
class Signed:
    """One signed order: ``value`` under ``signers``' ``signatures`` (commander first)."""

    value: str
    signers: tuple[str, ...]
    signatures: tuple[bytes, ...]


SignedSend = tuple[str, Signed]
ACCEPT_FORGERIES = "accept-forgeries"  # bug knob (node.py)  # (recipient, message)


class SignedGeneral:
    """One general of SM(m): ``sends(round)``, ``receive(...)``, then ``decide()``."""

    def __init__(
        self,
        me: str,
        generals: Sequence[str],
        m: int,
        signer: Signer,
        *,
        instance: int = 0,
        order: str | None = None,
        strategy: Strategy | None = None,
        traitors: frozenset[str] = frozenset(),
        rng: random.Random | None = None,
        votes: Mapping[str, str] | None = None,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        self.me = me
        # Bug knob: take signatures on trust (a forgery then passes for the real thing).
        self.accept_forgeries = ACCEPT_FORGERIES in bugs
        self.generals = tuple(generals)
        self.commander = self.generals[0]
        self.m = m
        self.signer = signer
        self.instance = instance
        self.order = order if order is not None else DEFAULT
        self.strategy = strategy
        self.traitors = traitors
        self.rng = rng  # a traitor's lies draw from it (handed in: the run's, or env.rng)
        self.votes = dict(votes or {})
        self.V: set[str] = set()
        self._to_relay: list[Signed] = []
        self.sent = 0
        self.rejected = 0
        self.forged = 0

    def _rng(self) -> random.Random:
        if self.rng is None:
            raise ValueError(f"traitor {self.me} has no rng to draw its lies from")
        return self.rng

    @property
    def rounds(self) -> int:
        return self.m + 1

    @property
    def is_commander(self) -> bool:
        return self.me == self.commander

    # ------------------------------------------------------------------ sending
    def sends(self, round_: int) -> list[SignedSend]:
        """The messages this general sends in ``round_`` (1-based)."""
        out: list[SignedSend] = []
        if round_ == 1:
            if self.is_commander:
                for g in self.generals[1:]:
                    self._add(out, g, Signed(self.order, (), ()))
        elif not self.is_commander and 2 <= round_ <= self.rounds:
            relays, self._to_relay = self._to_relay, []
            for held in relays:
                for g in self.generals[1:]:
                    if g != self.me and g not in held.signers:
                        self._add(out, g, held)
        self.sent += len(out)
        return out

    def _add(self, out: list[SignedSend], dst: str, held: Signed) -> None:
        """Sign ``held`` on to ``dst`` (through the strategy, for a traitor)."""
        value = held.value
        if self.strategy is not None:
            lie = self.strategy(
                Lie(
                    sender=self.me,
                    recipient=dst,
                    path=(*held.signers, self.me),
                    honest=value,
                    generals=self.generals,
                    traitors=self.traitors,
                    rng=self._rng(),
                    votes=self.votes,
                )
            )
            if lie is None:
                return
            value = lie
        signers, signatures = held.signers, held.signatures
        if value != held.value:
            signers, signatures = self._resign(value, signers)
        data = payload(self.instance, value, signers, signatures)
        out.append((dst, Signed(value, (*signers, self.me), (*signatures, self.signer.sign(self.me, data)))))

    def _resign(self, value: str, signers: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
        """The chain ``signers`` over a new ``value``: signed anew where the traitors hold
        the keys, forged where they do not."""
        signatures: list[bytes] = []
        forged = False
        for i, s in enumerate(signers):
            data = payload(self.instance, value, signers[:i], signatures)
            if self.signer.can_sign(s):
                signatures.append(self.signer.sign(s, data))
            else:
                signatures.append(self.signer.forge(s, data))
                forged = True
        self.forged += forged
        return signers, tuple(signatures)

    # ------------------------------------------------------------------ receiving
    def valid(self, src: str, msg: Signed, round_: int | None = None) -> bool:
        signers, signatures = msg.signers, msg.signatures
        if type(msg.value) is not str or len(signatures) != len(signers):
            return False
        if not 1 <= len(signers) <= self.rounds:
            return False
        if round_ is not None and len(signers) != round_:
            return False
        members = set(self.generals)
        if (
            signers[0] != self.commander
            or signers[-1] != src
            or self.me in signers
            or len(set(signers)) != len(signers)
            or not all(s in members for s in signers)
        ):
            return False
        if self.accept_forgeries:
            return True
        for i, s in enumerate(signers):
            data = payload(self.instance, msg.value, signers[:i], signatures[:i])
            if not self.signer.verify(s, data, signatures[i]):
                return False
        return True

    def receive(self, src: str, msg: Signed, round_: int | None = None) -> bool:
        """Take ``msg`` from ``src``; False (and counted) when it is not valid."""
        if self.is_commander or not self.valid(src, msg, round_):
            self.rejected += 1
            return False
        if msg.value not in self.V:
            self.V.add(msg.value)
            if len(msg.signers) - 1 < self.m:  # k lieutenants signed, k < m: relay
                self._to_relay.append(msg)
        return True

    # ------------------------------------------------------------------ deciding
    def decide(self) -> str:
        if self.is_commander:
            return self.order
        return choice(self.V)

    def view(self) -> dict[str, str]:
        return {"V": ",".join(sorted(self.V))}
