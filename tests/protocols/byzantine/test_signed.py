"""SM(m) (LSP82 §4) and its signatures: agreement for any n >= m+2 with at most m
traitors, forgeries dropped, and the knob that takes signatures on trust."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.check.byzantine import check_run
from consensuskit.protocols.byzantine import ATTACK, ORDERS, RETREAT, STRATEGIES, make_keys, run_generals


@settings(max_examples=120, deadline=None)
@given(
    m=st.integers(0, 3),
    extra=st.integers(0, 3),
    data=st.data(),
    strategy=st.sampled_from(list(STRATEGIES)),
    order=st.sampled_from(ORDERS),
    seed=st.integers(0, 2**16),
)
def test_signed_messages_agree_for_any_n_of_at_least_m_plus_2(m, extra, data, strategy, order, seed) -> None:
    """Theorem 2: SM(m) solves the problem for any number of generals with at most m
    traitors (n >= m+2 leaves at least one loyal lieutenant to judge)."""
    n = m + 2 + extra
    generals = [f"g{i}" for i in range(1, n + 1)]
    traitors = data.draw(st.lists(st.sampled_from(generals), max_size=m, unique=True))
    run = run_generals(
        n, m, traitors=traitors, strategy_name=strategy, order=order, mode="signed", scheme="token",
        rng=random.Random(seed),
    )  # fmt: skip
    assert check_run(run).agreement, (traitors, strategy, check_run(run).detail)


@pytest.mark.parametrize("traitor", ["g1", "g3"])
def test_three_generals_one_traitor_signed_messages_agree_with_ed25519(traitor: str) -> None:
    run = run_generals(
        3, 1, traitors=[traitor], strategy_name="counterexample", mode="signed", scheme="ed25519",
        rng=random.Random(0),
    )  # fmt: skip
    assert check_run(run).agreement
    if traitor == "g3":
        # "g1 said retreat" needs g1's signature on retreat: forged, and dropped.
        assert run.forged == 1 and run.rejected == 1 and run.decisions["g2"] == ATTACK
    else:
        # g1 signed both orders: both lieutenants hold {attack, retreat} and retreat.
        assert run.decisions == {"g2": RETREAT, "g3": RETREAT}


def test_the_accept_forgeries_knob_breaks_ic2() -> None:
    """Checking signatures is the rule: taken on trust, the forged relay wins."""
    broken = run_generals(
        3, 1, traitors=["g3"], strategy_name="counterexample", mode="signed", rng=random.Random(0),
        bugs=frozenset({"accept-forgeries"}),
    )  # fmt: skip
    verdict = check_run(broken)
    assert not verdict.ic2 and broken.decisions["g2"] == RETREAT


def test_colluding_traitors_sign_for_each_other_but_not_for_the_loyal() -> None:
    """A traitor lieutenant re-signs a chain of traitors only (the commander's key is
    theirs) with a new value: nothing forged, nothing dropped.  A lie under a loyal
    general's signature is forged, and every forgery is dropped."""
    own = run_generals(
        4, 1, traitors=["g1", "g4"], strategy_name="counterexample", mode="signed", scheme="token",
        rng=random.Random(0),
    )  # fmt: skip
    assert own.forged == 0 and own.rejected == 0
    lies = run_generals(
        5, 2, traitors=["g1", "g5"], strategy_name="per-recipient", mode="signed", scheme="token",
        rng=random.Random(0),
    )  # fmt: skip
    assert lies.forged > 0 and lies.rejected >= lies.forged and check_run(lies).agreement


@pytest.mark.parametrize("scheme", ["ed25519", "token"])
def test_a_signer_signs_only_with_the_keys_it_holds(scheme: str) -> None:
    keys = make_keys(scheme, ["g1", "g2", "g3"], seed=4)
    g2 = keys.signer(["g2"])
    traitors = keys.signer(["g1", "g3"])
    signature = g2.sign("g2", b"attack")
    assert traitors.verify("g2", b"attack", signature)  # anyone verifies (A4 b)
    assert not traitors.verify("g2", b"retreat", signature)  # altered: detected (A4 a)
    assert not traitors.verify("g1", b"attack", signature)
    with pytest.raises(KeyError, match="no key for 'g1'"):
        g2.sign("g1", b"attack")  # a loyal general's signature cannot be made by others
    assert not g2.verify("g2", b"attack", traitors.forge("g2", b"attack"))
    assert traitors.verify("g3", b"x", traitors.sign("g3", b"x"))  # traitors share keys
    assert not g2.verify("g9", b"attack", signature)  # unknown signer: not valid, no raise
    # The same seed gives the same keys (reproducible runs); another seed does not.
    assert make_keys(scheme, ["g2"], seed=4).signer(["g2"]).sign("g2", b"attack") == signature
    assert not make_keys(scheme, ["g2"], seed=5).signer(["g2"]).verify("g2", b"attack", signature)


def test_tokens_charge_cpu_time() -> None:
    keys = make_keys("token", ["g1", "g2"])
    signer = keys.signer(["g1"])
    signature = signer.sign("g1", b"v")
    signer.verify("g1", b"v", signature)
    assert signer.cpu_seconds == pytest.approx(keys.sign_cost + keys.verify_cost)  # type: ignore[attr-defined]


def test_an_unknown_scheme_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^unknown signature scheme 'rsa'; valid: ed25519, token$"):
        make_keys("rsa", ["g1"])


@pytest.mark.parametrize(("n", "m"), [(3, 1), (4, 1), (5, 2), (7, 2), (7, 3)])
def test_a_loyal_commander_costs_n_minus_1_squared_messages(n: int, m: int) -> None:
    """Each lieutenant adds the one order to V once and relays it once: (n-1) + (n-1)(n-2)."""
    run = run_generals(n, m, mode="signed", scheme="token")
    assert run.messages == (n - 1) ** 2
    assert run_generals(n, 0, mode="signed", scheme="token").messages == n - 1
