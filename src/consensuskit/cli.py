"""The ``consensuskit`` command line (a stable interface: tools and tests call it).

Rules this module owns:
  * exit 0 means the expected outcome held, 1 that it did not, 2 bad input;
  * bad input never shows a traceback: every usage error becomes one line on stderr
    naming the valid choices (``main`` turns typer/click usage errors into that line,
    our own checks raise ``typer.BadParameter``);
  * ``--json`` prints exactly one JSON document on stdout; progress and colour go to
    stderr or stay off, so the output can be piped;
  * no logic lives here that a test or sweep would need: simulations come from
    ``consensuskit.sim``, sweeps from ``consensuskit.sweep``, pictures from ``viz``;
  * every list of protocols and scenarios (choices, help, the demo) comes from the
    catalog (``consensuskit.catalog``); nothing here names a protocol.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from consensuskit.catalog import builtin_registry, default_catalog, default_registry, service_for
from consensuskit.cli_admin import leader_app, member_app
from consensuskit.cli_auth import EndpointsOpt, JsonOpt, UserOpt, auth_app, role_app, user_app
from consensuskit.cli_backup import backup_app
from consensuskit.core.client import CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE
from consensuskit.core.registry import flag_options, parse_flags, protocol_named_by_flags
from consensuskit.core.service import resolve
from consensuskit.sim import (
    ALL_NEMESIS,
    DEFAULT_LINEARIZABILITY_TIMEOUT,
    NEMESIS_KINDS,
    RUNTIMES,
    SimConfig,
    Simulation,
)
from consensuskit.sweep import (
    DEFAULT_SEED_TIMEOUT,
    DaskUnavailable,
    check_dask_installed,
    default_workers,
    parse_dask_address,
    reproduce_command,
    run_sweep,
    save_failure_traces,
)
from consensuskit.viz.timeline import HEARTBEAT_MODES, timeline_text

app = typer.Typer(
    help="Consensus protocols in a deterministic fault-injecting simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scenario_app = typer.Typer(
    help="Seed scenarios: scripted runs that check their outcome.", no_args_is_help=True
)
app.add_typer(scenario_app, name="scenario")


# ---------------------------------------------------------------- validation
def parse_nemesis(text: str) -> tuple[str, ...]:
    """'partition,crash' / 'all' / 'all,membership' / 'none' / '' -> kinds in
    NEMESIS_KINDS order ('all': ALL_NEMESIS, every kind but membership)."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or items == ["none"]:
        return ()
    unknown = [k for k in items if k not in NEMESIS_KINDS and k != "all"]
    if unknown:
        raise typer.BadParameter(
            f"unknown fault {', '.join(unknown)}; valid: {', '.join(NEMESIS_KINDS)}, all, none",
            param_hint="'--nemesis'",
        )
    wanted = set(items) | (set(ALL_NEMESIS) if "all" in items else set())
    return tuple(k for k in NEMESIS_KINDS if k in wanted)


def parse_nemesis_interval(text: str) -> tuple[float, float]:
    """'LO,HI' (seconds) -> (LO, HI) with 0 < LO <= HI; one number: that fixed gap."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 < values[0] <= values[1] or values[1] == float("inf"):
        raise typer.BadParameter(
            f"expected LO,HI seconds with 0 < LO <= HI (e.g. 0.5,2), got {text!r}",
            param_hint="'--nemesis-interval'",
        )
    return values[0], values[1]


def protocol_help() -> str:
    return f"Protocol: {', '.join(default_registry().names())}."


def check_protocol(protocol: str) -> None:
    names = default_registry().names()
    if protocol not in names:
        raise typer.BadParameter(
            f"unknown protocol {protocol!r}; valid: {', '.join(names)}", param_hint="'PROTOCOL'"
        )


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise typer.BadParameter(
            f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}", param_hint="'--runtime'"
        )
    return runtime


def check_service(protocol: str, service: str | None) -> str | None:
    """``service`` if ``protocol`` can serve it (None: the protocol's default)."""
    if service is None:
        return None
    registry = default_registry()
    try:
        service_for(registry, registry.get(protocol), service)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="'--service'") from None
    return service


def check_bugs(protocol: str, bugs: list[str], service: str | None = None) -> frozenset[str]:
    """The protocol's bug knobs, and the service's own (``ServiceSpec.bugs``) when named."""
    registry = default_registry()
    spec = registry.get(protocol)
    valid, name = spec.bugs, protocol
    if service is not None:
        valid = (*valid, *service_for(registry, spec, service).bugs)
        name = f"{protocol} --service {service}"
    unknown = [b for b in bugs if b not in valid]
    if unknown:
        raise typer.BadParameter(
            f"unknown bug {', '.join(unknown)} for {name}; valid: {', '.join(valid) or '(none)'}",
            param_hint="'--bug'",
        )
    return frozenset(bugs)


