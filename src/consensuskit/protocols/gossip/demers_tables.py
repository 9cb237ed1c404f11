"""The figures Demers et al. (PODC 1987) tabulate for rumor mongering on n = 1000 sites,
as data: what `benchmarks/gossip_epidemics.py` prints beside ours and what the
statistical tests compare against.

Rules this module owns:
  * one ``PaperRow`` per tabulated k, with the variant that produced it (as a
    ``RumorConfig``) and the four figures as printed: residue s, traffic m, t_ave, t_last;
  * Table 1 push feedback counter, Table 2 push blind coin (its first column is
    "1/Probability", the paper's errata says: k of our coin), Table 3 pull feedback counter.
    The paper tabulates no connection-limit or push-pull rumor variant (section 1.4 discusses
    them in prose only), so neither has a row here.
  * Where the figures come from. The s / m / t_last columns of Table 1 are the issue's
    (issue 13). Tables 1 and 2, t_ave included, were checked against the paper's Xerox PARC
    reprint (CSL-89-1, 1989, page 10), which prints the same figures (some rounded to two
    digits: 0.18, 1.7). Table 3 (page 11 of the reprint) could not be re-checked: no stored
    copy of that page or of the TeX table was found; the errata in the PARC archive
    (chspaper/Errata.tex) confirms only its title, "Performance of a pull epidemic on 1000
    sites using feedback and counters". Its figures stand as transcribed, and our model
    reproduces all four of them, t_ave included, within sampling noise.
  * t_ave, by the paper's definition ("the difference between the time of the initial
    injection of an update and the arrival of the update at a given site, averaged over all
    sites"), is the mean arrival cycle. Ours runs 1.2-2.7 cycles below Table 1 and 0.9-1.9
    below Table 2 (k >= 2) while s, m and t_last agree. Table 1's t_ave is out of reach of
    any simulation in which a larger k never slows the spread, because it then contradicts
    the table's own s and t_last columns. A larger k keeps senders longer (it is not a
    proof: with feedback a sender's counter may also fill sooner, as more sites know; but
    our arrival curves agree: the expected fraction reached by every cycle grows with k),
    so the sites k reaches are reached no later, on average, with k' > k, and the extra
    s_k - s_k' of the sites arrive by t_last_k'. Hence
    t_ave_k' <= ((1 - s_k) t_ave_k + (s_k - s_k') t_last_k') / (1 - s_k')
    (``t_ave_ceiling``). From the k=1 row this allows 11.85 / 12.07 / 12.12 / 12.17 for
    k = 2..5; the table prints 12.1 / 12.5 / 12.7 / 12.8, beyond printing and sampling error
    (one run's t_ave varies by about 0.1 cycle). Tables 2 and 3 pass the check, so
    Table 2's gap stays unexplained. Rules tried in a side experiment (n = 1000, 40 runs
    each), none of which closes the gap without breaking s, m or t_last: sites updated one
    by one within a cycle, so that a site reached earlier in the cycle already sends
    (t_ave 6.6-7.5, t_last 13-14); one by one but sending from the next cycle, with
    feedback judged at the moment of the send (t_ave unchanged, push residue 15-30% high,
    traffic 4-9% low); counting time from another origin (it moves t_last, which agrees,
    by as much); and, as statistics in place of the mean arrival, the mean cycle of
    all sends, of wasted sends, of removals, of a site's last receipt, the midpoint of
    arrival and removal, unreached sites counted at t_last or at the end of the epidemic,
    and a mean pooled over runs. So Tables 1 and 2 keep their printed t_ave, listed in
    ``T_AVE_UNMATCHED``, and the tests compare t_ave for the other tables only.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.protocols.gossip.epidemic import RumorConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperRow:
    table: str
    config: RumorConfig
    residue: float
    traffic: float
    t_ave: float
    t_last: float


def _rows(
    table: str, base: dict[str, object], values: list[tuple[int, float, float, float, float]]
) -> list[PaperRow]:
    return [
        PaperRow(
            table=table,
            config=RumorConfig(n=1000, k=k, **base),  # type: ignore[arg-type]
            residue=s,
            traffic=m,
            t_ave=t_ave,
            t_last=t_last,
        )
        for k, s, m, t_ave, t_last in values
    ]


PUSH_FEEDBACK_COUNTER = _rows(
    "Table 1: push, feedback, counter",
    {"mode": "push", "feedback": True, "interest": "counter"},
    [
        (1, 0.176, 1.74, 11.0, 16.8),
        (2, 0.037, 3.30, 12.1, 16.9),
        (3, 0.011, 4.53, 12.5, 17.4),
        (4, 0.0036, 5.64, 12.7, 17.5),
        (5, 0.0012, 6.68, 12.8, 17.7),
    ],
)

PUSH_BLIND_COIN = _rows(
    "Table 2: push, blind, coin",
    {"mode": "push", "feedback": False, "interest": "coin"},
    [
        (1, 0.960, 0.04, 19.0, 38.0),
        (2, 0.205, 1.59, 17.0, 33.0),
        (3, 0.060, 2.82, 15.0, 32.0),
        (4, 0.021, 3.91, 14.1, 32.0),
        (5, 0.008, 4.95, 13.8, 32.0),
    ],
)

PULL_FEEDBACK_COUNTER = _rows(
    "Table 3: pull, feedback, counter",
    {"mode": "pull", "feedback": True, "interest": "counter"},
    [
        (1, 3.1e-2, 2.70, 9.97, 17.6),
        (2, 5.8e-4, 4.49, 10.07, 15.4),
        (3, 4.0e-6, 6.09, 10.08, 14.0),
    ],
)

TABLES: tuple[list[PaperRow], ...] = (PUSH_FEEDBACK_COUNTER, PUSH_BLIND_COIN, PULL_FEEDBACK_COUNTER)

# Tables whose t_ave column our model does not reproduce (see the module docstring): the
# benchmark marks them and the statistical tests skip their t_ave.
T_AVE_UNMATCHED = ("Table 1", "Table 2")


def t_ave_ceiling(fewer: PaperRow, more: PaperRow) -> float:
    """The largest t_ave ``more`` (the same variant with a larger k) can have given
    ``fewer``'s t_ave and both residues: the sites ``fewer`` reaches arrive no later under
    ``more``, and the ones only ``more`` reaches arrive by its t_last."""
    if fewer.config.k >= more.config.k:
        raise ValueError(f"the second row needs the larger k, got {fewer.config.k} then {more.config.k}")
    extra = fewer.residue - more.residue
    return ((1 - fewer.residue) * fewer.t_ave + extra * more.t_last) / (1 - more.residue)
