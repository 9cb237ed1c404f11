"""ReadIndex against a naive twin: one list of reads, each with its stage, scanned whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.read_index import ReadIndex


def read(n: int) -> ClientRequest:
    return ClientRequest(client_id=f"c{n}", seq=n, op=Op(kind="get", key="k"))


class NaiveReads:
    """Each read: [stage, round, index, request, origin, order it entered its stage]."""

    def __init__(self) -> None:
        self.reads: list[list] = []
        self.clock = 0

    def _enter(self, stage: str, rnd: int, index: int, request, origin) -> None:
        self.clock += 1
        self.reads.append([stage, rnd, index, request, origin, self.clock])

    def _stage(self, stage: str) -> list[list]:
        return sorted((r for r in self.reads if r[0] == stage), key=lambda r: r[5])

    def hold(self, request, origin) -> None:
        self._enter("held", 0, 0, request, origin)

    def take_held(self):
        held = self._stage("held")
        self.reads = [r for r in self.reads if r[0] != "held"]
        return [(r[3], r[4]) for r in held]

    def wait_for_round(self, rnd, index, request, origin) -> None:
        self._enter("round", rnd, index, request, origin)

    def wait_for_apply(self, index, request, origin) -> None:
        self._enter("apply", 0, index, request, origin)

    def round_due(self, current: int) -> bool:
        return any(r[1] > current for r in self._stage("round"))

    def confirm(self, quorum_round: int, applied: int, served: list) -> None:
        if not self._stage("round"):
            return
        for r in self._stage("round"):
            if r[1] <= quorum_round:
                self.clock += 1
                r[0], r[5] = "apply", self.clock
        self.release(applied, served)

    def release(self, applied: int, served: list) -> None:
        for r in self._stage("apply"):
            if r[2] <= applied:
                served.append((r[3], r[4]))
                self.reads.remove(r)

    def drain(self):
        out = [(r[3], r[4]) for stage in ("held", "round", "apply") for r in self._stage(stage)]
        self.reads = []
        return out


def test_reads_of_one_round_are_served_together_once_applied():
    reads, served = ReadIndex(), []
    serve = lambda request, origin: served.append((request.seq, origin))  # noqa: E731
    reads.wait_for_round(1, 5, read(1), "n2")
    reads.wait_for_round(1, 6, read(2), None)
    reads.wait_for_round(2, 6, read(3), None)
    assert reads.round_due(0) and reads.round_due(1) and not reads.round_due(2)
    reads.confirm(1, 5, serve)  # round 1 acknowledged; index 5 applied
    assert served == [(1, "n2")]
    reads.release(6, serve)
    assert served == [(1, "n2"), (2, None)]
    reads.wait_for_apply(7, read(4), None)  # a lease read
    reads.hold(read(5), "n3")
    assert [(r.seq, o) for r, o in reads.drain()] == [(5, "n3"), (3, None), (4, None)]
    assert not reads


ops = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.sampled_from([None, "n2"])),
        st.tuples(st.just("take_held")),
        st.tuples(st.just("round"), st.integers(0, 5), st.integers(0, 9), st.sampled_from([None, "n3"])),
        st.tuples(st.just("apply"), st.integers(0, 9), st.sampled_from([None, "n3"])),
        st.tuples(st.just("due"), st.integers(0, 5)),
        st.tuples(st.just("confirm"), st.integers(0, 5), st.integers(0, 9)),
        st.tuples(st.just("release"), st.integers(0, 9)),
        st.tuples(st.just("drain")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_agrees_with_the_naive_twin(operations):
    real, naive = ReadIndex(), NaiveReads()
    real_served: list = []
    naive_served: list = []

    def serve(request, origin):
        real_served.append((request, origin))

    for n, op in enumerate(operations):
        kind = op[0]
        if kind == "hold":
            real.hold(read(n), op[1])
            naive.hold(read(n), op[1])
        elif kind == "take_held":
            assert real.take_held() == naive.take_held()
        elif kind == "round":
            real.wait_for_round(op[1], op[2], read(n), op[3])
            naive.wait_for_round(op[1], op[2], read(n), op[3])
        elif kind == "apply":
            real.wait_for_apply(op[1], read(n), op[2])
            naive.wait_for_apply(op[1], read(n), op[2])
        elif kind == "due":
            assert real.round_due(op[1]) == naive.round_due(op[1])
        elif kind == "confirm":
            real.confirm(op[1], op[2], serve)
            naive.confirm(op[1], op[2], naive_served)
        elif kind == "release":
            real.release(op[1], serve)
            naive.release(op[1], naive_served)
        else:
            assert real.drain() == naive.drain()
        assert real_served == naive_served
        assert bool(real) == bool(naive.reads)
