"""How far one peer message may move a node's ever-growing numbers: a term, a ballot
round, an epoch, an election round, a counter, an incarnation.

Rules this module owns:
  * each such number grows by one per election, phase 1, write or refutation, so a real
    cluster never gets near the int64 the wire carries, nor far above any of its nodes:
    only a broken or hostile peer sends a number far above the receiver's own;
  * a node adopts a peer's number only when it is at most ``STEP`` (2^40) above its own
    and within the ceiling (2^62, or less where the format says so: ZooKeeper's 32-bit
    epoch).  An absolute ceiling alone let one message put a whole cluster at it, where
    the next number (the next term to campaign in, round to lead with, counter to write
    with) is refused by every peer for good: a Raft Heartbeat of term 2^62 left three
    nodes pre-campaigning forever.  With the step, reaching the ceiling takes 2^22
    messages, each an election's worth of disruption, not one;
  * a number out of reach is not adopted: the caller ignores the message and records why.
"""

from __future__ import annotations

STEP = 2**40  # a trillion elections, phases or writes: no real gap between two members
CEILING = 2**62  # far below int64's 2^63-1: the numbers after it stay sendable


def within_reach(value: int, own: int, ceiling: int = CEILING, step: int = STEP) -> bool:
    """May a node whose number is ``own`` adopt ``value`` (module rules)?"""
    return 0 <= value <= min(own + step, ceiling)


def out_of_reach(name: str, value: int, own: int, ceiling: int = CEILING, step: int = STEP) -> str:
    """Why ``value`` may not be adopted ("" when it may): the reason a node records."""
    if within_reach(value, own, ceiling, step):
        return ""
    return f"{name} {value} out of reach (0..{min(own + step, ceiling)}: at most {step} above {own})"
