"""The acceptor's vote log against a naive twin (a dict), including reloads from storage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.paxos.ballot import Ballot
from consensuskit.protocols.paxos.multi_log import AcceptorLog
from consensuskit.protocols.paxos.multi_messages import NOOP_ENTRY, AcceptedValue

votes = st.lists(
    st.builds(
        lambda s, r: AcceptedValue(slot=s, ballot=Ballot(r, 1), entry=NOOP_ENTRY),
        st.integers(1, 30),
        st.integers(1, 5),
    ),
    min_size=1,
    max_size=6,
)
actions = st.lists(
    st.one_of(st.tuples(st.just("vote"), votes), st.tuples(st.just("compact"), st.integers(0, 30))),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(actions)
def test_vote_log_matches_a_dict_and_survives_reload(steps):
    storage = MemoryStorage()
    log = AcceptorLog(storage)
    model: dict[int, AcceptedValue] = {}
    offset = 0
    for kind, arg in steps:
        if kind == "vote":
            log.record(arg)
            for v in arg:
                if v.slot > offset:
                    model[v.slot] = v
        else:
            log.compact(arg)
            if arg > offset:
                offset = arg
                model = {s: v for s, v in model.items() if s > arg}
        assert log.votes == model and log.offset == offset
        reloaded = AcceptorLog(storage.copy())
        assert reloaded.votes == model
        assert storage.log_first() == offset + 1
        assert all(storage.log_records()[s - offset - 1] == v for s, v in model.items())


def test_votes_from_lists_slots_in_order():
    log = AcceptorLog(MemoryStorage())
    log.record([AcceptedValue(slot=s, ballot=Ballot(1, 1), entry=NOOP_ENTRY) for s in (5, 2, 9)])
    assert [v.slot for v in log.votes_from(3)] == [5, 9]
    assert log.last == 9 and MemoryStorage().log_last() == 0
