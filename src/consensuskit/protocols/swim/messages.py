"""SWIM's wire messages (Das, Gupta, Motivala, DSN 2002; memberlist's names in brackets).

Tags 110-129 belong to SWIM; append new ones, never reuse.

Every probe message carries ``updates``: membership updates piggybacked from the
sender's broadcast queue (memberlist's compound packets).  An ``Update`` is one of
alive / suspect / dead / left about one member at one incarnation; ``accuser`` names
who suspects or declares (a ``dead`` whose accuser is the member itself is a graceful
``left``, as memberlist encodes it).  Push-pull carries the sender's whole table as
updates, one per member.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.core.messages import message

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
LEFT = "left"
STATES = (ALIVE, SUSPECT, DEAD, LEFT)


@message(110)
@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """One membership fact: ``member`` is ``kind`` at ``incarnation`` [alive/suspect/dead]."""

    kind: str
    member: str
    incarnation: int
    accuser: str = ""
    address: str = ""

    def summary(self) -> str:
        by = f" by={self.accuser}" if self.accuser and self.kind in (SUSPECT, DEAD) else ""
        return f"{self.kind}({self.member}/{self.incarnation}{by})"


def _updates(updates: tuple[Update, ...]) -> str:
    return f" +[{' '.join(u.summary() for u in updates)}]" if updates else ""


@message(111)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """A probe of ``target`` [ping]; the target answers ``Ack`` with the same ``seq``."""

    seq: int
    target: str
    updates: tuple[Update, ...] = ()

    def summary(self) -> str:
        return f"Ping seq={self.seq} target={self.target}{_updates(self.updates)}"


@message(112)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The answer to a ``Ping`` [ackResp]; relayed back by an indirect prober."""

    seq: int
    updates: tuple[Update, ...] = ()

    def summary(self) -> str:
        return f"Ack seq={self.seq}{_updates(self.updates)}"


@message(113)
@dataclass(frozen=True, slots=True, kw_only=True)
class PingReq:
    """Ask the receiver to ping ``target`` on the sender's behalf [indirectPingReq];
    with ``nack`` (Lifeguard) the receiver answers ``Nack`` when the target is silent."""

    seq: int
    target: str
    nack: bool = False
    updates: tuple[Update, ...] = ()

    def summary(self) -> str:
        nack = " nack" if self.nack else ""
        return f"PingReq seq={self.seq} target={self.target}{nack}{_updates(self.updates)}"


@message(114)
@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """An intermediary heard nothing from the target in time [nackResp] (Lifeguard):
    the requester is still being answered, so its own health is fine."""

    seq: int
    updates: tuple[Update, ...] = ()

    def summary(self) -> str:
        return f"Nack seq={self.seq}{_updates(self.updates)}"


@message(115)
@dataclass(frozen=True, slots=True, kw_only=True)
class Gossip:
    """Updates alone, sent every gossip interval to a few members [gossip]."""

    updates: tuple[Update, ...] = ()

    def summary(self) -> str:
        return f"Gossip{_updates(self.updates)}"


@message(116)
@dataclass(frozen=True, slots=True, kw_only=True)
class PushPull:
    """Full state exchange [pushPull]: ``states`` is the sender's whole table; ``reply``
    asks the receiver to answer with its own; ``join`` marks a joining member's first."""

    states: tuple[Update, ...]
    reply: bool = True
    join: bool = False

    def summary(self) -> str:
        flags = (" join" if self.join else "") + (" reply" if self.reply else "")
        return f"PushPull{flags} [{' '.join(u.summary() for u in self.states)}]"
