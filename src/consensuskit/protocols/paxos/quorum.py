"""Quorum sizes and the value-selection rule shared by Basic and Fast Paxos.

Classic quorums are majorities: any two intersect.  Fast quorums have ``ceil(3n/4)``
acceptors.  Fast Paxos needs any two fast quorums and one classic quorum to share an
acceptor: ``2*fast + classic > 2n``; with ``fast = ceil(3n/4)`` and ``classic =
floor(n/2)+1`` the left side is at least ``3n/2 + n/2 + 1 > 2n`` for every n.

``safe_value`` is the rule a proposer (coordinator) applies to a classic quorum of
phase-1b reports (Lamport, Fast Paxos, 2006, §3.3 "O4"): let k be the highest ballot
any report voted in.  If k is classic it holds one value: take it.  If k is fast, a
value v may have been chosen at k only if every acceptor of some fast quorum voted v;
inside our quorum Q that means at least ``fast - (n - |Q|)`` reports of v at k — at
most one value can pass that bar because ``2*fast + |Q| > 2n``.  If one passes it is
the only safe value; if none does, nothing was chosen at k or below and any value
reported at k may be picked (we take the most-voted, ties broken by encoding, so every
acceptor that sees the same reports picks the same value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.messages import encode
from consensuskit.core.quorum import quorum_size
from consensuskit.protocols.paxos.ballot import ZERO_BALLOT, Ballot

# A classic quorum is a plain majority.
classic_quorum = quorum_size


def fast_quorum(n: int) -> int:
    return -(-3 * n // 4)


def safe_value(reports: Sequence[tuple[Ballot, Any, bool]], n: int) -> tuple[bool, Any]:
    """``(True, v)`` when the reports force or suggest ``v``; ``(False, None)`` when no
    report holds a vote, so the proposer is free to propose its own value.

    ``reports`` has one ``(accepted_ballot, accepted_value, fast)`` per acceptor of a
    classic quorum (``ZERO_BALLOT`` = no vote).
    """
    voted = [(b, v, f) for b, v, f in reports if b != ZERO_BALLOT]
    if not voted:
        return False, None
    top = max(b for b, _, _ in voted)
    at_top = [(v, f) for b, v, f in voted if b == top]
    if not any(f for _, f in at_top):
        return True, at_top[0][0]
    counts: list[tuple[Any, int]] = []
    for value, _ in at_top:
        for i, (seen, c) in enumerate(counts):
            if seen == value:
                counts[i] = (seen, c + 1)
                break
        else:
            counts.append((value, 1))
    bar = fast_quorum(n) - (n - len(reports))
    for value, c in counts:
        if c >= bar:
            return True, value
    best = min(counts, key=lambda vc: (-vc[1], encode(vc[0])))
    return True, best[0]
