"""A linearizability check of the real runtime under faults, in one process: three nodes
on TCP and DiskStorage, clients over HTTP, and a nemesis that partitions the leader
(the transport's fault hook) and stops/restarts nodes from their data directories.

The recorded history (writes whose fate is unknown kept as pending operations) must be
linearizable for the key-value model, and every acknowledged write must survive a
restart of the whole cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from typing import Any

import aiohttp
import pytest

from consensuskit.check.linearizability import UNKNOWN, Call, KVModel, Operation, check_operations
from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]
KEYS = ["a", "b", "c"]


class Recorder:
    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.acked: dict[str, int] = {}  # key -> highest acknowledged version
        self.start = time.monotonic()

    def add(self, client: str, call: float, ret: float, op: Call, output: Any) -> None:
        self.ops.append(Operation(len(self.ops), client, call - self.start, ret - self.start, op, output))


async def client(cluster: Cluster, rec: Recorder, name: str, seed: int, stop: asyncio.Event) -> None:
    rng = random.Random(seed)
    http = cluster.http
    assert http is not None
    target = rng.choice(IDS)
    seq = itertools.count(1)
    while not stop.is_set():
        key = rng.choice(KEYS)
        roll = rng.random()
        if roll < 0.4:
            op = Call("get", key)
            method, params, data = "GET", {}, None
        elif roll < 0.8:
            op = Call("put", key, value=f"{name}-{rng.randrange(10**6)}")
            method, params, data = "PUT", {}, op.value
        else:
            expected = rng.randrange(0, 4)
            op = Call("cas", key, value=f"{name}-{rng.randrange(10**6)}", expected_version=expected)
            method, params, data = "PUT", {"cas_version": str(expected)}, op.value
        headers = {"X-Request-Id": f"{name}:{next(seq)}"} if method == "PUT" else {}
        if target not in cluster.servers:
            target = rng.choice(sorted(cluster.servers))
        url = cluster.url(target) + f"/v1/kv/{key}"
        began = time.monotonic()
        try:
            async with http.request(
                method, url, params=params, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=3)
            ) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientConnectorError, ConnectionRefusedError):
            target = rng.choice(sorted(cluster.servers))  # never arrived: nothing to record
            continue
        except (aiohttp.ClientError, TimeoutError):
            if method == "PUT":
                rec.add(name, began, math.inf, op, UNKNOWN)
            target = rng.choice(sorted(cluster.servers))
            continue
        ended = time.monotonic()
        output: Any = None
        if status == 200 and method == "GET":
            output = {"value": body["value"], "version": body["version"]}
        elif status == 404 and method == "GET":
            output = {"value": None, "version": 0}
        elif status == 200:
            output = {"version": body["version"]}
            if op.kind == "cas":
                output["swapped"] = True
            rec.acked[key] = max(rec.acked.get(key, 0), body["version"])
        elif status == 412:
            output = {"swapped": False, "value": body["value"], "version": body["version"]}
        elif body.get("outcome") == "unknown":
            rec.add(name, began, math.inf, op, UNKNOWN)
        if output is not None:
            rec.add(name, began, ended, op, output)
            continue
        # Not applied (421, 503 not-leader/busy, ...): go where we are told, or elsewhere.
        leader_url = body.get("leader_url") if isinstance(body, dict) else None
        by_url = {cluster.url(i): i for i in cluster.servers}
        target = by_url.get(leader_url) or rng.choice(sorted(cluster.servers))
        await asyncio.sleep(0.02)


async def nemesis(cluster: Cluster, rng: random.Random, stop: asyncio.Event) -> list[str]:
    done = []
    while not stop.is_set():
        await asyncio.sleep(0.6)
        leaders = cluster.leaders()
        if rng.random() < 0.5 and leaders:
            leader = leaders[0]
            others = [i for i in cluster.servers if i != leader]
            cluster.servers[leader].set_blocked(set(others))
            for other in others:
                cluster.servers[other].set_blocked({leader})
            await asyncio.sleep(1.0)
            for server in cluster.servers.values():
                server.set_blocked(set())
            done.append(f"isolate {leader}")
        else:
            victim = rng.choice(sorted(cluster.servers))
            await cluster.stop_node(victim)
            await asyncio.sleep(0.5)
            await cluster.start_node(victim)
            done.append(f"restart {victim}")
    return done


@async_test
async def test_history_under_partitions_and_restarts_is_linearizable(tmp_path):
    rec = Recorder()
    async with Cluster(tmp_path, IDS, request_timeout=1.0) as cluster:
        await cluster.wait_leader()
        stop = asyncio.Event()
        clients = [asyncio.ensure_future(client(cluster, rec, f"c{i}", i, stop)) for i in range(4)]
        faults = asyncio.ensure_future(nemesis(cluster, random.Random(7), stop))
        await asyncio.sleep(6.0)
        stop.set()
        await asyncio.gather(*clients)
        done = await faults
        # Whole-cluster restart: every acknowledged write is still there.
        for node_id in list(cluster.servers):
            await cluster.stop_node(node_id)
        for node_id in IDS:
            await cluster.start_node(node_id)
        leader = await cluster.wait_leader()
        for key, version in sorted(rec.acked.items()):
            status, body, _ = await cluster.call("GET", leader, f"/v1/kv/{key}")
            assert status == 200 and body["version"] >= version, (key, version, body)
    completed = [op for op in rec.ops if not op.pending]
    assert len(completed) > 50 and done, (len(completed), done)
    result = check_operations(rec.ops, KVModel(), timeout=60)
    assert result.ok is True, result
