"""CheckQuorum against a naive twin that logs every answer and counts at the check."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.common.check_quorum import CheckQuorum

NODES = ["a", "b", "c", "d", "e"]
ME = "a"


class NaiveCheckQuorum:
    def __init__(self) -> None:
        self.log: list[str] = []  # every peer heard from since the last check, repeats kept

    def check(self, voters: list[str], excluded: list[str]) -> bool:
        active = {v for v in voters if (v == ME or v in self.log) and v not in excluded}
        self.log = []
        return 2 * len(active) > len(voters)


def test_a_leader_that_heard_from_no_quorum_fails_the_check():
    cq = CheckQuorum()
    cq.heard.add("b")
    assert cq.check(ME, ["a", "b", "c"])  # us and b
    assert not cq.check(ME, ["a", "b", "c"])  # a new interval: only us
    cq.heard.add("b")
    assert not cq.check(ME, ["a", "b", "c"], excluded=["b"])  # b rejoins: counts for nothing
    cq.heard.add("b")
    cq.forget("b")
    assert not cq.check(ME, ["a", "b", "c"])
    assert not cq.check(ME, [])  # no voters: no quorum


ops = st.lists(
    st.one_of(
        st.tuples(st.just("heard"), st.sampled_from(NODES[1:])),
        st.tuples(st.just("forget"), st.sampled_from(NODES[1:])),
        st.tuples(st.just("reset")),
        st.tuples(
            st.just("check"),
            st.lists(st.sampled_from(NODES), unique=True),
            st.lists(st.sampled_from(NODES[1:]), unique=True),
        ),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_agrees_with_the_naive_twin(operations):
    real, naive = CheckQuorum(), NaiveCheckQuorum()
    for op in operations:
        if op[0] == "heard":
            real.heard.add(op[1])
            naive.log.append(op[1])
        elif op[0] == "forget":
            real.forget(op[1])
            naive.log = [p for p in naive.log if p != op[1]]
        elif op[0] == "reset":
            real.reset()
            naive.log = []
        else:
            assert real.check(ME, op[1], op[2]) == naive.check(op[1], op[2])