# Commands that run a protocol accept its own flags (ProtocolSpec.flags) after the
# generic ones; click hands them over as the context's extra arguments.
PROTOCOL_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def parse_protocol_flags(ctx: typer.Context, protocol: str) -> dict[str, Any]:
    """The protocol's flags among the command's extra arguments (every flag, defaults
    filled); anything else is a usage error naming the command's options and the flags."""
    flags = default_registry().get(protocol).flags
    try:
        return parse_flags(flags, list(ctx.args), protocol)
    except ValueError as exc:
        own = sorted(o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--"))
        theirs = [f"--{f.name}" for f in flags]
        raise typer.BadParameter(
            f"{exc}; valid: {', '.join(own + theirs)}" if "no such option" in str(exc) else str(exc)
        ) from None


def _key_values(pairs: list[str] | None, hint: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is JSON when it parses as JSON, else a string."""
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=hint)
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def parse_options(protocol: str, pairs: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs, checked by the protocol's option validator."""
    return validate_protocol_options(protocol, _key_values(pairs, "'--option'"))


def validate_protocol_options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    validate = default_registry().get(protocol).validate_options
    if validate is not None:
        try:
            validate(options)
        except (TypeError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="'--option'") from None
    return options


def build_config(
    protocol: str,
    nodes: int,
    seed: int,
    duration: float,
    clients: int,
    nemesis: str,
    bugs: list[str] | None,
    options: list[str] | None = None,
    service: str | None = None,
    runtime: str = "random",
    flags: dict[str, Any] | None = None,
    linearizability_timeout: float = DEFAULT_LINEARIZABILITY_TIMEOUT,
    nemesis_interval: str | None = None,
    server_options: bool = False,
) -> SimConfig:
    check_protocol(protocol)
    flags = dict(flags or {})
    spec = default_registry().get(protocol)
    # Option flags are options too; an explicit --option KEY=VALUE wins over a flag, and
    # either over the server's defaults (--server-options: the timers real nodes run).
    merged = {
        **(spec.server_options if server_options else {}),
        **flag_options(spec.flags, flags),
        **parse_options(protocol, options),
    }
    # Only what was asked for; the rest keeps SimConfig's defaults.
    timing: dict[str, Any] = {}
    if nemesis_interval is not None:
        timing["nemesis_interval"] = parse_nemesis_interval(nemesis_interval)
    if server_options:
        # Real nodes' timers with the real client's patience: at 1 s election timeouts
        # the simulator's 1 s attempts and 3 s deadline left a third of the operations
        # unknown, and their histories beyond the checker (seed 176181).
        timing.update(op_timeout=CLIENT_ATTEMPT_TIMEOUT, op_deadline=CLIENT_DEADLINE)
    return SimConfig(
        runtime=check_runtime(runtime),
        options=validate_protocol_options(protocol, merged) if flags else merged,
        flags=flags,
        protocol=protocol,
        service=check_service(protocol, service),
        node_ids=tuple(f"n{i}" for i in range(1, nodes + 1)),
        seed=seed,
        duration=duration,
        clients=clients,
        nemesis=parse_nemesis(nemesis),
        bugs=check_bugs(protocol, list(bugs or []), check_service(protocol, service)),
        linearizability_timeout=linearizability_timeout,
        **timing,
    )


def build_simulation(config: SimConfig) -> Simulation:
    """A Simulation, or exit 2 with one line when the nodes refuse the options (e.g. too
    few acceptors for Fast Paxos): only the nodes can judge options against node ids."""
    try:
        return Simulation(config)
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _service_model(service: str | None, model: str | None, fmt: str) -> Any:
    """The model ``check --service`` names: a model name, a model object, or None."""
    if service is None:
        return None
    if model is not None or fmt != "consensuskit":
        raise typer.BadParameter(
            "give --service alone (a consensuskit history, no --model)", param_hint="--service"
        )
    registry = default_registry()
    services = registry.services if registry.services else builtin_registry().services
    try:
        spec = services.get(service)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--service") from None
    if spec.model is None:
        raise typer.BadParameter(f"service {service!r} has no linearizability model", param_hint="--service")
    return spec.model if isinstance(spec.model, str) else spec.model()


def _model_of(result: Any) -> Any:
    """The linearizability model the run's service checks its history with."""
    from consensuskit.check.linearizability import get_model

    registry = default_registry()
    services = registry.services if registry.services else builtin_registry().services
    model = services.get(result.service).model if result.service in services else None
    if model is None:
        return get_model("kv")
    return get_model(model) if isinstance(model, str) else model()


def _console() -> Console:
    return Console(highlight=False)


def _heartbeat_types(protocol: str) -> frozenset[str]:
    """The protocol's background liveness messages (the catalog's view of it), which the
    timeline collapses; Raft's for a name the catalog does not know (a family)."""
    from consensuskit.view.summaries import catalog_views
    from consensuskit.viz.timeline import HEARTBEAT_TYPES

    view = catalog_views().get(protocol)
    return frozenset(view.heartbeats) if view is not None else HEARTBEAT_TYPES


def _timeline_width(console: Console) -> int | None:
    # Cut rows to the terminal; a pipe or file gets them whole.
    return console.width if console.is_terminal else None


# ----------------------------------------------------------------- scenarios
ViewOpt = Annotated[
    bool, typer.Option("--view", help="Then serve the run in the browser view (Ctrl-C to stop).")
]
ViewPortOpt = Annotated[
    int, typer.Option(min=0, max=65535, help="Port of the --view page (0: any free one).")
]


@scenario_app.command("list")
def scenario_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    protocol: Annotated[str | None, typer.Option(help="Only this protocol's scenarios.")] = None,
) -> None:
    """List the seed scenarios (the catalog's, protocol by protocol)."""
    if protocol is not None:
        check_protocol(protocol)
    scenarios = list(default_catalog().scenarios(protocol).values())
    if as_json:
        print(
            json.dumps(
                [
                    {"id": s.id, "protocol": s.protocol, "title": s.title, "params": dict(s.params)}
                    for s in scenarios
                ],
                indent=2,
            )
        )
        return
    table = Table(title="scenarios")
    table.add_column("id", style="bold")
    table.add_column("protocol")
    table.add_column("title")
    table.add_column("--param")
    for s in scenarios:
        table.add_row(s.id, s.protocol, s.title, "\n".join(f"{k}: {v}" for k, v in s.params.items()))
    _console().print(table)


def _read_trace(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_one_scenario(
    scenario_id: str,
    seed: int,
    timeline: bool,
    trace: str | None,
    as_json: bool,
    heartbeats: str = "collapse",
    console: Console | None = None,
    bugs: list[str] | None = None,
    params: list[str] | None = None,
) -> bool:
    """Run and report one scenario; returns ``run.passed``.  Shared with ``demo``."""
    from consensuskit.scenarios import BadParam, run_scenario

    try:
        scenario = default_catalog().scenario(scenario_id)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="'ID'") from None
    options = {"bugs": sorted(check_bugs(scenario.protocol, bugs))} if bugs else {}
    values = _key_values(params, "'--param'")
    unknown = sorted(set(values) - set(scenario.params))
    if unknown:
        valid = ", ".join(f"{k} ({v})" for k, v in sorted(scenario.params.items())) or "none"
        raise typer.BadParameter(
            f"scenario {scenario.id} has no parameter {unknown[0]!r}; valid: {valid}", param_hint="'--param'"
        )
    console = console or _console()
    with tempfile.TemporaryDirectory(prefix="consensuskit-") as tmp:
        # The timeline needs every record; the in-memory trace keeps only a tail, so
        # stream to a file (the user's, or a temporary one) and read it back.
        trace_path = trace or (str(Path(tmp) / "trace.jsonl") if timeline and not as_json else None)
        try:
            run = run_scenario(scenario, seed=seed, trace_path=trace_path, options=options, params=values)
        except BadParam as exc:
            raise typer.BadParameter(str(exc), param_hint="'--param'") from None
        # A scenario that ran no simulation (a family's direct computation) has no trace.
        has_trace = trace_path is not None and run.sim is not None
        records = _read_trace(trace_path) if timeline and not as_json and has_trace else []
    if as_json:
        print(json.dumps(run.to_json(), indent=2))
        return run.passed
    given = "".join(f", {k}={v}" for k, v in sorted(values.items()))
    console.print(f"[bold]{scenario.id}[/] — {scenario.title} (seed {seed}{given})")
    if timeline and run.sim is not None:
        node_ids = list(run.sim.node_ids)
        console.print(
            timeline_text(  # type: ignore[arg-type]
                records, node_ids, _timeline_width(console), heartbeats, _heartbeat_types(scenario.protocol)
            ),
            soft_wrap=True,
        )
    for e in run.expectations:
        mark = "[green]✓[/]" if e.passed else "[red]✗[/]"
        detail = f" [dim]({e.detail})[/]" if e.detail else ""
        console.print(f"  {mark} {e.text}{detail}", markup=True)
    for note in run.notes:
        console.print(f"  [yellow]note:[/] {note}")
    for v in run.violations:
        at = f" at t={v.time:.6f}" if v.time is not None else ""
        console.print(f"  [bold red]invariant violated:[/] {v.name}: {v.detail}{at}")
    if run.error:
        console.print(f"  [bold red]error:[/] {run.error}")
    if not run.expectations and not run.error:
        console.print("  [red]✗ the scenario stated no expectations[/]")
    verdict = "[bold green]PASSED[/]" if run.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict} {scenario.id}")
    return run.passed


