"""Seed sweeps: run one simulation config over many seeds on all cores, or on a Dask cluster.

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
    and the sweep reports how many seeds failed each way;
  * a seed's run gets ``seed_timeout`` seconds of wall time (default
    ``DEFAULT_SEED_TIMEOUT``, 0 for none; ``Simulation.run(wall_limit=)``, on every
    engine): a livelock (events forever at one virtual instant) becomes that seed's
    "hung" failure, with its reproduce command, instead of a sweep frozen for good.
    The history's check after the run has its own budget (linearizability_timeout);
  * the engine never changes a result: on a Dask cluster (``dask="tcp://host:8786"``, or
    ``"local:N"`` for a local cluster of N worker processes) each seed runs the same
    ``run_seed`` as in the local pool, so passed count, events, failures and trace digests
    are the same for the same seeds; only wall time and the worker count differ.  Dask is
    an optional extra (``consensuskit[dask]``), imported only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensuskit.core.client import CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE
from consensuskit.sim import DEFAULT_LINEARIZABILITY_TIMEOUT, SimConfig, Simulation, WallClockExceeded

# Wall-clock seconds a seed's run may take: far above any run that ends (30 virtual
# seconds with every fault take well under a minute), so it only stops one that would not.
DEFAULT_SEED_TIMEOUT = 600.0


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
    hung: bool = False  # stopped by the sweep's seed timeout


@dataclass(slots=True)
class SweepResult:
    config: SimConfig
    outcomes: list[SeedOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    workers: int = 1
    engine: str = "local"  # "local" (this machine's process pool) or "dask ADDRESS"

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
    def hung(self) -> int:
        """Seeds stopped by the seed timeout."""
        return sum(1 for o in self.outcomes if o.hung)

    @property
    def seeds_without_ops(self) -> int:
        """Seeds with clients in which no operation completed."""
        if self.config.clients == 0:
            return 0
        return sum(1 for o in self.outcomes if o.completed_ops == 0 and o.events and not o.hung)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "protocol": cfg.protocol,
            "service": cfg.service,
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
            "hung": self.hung,
            "seeds_without_ops": self.seeds_without_ops,
            "events": self.events,
            "wall_seconds": round(self.wall_seconds, 3),
            "workers": self.workers,
            "engine": self.engine,
        }


def reproduce_command(config: SimConfig, seed: int) -> str:
    """The ``consensuskit sim`` command line that replays ``seed`` alone."""
    parts = [
        "consensuskit sim",
        config.protocol,
        *([f"--service {config.service}"] if config.service else []),
        f"--nodes {len(config.node_ids)}",
        f"--seed {seed}",
        f"--duration {config.duration:g}",
        f"--clients {config.clients}",
        f"--nemesis {','.join(config.nemesis) or 'none'}",
    ]
    if config.nemesis_interval != SimConfig().nemesis_interval:
        lo, hi = config.nemesis_interval
        parts.append(f"--nemesis-interval {lo:g},{hi:g}")
    if (config.op_timeout, config.op_deadline) == (CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE):
        parts.append("--server-options")  # its clients' timeouts; its options follow as --option
    if config.runtime != "random":  # the default: the seed picks the same runtime again
        parts.append(f"--runtime {config.runtime}")
    if config.linearizability_timeout != DEFAULT_LINEARIZABILITY_TIMEOUT:
        parts.append(f"--linearizability-timeout {config.linearizability_timeout:g}")
    parts += [f"--bug {bug}" for bug in sorted(config.bugs)]
    parts += [
        f"--option {key}={json.dumps(value, separators=(',', ':'))}"
        for key, value in sorted(config.options.items())
        if not (key in config.flags and config.flags[key] == value)  # said by its flag below
    ]
    parts += [f"--{key.replace('_', '-')} {_flag_text(value)}" for key, value in config.flags.items()]
    return " ".join(parts)


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return shlex.quote(str(value))


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
            return "no linearizability verdict: the checker ran out of time (raise --linearizability-timeout)"
        if result.ops.get("ok", 0) == 0:
            return f"no operation completed (ops {dict(result.ops)}): nothing was checked"
    return ""


def _checker_timed_out(result: Any, config: SimConfig) -> bool:
    """A verdict was due (clients ran and checking is on) but none came."""
    return (
        config.clients > 0
        and config.check_linearizability
        and result.linearizable is None
        and getattr(result, "verdict_due", True)  # a service without a model owes none
    )


def run_seed(config: SimConfig, seed: int, seed_timeout: float = 0.0) -> SeedOutcome:
    """One seed of a sweep; top-level so spawned workers can unpickle it."""
    cfg = dataclasses.replace(config, seed=seed, trace_path=None, history_path=None)
    t0 = time.perf_counter()
    sim = None
    try:
        sim = Simulation(cfg)
        result = sim.run(wall_limit=seed_timeout or None)
    except WallClockExceeded as exc:
        assert sim is not None
        return SeedOutcome(
            seed=seed,
            ok=False,
            reason=f"hung: {exc}; raise --seed-timeout if it was only slow",
            events=sim.events,
            trace_sha256="",
            wall_seconds=time.perf_counter() - t0,
            runtime=sim.runtime,
            hung=True,
        )
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


class DaskUnavailable(RuntimeError):
    """``--dask`` was asked for but the extra is not installed (bad input: exit 2)."""


DASK_MISSING = "sweeping on Dask needs the dask extra: pip install 'consensuskit[dask]'"


def parse_dask_address(address: str) -> int | str:
    """``local:N`` -> N (worker processes of a local cluster); else a scheduler address.

    Raises ValueError with one line for a malformed ``local:N``."""
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"expected local:N with N >= 1 worker processes, got {address!r}")
        return int(count)
    if not address:
        raise ValueError("expected a scheduler address (tcp://HOST:8786) or local:N")
    return address


def check_dask_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise DaskUnavailable(DASK_MISSING)


def run_sweep(
    base_config: SimConfig,
    seeds: Iterable[int],
    workers: int,
    progress: bool,
    dask: str | None = None,
    seed_timeout: float = DEFAULT_SEED_TIMEOUT,
) -> SweepResult:
    """Run ``base_config`` once per seed; ``workers`` <= 1 runs in this process.  With
    ``dask`` (an address or ``local:N``) the seeds run on that cluster instead.
    ``seed_timeout``: wall-clock seconds per seed (0: no limit; see the module rules)."""
    base_config.validate()
    seed_list = list(seeds)
    target = parse_dask_address(dask) if dask is not None else None
    if target is not None:
        check_dask_installed()
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
        if target is not None:
            result.workers = _run_on_dask(target, base_config, seed_list, seed_timeout, done)
            result.engine = f"dask {dask}"
        elif workers == 1:
            for seed in seed_list:
                done(run_seed(base_config, seed, seed_timeout))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(run_seed, base_config, seed, seed_timeout) for seed in seed_list]
                for future in as_completed(futures):
                    done(future.result())
    finally:
        if bar is not None:
            bar.stop()
    result.outcomes = [outcomes[s] for s in seed_list]
    result.wall_seconds = time.perf_counter() - t0
    return result


def _run_on_dask(
    target: int | str,
    config: SimConfig,
    seeds: list[int],
    seed_timeout: float,
    done: Callable[[SeedOutcome], None],
) -> int:
    """Run every seed on a Dask cluster; returns how many workers it had.

    ``target`` is a scheduler address, or a worker count for a local cluster of that many
    processes (one thread each: a simulation holds the GIL).  Each seed is one task of
    the same top-level ``run_seed`` the local pool runs, so the cluster's workers need the
    same consensuskit version installed.
    """
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if isinstance(target, int):
        cluster = LocalCluster(
            n_workers=target,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    else:
        client = Client(target, timeout=10)  # seconds to reach the scheduler
    try:
        worker_count = len(client.scheduler_info().get("workers", {})) or 1
        # pure=False: every seed is its own task, never deduplicated by the scheduler.
        futures = client.map(run_seed, [config] * len(seeds), seeds, [seed_timeout] * len(seeds), pure=False)
        for future in as_completed(futures):
            done(future.result())
        return worker_count
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def save_failure_traces(
    base_config: SimConfig,
    seeds: Iterable[int],
    directory: str | Path,
    seed_timeout: float = DEFAULT_SEED_TIMEOUT,
) -> dict[int, tuple[Path, str]]:
    """Re-run ``seeds`` writing ``DIR/seed-S.jsonl``; returns seed -> (path, trace digest).

    The digest must equal the sweep's for that seed (same seed, same trace); the caller
    compares, because a mismatch means the simulation is not deterministic.  A seed that
    hung hangs again: it gets the same ``seed_timeout`` and keeps its trace up to there.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    saved: dict[int, tuple[Path, str]] = {}
    for seed in seeds:
        path = out / f"seed-{seed}.jsonl"
        cfg = dataclasses.replace(base_config, seed=seed, trace_path=str(path), history_path=None)
        sim = Simulation(cfg)
        try:
            digest = sim.run(wall_limit=seed_timeout or None).trace_sha256
        except (Exception, WallClockExceeded):
            # A protocol crash or a hang is why this seed failed: keep the trace up to it.
            sim.close()
            digest = ""
        saved[seed] = (path, digest)
    return saved


def default_workers() -> int:
    return os.cpu_count() or 1
