"""Simulator speed: simulated events per wall second and seeds per minute, one core.

Workload: 5-node Raft, 3 clients, every nemesis kind, seeds 0..K-1, run one after
another in this process (one core), once with the invariant checker on every step and
once without.  Goal from the issue: >= 200,000 simulated events/s on one core.

    python benchmarks/sim_speed.py [--seeds K] [--duration T] [--runtime R] [--nemesis KINDS]
                                   [--json-out PATH] [--profile] [--instructions]

``--runtime`` is the simulator's (batched, unbatched, or random: chosen per seed).
``--nemesis`` is a comma list of fault kinds, or ``all`` (the default); the issue-11
comparison with the code before the durability driver runs every kind but ``strike``.

``--instructions`` counts instructions per simulated event under valgrind
(``--tool=cachegrind --cache-sim=no``) instead of timing: on a machine shared with other
jobs wall clock is noise, instruction counts are not.  It runs the seeds in a child
process under valgrind, and once more with one 1-second seed (start-up, imports, bytecode
compilation, lazy imports such as the linearizability checker's), and reports the
marginal cost ``(I_seeds - I_short) / (events_seeds - events_short)``; checks on, one row
per runtime (both when ``--runtime random``).  Slow: valgrind runs Python about 50x slower.

A run that stops early on an invariant violation simulates fewer events; such runs are
counted in the table ("stopped") so a fast-looking figure cannot hide them.

The title and the JSON say whether the modules it runs are compiled (``make compiled``,
mypyc) or interpreted: "build" is ``interpreted``, ``compiled`` or ``partly compiled``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import importlib
import io
import platform
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from consensuskit.core.compiled import is_compiled
from consensuskit.sim import NEMESIS_KINDS, RUNTIMES, SimConfig, Simulation
from results_file import write_json

GOAL_EVENTS_PER_SECOND = 200_000
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sim_speed.json"
# The hottest modules of this workload: reported compiled or not (setup_mypyc.py lists more).
HOT_MODULES = (
    "consensuskit.protocols.raft.node",
    "consensuskit.sim.simulation",
    "consensuskit.sim.env",
    "consensuskit.check.raft",
)


def build_info() -> dict[str, Any]:
    """Which of HOT_MODULES were imported compiled (mypyc extensions) rather than as source."""
    modules = {name: is_compiled(importlib.import_module(name)) for name in HOT_MODULES}
    n = sum(modules.values())
    build = "interpreted" if n == 0 else "compiled" if n == len(modules) else "partly compiled"
    return {"build": build, "compiled_modules": modules}


def config(
    seed: int,
    duration: float,
    check: bool,
    runtime: str = "random",
    nemesis: tuple[str, ...] = NEMESIS_KINDS,
) -> SimConfig:
    return SimConfig(
        runtime=runtime,
        protocol="raft",
        node_ids=("n1", "n2", "n3", "n4", "n5"),
        seed=seed,
        duration=duration,
        clients=3,
        nemesis=nemesis,
        check_every_step=check,
    )


def parse_nemesis(text: str) -> tuple[str, ...]:
    """``all`` or a comma list of NEMESIS_KINDS, in NEMESIS_KINDS order."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if items == ["all"]:
        return NEMESIS_KINDS
    unknown = [k for k in items if k not in NEMESIS_KINDS]
    if unknown or not items:
        raise ValueError(
            f"unknown fault {', '.join(unknown) or '(none)'}; valid: {', '.join(NEMESIS_KINDS)}, all"
        )
    return tuple(k for k in NEMESIS_KINDS if k in items)


def measure(
    seeds: int,
    duration: float,
    check: bool,
    runtime: str = "random",
    nemesis: tuple[str, ...] = NEMESIS_KINDS,
) -> dict[str, Any]:
    events = 0
    sim_wall = 0.0
    stopped = 0
    crashed: list[str] = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        try:
            result = Simulation(config(seed, duration, check, runtime, nemesis)).run()
        except Exception as exc:  # a simulator bug must not hide the other figures
            crashed.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            continue
        events += result.events
        sim_wall += result.wall_seconds
        stopped += bool(result.invariant_violations)
    total_wall = time.perf_counter() - t0
    return {
        "runtime": runtime,
        "check_every_step": check,
        "seeds": seeds,
        "duration": duration,
        "events": events,
        "sim_wall_seconds": round(sim_wall, 3),
        "total_wall_seconds": round(total_wall, 3),
        # Events over the time spent inside Simulation.run (what SimResult reports).
        "events_per_second": round(events / sim_wall) if sim_wall > 0 else None,
        # Whole seeds, construction and final checks included.
        "seeds_per_minute": round(60 * seeds / total_wall, 1) if total_wall > 0 else None,
        "stopped_on_violation": stopped,
        "crashed": crashed,
    }


