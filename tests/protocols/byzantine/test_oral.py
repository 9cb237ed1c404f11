"""OM(m) (LSP82 §3): exact message counts, IC1/IC2 whenever n > 3m, and the failures
the paper predicts when n <= 3m."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.check.byzantine import check_run
from consensuskit.protocols.byzantine import ATTACK, ORDERS, RETREAT, STRATEGIES, message_count, run_generals

LYING = [s for s in STRATEGIES if s != "silent"]


@pytest.mark.parametrize(
    ("n", "m", "expected"),
    [(4, 1, 9), (7, 2, 156), (10, 3, 3609), (3, 1, 4), (5, 0, 4), (6, 2, 85)],
)
def test_the_formula(n: int, m: int, expected: int) -> None:
    """(n-1) + (n-1)(n-2) + ... + (n-1)...(n-m-1) (issue 16: n=4, m=1: 9; n=7, m=2: 156)."""
    assert message_count(n, m) == expected


@pytest.mark.parametrize(("n", "m"), [(4, 1), (7, 2), (10, 3), (3, 1), (6, 2), (5, 0)])
@pytest.mark.parametrize("strategy", LYING)
def test_a_run_sends_exactly_the_formula(n: int, m: int, strategy: str) -> None:
    """Every lieutenant relays every path once, lies included: the count is the formula."""
    traitors = [f"g{n}"] + (["g1"] if m >= 2 else [])
    run = run_generals(n, m, traitors=traitors, strategy_name=strategy, rng=random.Random(1))
    assert run.messages == message_count(n, m)
    assert run.rounds == m + 1


def test_silent_traitors_send_less_and_receivers_use_the_default() -> None:
    run = run_generals(4, 1, traitors=["g1"], strategy_name="silent", rng=random.Random(0))
    assert run.messages == message_count(4, 1) - 3 - 0  # the commander's 3 orders are missing
    # A missing order is RETREAT (LSP82 A3 plus the default), relayed like any other.
    assert set(run.decisions.values()) == {RETREAT}


@settings(max_examples=150, deadline=None)
@given(
    m=st.integers(0, 2),
    extra=st.integers(1, 3),
    data=st.data(),
    strategy=st.sampled_from(list(STRATEGIES)),
    order=st.sampled_from(ORDERS),
    seed=st.integers(0, 2**16),
)
def test_ic1_and_ic2_hold_whenever_n_exceeds_3m(m, extra, data, strategy, order, seed) -> None:
    """Theorem 1: OM(m) satisfies IC1 and IC2 with more than 3m generals and at most m traitors."""
    n = max(3 * m + extra, m + 2)
    generals = [f"g{i}" for i in range(1, n + 1)]
    traitors = data.draw(st.lists(st.sampled_from(generals), max_size=m, unique=True))
    run = run_generals(n, m, traitors=traitors, strategy_name=strategy, order=order, rng=random.Random(seed))
    verdict = check_run(run)
    assert verdict.agreement, (traitors, strategy, verdict.detail)


def test_three_generals_one_traitor_oral_messages_cannot_agree() -> None:
    """LSP82 Fig. 1: the loyal commander says attack, the traitor lieutenant says the
    commander said retreat; lieutenant g2 holds attack and retreat and retreats."""
    run = run_generals(3, 1, traitors=["g3"], strategy_name="counterexample", rng=random.Random(0))
    verdict = check_run(run)
    assert run.decisions["g2"] == RETREAT
    assert verdict.ic1 and not verdict.ic2 and not verdict.agreement


def test_fig_1_and_fig_2_look_the_same_to_the_loyal_lieutenant() -> None:
    """LSP82 Fig. 2: a traitor commander telling g2 attack and g3 retreat gives g2 the very
    messages of Fig. 1, so no rule can both obey in Fig. 1 and agree in Fig. 2."""
    fig1 = run_generals(3, 1, traitors=["g3"], strategy_name="counterexample", rng=random.Random(0))
    fig2 = run_generals(3, 1, traitors=["g1"], strategy_name="counterexample", rng=random.Random(0))
    assert fig1.views["g2"] == fig2.views["g2"] == {"g1": ATTACK, "g1:g3": RETREAT}
    assert fig2.views["g3"] == {"g1": RETREAT, "g1:g2": ATTACK}


def test_obeying_the_commander_on_a_tie_moves_the_break_from_ic2_to_ic1() -> None:
    """The impossibility argument's other horn: the only way for g2 to obey in Fig. 1
    (tie -> the commander's value) makes g2 attack in Fig. 2 while g3 retreats."""
    lie = dict(strategy_name="counterexample", rng=random.Random(0), tie="commander")
    run = {t: run_generals(3, 1, traitors=[t], **lie) for t in ("g1", "g3")}  # type: ignore[arg-type]
    assert check_run(run["g3"]).agreement  # Fig. 1 repaired
    fig2 = check_run(run["g1"])
    assert not fig2.ic1 and run["g1"].decisions == {"g2": ATTACK, "g3": RETREAT}
    # With four generals the same rule is harmless: there is always a majority to obey.
    four = run_generals(4, 1, traitors=["g1"], **lie)  # type: ignore[arg-type]
    assert check_run(four).agreement


@pytest.mark.parametrize("m", [1, 2, 3])
def test_n_equal_3m_breaks_with_the_constructed_strategy(m: int) -> None:
    """At n = 3m the counterexample's m traitors make a loyal lieutenant disobey."""
    n = 3 * m
    traitors = [f"g{i}" for i in range(n - m + 1, n + 1)]
    run = run_generals(n, m, traitors=traitors, strategy_name="counterexample", rng=random.Random(0))
    assert not check_run(run).agreement
    # One more general and the same traitors are outvoted.
    run = run_generals(n + 1, m, traitors=traitors, strategy_name="counterexample", rng=random.Random(0))
    assert check_run(run).agreement


def test_the_trust_commander_knob_breaks_ic1() -> None:
    """The majority step is the rule: a lieutenant that obeys the commander's own
    message (OM(0)) is split by a traitor commander even at n = 4."""
    args = dict(traitors=["g1"], strategy_name="split", rng=random.Random(0))
    assert check_run(run_generals(4, 1, **args)).agreement  # type: ignore[arg-type]
    broken = run_generals(4, 1, bugs=frozenset({"trust-commander"}), **args)  # type: ignore[arg-type]
    verdict = check_run(broken)
    assert not verdict.ic1, verdict


def test_the_same_arguments_give_the_same_run() -> None:
    a = run_generals(7, 2, traitors=["g1", "g5"], strategy_name="random", rng=random.Random(9))
    b = run_generals(7, 2, traitors=["g1", "g5"], strategy_name="random", rng=random.Random(9))
    assert a.to_json() == b.to_json()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n=3, m=2), "need at least m\\+2=4 generals"),
        (dict(n=4, m=-1), "m must be >= 0"),
        (dict(n=4, m=1, traitors=["g9"]), "unknown traitor"),
        (dict(n=4, m=1, mode="smoke"), "unknown mode"),
        (dict(n=4, m=1, strategy_name="bribe"), "unknown traitor strategy 'bribe'; valid: random"),
        (dict(n=4, m=1, traitors=["g2"]), "traitors need an rng"),
        (dict(n=4, m=1, tie="coin"), "unknown tie rule 'coin'; valid: retreat, commander"),
        (dict(n=200, m=5), "sends 57,852,384,854,419 messages; at most 1,000,000"),
    ],
)
def test_bad_cases_are_one_line_errors(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    n, m = kwargs.pop("n"), kwargs.pop("m")
    with pytest.raises(ValueError, match=message) as exc:
        run_generals(n, m, **kwargs)
    assert "\n" not in str(exc.value)
