"""Fast Leader Election's vote order and server ids.

Rules this module owns:
  * a vote is (peer epoch, zxid, server id); a vote beats another when its epoch is
    greater, or equal with a greater zxid, or both equal with a greater id
    (``FastLeaderElection.totalOrderPredicate``); the ``vote-ignores-epoch`` knob drops
    the first comparison;
  * a vote for nobody (an observer's own: it never wins) loses to every real vote;
  * server ids order naturally (n2 < n10): the digits at the end of a name compare as a
    number, the rest as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TAIL = re.compile(r"^(.*?)(\d+)$")


def natural_key(node_id: str) -> tuple[str, int, str]:
    m = _TAIL.match(node_id)
    if m is None:
        return (node_id, -1, node_id)
    return (m.group(1), int(m.group(2)), node_id)


def ranks(members: Iterable[str]) -> dict[str, int]:
    """Each member's server id: its place in natural order, from 1."""
    return {m: i + 1 for i, m in enumerate(sorted(set(members), key=natural_key))}


def beats(new: tuple[int, int, int], cur: tuple[int, int, int], *, ignore_epoch: bool = False) -> bool:
    """``new`` (epoch, zxid, sid) wins over ``cur``; sid 0 is a vote for nobody."""
    if new[2] == 0:
        return False
    if cur[2] == 0:
        return True
    if ignore_epoch:
        return (new[1], new[2]) > (cur[1], cur[2])
    return new > cur