def profile(duration: float, top: int, runtime: str = "random") -> str:
    profiler = cProfile.Profile()
    sim = Simulation(config(0, duration, True, runtime))
    profiler.enable()
    try:
        sim.run()
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    # Own time per source file first: says which layer (sim, protocol, checker) to speed up.
    per_file: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = filename.split("/src/")[-1] if "/src/" in filename else filename
        per_file[key] = per_file.get(key, 0.0) + tottime
    total = sum(per_file.values()) or 1.0
    out.write("own time per file (profiled run, checks on):\n")
    for name, secs in sorted(per_file.items(), key=lambda kv: -kv[1])[:12]:
        out.write(f"  {100 * secs / total:5.1f}%  {secs:7.3f} s  {name}\n")
    out.write("\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


SHORT_RUN = 1.0  # virtual seconds of the reference run --instructions subtracts


def run_seeds(seeds: int, duration: float, runtime: str, nemesis: tuple[str, ...]) -> int:
    """The child of ``--instructions``: run the seeds with checks on, print the events.
    With no seed, the reference run: seed 0 for SHORT_RUN seconds."""
    if seeds == 0:
        events = Simulation(config(0, SHORT_RUN, True, runtime, nemesis)).run().events
    else:
        events = sum(
            Simulation(config(seed, duration, True, runtime, nemesis)).run().events for seed in range(seeds)
        )
    print(f"EVENTS {events}")
    return 0


def count_instructions(seeds: int, duration: float, runtime: str, nemesis: tuple[str, ...]) -> dict[str, Any]:
    """Marginal instructions per event (checks on) of ``seeds`` seeds: the reference
    run's instructions and events subtracted (start-up and compilation cancel out)."""
    import re
    import shutil
    import subprocess

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")

    def run(k: int) -> tuple[int, int]:
        cmd = [
            valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, __file__, "--_run-seeds", str(k), "--duration", str(duration),
            "--runtime", runtime, "--nemesis", ",".join(nemesis),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        refs = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
        events = re.search(r"^EVENTS (\d+)$", proc.stdout, re.MULTILINE)
        if proc.returncode != 0 or refs is None or events is None:
            raise SystemExit(f"valgrind run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return int(refs.group(1).replace(",", "")), int(events.group(1))

    base, base_events = run(0)
    total, events = run(seeds)
    return {
        "runtime": runtime,
        "seeds": seeds,
        "duration": duration,
        "nemesis": list(nemesis),
        "events": events,
        "instructions": total,
        "reference_instructions": base,
        "reference_events": base_events,
        "instructions_per_event": round((total - base) / (events - base_events))
        if events > base_events
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runtime", choices=RUNTIMES, default="random")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions too")
    parser.add_argument("--nemesis", default="all", help="comma list of fault kinds, or all")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per event under valgrind"
    )
    parser.add_argument("--_run-seeds", dest="run_seeds", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        nemesis = parse_nemesis(args.nemesis)
    except ValueError as exc:
        parser.error(str(exc))
    if args.run_seeds is not None:
        return run_seeds(args.run_seeds, args.duration, args.runtime, nemesis)
    if args.seeds < 1 or args.duration < 0:
        parser.error("--seeds must be >= 1 and --duration >= 0")

    from rich.console import Console
    from rich.table import Table

    if args.instructions:
        return instructions_main(args, nemesis)

    rows = [measure(args.seeds, args.duration, check, args.runtime, nemesis) for check in (True, False)]

    faults = "all faults" if nemesis == NEMESIS_KINDS else ",".join(nemesis)
    info = build_info()
    title = (
        f"5-node Raft, 3 clients, {faults}, {args.seeds} seeds x {args.duration:g} s, "
        f"runtime {args.runtime}, one core, {info['build']}"
    )
    table = Table(title=title)
    for col in ("invariant checks", "events", "events/s", "seeds/min", "stopped", "crashed"):
        table.add_column(col, justify="right")
    for row in rows:
        eps = row["events_per_second"]
        style = "green" if eps and eps >= GOAL_EVENTS_PER_SECOND else "red"
        table.add_row(
            "every step" if row["check_every_step"] else "off",
            f"{row['events']:,}",
            f"[{style}]{eps:,}[/]" if eps else "-",
            f"{row['seeds_per_minute']}",
            str(row["stopped_on_violation"]),
            str(len(row["crashed"])),
        )
    console = Console()
    console.print(table)
    console.print(f"goal: {GOAL_EVENTS_PER_SECOND:,} events/s on one core")
    for row in rows:
        for line in row["crashed"]:
            mode = "checks on" if row["check_every_step"] else "checks off"
            console.print(f"[red]crashed[/] ({mode}) {line}")

    doc = {
        "benchmark": "sim_speed",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "goal_events_per_second": GOAL_EVENTS_PER_SECOND,
        **info,
        "results": rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    if args.profile:
        print(profile(args.duration, 25, args.runtime))
    return 0


def instructions_main(args: argparse.Namespace, nemesis: tuple[str, ...]) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    runtimes = ["batched", "unbatched"] if args.runtime == "random" else [args.runtime]
    rows = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("valgrind", total=len(runtimes))
        for runtime in runtimes:
            progress.update(task, description=f"valgrind: {runtime}")
            rows.append(count_instructions(args.seeds, args.duration, runtime, nemesis))
            progress.advance(task)
    faults = "all faults" if nemesis == NEMESIS_KINDS else ",".join(nemesis)
    info = build_info()  # the valgrind children import the same files as this process
    table = Table(
        title=f"5-node Raft, 3 clients, {faults}, {args.seeds} seeds x {args.duration:g} s, checks on, "
        f"{info['build']}"
    )
    for col in ("runtime", "events", "instructions", "reference run", "instructions/event"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["runtime"],
            f"{row['events']:,}",
            f"{row['instructions']:,}",
            f"{row['reference_instructions']:,} ({row['reference_events']:,} events)",
            f"{row['instructions_per_event']:,}",
        )
    console = Console()
    console.print(table)
    doc = {
        "benchmark": "sim_speed",
        "mode": "instructions",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        **info,
        "results": rows,
    }
    write_json(args.json_out, doc)
    console.print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
