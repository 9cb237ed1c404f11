"""Reply builders against a naive twin that spells each ClientResponse out by hand."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import NOT_LEADER, ClientRequest, ClientResponse, Op
from consensuskit.protocols.common import replies
from consensuskit.statemachines import sessions

REQUEST = ClientRequest(client_id="c1", seq=7, op=Op(kind="put", key="k", value=1))
REFUSALS = [sessions.STALE, sessions.EXPIRED, sessions.REUSED, sessions.BAD_COMMAND]


def naive_command_answer(request, result, hint, index) -> ClientResponse:
    for refusal in REFUSALS:
        if result is refusal:  # the state machine's own objects: nothing was applied
            return ClientResponse(
                client_id=request.client_id,
                seq=request.seq,
                ok=False,
                error=refusal["error"],
                leader_hint=hint,
            )
    return ClientResponse(
        client_id=request.client_id, seq=request.seq, ok=True, result=result, leader_hint=hint, index=index
    )


def test_a_session_refusal_is_never_ok():
    answer = replies.command_answer(REQUEST, sessions.STALE, "n1", 5)
    assert (answer.ok, answer.error, answer.leader_hint, answer.index) == (False, "stale-session", "n1", 0)
    # An equal dict that is not the state machine's refusal is an ordinary result.
    assert replies.command_answer(REQUEST, {"error": "stale-session"}, "n1", 5).ok
    refused = replies.refused(REQUEST, NOT_LEADER, None)
    assert (refused.client_id, refused.seq, refused.ok, refused.error) == ("c1", 7, False, NOT_LEADER)


results = st.one_of(
    st.sampled_from(REFUSALS),
    st.none(),
    st.integers(),
    st.dictionaries(st.sampled_from(["error", "value"]), st.text(max_size=3), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(results, st.sampled_from([None, "n1", "n2"]), st.integers(0, 100))
def test_agrees_with_the_naive_twin(result, hint, index):
    assert replies.command_answer(REQUEST, result, hint, index) == naive_command_answer(
        REQUEST, result, hint, index
    )
    assert replies.ok(REQUEST, result, hint, index) == ClientResponse(
        client_id="c1", seq=7, ok=True, result=result, leader_hint=hint, index=index
    )