@scenario_app.command("run")
def scenario_run(
    scenario_id: Annotated[str, typer.Argument(metavar="ID", help="Scenario id (see `scenario list`).")],
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    timeline: Annotated[bool, typer.Option("--timeline", help="Print the space-time diagram.")] = False,
    heartbeats: Annotated[
        str, typer.Option(help=f"Heartbeats in the timeline: {', '.join(HEARTBEAT_MODES)}.")
    ] = "collapse",
    no_heartbeats: Annotated[bool, typer.Option("--no-heartbeats", help="Hide heartbeats.")] = False,
    trace: Annotated[str | None, typer.Option(help="Write the trace as JSON lines here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print run.to_json() only.")] = False,
    bug: BugOpt = None,
    unsafe_commit: Annotated[
        bool, typer.Option("--unsafe-commit", help="Alias of --bug commit-previous-term (figure 8).")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=VALUE", help="Set a scenario parameter (see `scenario list`)."),
    ] = None,
    view: ViewOpt = False,
    view_port: ViewPortOpt = 7070,
) -> None:
    """Run one scenario; exit 0 exactly when its expected outcome holds."""
    bugs = list(bug or []) + (["commit-previous-term"] if unsafe_commit else [])
    if heartbeats not in HEARTBEAT_MODES:
        raise typer.BadParameter(
            f"unknown mode {heartbeats!r}; valid: {', '.join(HEARTBEAT_MODES)}", param_hint="'--heartbeats'"
        )
    mode = "hide" if no_heartbeats else heartbeats
    with tempfile.TemporaryDirectory(prefix="consensuskit-view-") as tmp:
        trace_path = trace or (str(Path(tmp) / "trace.jsonl") if view else None)
        passed = run_one_scenario(
            scenario_id, seed, timeline, trace_path, as_json, mode, bugs=bugs, params=param
        )
        if view and trace_path is not None:
            scenario = default_catalog().scenario(scenario_id)
            title = f"{scenario.id} (seed {seed})"
            _serve_view(trace_path, scenario.protocol, None, title, view_port)
    raise typer.Exit(0 if passed else 1)


def _serve_view(trace_path: str, protocol: str, node_ids: list[str] | None, title: str, port: int) -> None:
    """Serve the browser view (view/) of the trace a run just wrote, until Ctrl-C."""
    from consensuskit.view import commands as view_commands
    from consensuskit.view.summaries import catalog_views
    from consensuskit.view.trace_io import TraceError, load_trace

    try:
        records = load_trace(trace_path)
    except TraceError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--view'") from None
    if not records:
        _console().print("[yellow]this run wrote no trace (no simulation ran): nothing to view[/]")
        return
    views = catalog_views()
    view_commands.serve_records(records, protocol if protocol in views else None, node_ids, title, port=port)


