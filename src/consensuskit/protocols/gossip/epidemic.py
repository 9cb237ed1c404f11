"""Rumor mongering as a cycle model: Demers et al., "Epidemic Algorithms for Replicated
Database Maintenance" (PODC 1987), section 1.4, measured the way the paper measures it.

Rules this module owns:
  * Time is synchronous cycles. A site holding the rumor as *hot* (infective) contacts
    partners chosen uniformly among the other n-1 sites. A site that learns the rumor in
    cycle c is counted as reached at time c and starts spreading it in cycle c+1, never in
    the cycle it learned it (seeds 000, 003: "forwards it next period").
  * push: each infective site sends the rumor to ``fanout`` partners per cycle.
    pull: every site asks one partner per cycle; a partner that was infective at the start
    of the cycle answers with the rumor. push-pull: every site contacts one partner per
    cycle and both sides send whatever hot rumor they held at the start of the cycle.
  * Loss of interest, parameter k, decided once per hot site per cycle from that cycle's
    sends, each judged by what its receiver knew when the cycle began. *feedback*: a cycle
    with a useful send resets the counter, a cycle of only wasted sends (the receivers
    already knew) counts one; *blind*: every cycle with a send counts one. *counter*
    removes the site at k counts; *coin* removes it with probability 1/k per count.
    With these rules the paper's Tables 1-3 come out within sampling noise (residue,
    traffic, t_last); the per-send variants do not (pull residue 5x too high).
  * Connection limit L: a site accepts at most L incoming connections per cycle; a refused
    contact carries nothing, costs no traffic and gives no feedback; with ``hunt`` H the
    caller then tries up to H other uniform partners.
  * Figures, as the paper defines them: residue s = fraction of sites never reached;
    traffic m = update messages sent / n; t_ave = mean arrival cycle over the sites reached
    (the origin excluded); t_last = arrival cycle of the last site reached.
  * ``interest="forever"`` never loses interest: the simple epidemic (anti-entropy's
    infection curve) used for the scale run; it stops once every site is reached.
Deterministic given the generators the caller hands in (one ``random.Random`` per run,
seeded by ``cli_gossip.run_rngs``); nothing global.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MODES = ("push", "pull", "push-pull")
INTEREST = ("counter", "coin", "forever")

_SUSCEPTIBLE = 0
_INFECTIVE = 1
_REMOVED = 2

# What a hot site's sends in one cycle told it (bit flags).
_WASTED = 1  # some receiver already knew the rumor when the cycle began
_USEFUL = 2  # some receiver did not


@dataclass(frozen=True, slots=True, kw_only=True)
class RumorConfig:
    """One variant of rumor mongering (the paper's defaults: push, feedback, counter)."""

    n: int = 1000
    mode: str = "push"
    feedback: bool = True
    interest: str = "counter"
    k: int = 1
    fanout: int = 1
    connection_limit: int | None = None
    hunt: int = 0
    max_cycles: int = 100_000

    def validate(self) -> None:
        """Raise ValueError with one clear line for a variant that cannot run."""
        if self.n < 2:
            raise ValueError(f"nodes must be at least 2, got {self.n}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.interest not in INTEREST:
            raise ValueError(f"interest must be one of {', '.join(INTEREST)}, got {self.interest!r}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.fanout < 1:
            raise ValueError(f"fanout must be at least 1, got {self.fanout}")
        if self.fanout > 1 and self.mode != "push":
            raise ValueError("fanout above 1 is defined for push only")
        if self.connection_limit is not None and self.connection_limit < 1:
            raise ValueError(f"connection limit must be at least 1, got {self.connection_limit}")
        if self.hunt < 0:
            raise ValueError(f"hunt must be at least 0, got {self.hunt}")
        if self.hunt and self.connection_limit is None:
            raise ValueError("hunting needs a connection limit")

    @property
    def label(self) -> str:
        loss = (
            "forever"
            if self.interest == "forever"
            else (f"{'feedback' if self.feedback else 'blind'}-{self.interest}")
        )
        limit = f" L={self.connection_limit}" if self.connection_limit else ""
        limit += f" hunt={self.hunt}" if self.hunt else ""
        fan = f" fanout={self.fanout}" if self.fanout > 1 else ""
        return f"{self.mode} {loss} k={self.k}{fan}{limit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RumorRun:
    """The paper's figures for one epidemic."""

    residue: float
    traffic: float
    t_ave: float
    t_last: int
    messages: int
    reached: int
    cycles: int


class _Epidemic:
    """Per-site state of one epidemic as flat lists (the 100,000-site run needs it lean).

    Invariant: a site is hot in cycle c iff state is INFECTIVE and arrival < c; removals
    decided in cycle c take effect when it ends, so the hot set is fixed during a cycle.
    """

    __slots__ = (
        "accepted",
        "arrival",
        "cfg",
        "count",
        "cycle",
        "fresh",
        "messages",
        "outcome",
        "reached",
        "rng",
        "state",
    )

    def __init__(self, cfg: RumorConfig, rng: random.Random, origin: int) -> None:
        self.cfg = cfg
        self.rng = rng
        self.state = bytearray(cfg.n)
        self.count = [0] * cfg.n
        self.arrival = [-1] * cfg.n
        self.accepted = bytearray(cfg.n) if cfg.connection_limit is not None else None
        self.outcome = bytearray(cfg.n)
        self.messages = 0
        self.reached = 1
        self.cycle = 0
        self.fresh: list[int] = []
        self.state[origin] = _INFECTIVE
        self.arrival[origin] = 0

    def admit(self, site: int) -> bool:
        """True if ``site`` may take one more incoming connection this cycle."""
        accepted = self.accepted
        if accepted is None:
            return True
        if accepted[site] >= self.cfg.connection_limit:  # type: ignore[operator]
            return False
        accepted[site] += 1
        return True

    def send(self, sender: int, receiver: int) -> None:
        """``sender`` gives the rumor to ``receiver``; whether it was news is judged by what
        the receiver knew when the cycle began (two sites telling a site in the same cycle
        both get positive feedback: the paper's traffic exceeds (k+1)(1-s) only so)."""
        self.messages += 1
        arrival = self.arrival[receiver]
        if arrival < 0:
            self.state[receiver] = _INFECTIVE
            self.arrival[receiver] = self.cycle
            self.reached += 1
            self.fresh.append(receiver)
            self.outcome[sender] |= _USEFUL
        elif arrival == self.cycle:
            self.outcome[sender] |= _USEFUL
        else:
            self.outcome[sender] |= _WASTED

    def end_cycle(self, hot: list[int]) -> list[int]:
        """Apply loss of interest once per hot site for this cycle's sends; return the hot
        list of the next cycle. Feedback: a useful send resets the counter (the paper's
        bound k(2m-1) charges each wasted send to a useful one or a discovery within the
        last k cycles); a cycle of only wasted sends counts one. Blind: a cycle with sends
        counts one."""
        cfg, outcome, state, count = self.cfg, self.outcome, self.state, self.count
        still: list[int] = []
        for site in hot:
            seen = outcome[site]
            outcome[site] = 0
            if seen and cfg.interest != "forever":
                if cfg.feedback and seen & _USEFUL:
                    count[site] = 0
                elif cfg.interest == "counter":
                    count[site] += 1
                    if count[site] >= cfg.k:
                        state[site] = _REMOVED
                elif self.rng.random() * cfg.k < 1.0:
                    state[site] = _REMOVED
            if state[site] == _INFECTIVE:
                still.append(site)
        still.extend(self.fresh)
        self.fresh = []
        if self.accepted is not None:
            self.accepted = bytearray(cfg.n)
        return still


def _partner(rng: random.Random, n: int, site: int) -> int:
    """A site other than ``site``, uniformly."""
    other = int(rng.random() * (n - 1))
    return other + 1 if other >= site else other


def _connect(epi: _Epidemic, site: int) -> int | None:
    """A partner for ``site`` that accepts the connection: the first uniform pick, or after
    a refusal up to ``hunt`` more picks (section 1.4: "the choosing site can hunt for
    alternate sites"); None when every pick was refused."""
    rng, n = epi.rng, epi.cfg.n
    for _ in range(epi.cfg.hunt + 1):
        partner = _partner(rng, n, site)
        if epi.admit(partner):
            return partner
    return None


def _push_cycle(epi: _Epidemic, hot: list[int]) -> None:
    for sender in hot:
        for _ in range(epi.cfg.fanout):
            receiver = _connect(epi, sender)
            if receiver is not None:
                epi.send(sender, receiver)


def _pull_cycle(epi: _Epidemic, push_too: bool) -> None:
    """Every site contacts one partner; rumors hot at the cycle's start flow back to the
    caller (pull) and, in push-pull, from the caller too."""
    n, state, arrival, cycle = epi.cfg.n, epi.state, epi.arrival, epi.cycle
    for caller in range(n):
        callee = _connect(epi, caller)
        if callee is None:
            continue
        if push_too and state[caller] == _INFECTIVE and 0 <= arrival[caller] < cycle:
            epi.send(caller, callee)
        if state[callee] == _INFECTIVE and 0 <= arrival[callee] < cycle:
            epi.send(callee, caller)


def run_rumor(cfg: RumorConfig, rng: random.Random, origin: int = 0) -> RumorRun:
    """One epidemic from a single infective ``origin`` until no site holds the rumor hot."""
    cfg.validate()
    epi = _Epidemic(cfg, rng, origin)
    hot = [origin]
    while hot and epi.cycle < cfg.max_cycles:
        if cfg.interest == "forever" and epi.reached == cfg.n:
            break
        epi.cycle += 1
        if cfg.mode == "push":
            _push_cycle(epi, hot)
        else:
            _pull_cycle(epi, push_too=cfg.mode == "push-pull")
        hot = epi.end_cycle(hot)
    arrivals = [t for t in epi.arrival if t > 0]
    return RumorRun(
        residue=(cfg.n - epi.reached) / cfg.n,
        traffic=epi.messages / cfg.n,
        t_ave=sum(arrivals) / len(arrivals) if arrivals else 0.0,
        t_last=max(arrivals, default=0),
        messages=epi.messages,
        reached=epi.reached,
        cycles=epi.cycle,
    )


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over many runs: its mean and its sample standard deviation."""

    mean: float
    stdev: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "stdev": self.stdev}


def spread(values: list[float]) -> Spread:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Spread(mean, 0.0)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Spread(mean, math.sqrt(var))


FIGURES = ("residue", "traffic", "t_ave", "t_last")


def measure(
    cfg: RumorConfig,
    rngs: Sequence[random.Random],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Spread]:
    """The paper's four figures over one epidemic per generator in ``rngs`` (the caller
    seeds them: nothing under protocols/ builds a generator), each a mean with its spread."""
    cfg.validate()
    if not rngs:
        raise ValueError("runs must be at least 1, got 0")
    results = []
    for index, rng in enumerate(rngs):
        results.append(run_rumor(cfg, rng))
        if progress is not None:
            progress(index + 1)
    return {name: spread([float(getattr(r, name)) for r in results]) for name in FIGURES}
