"""IC1/IC2 verdicts, and the boundary search: oral messages break exactly where n <= 3m."""

from __future__ import annotations

import pytest

from consensuskit.check.byzantine import check_orders, find_violation, placements


def test_verdicts() -> None:
    ok = check_orders("g1", "attack", set(), {"g2": "attack", "g3": "attack"})
    assert ok.ic1 and ok.ic2 and ok.agreement and ok.detail == ""
    split = check_orders("g1", "attack", {"g1"}, {"g2": "attack", "g3": "retreat"})
    assert not split.ic1 and split.ic2  # a traitor commander: IC2 holds vacuously
    assert "attack: g2; retreat: g3" in split.detail
    disobey = check_orders("g1", "attack", set(), {"g2": "retreat", "g3": "retreat"})
    assert disobey.ic1 and not disobey.ic2 and "disobeyed by g2, g3" in disobey.detail
    # Traitors' decisions are nobody's business; an undecided loyal lieutenant breaks both.
    assert check_orders("g1", "attack", {"g3"}, {"g2": "attack", "g3": "retreat"}).agreement
    undecided = check_orders("g1", "attack", set(), {"g2": None, "g3": "attack"})
    assert not undecided.ic1 and not undecided.ic2


def test_placements_put_m_traitors_among_lieutenants_or_at_the_commander() -> None:
    generals = ("g1", "g2", "g3", "g4", "g5")
    assert placements(generals, 2) == [("g4", "g5"), ("g2", "g3"), ("g1", "g5"), ("g1", "g2")]
    assert all(len(p) == 2 for p in placements(generals, 2))


@pytest.mark.parametrize(("n", "m"), [(3, 1), (4, 1), (5, 1), (4, 2), (6, 2), (7, 2), (9, 3)])
def test_oral_messages_break_exactly_where_n_is_at_most_3m(n: int, m: int) -> None:
    found = find_violation(n, m, "oral", seeds=3)
    assert (found is None) == (n > 3 * m), found


@pytest.mark.parametrize(("n", "m"), [(3, 1), (4, 2), (6, 2)])
def test_signed_messages_never_break(n: int, m: int) -> None:
    assert find_violation(n, m, "signed", seeds=3) is None
