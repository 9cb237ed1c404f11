"""Seed sweeps: run one simulation config over many seeds on all cores.

Rules this module owns:
  * each seed runs in a fresh ``Simulation`` built inside the worker from the same
    ``SimConfig`` with only ``seed`` changed (and no trace/history files), so a failing
    seed reproduces alone with ``consensuskit sim`` and the same options;
  * workers use the ``spawn`` context: the parent may run a progress-bar thread, and
    forking a process that holds other threads' locks can deadlock the child;
  * results come back in seed order whatever order the workers finish in;
  * a protocol exception is a failure of that seed (with its reason), not of the sweep;
  * a seed with clients must earn its pass: one whose history got no verdict (the
    linearizability checker ran out of time) or in which no operation completed fails,
    and the sweep reports how many seeds failed each way.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensuskit.sim import SimConfig, Simulation


@dataclass(slots=True, frozen=True)
class SeedOutcome:
    seed: int
    ok: bool
    reason: str
    events: int
    trace_sha256: str
    wall_seconds: float
    checker_timed_out: bool = False
    completed_ops: int = 0
    runtime: str = ""  # the runtime the seed ran (config.runtime "random" resolved)


@dataclass(slots=True)
class SweepResult:
    config: SimConfig
    outcomes: list[SeedOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    workers: int = 1

    @property
    def failures(self) -> list[SeedOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def events(self) -> int:
        return sum(o.events for o in self.outcomes)

    @property
    def checker_timeouts(self) -> int:
        """Seeds whose history the linearizability checker could not decide in time."""
        return sum(1 for o in self.outcomes if o.checker_timed_out)

    @property
    def seeds_without_ops(self) -> int:
        """Seeds with clients in which no operation completed."""
        return sum(1 for o in self.outcomes if self.config.clients > 0 and o.completed_ops == 0 and o.events)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "protocol": cfg.protocol,
            "seeds": len(self.outcomes),
            "first_seed": self.outcomes[0].seed if self.outcomes else None,
            "nodes": len(cfg.node_ids),
            "duration": cfg.duration,
            "clients": cfg.clients,
            "nemesis": list(cfg.nemesis),
            "bugs": sorted(cfg.bugs),
            "runtime": cfg.runtime,
            # Seeds per runtime they ran (with "random", chosen per seed).
            "runtimes": {
                name: sum(1 for o in self.outcomes if o.runtime == name)
                for name in sorted({o.runtime for o in self.outcomes if o.runtime})
            },
            "failures": [
                {
                    "seed": o.seed,
                    "runtime": o.runtime,
                    "reason": o.reason,
                    "command": reproduce_command(cfg, o.seed),
                }
                for o in self.failures
            ],
            "passed": self.passed,
            "checker_timeouts": self.checker_timeouts,
            "seeds_without_ops": self.seeds_without_ops,
            "events": self.events,
            "wall_seconds": round(self.wall_seconds, 3),
            "workers": self.workers,
        }


def reproduce_command(config: SimConfig, seed: int) -> str:
    """The ``consensuskit sim`` command line that replays ``seed`` alone."""
    parts = [
        "consensuskit sim",
        config.protocol,
        f"--nodes {len(config.node_ids)}",
        f"--seed {seed}",
        f"--duration {config.duration:g}",
        f"--clients {config.clients}",
        f"--nemesis {','.join(config.nemesis) or 'none'}",
    ]
    if config.runtime != "random":  # the default: the seed picks the same runtime again
        parts.append(f"--runtime {config.runtime}")
    parts += [f"--bug {bug}" for bug in sorted(config.bugs)]
    parts += [
        f"--option {key}={json.dumps(value, separators=(',', ':'))}"
        for key, value in sorted(config.options.items())
    ]
    return " ".join(parts)


def failure_reason(result: Any, config: SimConfig | None = None) -> str:
    """Why a SimResult counts as failed in a sweep ('' when it passed).  With ``config``
    (a run with clients), no verdict and no completed operation fail too."""
    if result.violations:
        v = result.violations[0]
        at = f" at t={v.time:.6f}" if v.time is not None else ""
        return f"invariant {v.name}: {v.detail}{at}"
    if result.invariant_violations:
        v = result.invariant_violations[0]
        return f"invariant {v.get('name')}: {v.get('detail')}"
    if result.linearizable is False:
        return "history is not linearizable"
    if config is not None and config.clients > 0:
        if _checker_timed_out(result, config):
            return "no linearizability verdict: the checker ran out of time (raise linearizability_timeout)"
        if result.ops.get("ok", 0) == 0:
            return f"no operation completed (ops {dict(result.ops)}): nothing was checked"
    return ""


def _checker_timed_out(result: Any, config: SimConfig) -> bool:
    """A verdict was due (clients ran and checking is on) but none came."""
    return config.clients > 0 and config.check_linearizability and result.linearizable is None


def run_seed(config: SimConfig, seed: int) -> SeedOutcome:
    """One seed of a sweep; top-level so spawned workers can unpickle it."""
    cfg = dataclasses.replace(config, seed=seed, trace_path=None, history_path=None)
    t0 = time.perf_counter()
    sim = None
    try:
        sim = Simulation(cfg)
        result = sim.run()
    except Exception as exc:  # a crash in protocol code is this seed's failure
        return SeedOutcome(
            seed=seed,
            ok=False,
            reason=f"exception {type(exc).__name__}: {exc}",
            events=0,
            trace_sha256="",
            wall_seconds=time.perf_counter() - t0,
            runtime=sim.runtime if sim is not None else "",
        )
    reason = failure_reason(result, cfg)
    return SeedOutcome(
        seed=seed,
        ok=not reason,
        reason=reason,
        events=result.events,
        trace_sha256=result.trace_sha256,
        wall_seconds=result.wall_seconds,
        checker_timed_out=_checker_timed_out(result, cfg),
        completed_ops=result.ops.get("ok", 0),
        runtime=result.runtime,
    )


def run_sweep(base_config: SimConfig, seeds: Iterable[int], workers: int, progress: bool) -> SweepResult:
    """Run ``base_config`` once per seed; ``workers`` <= 1 runs in this process."""
    base_config.validate()
    seed_list = list(seeds)
    workers = max(1, min(workers, len(seed_list) or 1))
    result = SweepResult(config=base_config, workers=workers)
    t0 = time.perf_counter()
    outcomes: dict[int, SeedOutcome] = {}

    bar: Any = None
    task: Any = None
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # stderr: --json output on stdout must stay parseable.
        bar = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        bar.start()
        task = bar.add_task("sweep", total=len(seed_list), failed=0)

    def done(outcome: SeedOutcome) -> None:
        outcomes[outcome.seed] = outcome
        if bar is not None:
            failed = sum(1 for o in outcomes.values() if not o.ok)
            bar.update(task, advance=1, failed=failed)

    try:
        if workers == 1:
            for seed in seed_list:
                done(run_seed(base_config, seed))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(run_seed, base_config, seed) for seed in seed_list]
                for future in as_completed(futures):
                    done(future.result())
    finally:
        if bar is not None:
            bar.stop()
    result.outcomes = [outcomes[s] for s in seed_list]
    result.wall_seconds = time.perf_counter() - t0
    return result


def save_failure_traces(
    base_config: SimConfig, seeds: Iterable[int], directory: str | Path
) -> dict[int, tuple[Path, str]]:
    """Re-run ``seeds`` writing ``DIR/seed-S.jsonl``; returns seed -> (path, trace digest).

    The digest must equal the sweep's for that seed (same seed, same trace); the caller
    compares, because a mismatch means the simulation is not deterministic.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    saved: dict[int, tuple[Path, str]] = {}
    for seed in seeds:
        path = out / f"seed-{seed}.jsonl"
        cfg = dataclasses.replace(base_config, seed=seed, trace_path=str(path), history_path=None)
        sim = Simulation(cfg)
        try:
            digest = sim.run().trace_sha256
        except Exception:
            # A protocol crash is why this seed failed: keep the trace up to it.
            sim.close()
            digest = ""
        saved[seed] = (path, digest)
    return saved


def default_workers() -> int:
    return os.cpu_count() or 1
