"""Seed sweeps of Multi-Paxos with the catalog's registry (spawned workers build their own:
the catalog wires the Multi-Paxos checker to its spec)."""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from consensuskit.core.registry import Registry
from consensuskit.sim import NEMESIS_KINDS, SimConfig, Simulation
from consensuskit.sweep import failure_reason


def registry() -> Registry:
    from consensuskit.catalog import default_registry

    return default_registry()


def config(nodes: int, **overrides: Any) -> SimConfig:
    base: dict[str, Any] = dict(
        protocol="multipaxos",
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        duration=5.0,
        clients=3,
        nemesis=NEMESIS_KINDS,
    )
    base.update(overrides)
    return SimConfig(**base)


def run_seed(cfg: SimConfig, seed: int) -> tuple[int, str, dict[str, Any]]:
    """(seed, failure reason or '', message delays) of one seed."""
    run_cfg = dataclasses.replace(cfg, seed=seed, trace_path=None, history_path=None)
    try:
        result = Simulation(run_cfg, registry=registry()).run()
    except Exception as exc:  # a protocol crash fails this seed
        return seed, f"exception {type(exc).__name__}: {exc}", {}
    return seed, failure_reason(result), result.message_delays


def sweep(cfg: SimConfig, seeds: range, workers: int = 2) -> list[tuple[int, str, dict[str, Any]]]:
    if workers <= 1:
        return [run_seed(cfg, s) for s in seeds]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(run_seed, [cfg] * len(seeds), seeds, chunksize=4))


if __name__ == "__main__":  # python -m tests.check.multipaxos_sweep NODES SEEDS [bug]
    import sys
    import time

    nodes, count = int(sys.argv[1]), int(sys.argv[2])
    bugs = frozenset(sys.argv[3:4])
    t0 = time.perf_counter()
    outcomes = sweep(config(nodes, bugs=bugs), range(count))
    failed = [(s, r) for s, r, _ in outcomes if r]
    for s, r in failed:
        print(s, r[:300])
    print(f"{len(failed)} failed of {count} in {time.perf_counter() - t0:.1f}s")
