"""A message the codec cannot encode is dropped by ``send`` with an error log line, never
raised into the node (issue 10: a Multi-Paxos follower forwarding an unstorable client
request, or a term pushed past 2^64 by a peer, halted the node through this path)."""

from __future__ import annotations

import logging

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.paxos.multi_messages import Forward
from consensuskit.protocols.raft.messages import Heartbeat
from tests.server.test_transport import eventually, hb, run, start_cluster, stop_all

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "message",
    [
        Heartbeat(term=2**64, leader="a", commit=1),  # OverflowError
        Forward(  # a forwarded request holding a lone surrogate: UnicodeEncodeError
            request=ClientRequest(client_id="c\udcff", seq=1, op=Op(kind="put", key="k", value="v")),
            origin="a",
        ),
        Forward(
            request=ClientRequest(client_id="c", seq=1, op=Op(kind="put", key="k", value=object())),
            origin="a",
        ),
    ],
    ids=["int-over-uint64", "surrogate", "unknown-type"],
)
def test_an_unencodable_message_is_dropped_and_logged_and_the_link_keeps_working(message, caplog):
    caplog.set_level(logging.ERROR)

    async def main() -> None:
        nodes = await start_cluster("a", "b")
        a, b = nodes["a"], nodes["b"]
        try:
            a.transport.send("b", message)  # must not raise
            a.transport.send("b", hb(7))
            a.transport.flush()
            await eventually(lambda: b.commits_from("a") == [7], "the next message arrives")
            assert a.stats("b").queue_length == 0
        finally:
            await stop_all(nodes)

    run(main())
    assert f"not sending {type(message).__name__} to peer b: cannot encode it" in caplog.text


def test_a_non_message_is_still_refused_as_local_misuse():
    async def main() -> None:
        nodes = await start_cluster("a", "b")
        try:
            with pytest.raises(TypeError, match="only protocol messages"):
                nodes["a"].transport.send("b", {"not": "a message"})
        finally:
            await stop_all(nodes)

    run(main())
