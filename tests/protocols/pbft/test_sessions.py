"""A replica's reply cache never outlives the client session it stands for.

Castro & Liskov §4.1: a replica keeps its last reply to each client and sends it again
when the client retransmits.  Sessions here expire through clock commands in the log
(statemachines/sessions.py); once the state machine forgot a session, a retry of its
last request must be refused as ``session-expired`` (its outcome unknown to the client),
not answered from the replica's cache -- the defect that kept sessions alive for ever on
real PBFT processes (tests/server/test_processes_sessions.py)."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.statemachines.sessions import clock_op
from tests.transcript.datadriven import parse
from tests.transcript.harness import Harness

EPOCH = "anon.clock.test"


def run(harness: Harness, text: str) -> list[str]:
    out: list[str] = []
    for case in parse(text).cases:
        out.extend(line for line in harness.handle(case).splitlines() if line)
    return out


def request(harness: Harness, client: str, seq: int, op: Op, to: str = "n1") -> list[ClientResponse]:
    """Send one request to ``to``, run until quiet; every replica's answer to it."""
    before = len(harness.s.responses)
    harness.s.send_request(to, ClientRequest(client_id=client, seq=seq, op=op))
    harness.s.run_until(harness.s.now)  # the request reaches the replica (as ``propose``)
    run(harness, "stabilize\n----\n")
    return [r for _, _, r in harness.s.responses[before:] if (r.client_id, r.seq) == (client, seq)]


def test_a_retry_after_its_session_expired_is_refused_not_answered_from_the_cache():
    h = Harness(protocol="pbft")
    run(h, "add-nodes 4 protocol=pbft batch_size=1\n----\n")
    clock = [0]

    def tick(ms: int) -> None:
        clock[0] += 1
        request(h, EPOCH, clock[0], clock_op(EPOCH, ms, 1000, 100))

    tick(0)
    put = Op(kind="put", key="k", value="v")
    first = request(h, "c", 1, put)
    assert len(first) == 4 and all(r.ok and r.result == {"version": 1} for r in first), first
    # A retransmission inside the session: answered from the cache, nothing ordered.
    executed = h.s.nodes["n1"].executed
    again = request(h, "c", 1, put, to="n2")
    assert again and all(r.ok and r.index == first[0].index for r in again), again
    assert h.s.nodes["n1"].executed == executed
    tick(500)
    tick(3000)  # idle for more than the ttl: the session is forgotten
    late = request(h, "c", 1, put)
    assert len(late) == 4 and all(r.error == "session-expired" for r in late), late
    # The refusal stands for later retries too (from the cache now), at any replica.
    later = request(h, "c", 1, put, to="n3")
    assert later and all(r.error == "session-expired" for r in later), later
    # "v" was applied once: a new session writes version 2.
    fresh = request(h, "d", 1, Op(kind="put", key="k", value="w"))
    assert fresh and all(r.ok and r.result == {"version": 2} for r in fresh), fresh
