"""OM(m), the oral messages algorithm (Lamport, Shostak, Pease 1982, §3), one general.

Rules this module owns:
  * the recursion OM(m) -> OM(m-1) is unrolled into m+1 synchronous rounds: in round 1
    the commander sends its order to every lieutenant; in round k (2..m+1) each
    lieutenant i relays, for every path p of length k-1 not containing i, the value it
    got along p (RETREAT if none came: "or RETREAT if he receives no value") to every
    lieutenant not on p+(i,).  A message is "v along p": p[0] the commander, p[-1] the
    sender.  Round k therefore carries (n-1)(n-2)...(n-k) messages, and a run
    ``message_count(n, m)``;
  * deciding folds the received values back up the same tree: the value i uses for the
    sub-run OM(m-len(p)+1) led by p[-1] is the value received along p at the last
    level, and otherwise the majority of that value and of i's results for every
    sub-run p+(j,), j not on p and j != i (step 3 of OM(m));
  * a message is accepted only if its path is one OM(m) can produce for this receiver
    (starts at the commander, ends with the sender, distinct generals, not through
    the receiver, at most m+1 long) and arrived in the round its length says; the
    first value along a path wins; anything else is dropped and counted;
  * a traitor runs the same code, but each value it sends goes through its strategy
    (strategies.py), which may change it or keep it back;
  * ``tie="commander"`` is not OM(m): where no value has a majority, the lieutenant
    obeys the sub-run's commander (the value received along p) instead of RETREAT.  It
    exists to run the paper's impossibility argument: it repairs IC2 in Fig. 1 and so
    breaks IC1 in Fig. 2.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from itertools import permutations
from math import perm

from consensuskit.protocols.byzantine.orders import DEFAULT, majority
from consensuskit.protocols.byzantine.strategies import Lie, Strategy

TRUST_COMMANDER = "trust-commander"  # bug knob (node.py)
TIE_RETREAT = "retreat"  # OM(m): no majority -> RETREAT
TIE_COMMANDER = "commander"  # not OM(m): no majority -> the sub-run's commander's value
TIES = (TIE_RETREAT, TIE_COMMANDER)

Path = tuple[str, ...]
Send = tuple[str, Path, str]  # (recipient, path, value)


def _has_majority(values: list[str], value: str) -> bool:
    return 2 * values.count(value) > len(values)


def message_count(n: int, m: int) -> int:
    """Messages of OM(m) among n generals: (n-1) + (n-1)(n-2) + ... + (n-1)...(n-m-1)."""
    return sum(perm(n - 1, k) for k in range(1, m + 2))


class OralGeneral:
    """One general of OM(m): ``sends(round)``, ``receive(...)``, then ``decide()``."""

    def __init__(
        self,
        me: str,
        generals: Sequence[str],
        m: int,
        *,
        order: str | None = None,
        strategy: Strategy | None = None,
        traitors: frozenset[str] = frozenset(),
        rng: random.Random | None = None,
        votes: Mapping[str, str] | None = None,
        bugs: frozenset[str] = frozenset(),
        tie: str = TIE_RETREAT,
    ) -> None:
        if tie not in TIES:
            raise ValueError(f"unknown tie rule {tie!r}; valid: {', '.join(TIES)}")
        self.me = me
        self.tie = tie
        # Bug knob: obey the commander's own message, ignoring the relays (OM(0)).
        self.trust_commander = TRUST_COMMANDER in bugs
        self.generals = tuple(generals)
        self.commander = self.generals[0]
        self.m = m
        self.order = order if order is not None else DEFAULT
        self.strategy = strategy  # None: loyal
        self.traitors = traitors
        self.rng = rng  # a traitor's lies draw from it (handed in: the run's, or env.rng)
        self.votes = dict(votes or {})
        self.received: dict[Path, str] = {}
        self.sent = 0
        self.rejected = 0

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
    def _paths(self, length: int) -> Iterator[Path]:
        """Every path of ``length`` generals OM(m) can deliver to me, in general order."""
        others = [g for g in self.generals[1:] if g != self.me]
        for middle in permutations(others, length - 1):
            yield (self.commander, *middle)

    def sends(self, round_: int) -> list[Send]:
        """The messages this general sends in ``round_`` (1-based), in a fixed order."""
        if round_ == 1:
            if not self.is_commander:
                return []
            out = [(g, (self.me,), self.order) for g in self.generals[1:]]
        elif self.is_commander or not 2 <= round_ <= self.rounds:
            return []
        else:
            out = []
            for path in self._paths(round_ - 1):
                relayed = (*path, self.me)
                value = self.received.get(path, DEFAULT)
                out.extend((g, relayed, value) for g in self.generals[1:] if g not in relayed)
        return self._through_strategy(out)

    def _through_strategy(self, out: list[Send]) -> list[Send]:
        if self.strategy is None:
            self.sent += len(out)
            return out
        told: list[Send] = []
        for dst, path, honest in out:
            value = self.strategy(
                Lie(
                    sender=self.me,
                    recipient=dst,
                    path=path,
                    honest=honest,
                    generals=self.generals,
                    traitors=self.traitors,
                    rng=self._rng(),
                    votes=self.votes,
                )
            )
            if value is not None:
                told.append((dst, path, value))
        self.sent += len(told)
        return told

    # ------------------------------------------------------------------ receiving
    def acceptable(self, src: str, path: Path, value: object, round_: int | None = None) -> bool:
        if type(value) is not str or not isinstance(path, tuple) or not 1 <= len(path) <= self.rounds:
            return False
        if round_ is not None and len(path) != round_:
            return False
        members = set(self.generals)
        return (
            path[0] == self.commander
            and path[-1] == src
            and self.me not in path
            and len(set(path)) == len(path)
            and all(g in members for g in path)
            and path not in self.received
        )

    def receive(self, src: str, path: Path, value: object, round_: int | None = None) -> bool:
        """Take ``value`` along ``path`` from ``src``; False (and counted) if dropped."""
        if not self.acceptable(src, path, value, round_):
            self.rejected += 1
            return False
        self.received[path] = value  # type: ignore[assignment]
        return True

    # ------------------------------------------------------------------ deciding
    def decide(self) -> str:
        """The order this general obeys (the commander obeys its own)."""
        if self.is_commander:
            return self.order
        if self.trust_commander:
            return self.received.get((self.commander,), DEFAULT)
        return self._resolve((self.commander,))

    def _resolve(self, path: Path) -> str:
        got = self.received.get(path, DEFAULT)
        if len(path) == self.rounds:
            return got
        subs = [self._resolve((*path, j)) for j in self.generals[1:] if j not in path and j != self.me]
        values = [got, *subs]
        decided = majority(values)
        if self.tie == TIE_COMMANDER and decided == DEFAULT and not _has_majority(values, DEFAULT):
            return got
        return decided

    def view(self) -> dict[str, str]:
        """What this lieutenant holds, path by path ("c:l2" -> value), for narration."""
        return {":".join(p): v for p, v in sorted(self.received.items(), key=lambda kv: (len(kv[0]), kv[0]))}
