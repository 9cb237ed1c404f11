"""What a new view re-issues: the decision procedure over a set of VIEW-CHANGE messages.

Castro & Liskov, TOCS 2002 §4.5 (the MAC variant, where prepared certificates cannot be
shown to a third replica): the new primary and every backup run this same pure function
over the same view changes (the ones the NEW-VIEW carries), so a backup accepts the new
view only if it reaches the same decisions.

Rules this module owns (n = 3f+1):
  * the starting checkpoint ``min_s`` is the highest stable checkpoint any view change
    proves (each carries 2f+1 signed checkpoint messages, verified by the caller);
  * ``max_s`` is the highest sequence number any view change reports prepared;
  * quorums: 2f+1 below stands for the certificate size, ceil((n+f+1)/2) (2f+1 when
    n = 3f+1; node.byzantine_quorum);
  * for each n in (min_s, max_s] a batch with digest d prepared in view v is chosen when
    A1: 2f+1 view changes report for n nothing prepared in a view above v, nor in v with
        another digest, and
    A2: f+1 view changes report d pre-prepared for n in a view >= v (so at least one
        correct replica vouches for it), and some view change carries the batch;
  * otherwise the null request is chosen when 2f+1 view changes report nothing prepared
    for n (B); otherwise no decision yet: the caller waits for more view changes.
Any request committed-local at a correct replica was prepared at f+1 correct ones, so
A1 can hold for no other digest in a later view, and the request keeps its number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensuskit.protocols.pbft.messages import Batch, ViewChange, batch_digest

NULL_BATCH: Batch = ()


@dataclass(frozen=True, slots=True)
class Selection:
    min_s: int
    min_digest: bytes
    # n -> (digest, batch) for min_s < n <= max_s
    decisions: dict[int, tuple[bytes, Batch]]
    # the view change whose checkpoint proof certifies (min_s, min_digest)
    source: ViewChange | None

    @property
    def max_s(self) -> int:
        return max(self.decisions, default=self.min_s)


def select(
    vcs: Sequence[ViewChange], f: int, ignore_prepared: bool = False, quorum: int | None = None
) -> Selection | None:
    """The new view's decisions, or None while the view changes do not settle every
    number (``ignore_prepared``: the ``new-view-ignores-prepared`` bug knob).  ``quorum``
    is the replicas' certificate size (node.byzantine_quorum), 2f+1 when n = 3f+1."""
    quorum = 2 * f + 1 if quorum is None else quorum
    if len(vcs) < quorum:
        return None
    best = max(vcs, key=lambda vc: (vc.stable_seq, vc.replica))
    min_s, min_digest = best.stable_seq, best.stable_digest
    max_s = max((c.seq for vc in vcs for c in vc.prepared if c.seq > min_s), default=min_s)
    if ignore_prepared:
        max_s = min_s
    decisions: dict[int, tuple[bytes, Batch]] = {}
    for n in range(min_s + 1, max_s + 1):
        choice = _choose(vcs, n, f, quorum)
        if choice is None:
            return None
        decisions[n] = choice
    return Selection(min_s, min_digest, decisions, best)


def _choose(vcs: Sequence[ViewChange], n: int, f: int, quorum: int) -> tuple[bytes, Batch] | None:
    prepared = {vc.replica: [c for c in vc.prepared if c.seq == n] for vc in vcs}
    candidates = sorted({(c.view, c.digest) for certs in prepared.values() for c in certs}, reverse=True)
    for view, digest in candidates:
        a1 = sum(
            1
            for vc in vcs
            if vc.stable_seq < n
            and all(c.view < view or (c.view == view and c.digest == digest) for c in prepared[vc.replica])
        )
        if a1 < quorum:
            continue
        a2 = sum(
            1
            for vc in vcs
            if any(c.seq == n and c.digest == digest and c.view >= view for c in vc.preprepared)
        )
        if a2 < f + 1:
            continue
        for vc in vcs:
            for c in vc.preprepared:
                if c.seq == n and c.digest == digest and batch_digest(c.batch) == digest:
                    return digest, c.batch
    nothing = sum(1 for vc in vcs if vc.stable_seq < n and not prepared[vc.replica])
    if nothing >= quorum:
        return batch_digest(NULL_BATCH), NULL_BATCH
    return None
