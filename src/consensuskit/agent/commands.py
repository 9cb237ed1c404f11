"""CLI verbs of the membership agent, mounted by the catalog (``Catalog.add_command``):
``consensuskit agent``, ``agent-keygen``, ``members`` and ``agent-demo``.

Heavy imports (asyncio runtime, cryptography, rich) happen inside each command, so the
CLI starts as fast without them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def agent_argv(
    bind: str,
    key_file: Path,
    join: list[str] | None = None,
    data_dir: Path | None = None,
    probe_interval: float = 1.0,
) -> list[str]:
    """The command line that starts one agent process (the demo and the tests use it)."""
    argv = [sys.executable, "-m", "consensuskit.agent", "--bind", bind, "--key-file", str(key_file)]
    for seed in join or []:
        argv += ["--join", seed]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    return [*argv, "--probe-interval", str(probe_interval)]


def agent(
    bind: Annotated[str, typer.Option(help="HOST:PORT to listen on (UDP and TCP); also the member's id.")],
    key_file: Annotated[Path, typer.Option(help="The shared key (consensuskit agent-keygen > FILE).")],
    join: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT of a member to join through (repeatable).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the incarnation is kept across restarts (none: not kept).")
    ] = None,
    probe_interval: Annotated[
        float, typer.Option(help="Seconds between probes (SWIM's protocol period).")
    ] = 1.0,
    lifeguard: Annotated[bool, typer.Option(help="Lifeguard's extensions on or off.")] = True,
    quiet: Annotated[bool, typer.Option(help="Log nothing.")] = False,
) -> None:
    """Run a SWIM member over UDP (push-pull over TCP), every packet sealed with AES-GCM."""
    import asyncio

    from consensuskit.agent.keyring import load_key
    from consensuskit.agent.runtime import Agent, serve

    try:
        key = load_key(key_file)
        options: dict[str, Any] = {
            "probe_interval": probe_interval,
            "probe_timeout": probe_interval / 2,
            "lifeguard": lifeguard,
        }
        member = Agent(bind, key, join=join, data_dir=data_dir, options=options, verbose=not quiet)
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        asyncio.run(serve(member))
    except OSError as exc:
        print(f"Error: cannot listen on {bind}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def agent_keygen() -> None:
    """Print a new random 256-bit key for the agents (64 hex digits)."""
    from consensuskit.agent.keyring import generate_key

    print(generate_key())


def members(
    agent: Annotated[str, typer.Option("--agent", help="HOST:PORT of a running agent.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON list only.")] = False,
) -> None:
    """List the members an agent knows, with state and incarnation."""
    from consensuskit.agent.runtime import query

    try:
        listed = query(agent, "members")
    except (OSError, ValueError) as exc:
        print(f"Error: no agent answers at {agent}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(listed, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"members seen by {agent}")
    for col in ("id", "address", "state", "incarnation"):
        table.add_column(col)
    for m in listed:
        table.add_row(m["id"], m["address"], m["state"], str(m["incarnation"]))
    Console().print(table)


def agent_demo(
    nodes: Annotated[int, typer.Option(min=3, help="How many agents to start.")] = 5,
    probe_interval: Annotated[float, typer.Option(help="Seconds between probes.")] = 0.5,
) -> None:
    """Start agents on loopback, SIGKILL one and SIGSTOP another: watch detection and refutation."""
    from rich.console import Console

    from consensuskit.agent.keyring import generate_key
    from consensuskit.agent.runtime import query
    from consensuskit.server.cluster import free_base_port

    console = Console()
    root = Path(tempfile.mkdtemp(prefix="consensuskit-agents-"))
    key_file = root / "key"
    key_file.write_text(generate_key() + "\n")
    base = free_base_port(nodes)
    addresses = [f"127.0.0.1:{base + i}" for i in range(nodes)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, address in enumerate(addresses):
            log = open(root / f"agent{i}.log", "wb")  # noqa: SIM115 (closed below)
            logs.append(log)
            join = [addresses[0]] if i else None
            argv = agent_argv(address, key_file, join, root / f"data{i}", probe_interval)
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        console.print(f"[bold]{nodes} agents[/] on {addresses[0]} .. {addresses[-1]} (logs in {root})")
        watcher = addresses[0]

        def show(title: str, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(probe_interval)
            try:
                listed = query(watcher, "members")
            except (OSError, ValueError):
                console.print(f"{title}: {watcher} does not answer")
                return
            row = "  ".join(f"{m['id'].rsplit(':', 1)[1]}={m['state']}/{m['incarnation']}" for m in listed)
            console.print(f"[cyan]{title:<34}[/] {row}")

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # a loaded machine takes seconds to start Python
            try:
                if sum(m["state"] == "alive" for m in query(watcher, "members")) == nodes:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        show("joined", 0)
        victim, sleeper = procs[-1], procs[-2]
        victim.kill()
        console.print(f"SIGKILL {addresses[-1]}")
        sleeper.send_signal(signal.SIGSTOP)
        console.print(f"SIGSTOP {addresses[-2]}")
        show("4 periods later", 4 * probe_interval)
        sleeper.send_signal(signal.SIGCONT)
        console.print(f"SIGCONT {addresses[-2]}: it refutes with a higher incarnation")
        show("after SIGCONT", 4 * probe_interval)
        show("the killed one is dead everywhere", 20 * probe_interval)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
