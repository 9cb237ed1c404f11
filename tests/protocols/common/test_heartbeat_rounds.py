"""HeartbeatRounds against a naive twin that keeps every acknowledgement ever made."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.common.heartbeat_rounds import HeartbeatRounds

PEERS = ["a", "b", "c", "d", "e"]
ME = "a"


class NaiveRounds:
    """Every round sent with its time, every ack kept; quorum round by trying each round."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sent: list[float] = []  # sent[r - 1]: time of round r
        self.acks: dict[str, list[int]] = {}
        self.forgotten_below = 0

    def start(self, now: float) -> int:
        self.sent.append(now)
        return len(self.sent)

    def ack(self, peer: str, round_: int) -> bool:
        news = all(round_ > earlier for earlier in self.acks.get(peer, [])) and round_ > 0
        self.acks.setdefault(peer, []).append(round_)
        return news

    def forget(self, peer: str) -> None:
        self.acks.pop(peer, None)

    def quorum_round(self, voters: list[str]) -> int:
        for r in range(len(self.sent), 0, -1):
            answered = [v for v in voters if v == ME or any(a >= r for a in self.acks.get(v, []))]
            if 2 * len(answered) > len(voters):
                return r
        return 0

    def settle(self, quorum_round: int) -> float | None:
        self.forgotten_below = max(self.forgotten_below, quorum_round)
        if quorum_round < self.forgotten_below or not 1 <= quorum_round <= len(self.sent):
            return None
        return self.sent[quorum_round - 1]


def test_a_majority_of_acks_confirms_a_round_and_old_acks_change_nothing():
    r = HeartbeatRounds(ME)
    assert r.quorum_round(["a", "b", "c"]) == 0
    assert r.start(1.0) == 1 and r.start(2.0) == 2
    assert r.quorum_round(["a", "b", "c"]) == 0  # only us
    assert r.ack("b", 2)
    assert not r.ack("b", 1)  # late answer to an older round
    assert r.quorum_round(["a", "b", "c"]) == 2
    assert r.quorum_round(["b", "c", "d"]) == 0  # we are not a voter there
    assert r.settle(2) == 2.0 and list(r.sent_at) == [2]
    r.forget("b")
    assert r.quorum_round(["a", "b", "c"]) == 0
    r.reset()
    assert (r.current, r.sent_at, r.acked) == (0, {}, {})


ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.floats(0, 100)),
        st.tuples(st.just("ack"), st.sampled_from(PEERS[1:]), st.integers(0, 8)),
        st.tuples(st.just("forget"), st.sampled_from(PEERS[1:])),
        st.tuples(st.just("quorum"), st.lists(st.sampled_from(PEERS), unique=True)),
        st.tuples(st.just("settle"), st.lists(st.sampled_from(PEERS), unique=True)),
        st.tuples(st.just("reset")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_agrees_with_the_naive_twin(operations):
    real, naive = HeartbeatRounds(ME), NaiveRounds()
    for op in operations:
        kind = op[0]
        if kind == "start":
            assert real.start(op[1]) == naive.start(op[1])
        elif kind == "ack":
            round_ = min(op[2], real.current)  # a peer answers rounds that were sent
            assert real.ack(op[1], round_) == naive.ack(op[1], round_)
        elif kind == "forget":
            real.forget(op[1])
            naive.forget(op[1])
        elif kind == "quorum":
            assert real.quorum_round(op[1]) == naive.quorum_round(op[1])
        elif kind == "settle":
            # As the protocols do: settle the quorum round they just computed.
            q = real.quorum_round(op[1])
            if q > 0:
                assert real.settle(q) == naive.settle(q)
        else:
            real.reset()
            naive.reset()
        assert real.current == len(naive.sent)