# ----------------------------------------------------------------------- sim
def print_summary(result: Any, console: Console, tail_heartbeats: str = "collapse") -> None:
    ops = result.ops
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rate = f"{result.events / result.wall_seconds:,.0f}/s" if result.wall_seconds > 0 else "-"
    table.add_row("protocol", f"{result.protocol}, nodes {', '.join(result.node_ids)}")
    table.add_row("seed", str(result.seed))
    table.add_row(
        "virtual time", f"{result.virtual_time:.3f} s ({result.duration:g} + settle {result.settle:g})"
    )
    table.add_row("events", f"{result.events:,} in {result.wall_seconds:.3f} s wall ({rate})")
    table.add_row("ops", f"ok {ops.get('ok', 0)}, fail {ops.get('fail', 0)}, unknown {ops.get('unknown', 0)}")
    faults = ", ".join(f"{k} {v}" for k, v in result.faults.items()) or "none"
    table.add_row("faults", faults)
    delays = result.message_delays
    if delays.get("count"):
        spread = ", ".join(f"{k}: {v}" for k, v in delays["histogram"].items())
        table.add_row("message delays", f"mean {delays['mean']:g} per command ({spread})")
    lin = {True: "[green]yes[/]", False: "[red]NO[/]", None: "not checked"}[result.linearizable]
    if result.linearizable is None and result.linearizability is not None:
        lin = "unknown (the checker ran out of time)"
    table.add_row("linearizable", lin)
    table.add_row("invariants", "[green]held[/]" if not result.invariant_violations else "[red]VIOLATED[/]")
    table.add_row("trace sha256", result.trace_sha256)
    console.print(table)
    for v in result.violations:
        at = f" at t={v.time:.6f}" if v.time is not None else ""
        console.print(f"[bold red]invariant violated:[/] {v.name}: {v.detail}{at}")
        if v.trace_tail:
            console.print("[bold]trace before the violation:[/]")
            console.print(
                timeline_text(  # type: ignore[arg-type]
                    v.trace_tail,
                    list(result.node_ids),
                    _timeline_width(console),
                    tail_heartbeats,
                    _heartbeat_types(result.protocol),
                ),
                soft_wrap=True,
            )
    if result.linearizable is False:
        console.print("[bold red]the client history is not linearizable[/]")
        if result.linearizability is not None:
            explained = result.linearizability.explain(_model_of(result))
            console.print(explained, markup=False, highlight=False, soft_wrap=True)
    verdict = "[bold green]OK[/]" if result.ok else "[bold red]FAILED[/]"
    console.print(verdict)


NodesOpt = Annotated[int, typer.Option(min=1, help="Number of nodes n1..nN.")]
DurationOpt = Annotated[float, typer.Option(min=0.0, help="Virtual seconds of workload and faults.")]
ClientsOpt = Annotated[int, typer.Option(min=0, help="Concurrent workload clients.")]
NemesisOpt = Annotated[
    str,
    typer.Option(
        help=f"Comma list of faults: {', '.join(NEMESIS_KINDS)}, or all (every one but membership) / none."
    ),
]
BugOpt = Annotated[
    list[str] | None, typer.Option("--bug", help="Enable a deliberate bug of the protocol (or its service).")
]
ServiceOpt = Annotated[
    str | None, typer.Option(help="Service the clients use (default: the protocol's, kv for a log).")
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option("--option", help='Protocol option KEY=VALUE (JSON value), e.g. read_mode="lease".'),
]
CheckTimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0.001,
        help="Seconds the linearizability checker may search a history before it answers "
        "unknown (a sweep counts that as a failure).",
    ),
]
NemesisIntervalOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LO,HI",
        help="Seconds between random faults, drawn uniformly (default 0.5,2). Scale it with "
        "the protocol's timers: faults faster than an election leave no leader.",
    ),
]
ServerOptionsOpt = Annotated[
    bool,
    typer.Option(
        "--server-options",
        help="Start from the options real nodes run with (the server's timers, e.g. 1 s "
        "election timeouts); --option and the protocol's flags still override them.",
    ),
]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        help="How nodes are driven: batched (as the server: batches, early sends, "
        "on_durable), unbatched (one input per batch), random (picked per seed)."
    ),
]


@app.command("sim", context_settings=PROTOCOL_FLAGS)
def sim_cmd(
    ctx: typer.Context,
    protocol: Annotated[str, typer.Argument(help=protocol_help())],
    nodes: NodesOpt = 5,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    duration: DurationOpt = 10.0,
    clients: ClientsOpt = 3,
    nemesis: NemesisOpt = "none",
    nemesis_interval: NemesisIntervalOpt = None,
    bug: BugOpt = None,
    option: OptionOpt = None,
    service: ServiceOpt = None,
    server_options: ServerOptionsOpt = False,
    runtime: RuntimeOpt = "random",
    linearizability_timeout: CheckTimeoutOpt = DEFAULT_LINEARIZABILITY_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print SimResult JSON only.")] = False,
    trace: Annotated[str | None, typer.Option(help="Write the trace as JSON lines here.")] = None,
    history: Annotated[str | None, typer.Option(help="Write the client history as JSON lines here.")] = None,
    view: ViewOpt = False,
    view_port: ViewPortOpt = 7070,
) -> None:
    """Run one randomized simulation; exit 0 when no invariant broke.

    Exit 0 also needs the history not found non-linearizable.  A protocol's own flags
    (e.g. swim's --loss) follow the generic options."""
    check_protocol(protocol)
    config = build_config(
        protocol,
        nodes,
        seed,
        duration,
        clients,
        nemesis,
        bug,
        option,
        service,
        runtime,
        flags=parse_protocol_flags(ctx, protocol),
        linearizability_timeout=linearizability_timeout,
        nemesis_interval=nemesis_interval,
        server_options=server_options,
    )
    view_dir = tempfile.TemporaryDirectory(prefix="consensuskit-view-") if view and not trace else None
    config.trace_path = trace or (str(Path(view_dir.name) / "trace.jsonl") if view_dir else None)
    config.history_path = history
    sim = build_simulation(config)
    try:
        result = sim.run()
    except Exception as exc:
        # A crash inside protocol or simulator code: the run failed (exit 1), and the
        # trace before it is the fastest way to see why.
        sim.close()
        if not as_json:
            console = _console()
            console.print("[bold]trace before the crash:[/]")
            console.print(
                timeline_text(
                    sim.trace.tail(40),
                    list(config.node_ids),
                    _timeline_width(console),
                    heartbeat_types=_heartbeat_types(protocol),
                ),
                soft_wrap=True,
            )
        traceback.print_exception(exc, file=sys.stderr)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_summary(result, _console())
    if view and config.trace_path is not None:
        sim.close()  # the trace file is whole before the page reads it
        _serve_view(config.trace_path, protocol, list(config.node_ids), f"{protocol} seed {seed}", view_port)
    if view_dir is not None:
        view_dir.cleanup()
    raise typer.Exit(0 if result.ok else 1)


