"""Gossip's messages: rumor mongering and anti-entropy (full state or Merkle digests).

Tags 90-109 belong to Gossip; append new ones, never reuse.

An ``Entry`` is one versioned key: its stamp ``(counter, origin)`` orders writes (the
greater stamp wins; ``origin`` breaks ties) and names a write uniquely, since each origin
numbers its own writes upwards. Exchanges that restrict who may send entries carry the
``flow`` ("push": initiator to responder, "pull": responder to initiator, "push-pull":
both) and whether the sender is the exchange's ``initiator``.

A ``KVEntry`` is the gossip kv's entry (kv_node.py): its ``counter`` is a packed hybrid
logical clock (hlc.py), ``deleted`` marks a tombstone, and ``prev_counter``/``prev_origin``
name the write it replaced where it was written (None: the key was absent or deleted
there), which is how a checker tells a sequential overwrite from a concurrent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensuskit.core.messages import message


@message(90)
@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    key: str
    counter: int
    origin: str
    value: Any = None

    @property
    def stamp(self) -> tuple[int, str]:
        return (self.counter, self.origin)

    def summary(self) -> str:
        return f"{self.key}@{self.counter}.{self.origin}"


@message(91)
@dataclass(frozen=True, slots=True, kw_only=True)
class Rumor:
    """Hot rumors pushed to one peer (Demers et al. section 1.4)."""

    entries: tuple[Entry, ...]

    def summary(self) -> str:
        return f"Rumor [{' '.join(e.summary() for e in self.entries)}]"


@message(92)
@dataclass(frozen=True, slots=True, kw_only=True)
class RumorFeedback:
    """The keys of a ``Rumor`` the receiver already knew (at that stamp or a newer one):
    the sender's feedback for its loss-of-interest counters."""

    known: tuple[str, ...]

    def summary(self) -> str:
        return f"RumorFeedback known=[{' '.join(self.known)}]"


@message(93)
@dataclass(frozen=True, slots=True, kw_only=True)
class FullState:
    """Anti-entropy by full-state exchange: every entry the sender holds. ``reply`` asks
    the receiver for its own full state back (push-pull)."""

    entries: tuple[Entry, ...]
    reply: bool = False

    def summary(self) -> str:
        reply = " reply" if self.reply else ""
        return f"FullState [{' '.join(e.summary() for e in self.entries)}]{reply}"


@message(94)
@dataclass(frozen=True, slots=True, kw_only=True)
class StateRequest:
    """Pull by full state: send me everything you hold."""

    def summary(self) -> str:
        return "StateRequest"


@message(95)
@dataclass(frozen=True, slots=True, kw_only=True)
class DigestProbe:
    """The sender's Merkle hashes at some tree prefixes (b"" where it holds nothing)."""

    flow: str
    initiator: bool
    nodes: tuple[tuple[str, bytes], ...]

    def summary(self) -> str:
        differing = [p or "root" for p, h in self.nodes if h]
        side = "initiator" if self.initiator else "responder"
        return f"DigestProbe {self.flow} from={side} nodes={len(self.nodes)} nonempty=[{' '.join(differing)}]"


@message(96)
@dataclass(frozen=True, slots=True, kw_only=True)
class LeafDigest:
    """The sender's (key, counter, origin) for every entry under some tree prefixes whose
    hashes differ (leaves, or subtrees small enough to list): the receiver answers with
    exactly the entries either side lacks there."""

    flow: str
    initiator: bool
    prefixes: tuple[str, ...]
    stamps: tuple[tuple[str, int, str], ...]

    def summary(self) -> str:
        stamps = " ".join(f"{k}@{c}.{o}" for k, c, o in self.stamps)
        prefixes = " ".join(p or "root" for p in self.prefixes)
        return f"LeafDigest {self.flow} under=[{prefixes}] stamps=[{stamps}]"


@message(97)
@dataclass(frozen=True, slots=True, kw_only=True)
class Want:
    """Send me these keys, and everything under these prefixes."""

    flow: str
    initiator: bool
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def summary(self) -> str:
        return f"Want {self.flow} keys=[{' '.join(self.keys)}] prefixes=[{' '.join(self.prefixes)}]"


@message(98)
@dataclass(frozen=True, slots=True, kw_only=True)
class Entries:
    """Entries the receiver lacks (the end of a digest exchange)."""

    entries: tuple[Entry, ...]

    def summary(self) -> str:
        return f"Entries [{' '.join(e.summary() for e in self.entries)}]"


@message(99)
@dataclass(frozen=True, slots=True, kw_only=True)
class RumorRequest:
    """Pull rumor mongering: send me your hot rumors (answered by a ``Rumor``, or nothing
    when the receiver holds none)."""

    def summary(self) -> str:
        return "RumorRequest"


@message(100)
@dataclass(frozen=True, slots=True, kw_only=True)
class KVEntry(Entry):
    """One version of a gossip kv key: a value, or a tombstone (``deleted``)."""

    deleted: bool = False
    prev_counter: int | None = None
    prev_origin: str = ""

    @property
    def replaces(self) -> tuple[int, str] | None:
        return None if self.prev_counter is None else (self.prev_counter, self.prev_origin)

    def summary(self) -> str:
        # The HLC as l+c (l in milliseconds; hlc.py packs it as l << 16 | c).
        counter = self.counter
        stamp = f"{counter >> 16}+{counter & 0xFFFF}" if isinstance(counter, int) else counter
        return f"{self.key}@{stamp}.{self.origin}{' deleted' if self.deleted else ''}"
