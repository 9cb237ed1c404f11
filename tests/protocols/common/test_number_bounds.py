"""number_bounds against a naive twin: a number is taken when it is not negative, at most
a step above the node's own, and not past the ceiling; the reason says so otherwise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.common.number_bounds import CEILING, STEP, out_of_reach, within_reach


def naive_within_reach(value: int, own: int, ceiling: int, step: int) -> bool:
    if value < 0 or value > ceiling:
        return False
    return value - own <= step


numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, STEP - 1, STEP, STEP + 1, CEILING - 1, CEILING, CEILING + 1, 2**63 - 1]),
)


@settings(max_examples=500, deadline=None)
@given(
    numbers, st.integers(0, CEILING), st.sampled_from([CEILING, 2**31 - 1]), st.sampled_from([STEP, 2**20])
)
def test_agrees_with_the_naive_twin(value: int, own: int, ceiling: int, step: int) -> None:
    taken = within_reach(value, own, ceiling, step)
    assert taken == naive_within_reach(value, own, ceiling, step)
    assert (out_of_reach("term", value, own, ceiling, step) == "") == taken


def test_a_cluster_is_never_left_without_a_next_number():
    """Whatever one message made a node adopt, the next number is within its peers' reach
    once they adopted it too (below the ceiling), and the ceiling itself is never taken
    from a node far below it."""
    for own in (0, 5, CEILING - STEP - 1):
        top = min(own + STEP, CEILING)
        assert within_reach(top, own) and not within_reach(top + 1, own)
        if top < CEILING:
            assert within_reach(top + 1, top)  # the election after it is accepted
    assert not within_reach(CEILING, 0)
    why = out_of_reach("term", STEP + 1, 0)
    assert why == f"term {STEP + 1} out of reach (0..{STEP}: at most {STEP} above 0)"
