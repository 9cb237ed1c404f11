"""Jepsen-style harness for real node processes: client workers that record a history,
and a nemesis that kills, pauses, restarts and partitions nodes.

The history uses the project's per-operation format (docs/history.md) so the
linearizability checker reads it as it reads the simulator's:
  * ``invoke`` is when the worker called the client, ``complete`` when the call returned;
  * a call that returned an answer (including "not found" and a failed compare-and-swap)
    is ``ok`` with the state machine's result dict;
  * ``Unavailable`` with ``maybe_applied`` is ``unknown`` (interval open to the end);
    without it the write certainly did not happen: ``fail``.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensuskit.client import AsyncClient, CasFailed, ClientError, NotFound, Unavailable
from consensuskit.server.cluster import LocalCluster
from consensuskit.sim.history import OpRecord


class HistoryRecorder:
    """Thread-safe list of ``OpRecord``; times in seconds since the recorder was made."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.records: list[OpRecord] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, record: OpRecord) -> None:
        with self._lock:
            self.records.append(record)

    def dicts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in sorted(self.records, key=lambda r: r.invoke)]

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for d in self.dicts():
                f.write(json.dumps(d, separators=(",", ":")) + "\n")

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "fail": 0, "unknown": 0}
        for r in self.dicts():
            out[r["status"]] += 1
        return out

    def acknowledged_versions(self) -> dict[str, int]:
        """Per key, the highest version an acknowledged write produced."""
        best: dict[str, int] = {}
        for r in self.dicts():
            if r["status"] != "ok" or r["op"] not in ("put", "cas"):
                continue
            version = (r["result"] or {}).get("version")
            if isinstance(version, int) and (r["op"] == "put" or r["result"].get("swapped")):
                best[r["key"]] = max(best.get(r["key"], 0), version)
        return best

    def written_values(self) -> set[str]:
        return {r["value"] for r in self.dicts() if r["op"] in ("put", "cas") and r["status"] != "fail"}


async def recorded(
    recorder: HistoryRecorder,
    client: AsyncClient,
    process: str,
    seq: int,
    op: str,
    key: str,
    *,
    value: str | None = None,
    expected: str | None = None,
    expected_version: int | None = None,
) -> OpRecord:
    """Run one operation through the client and record it."""
    record = OpRecord(
        process=process,
        seq=seq,
        op=op,
        key=key,
        value=value,
        expected=expected,
        expected_version=expected_version,
        invoke=recorder.now(),
    )
    try:
        if op == "get":
            entry = await client.get(key)
            result: Any = {"value": entry.value, "version": entry.version}
            record.index = entry.index
        elif op == "put":
            assert value is not None
            w = await client.put(key, value)
            result = {"version": w.version} if w.version else {}
            record.index = w.index
        elif op == "cas":
            assert value is not None
            w = await client.cas(key, value, expected=expected, expected_version=expected_version)
            result = {"swapped": True, **({"version": w.version} if w.version else {})}
            record.index = w.index
        elif op == "delete":
            d = await client.delete(key)
            result = {"deleted": d.deleted}
        else:
            raise ValueError(op)
        record.status = "ok"
    except NotFound:
        record.status, result = "ok", {"value": None, "version": 0}
    except CasFailed as exc:
        record.status = "ok"
        result = {"swapped": False, "value": exc.current_value, "version": exc.current_version}
    except Unavailable as exc:
        record.status = "unknown" if exc.maybe_applied else "fail"
        result = None
        record.attempts = exc.attempts
    except ClientError as exc:
        # Not an answer the workload expects: the op's fate is open; the test reports it.
        recorder.unexpected.append(f"{process} {op} {key}: {exc}")
        record.status, result = "unknown", None
    if record.status == "ok":
        record.complete = recorder.now()
        record.result = result
    recorder.add(record)
    return record


@dataclass
class Workload:
    keys: int = 5
    workers: int = 6
    think: tuple[float, float] = (0.0, 0.01)
    mix: tuple[tuple[str, float], ...] = (("get", 0.4), ("put", 0.35), ("cas", 0.2), ("delete", 0.05))
    timeout: float = 1.0
    deadline: float = 4.0
    seed: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    # More AsyncClient options (a reply quorum: ``replies=2`` for PBFT at n = 4).
    client_options: dict[str, Any] = field(default_factory=dict)

    def key(self, i: int) -> str:
        return f"k{i}"


async def _worker(
    index: int, workload: Workload, client: AsyncClient, recorder: HistoryRecorder, stop: asyncio.Event
) -> None:
    rng = random.Random(workload.seed * 1000 + index)
    process = f"c{index + 1}"
    kinds, weights = zip(*workload.mix, strict=True)
    seen_version: dict[str, int] = {}
    seq = 0
    while not stop.is_set():
        seq += 1
        kind = rng.choices(kinds, weights)[0]
        key = workload.key(rng.randrange(workload.keys))
        value = f"{process}-{seq}"
        if kind == "cas":
            record = await recorded(
                recorder,
                client,
                process,
                seq,
                "cas",
                key,
                value=value,
                expected_version=seen_version.get(key, 0),
            )
        else:
            record = await recorded(
                recorder, client, process, seq, kind, key, value=value if kind == "put" else None
            )
        if record.status == "ok" and isinstance(record.result, dict) and "version" in record.result:
            seen_version[key] = record.result["version"]
        pause = rng.uniform(*workload.think)
        if pause:
            await asyncio.sleep(pause)


