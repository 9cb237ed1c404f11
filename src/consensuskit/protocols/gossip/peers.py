"""Who a gossip node may talk to: every other member (uniform) or its neighbours in a
partial mesh.

Rules this module owns:
  * ``uniform``: the peers are all other members;
  * ``mesh``: a random graph every member computes alike from the sorted member list and a
    graph seed, with no generator and no coordination: a ring (so the graph is connected)
    plus, from each member, ``degree - 2`` chords to members picked by hashing
    (graph seed, member, chord number); edges are undirected, so degrees average about
    ``degree`` and are at least 2 (a chord may land on a ring neighbour);
  * the lists are sorted, so choices drawn from them with the node's rng are
    deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

TOPOLOGIES = ("uniform", "mesh")


def _pick(graph_seed: int, member: str, chord: int, n: int) -> int:
    digest = hashlib.blake2b(f"{graph_seed}/{member}/{chord}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def mesh(members: Sequence[str], degree: int, graph_seed: int = 0) -> dict[str, tuple[str, ...]]:
    """Each member's neighbours in the partial mesh (see the module rules)."""
    ordered = sorted(members)
    n = len(ordered)
    edges: dict[str, set[str]] = {m: set() for m in ordered}
    if n < 2:
        return {m: () for m in ordered}
    for i, member in enumerate(ordered):
        for step in (1, -1):
            other = ordered[(i + step) % n]
            if other != member:
                edges[member].add(other)
                edges[other].add(member)
        for chord in range(max(0, degree - 2)):
            other = ordered[_pick(graph_seed, member, chord, n)]
            if other != member:
                edges[member].add(other)
                edges[other].add(member)
    return {m: tuple(sorted(e)) for m, e in edges.items()}


def peers_of(
    member: str, members: Sequence[str], topology: str, degree: int, graph_seed: int = 0
) -> tuple[str, ...]:
    if topology == "uniform":
        return tuple(sorted(m for m in members if m != member))
    if topology == "mesh":
        return mesh(members, degree, graph_seed).get(member, ())
    raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
