"""Reply builders against a naive twin that spells each ClientResponse out by hand."""

from __future__ import annotations

import re

import pytest
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


class _Store:
    def read(self, request):
        if request.op.key == "boom":
            raise KeyError("boom")
        return {"value": request.op.key}


def test_a_read_answers_its_result_or_is_refused_when_the_state_machine_raises():
    from consensuskit.core.client import READ_FAILED
    from tests.protocols.fake_env import FakeEnv

    env = FakeEnv("n1")
    read = ClientRequest(client_id="c1", seq=8, op=Op(kind="get", key="k"))
    assert replies.read_answer(_Store(), read, env, "n1", 4) == replies.ok(read, {"value": "k"}, "n1", 4)
    boom = ClientRequest(client_id="c1", seq=9, op=Op(kind="get", key="boom"))
    assert replies.read_answer(_Store(), boom, env, "n2", 4) == replies.refused(boom, READ_FAILED, "n2")
    (failed,) = env.recorded("read-failed")
    assert failed["op"] == "get" and failed["error"] == "KeyError: 'boom'"
    assert 'raise KeyError("boom")' in failed["trace"]  # the operator's log gets where it broke


class _Machine:
    def __init__(self) -> None:
        self.applied: list[ClientRequest] = []

    def apply(self, command: ClientRequest) -> object:
        self.applied.append(command)
        if command.op.key == "boom":
            raise KeyError("boom")
        return {"version": len(self.applied)}


def test_an_entry_whose_read_raises_is_refused_and_a_command_that_raises_halts():
    from consensuskit.core.client import READ_FAILED
    from tests.protocols.fake_env import FakeEnv

    env = FakeEnv("n1")
    machine = _Machine()
    put = ClientRequest(client_id="c1", seq=1, op=Op(kind="put", key="k", value=1))
    assert replies.applied(machine, put, env) == {"version": 1}
    read = ClientRequest(client_id="c1", seq=2, op=Op(kind="get", key="boom"))
    result = replies.applied(machine, read, env)
    assert result is sessions.FAILED_READ  # the refusal object: never remembered as an answer
    assert replies.command_answer(read, result, "n1", 9) == replies.refused(read, READ_FAILED, "n1")
    (failed,) = env.recorded("read-failed")
    assert failed["op"] == "get" and failed["error"] == "KeyError: 'boom'"
    # A command may have changed half the state before it raised: that still halts.
    write = ClientRequest(client_id="c1", seq=3, op=Op(kind="put", key="boom", value=2))
    with pytest.raises(KeyError):
        replies.applied(machine, write, env)
    assert len(env.recorded("read-failed")) == 1


def break_reads_of_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kv state machine, with a bug: a get of the key ``boom`` raises KeyError."""
    from consensuskit.statemachines import kv

    execute = kv.KVStateMachine.execute

    def with_a_bug(self, op):
        if op.kind == "get" and op.key == "boom":
            raise KeyError(op.key)
        return execute(self, op)

    monkeypatch.setattr(kv.KVStateMachine, "execute", with_a_bug)


# Every way a read reaches a state machine through a protocol's log (or PBFT's ordering)
# and PBFT's read-only path: each goes through ``applied`` / ``read_answer``, which the
# simulator turns into an error naming the failed read, not the state machine's KeyError.
READS_THROUGH = {
    "raft-log": "add-nodes 3 protocol=raft read_mode=log",
    "multipaxos-log": "add-nodes 3 protocol=multipaxos read_mode=log",
    "basic-paxos": "add-nodes 3 protocol=basic-paxos",
    "pbft-ordered": "add-nodes 4 protocol=pbft",
    "pbft-read-only": "add-nodes 4 protocol=pbft read_only=true",
}


@pytest.mark.parametrize("path", sorted(READS_THROUGH))
def test_a_read_failing_in_the_state_machine_fails_the_simulation_as_a_failed_read(path, monkeypatch):
    from tests.transcript.datadriven import parse
    from tests.transcript.harness import Harness

    break_reads_of_boom(monkeypatch)
    harness = Harness()
    steps = [READS_THROUGH[path], "campaign n1", "stabilize", "propose n1 get boom", "stabilize\n----\n"]
    if path.startswith(("basic", "pbft")):
        steps.remove("campaign n1")  # no election: n1 proposes / is view 0's primary
    script = "\n----\n\n".join(steps)
    out = "".join(harness.handle(case) for case in parse(script).cases)
    assert re.search(r"error: n\d: a get read failed: Traceback", out), out
    assert out.rstrip().endswith("KeyError: 'boom'"), out
