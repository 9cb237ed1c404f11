"""services/etcd_api.py: how gRPC calls are grouped before the node sees them (a lone call
goes at once; calls arriving while a group is in the node go together when it is
answered, or after COALESCE)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from consensuskit.services.etcd_api import COALESCE, EtcdNode
from tests.server.runtime_harness import async_test


class _Runtime:
    def __init__(self) -> None:
        self.handed: list[tuple[Any, Any, Any]] = []  # (request, callback, future)

    def wait_for_answer(self, request: Any, timeout: float, callback: Any, context: Any) -> Any:
        self.handed.append((request, callback, context))
        return SimpleNamespace(context=context)


def _node() -> tuple[EtcdNode, _Runtime]:
    runtime = _Runtime()
    config = SimpleNamespace(
        node_id="n1", cluster_id="c", members=["n1"], request_timeout=5.0, max_value_bytes=1, max_key_bytes=1
    )
    return EtcdNode(SimpleNamespace(config=config, runtime=runtime)), runtime  # type: ignore[arg-type]


def _answer(runtime: _Runtime, index: int) -> None:
    request, callback, fut = runtime.handed[index]
    callback(SimpleNamespace(context=fut), f"answer {request}", None)


@async_test
async def test_grpc_calls_go_alone_when_idle_and_together_behind_a_group_in_the_node():
    node, runtime = _node()
    first = node._coalesced("r1")  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert [h[0] for h in runtime.handed] == ["r1"]  # idle: this loop turn, no COALESCE wait
    second, third = node._coalesced("r2"), node._coalesced("r3")  # type: ignore[arg-type]
    await asyncio.sleep(COALESCE / 4)
    assert len(runtime.handed) == 1  # r1 is in the node: they wait for it
    _answer(runtime, 0)
    assert await first == "answer r1"
    assert [h[0] for h in runtime.handed] == ["r1", "r2", "r3"]  # together, when r1 is answered
    fourth = node._coalesced("r4")  # type: ignore[arg-type]
    await asyncio.sleep(COALESCE / 4)
    assert len(runtime.handed) == 3
    await asyncio.sleep(COALESCE)
    assert [h[0] for h in runtime.handed][-1] == "r4"  # r2, r3 still in the node: COALESCE at most
    for i in (1, 2, 3):
        _answer(runtime, i)
    assert [await f for f in (second, third, fourth)] == ["answer r2", "answer r3", "answer r4"]
    assert node._in_node == 0