# --------------------------------------------------------------------- sweep
@app.command("sweep", context_settings=PROTOCOL_FLAGS)
def sweep_cmd(
    ctx: typer.Context,
    protocol: Annotated[str, typer.Argument(help=protocol_help())],
    seeds: Annotated[int, typer.Option(min=1, help="How many seeds to run.")] = 100,
    first_seed: Annotated[int, typer.Option(help="First seed; seeds run S0..S0+K-1.")] = 0,
    nodes: NodesOpt = 5,
    duration: DurationOpt = 10.0,
    clients: ClientsOpt = 3,
    nemesis: NemesisOpt = "none",
    nemesis_interval: NemesisIntervalOpt = None,
    bug: BugOpt = None,
    option: OptionOpt = None,
    service: ServiceOpt = None,
    server_options: ServerOptionsOpt = False,
    runtime: RuntimeOpt = "random",
    linearizability_timeout: CheckTimeoutOpt = DEFAULT_LINEARIZABILITY_TIMEOUT,
    seed_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="Wall-clock seconds a seed's run may take before it fails as hung (0: no limit).",
        ),
    ] = DEFAULT_SEED_TIMEOUT,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sweep JSON only.")] = False,
    save_failures: Annotated[
        str | None, typer.Option(help="Re-run failing seeds writing DIR/seed-S.jsonl traces.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    dask: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the seeds on a Dask cluster: its scheduler (tcp://HOST:8786), or local:N for "
            "a local cluster of N worker processes (needs consensuskit[dask]).",
        ),
    ] = None,
) -> None:
    """Run K seeds on all cores (or on a Dask cluster); exit 0 when every seed passed.

    A protocol's own flags follow the generic options, as for sim."""
    check_protocol(protocol)
    config = build_config(
        protocol,
        nodes,
        first_seed,
        duration,
        clients,
        nemesis,
        bug,
        option,
        service,
        runtime,
        flags=parse_protocol_flags(ctx, protocol),
        linearizability_timeout=linearizability_timeout,
        nemesis_interval=nemesis_interval,
        server_options=server_options,
    )
    if dask is not None:
        try:
            parse_dask_address(dask)
            check_dask_installed()
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--dask'") from None
        except DaskUnavailable as exc:
            print(f"Error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    build_simulation(config).close()  # options only nodes can judge fail here, once, as bad input
    seed_range = range(first_seed, first_seed + seeds)
    try:
        result = run_sweep(
            config, seed_range, workers or default_workers(), progress, dask=dask, seed_timeout=seed_timeout
        )
    except OSError as exc:  # the scheduler cannot be reached (connection refused, timed out)
        if dask is None:
            raise
        reason = " ".join(str(exc).split())
        print(f"Error: cannot reach the Dask scheduler at {dask}: {reason}", file=sys.stderr)
        raise typer.Exit(2) from None
    failures = result.failures
    saved: dict[int, tuple[Path, str]] = {}
    if save_failures and failures:
        saved = save_failure_traces(config, [f.seed for f in failures], save_failures, seed_timeout)
    # Same seed, same trace: a re-run that differs means the sweep's seed cannot be trusted.
    drifted = [f.seed for f in failures if f.seed in saved and saved[f.seed][1] != f.trace_sha256]
    if as_json:
        doc = result.to_json()
        if saved:
            doc["saved_traces"] = {str(seed): str(path) for seed, (path, _) in saved.items()}
            doc["nondeterministic_seeds"] = drifted
        print(json.dumps(doc, indent=2))
    else:
        console = _console()
        wall = result.wall_seconds
        rate = f"{result.events / wall:,.0f} events/s overall" if wall > 0 else ""
        console.print(
            f"{result.passed}/{len(result.outcomes)} seeds passed, {result.events:,} events in "
            f"{result.wall_seconds:.2f} s on {result.workers} worker(s)"
            f"{'' if result.engine == 'local' else f' of {result.engine}'} ({rate})"
        )
        if result.checker_timeouts or result.seeds_without_ops or result.hung:
            console.print(
                f"{result.checker_timeouts} seed(s) without a linearizability verdict (checker timed out), "
                f"{result.seeds_without_ops} seed(s) with no completed operation, "
                f"{result.hung} seed(s) hung (no result within --seed-timeout): all count as failures"
            )
        for f in failures:
            console.print(f"[bold red]seed {f.seed} failed:[/] {f.reason}", soft_wrap=True)
            console.print(f"  reproduce: {reproduce_command(config, f.seed)}", soft_wrap=True)
        for seed, (path, _) in saved.items():
            console.print(f"  seed {seed} trace saved: {path}", soft_wrap=True)
        for seed in drifted:
            console.print(f"[bold red]seed {seed} gave a different trace when re-run: non-determinism[/]")
    raise typer.Exit(0 if not failures else 1)


# ---------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    seed: Annotated[int, typer.Option(help="Seed for the scenarios and the simulation.")] = 0,
    duration: DurationOpt = 10.0,
) -> None:
    """Every seed scenario with its timeline, then checked 5-node runs with all faults.

    The scenarios are the catalog's; the runs (invariants and linearizability checked)
    are of the catalog's demo protocols."""
    catalog = default_catalog()
    console = _console()
    ok = True
    for scenario in catalog.scenarios().values():
        console.rule(f"[bold]scenario {scenario.id}")
        ok = run_one_scenario(scenario.id, seed, True, None, False, console=console) and ok
    for protocol in catalog.demo_protocols():
        console.rule(f"[bold]{protocol}: 5 nodes, 3 clients, all faults")
        config = build_config(protocol, 5, seed, duration, 3, "all", None)
        console.print(f"[dim]{reproduce_command(config, seed)}[/]", soft_wrap=True)
        result = Simulation(config).run()
        print_summary(result, console)
        ok = ok and result.ok
    console.rule("[bold green]demo passed" if ok else "[bold red]demo FAILED")
    raise typer.Exit(0 if ok else 1)


