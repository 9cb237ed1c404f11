"""Hybrid logical clocks (protocols/gossip/hlc.py; Kulkarni et al. 2014), with hypothesis:
monotone, above everything received (happened-before => greater stamp), and bounded drift
(``l - pt`` never exceeds the largest clock offset among the nodes), checked against a
naive twin of the paper's rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.gossip.hlc import COUNTER_LIMIT, HybridClock, pack, physical, unpack

# A run of events among a few nodes: (node, kind, source node, physical advance in us).
events = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["tick", "recv"]), st.integers(0, 3), st.integers(0, 50)),
    max_size=200,
)
offsets = st.lists(st.integers(-1_000, 1_000), min_size=4, max_size=4)


def naive_recv(l: int, c: int, lm: int, cm: int, pt: int) -> tuple[int, int]:  # noqa: E741
    """The paper's Fig. 5 receive rule, written out case by case."""
    l_new = max(l, lm, pt)
    if l_new == l == lm:
        return l_new, max(c, cm) + 1
    if l_new == l:
        return l_new, c + 1
    if l_new == lm:
        return l_new, cm + 1
    return l_new, 0


@settings(max_examples=120, deadline=None)
@given(run=events, skew=offsets)
def test_monotone_above_everything_received_and_bounded_drift(run: list, skew: list) -> None:
    clocks = [HybridClock() for _ in range(4)]
    true_time = 10_000
    last_sent: list[tuple[int, int] | None] = [None] * 4
    for node, kind, src, advance in run:
        true_time += advance
        pt = true_time + skew[node]
        before = (clocks[node].l, clocks[node].c)
        if kind == "tick" or last_sent[src] is None:
            stamp = clocks[node].tick(pt)
            last_sent[node] = stamp
        else:
            received = last_sent[src]
            assert received is not None
            expected = naive_recv(*before, *received, pt)
            stamp = clocks[node].observe(pt, *received)
            assert stamp == expected
            assert stamp > received  # happened-before => greater
        assert stamp > before  # monotone, strictly
        # Bounded drift: l is some node's physical time, never ahead of the fastest clock.
        assert stamp[0] - pt <= max(skew) - skew[node]
        assert stamp[0] <= true_time + max(skew)


@given(l=st.integers(0, 2**40), c=st.integers(0, COUNTER_LIMIT - 1), l2=st.integers(0, 2**40),
       c2=st.integers(0, COUNTER_LIMIT - 1))  # fmt: skip
def test_packing_orders_as_the_pair(l: int, c: int, l2: int, c2: int) -> None:  # noqa: E741
    assert unpack(pack(l, c)) == (l, c)
    assert (pack(l, c) < pack(l2, c2)) == ((l, c) < (l2, c2))


def test_a_full_counter_moves_l_on_and_keeps_the_order() -> None:
    clock = HybridClock(l=5, c=COUNTER_LIMIT - 1)
    stamp = clock.tick(0)
    assert stamp == (6, 0) and pack(*stamp) > pack(5, COUNTER_LIMIT - 1)


def test_physical_time_is_whole_milliseconds_never_negative() -> None:
    assert physical(1.5) == 1_500
    assert physical(-3.0) == 0