class ClientLoad:
    """Workers on a private event loop thread until ``stop()``; history in ``recorder``."""

    def __init__(self, endpoints: list[str], workload: Workload, recorder: HistoryRecorder) -> None:
        self.endpoints = endpoints
        self.workload = workload
        self.recorder = recorder
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jepsen-clients", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._ready.set()
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        w = self.workload
        async with AsyncClient(
            self.endpoints, timeout=w.timeout, deadline=w.deadline, **w.client_options
        ) as client:
            await asyncio.gather(
                *(_worker(i, w, client, self.recorder, self._stop) for i in range(w.workers))
            )

    def start(self) -> ClientLoad:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.workload.deadline + 30)
        if self._thread.is_alive():
            raise RuntimeError("client workers did not stop")
        if self.error is not None:
            raise self.error


def read_all(
    endpoints: list[str],
    recorder: HistoryRecorder,
    keys: list[str],
    process: str = "final",
    deadline: float = 20.0,
    **client_options: Any,
) -> dict[str, OpRecord]:
    """A linearizable read of every key, recorded in the history."""

    async def main() -> dict[str, OpRecord]:
        async with AsyncClient(endpoints, timeout=2.0, deadline=deadline, **client_options) as client:
            out = {}
            for seq, key in enumerate(keys, 1):
                out[key] = await recorded(recorder, client, process, seq, "get", key)
            return out

    return asyncio.run(main())


def final_state(reads: dict[str, OpRecord]) -> dict[str, tuple[Any, int]]:
    out = {}
    for key, record in reads.items():
        assert record.status == "ok", f"final read of {key} did not complete: {record.to_dict()}"
        out[key] = (record.result["value"], record.result["version"])
    return out


def check_linearizable(recorder: HistoryRecorder, path: Path, timeout: float = 120.0) -> None:
    """Write the history to ``path`` and assert the checker finds it linearizable."""
    from consensuskit.check.linearizability import check_history, get_model

    recorder.write(path)
    result = check_history(recorder.dicts(), model="kv", timeout=timeout)
    assert result.ok is not False, f"history {path} is not linearizable:\n{result.explain(get_model('kv'))}"
    assert result.ok is True, f"checker could not decide on {path} within {timeout} s"


def assert_acknowledged_writes_survive(recorder: HistoryRecorder, state: dict[str, tuple[Any, int]]) -> None:
    """Versions only grow until a delete: a key never (possibly) deleted whose acknowledged
    write reached version v is at v or later, and every value is one somebody wrote."""
    values = recorder.written_values()
    deleted = {r["key"] for r in recorder.dicts() if r["op"] == "delete" and r["status"] != "fail"}
    for key, version in recorder.acknowledged_versions().items():
        if key in deleted:
            continue  # the linearizability check covers it: the final reads are in the history
        value, now = state.get(key, (None, 0))
        assert now >= version, (
            f"{key}: an acknowledged write made version {version}, now at {now} ({value!r})"
        )
    for key, (value, _) in state.items():
        assert value is None or value in values, f"{key} holds {value!r}, which nobody wrote"


# ---------------------------------------------------------------------- nemesis
@dataclass
class Nemesis:
    """Faults on real processes.  ``partition`` is a callable(cluster, groups) set by the
    test once the server's fault endpoint is known (None: skip partitions)."""

    cluster: LocalCluster
    rng: random.Random
    partition: Callable[[LocalCluster, list[list[str]]], None] | None = None
    heal: Callable[[LocalCluster], None] | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append((round(time.monotonic() - self.t0, 3), what))

    def kill_leader(self) -> str | None:
        """SIGKILL the leader; in a protocol without one (no ``has-leader`` capability
        in the nodes' status), a random node."""
        if self.cluster.has_leader() is False:
            victim = self.rng.choice(sorted(self.cluster.nodes))
            self.cluster.nodes[victim].kill()
            self.note(f"SIGKILL {victim}")
            return victim
        leader = self.cluster.leader()
        if leader is None:
            return None
        self.cluster.nodes[leader].kill()
        self.note(f"SIGKILL leader {leader}")
        return leader

    def pause(self, node: str) -> None:
        self.cluster.nodes[node].pause()
        self.note(f"SIGSTOP {node}")

    def resume_all(self) -> None:
        for node in self.cluster.nodes.values():
            if node.paused:
                node.resume()
                self.note(f"SIGCONT {node.node_id}")

    def restart(self, node: str) -> None:
        self.cluster.nodes[node].restart()
        self.note(f"restart {node}")

    def start_dead(self) -> None:
        for node in self.cluster.nodes.values():
            if not node.running:
                node.start()
                self.note(f"start {node.node_id}")

    def split(self) -> None:
        if self.partition is None:
            return
        ids = sorted(self.cluster.nodes)
        self.rng.shuffle(ids)
        cut = self.rng.randrange(1, len(ids))
        groups = [sorted(ids[:cut]), sorted(ids[cut:])]
        self.partition(self.cluster, groups)
        self.note(f"partition {groups}")

    def heal_all(self) -> None:
        self.resume_all()
        self.start_dead()
        if self.heal is not None:
            self.heal(self.cluster)
            self.note("heal partitions")

    def run(self, duration: float, interval: tuple[float, float] = (0.5, 1.5)) -> None:
        """Random faults for ``duration`` seconds; at most a minority is down at once."""
        end = time.monotonic() + duration
        actions = ["kill-leader", "pause", "restart", "partition"]
        while time.monotonic() < end:
            action = self.rng.choice(actions)
            if action == "kill-leader":
                self.kill_leader()
            elif action == "pause":
                self.pause(self.rng.choice(sorted(self.cluster.nodes)))
            elif action == "restart":
                self.restart(self.rng.choice(sorted(self.cluster.nodes)))
            elif action == "partition":
                self.split()
            time.sleep(min(self.rng.uniform(*interval), max(0.0, end - time.monotonic())))
            self.heal_all()
            time.sleep(min(self.rng.uniform(*interval) / 2, max(0.0, end - time.monotonic())))