# ---------------------------------------------------------------------- check
@app.command("check")
def check_cmd(
    file: Annotated[Path, typer.Argument(help="History file to check.")],
    model: Annotated[
        str | None,
        typer.Option(help="kv, register or cas-register (default: what the format implies)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="consensuskit, porcupine-etcd or porcupine-kv.")
    ] = "consensuskit",
    timeout: Annotated[
        float | None, typer.Option(min=0.0, help="Seconds of search before answering unknown.")
    ] = None,
    all_parts: Annotated[
        bool, typer.Option("--all-parts", help="Keep checking the other parts after one fails.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON only.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write a page showing the history here.")] = None,
    service: Annotated[
        str | None, typer.Option(help="Check with this service's model (a consensuskit history).")
    ] = None,
) -> None:
    """Check a history for linearizability: exit 0 linearizable, 1 not, 2 unknown or bad input."""
    from consensuskit.check.linearizability import (
        DEFAULT_MODEL,
        FORMATS,
        MODEL_NAMES,
        HistoryFormatError,
        ModelError,
        check_operations,
        model_for,
        read_history,
    )

    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}", param_hint="--format"
        )
    own_model = _service_model(service, model, fmt)
    name = model or (own_model if isinstance(own_model, str) else None) or DEFAULT_MODEL[fmt]
    if own_model is None and name not in MODEL_NAMES:
        raise typer.BadParameter(
            f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}", param_hint="--model"
        )
    if not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    custom = own_model is not None and not isinstance(own_model, str)  # a model object of the service
    the_model = own_model if custom else model_for(name, fmt)
    console = Console(stderr=True)
    try:
        if custom:
            from consensuskit.check.linearizability.formats import read_consensuskit

            ops = read_consensuskit(file, kinds=None)  # the service's model knows its kinds
        else:
            ops = read_history(file, fmt)
        with _check_progress(console, enabled=not as_json and len(ops) >= 2000) as progress:
            result = check_operations(
                ops, the_model, timeout=timeout, stop_at_first_failure=not all_parts, on_progress=progress
            )
    except (HistoryFormatError, ModelError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except UnicodeDecodeError as exc:
        print(f"Error: {file}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        raise typer.Exit(2) from None
    if html is not None:
        from consensuskit.check.linearizability.html import render_html

        html.write_text(
            render_html(result, the_model, title=f"{file.name}: linearizability"), encoding="utf-8"
        )
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        out = _console()
        out.print(result.explain(the_model), markup=False, highlight=False, soft_wrap=True)
        if html is not None:
            out.print(f"[dim]page written to {html}[/]")
    raise typer.Exit({True: 0, False: 1}.get(result.ok, 2))


class _check_progress:
    """A rich progress bar over the parts of a long check (on stderr), or nothing."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.enabled = enabled
        self.console = console
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.progress = Progress(
            "checking parts", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
        )
        self.progress.start()
        self.task = self.progress.add_task("check", total=None)

        def update(done: int, total: int) -> None:
            self.progress.update(self.task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


# ------------------------------------------------------ a real cluster (server/)
@app.command("server", context_settings=PROTOCOL_FLAGS)
def server_cmd(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="Node config file (TOML); flags override it.")
    ] = None,
    node_id: Annotated[str | None, typer.Option("--id", help="This node's id.")] = None,
    peer_address: Annotated[str | None, typer.Option(help="HOST:PORT peers connect to.")] = None,
    client_address: Annotated[str | None, typer.Option(help="HOST:PORT of the HTTP API.")] = None,
    client_url: Annotated[str | None, typer.Option(help="URL other nodes hand out for this node.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="WAL and snapshot directory.")] = None,
    protocol: Annotated[
        str | None, typer.Option(help=f"Protocol: {', '.join(default_registry().names())}; default raft.")
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Service (registry name), default the protocol's (kv for a log).")
    ] = None,
    members: Annotated[str | None, typer.Option(help="Initial voters, comma-separated.")] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Another node: ID=HOST:PORT,CLIENT_URL (repeatable).")
    ] = None,
    secret_file: Annotated[Path | None, typer.Option(help="Cluster secret file.")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(help="Admin token file (membership etc.).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA that signed every node certificate (PEM); or tls.pinned.")
    ] = None,
    max_value_bytes: Annotated[int | None, typer.Option(help="Largest value accepted (413 above).")] = None,
    request_timeout: Annotated[
        float | None, typer.Option(help="Seconds a request waits (503 after).")
    ] = None,
    header_timeout: Annotated[
        float | None, typer.Option(help="Seconds for a request head to arrive (408 after; default 10).")
    ] = None,
    body_timeout: Annotated[
        float | None, typer.Option(help="Seconds for a request body to arrive (408 after; default 30).")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds an idle keep-alive connection stays open (default 60).")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(help="Client connections at once (503 beyond; default 1024).")
    ] = None,
    max_buffered_bytes: Annotated[
        int | None, typer.Option(help="Unanswered request bytes held at once (default 64 MiB).")
    ] = None,
    fsync: Annotated[
        bool | None, typer.Option("--fsync/--no-fsync", help="fsync the WAL (default on).")
    ] = None,
    session_ttl: Annotated[
        float | None, typer.Option(help="Seconds an idle client session is kept (0: forever).")
    ] = None,
    max_sessions: Annotated[int | None, typer.Option(help="Client sessions kept at most.")] = None,
    cluster_level: Annotated[
        int | None,
        typer.Option(help="The highest cluster level this node agrees to (default: this release's)."),
    ] = None,
    inline_sync_bytes: Annotated[
        int | None,
        typer.Option(help="Sync batches up to this size are fsynced on the loop thread (0: never)."),
    ] = None,
    enable_fault_injection: Annotated[
        bool | None, typer.Option("--enable-fault-injection", help="TEST ONLY: POST /v1/debug/faults.")
    ] = None,
    events_ring: Annotated[
        int | None, typer.Option(help="Events kept for GET /v1/events (default 10000; 0: no feed).")
    ] = None,
    events_sample: Annotated[
        int | None, typer.Option(help="One message in N streamed to /v1/events listeners (default 1).")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Protocol option KEY=VALUE (JSON value).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    cluster_id: Annotated[
        str | None, typer.Option(help="Cluster id, checked against the data directory's identity.")
    ] = None,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap", help="An empty data directory is the first start of a new cluster (up passes it)."
        ),
    ] = False,
    rejoin: Annotated[
        bool,
        typer.Option(
            "--rejoin",
            help="This node lost its disk: start on the empty data directory as a learner; "
            "it votes again once the leader has caught it up and promoted it (docs/wal.md).",
        ),
    ] = False,
) -> None:
    """Run one node of a replicated key-value cluster (docs/server.md).

    A configured voter refuses to start on an empty data directory unless told why it is
    empty: --bootstrap (a new cluster) or --rejoin (its disk was lost)."""
    from consensuskit.server.main import serve_command

    if ctx.args:
        # The protocol's own flags: named by --protocol or by the config file.
        named = protocol or _config_protocol(config) or "raft"
        check_protocol(named)
        flags = parse_protocol_flags(ctx, named)
        spec = default_registry().get(named)
        given = set(_given_flag_keys(ctx.args))
        option = [
            *(option or []),
            *(f"{k}={json.dumps(v)}" for k, v in flag_options(spec.flags, flags).items() if k in given),
        ]
    raise typer.Exit(
        serve_command(
            config,
            id=node_id,
            peer_address=peer_address,
            client_address=client_address,
            client_url=client_url,
            data_dir=data_dir,
            protocol=protocol,
            service=service,
            members=members,
            peer=peer,
            secret_file=secret_file,
            admin_token_file=admin_token_file,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=tls_ca,
            max_value_bytes=max_value_bytes,
            request_timeout=request_timeout,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_buffered_bytes=max_buffered_bytes,
            fsync=fsync,
            session_ttl=session_ttl,
            max_sessions=max_sessions,
            cluster_level=cluster_level,
            inline_sync_bytes=inline_sync_bytes,
            enable_fault_injection=enable_fault_injection or None,
            events_ring=events_ring,
            events_sample=events_sample,
            cluster_id=cluster_id,
            bootstrap=bootstrap or None,
            rejoin=rejoin or None,
            option=option,
            log_level=log_level,
        )
    )


def _config_protocol(path: Path | None) -> str | None:
    """The protocol a node config file names (None when there is none to read)."""
    if path is None:
        return None
    import tomllib

    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("protocol")
    except (OSError, ValueError):
        return None  # serve_command reports the unreadable file
    return value if isinstance(value, str) else None


def _add_family_commands() -> None:
    """Each protocol family's own verbs (catalog.add_command): ``consensuskit gossip
    epidemic`` comes from the gossip family's typer app; a function is one command."""
    for name, reference in default_catalog().commands().items():
        target = resolve(reference)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)


_add_family_commands()


def _add_service_verbs() -> None:
    """Each service's verbs (its ``cli`` reference, core/service.py) under its name:
    ``consensuskit kv get ...`` comes from the kv service (cli_kv.py)."""
    registry = default_registry()
    services = registry.services if registry.services else builtin_registry().services
    for name in services.names():
        spec = services.get(name)
        if spec.cli is not None:
            app.add_typer(resolve(spec.cli), name=name)


_add_service_verbs()


@app.command("status")
def status_cmd(endpoints: EndpointsOpt = None, as_json: JsonOpt = False, user: UserOpt = None) -> None:
    """Every node's role, term, leader, commit/applied index, pid; exit 1 if no leader."""
    from consensuskit.server.commands import status_command

    raise typer.Exit(status_command(endpoints, as_json=as_json, user=user))


# admin verbs: consensuskit member|leader ... (cli_admin.py)
app.add_typer(member_app, name="member")
app.add_typer(leader_app, name="leader")
# backup verbs: consensuskit backup save|restore|status (cli_backup.py)
app.add_typer(backup_app, name="backup")

# client auth verbs: consensuskit user|role|auth ... (cli_auth.py)
app.add_typer(user_app, name="user")
app.add_typer(role_app, name="role")
app.add_typer(auth_app, name="auth")


@app.command("up", context_settings=PROTOCOL_FLAGS)
def up_cmd(
    ctx: typer.Context,
    nodes: Annotated[
        int | None, typer.Option(min=1, help="Nodes (default 3, or as --data-dir holds).")
    ] = None,
    data_dir: Annotated[
        str, typer.Option(help="Cluster directory (configs, secret, token, data).")
    ] = "./data",
    base_port: Annotated[
        int | None,
        typer.Option(help="Client HTTP on P..P+N-1, peers on P+N..P+2N-1 (default 7100)."),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help=f"{', '.join(default_registry().names())} (default raft, or what --data-dir's cluster runs)."
        ),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Service (default the protocol's, kv for a log protocol).")
    ] = None,
    option: OptionOpt = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Server setting KEY=VALUE (JSON value) for every node, e.g. max_value_bytes=4194304, "
            "session_ttl=600, auth.token_ttl=300; kept for later starts.",
        ),
    ] = None,
    listen_base_port: Annotated[
        list[str] | None,
        typer.Option(
            "--listen-base-port",
            help="NAME=P: the service's NAME listener (etcd: grpc) on P..P+N-1 "
            "(default just above the peer ports).",
        ),
    ] = None,
    view: Annotated[
        bool, typer.Option("--view", help="Serve the browser view of the live cluster (fault hooks on).")
    ] = False,
    view_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of --view's page (0: any free one).")
    ] = 7070,
    restore: Annotated[
        str | None,
        typer.Option(
            help="A backup file (consensuskit backup save) to restore once the cluster runs; "
            "the cluster must hold no data.",
        ),
    ] = None,
) -> None:
    """Start (or recover) a local cluster of node processes; Ctrl-C stops them all.

    A protocol's own flags (e.g. zab's --observers) follow the generic options.

    The first start of a cluster directory starts the nodes with --bootstrap; later
    starts recover them from disk.  A node whose data directory was lost refuses to
    start until run by hand with `consensuskit server --config DIR/nI.toml --rejoin`."""
    from consensuskit.server.commands import up_command

    node_options: dict[str, Any] | None = None
    if protocol is None and ctx.args and _cluster_protocol(data_dir) is None:
        registry = default_registry()
        protocol = protocol_named_by_flags([registry.get(n) for n in registry.names()], ctx.args)
    if ctx.args or option:
        named = protocol or _cluster_protocol(data_dir) or "raft"
        check_protocol(named)
        flags = parse_protocol_flags(ctx, named) if ctx.args else {}
        spec = default_registry().get(named)
        explicit = {f.key for f in spec.flags} & set(_given_flag_keys(ctx.args))
        merged = {
            **{k: v for k, v in flag_options(spec.flags, flags).items() if k in explicit},
            **parse_options(named, option),
        }
        node_options = {"options": validate_protocol_options(named, merged)}
    if setting:
        from consensuskit.server.cluster import ClusterError, parse_settings

        try:
            node_options = {**(node_options or {}), **parse_settings(_key_values(setting, "'--set'"))}
        except ClusterError as exc:
            message = str(exc).removeprefix("--set").lstrip(": ")
            raise typer.BadParameter(message, param_hint="'--set'") from None
    listen_base: dict[str, int] = {}
    for pair in listen_base_port or []:
        name, sep, port = pair.partition("=")
        if not sep or not name or not port.isdigit():
            raise typer.BadParameter(f"expected NAME=PORT, got {pair!r}", param_hint="'--listen-base-port'")
        listen_base[name] = int(port)
    raise typer.Exit(
        up_command(
            nodes,
            data_dir,
            base_port,
            protocol=protocol,
            service=service,
            node_options=node_options,
            listen_base=listen_base or None,
            view=view,
            view_port=view_port,
            restore=restore,
        )
    )


