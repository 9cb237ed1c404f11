"""``ProtocolSpec.reply_quorum``: a client that cannot trust one node waits for matching
answers from several (sim/workload.py), and retransmits to every node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.sim import SimConfig, Simulation


class EchoNode:
    """Answers every request itself; with ``relay`` it also hands it to every other node,
    which answers too.  A node in ``liars`` answers with a made-up result."""

    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.id = node_id
        self.env = env
        self.others = [m for m in members if m != node_id]
        self.liar = node_id in options.get("liars", ())
        self.relay = options.get("relay", True)

    def on_start(self) -> None:
        pass

    def on_timer(self, key: str) -> None:
        pass

    def on_message(self, src: str, msg: Any) -> None:
        self._answer(msg[1])

    def on_request(self, request: ClientRequest) -> None:
        if self.relay:
            for peer in self.others:
                self.env.send(peer, ("relay", request))
        self._answer(request)

    def _answer(self, request: ClientRequest) -> None:
        result = {"forged": self.id} if self.liar else {"value": 1}
        self.env.deliver(
            ClientResponse(client_id=request.client_id, seq=request.seq, ok=True, result=result, index=1)
        )


def _run(quorum: Any, **options: Any) -> Any:
    registry = Registry()
    registry.add(ProtocolSpec(name="echo", description="test", make_node=EchoNode, reply_quorum=quorum))
    config = SimConfig(
        protocol="echo",
        node_ids=("n1", "n2", "n3", "n4"),
        options=options,
        check_linearizability=False,
    )
    sim = Simulation(config, registry)
    run = sim.submit(Op(kind="get", key="k"), node="n1")
    sim.run_until_true(lambda: run.done, 5.0)
    return run


def test_without_a_reply_quorum_the_first_answer_wins_even_a_liars():
    run = _run(None, liars=("n1",))
    assert run.status == "ok" and run.result == {"forged": "n1"}


def test_a_reply_quorum_needs_matching_answers_from_distinct_nodes():
    run = _run(lambda n, read, options: 2, liars=("n1",))
    assert run.status == "ok" and run.result == {"value": 1}


def test_one_liar_cannot_complete_an_op_alone():
    run = _run(lambda n, read, options: 4, liars=("n1",))
    assert run.status != "ok"


def test_a_timed_out_attempt_is_retransmitted_to_every_node():
    # Without relaying only n1 hears the first attempt: one answer is not two.
    run = _run(lambda n, read, options: 2, relay=False)
    assert run.status == "ok" and run.result == {"value": 1}
    assert run.attempts == 2


def test_the_reply_quorum_sees_the_runs_protocol_options():
    """An option (or bug knob) may change the quorum: here the option says 4, so the
    liar's answer keeps a quorum of all four nodes from forming before the deadline."""
    seen: list[Any] = []

    def quorum(nodes: int, read: bool, options: Any) -> int:
        seen.append((nodes, read, options.get("need")))
        return int(options.get("need", 1))

    run = _run(quorum, liars=("n1",), need=4)
    assert seen == [(4, True, 4)]
    assert run.status != "ok"