def _cluster_protocol(data_dir: str) -> str | None:
    """The protocol an existing cluster directory runs (None: a new one)."""
    from consensuskit.server.cluster import MANIFEST

    try:
        value = json.loads((Path(data_dir) / MANIFEST).read_text(encoding="utf-8")).get("protocol")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _given_flag_keys(args: list[str]) -> list[str]:
    """The keys of the flags named in ``args`` (defaults are the nodes' business)."""
    return [a[2:].partition("=")[0].replace("-", "_") for a in args if a.startswith("--")]


@app.command("cluster-demo")
def cluster_demo_cmd() -> None:
    """Real processes: writes, SIGKILL the leader, a new leader, the writes read back."""
    from consensuskit.server.commands import demo_script

    raise typer.Exit(0 if demo_script() else 1)


# ---------------------------------------------------------------------- main
def _one_line_usage_error(exc: Any) -> str:
    """Click's usage error as one line, with the valid choices where click has none."""
    from typer._click import exceptions as click_exc

    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        if isinstance(exc, click_exc.NoSuchOption):
            names = sorted(
                opt for p in ctx.command.params for opt in getattr(p, "opts", []) if opt.startswith("--")
            )
            message += f"; valid: {', '.join(names)}"
        elif "No such command" in message and hasattr(ctx.command, "list_commands"):
            message += f"; valid: {', '.join(ctx.command.list_commands(ctx))}"
        return f"Error: {message} (see '{ctx.command_path} --help')"
    return f"Error: {message}"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, one-line usage errors, exit 2."""
    from typer._click import exceptions as click_exc

    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="consensuskit", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        print(exc.format_message())
        sys.exit(2)
    except click_exc.UsageError as exc:
        print(_one_line_usage_error(exc), file=sys.stderr)
        sys.exit(2)
    except click_exc.ClickException as exc:
        print(f"Error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
