"""What ``consensuskit status|up`` do, and the scripted demo (cli.py only parses options;
a service's verbs, e.g. ``consensuskit kv``, live with the service: cli_kv.py).

Rules this module owns:
  * exit codes as everywhere in the CLI: 0 = done, 1 = the cluster said no or could not
    be reached (no quorum), 2 = bad input; errors go to stderr as one line;
  * ``up`` owns its node processes: it stops every one of them however it ends (Ctrl-C,
    SIGTERM, an error), terminating, waiting, then killing;
  * nodes are read through their ``/v1/status`` capabilities: ``status`` exits 0 when a
    node leads, or, for a protocol without the ``has-leader`` capability, when a node
    answers; ``up`` of a new cluster starts the catalog entry's ``min_nodes`` at least.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from consensuskit.catalog import default_registry, service_for
from consensuskit.client import (
    Client,
    ClientError,
    NotFound,
    Unavailable,
    parse_endpoints,
)
from consensuskit.server.auth_commands import BadInput, cli_client
from consensuskit.server.cluster import (
    DEFAULT_BASE_PORT,
    MANIFEST,
    ClusterError,
    ClusterLayout,
    LocalCluster,
    NodeProcess,
)

ENDPOINTS_ENV = "CONSENSUSKIT_ENDPOINTS"
DEFAULT_VIEW_PORT = 7070  # `up --view`, as `consensuskit view`
DEFAULT_ENDPOINTS = ",".join(f"127.0.0.1:{DEFAULT_BASE_PORT + i}" for i in range(3))


def default_endpoints() -> str:
    return os.environ.get(ENDPOINTS_ENV, DEFAULT_ENDPOINTS)


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


# ---------------------------------------------------------------------- status
def _field(status: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in status:
            return status[name]
    return None


def status_rows(
    statuses: dict[str, dict[str, Any] | ClientError], processes: dict[str, NodeProcess] | None = None
) -> list[dict[str, Any]]:
    """One row per node: what it says about itself, or why it did not answer."""
    rows = []
    for name, status in statuses.items():
        proc = (processes or {}).get(name)
        row: dict[str, Any] = {"node": name}
        if isinstance(status, dict):
            row.update(
                id=status.get("id", name),
                role=status.get("role"),
                # The protocol's generation (Raft's term, a ballot round, ...).
                term=_field(status, "generation", "term"),
                has_leader="has-leader" in status.get("capabilities", ("has-leader",)),
                leader=status.get("leader"),
                commit=_field(status, "commit", "commit_index"),
                applied=_field(status, "applied", "applied_index", "last_applied"),
                pid=status.get("pid"),
                error=None,
                # Started with --rejoin after a disk loss and not readmitted yet.
                rejoining=bool(status.get("rejoining")),
                # Peers whose hello named another protocol, service or cluster (peer_hello.py).
                refuses={
                    peer: entry["refused"]
                    for peer, entry in sorted((status.get("peers") or {}).items())
                    if isinstance(entry, dict) and entry.get("refused")
                },
                # The cluster level it applied and the one it offers (server/cluster_level.py).
                level=status.get("cluster_level") or {},
            )
        else:
            row.update(id=name, role=None, term=None, leader=None, commit=None, applied=None, pid=None)
            row["has_leader"] = None
            row["error"] = status.message if isinstance(status, Unavailable) else str(status)
        if proc is not None:
            row["pid"] = row["pid"] or proc.pid
            if proc.popen is not None and not proc.running:
                row["error"] = f"exited with code {proc.returncode}"
            elif proc.paused:
                row["error"] = "paused (SIGSTOP)"
        rows.append(row)
    return rows


ROLE_STYLE = {"leader": "bold green", "follower": "cyan", "candidate": "yellow", "learner": "magenta"}


def status_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title)
    for column in ("node", "pid", "role", "term", "leader", "commit", "applied", "note"):
        table.add_column(
            column, justify="right" if column in ("pid", "term", "commit", "applied") else "left"
        )
    for row in rows:
        role = row["role"] or "-"
        style = ROLE_STYLE.get(role, "red" if row["error"] else "")
        table.add_row(
            str(row["id"]),
            _dash(row["pid"]),
            f"[{style}]{role}[/]" if style else role,
            _dash(row["term"]),
            _dash(row["leader"]),
            _dash(row["commit"]),
            _dash(row["applied"]),
            _note(row),
        )
    return table


def _note(row: dict[str, Any]) -> str:
    if row["error"]:
        return f"[red]{row['error']}[/]"
    refuses = row.get("refuses") or {}
    if refuses:
        peer, reason = next(iter(refuses.items()))
        return f"[red]drops the messages of {', '.join(refuses)}: {peer}: {reason}[/]"
    if row.get("rejoining"):
        return "[yellow]rejoining (lost its disk; no vote yet)[/]"
    level = row.get("level") or {}
    applied, offered = level.get("applied"), level.get("offered")
    if isinstance(applied, int) and isinstance(offered, int) and applied < offered:
        return (
            f"[yellow]cluster level {applied} (offers {offered}: a member runs an earlier release, "
            "or a lower cluster_level)[/]"
        )
    return ""


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def status_command(
    endpoints: str | None = None, *, as_json: bool = False, timeout: float = 1.0, user: str | None = None
) -> int:
    """Print every node's status; exit 0 when some node is leader (in a protocol without
    a leader: when some node answered), 1 otherwise."""
    try:
        client = cli_client(endpoints or default_endpoints(), user, timeout=timeout, deadline=timeout)
    except BadInput as exc:
        _err(str(exc))
        return 2
    with client:
        statuses = client.cluster_status()
    rows = status_rows(statuses)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        Console(highlight=False).print(status_table(rows))
    return 0 if any(_serving(r) for r in rows) else 1


def _serving(row: dict[str, Any]) -> bool:
    if row["error"] is not None:
        return False
    return row["role"] == "leader" if row["has_leader"] else row["has_leader"] is False


# ---------------------------------------------------------------------- up
class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM handlers inside ``up`` to unwind and stop the nodes."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def up_command(
    nodes: int | None = None,
    data_dir: str = "./data",
    base_port: int | None = None,
    *,
    refresh: float = 1.0,
    console: Console | None = None,
    node_options: dict[str, Any] | None = None,
    startup_timeout: float = 30.0,
    protocol: str | None = None,
    service: str | None = None,
    listen_base: dict[str, int] | None = None,
    view: bool = False,
    view_port: int = DEFAULT_VIEW_PORT,
    restore: str | None = None,
) -> int:
    """Start (or recover) a local cluster and watch it until Ctrl-C or SIGTERM, or until
    every node it started has exited (0 when each exited cleanly, else 1; not with ``view``).

    ``restore``: a backup file (server/backup_file.py) restored into the cluster once it
    has a leader; the cluster must hold no data, and a new one runs the backup's service
    unless ``service`` names one.  A refused restore stops the nodes (exit 1).

    ``protocol`` is a registry name (default raft, or what the directory's cluster runs);
    ``service`` one it can serve (default its own).  ``view`` serves the browser view of
    the running cluster on ``view_port`` (view/live.py), with the test-only fault hooks
    on (its partition buttons need them)."""
    console = console or Console(highlight=False)
    registry = default_registry()
    if protocol is not None and protocol not in registry.names():
        _err(f"unknown protocol {protocol!r}; valid: {', '.join(registry.names())}")
        return 2
    backup: Any = None
    if restore is not None:
        from consensuskit.server.backup_commands import load_file

        try:
            backup = load_file(restore)
        except BadInput as exc:
            _err(f"--restore: {exc}")
            return 2
        if service is None and not (Path(data_dir) / MANIFEST).exists():
            service = backup.service
    if service is not None:
        try:
            service_for(registry, registry.get(protocol or "raft"), service)
        except KeyError as exc:
            _err(str(exc.args[0]))
            return 2
        node_options = {**(node_options or {}), "service": service}
    if view:  # not kept in the manifest: a later `up` without --view turns it off again
        node_options = {**(node_options or {}), "enable_fault_injection": True}
    if nodes is None and protocol is not None and not (Path(data_dir) / MANIFEST).exists():
        # A new cluster: as many nodes as the protocol needs with its default options.
        nodes = max(3, registry.get(protocol).min_nodes)
    try:
        layout = ClusterLayout.prepare(
            data_dir, nodes, base_port, node_options=node_options, protocol=protocol, listen_base=listen_base
        )
        layout.check_ports_free()
    except (ClusterError, OSError) as exc:
        _err(str(exc))
        return 2
    cluster = LocalCluster(layout)
    code = 0
    viewer: Any = None
    with _stop_on_signals():
        try:
            cluster.start(check_ports=False)
            console.print(
                f"[bold]consensuskit[/]: {len(layout.nodes)} {layout.protocol} nodes, data in {layout.root}"
            )
            leader = cluster.wait_ready(startup_timeout)
            if backup is not None:
                _restore_backup(console, layout, str(restore), backup)
            _print_endpoints(console, cluster, leader)
            if view:
                from consensuskit.view.live import ClusterView

                viewer = ClusterView(cluster, port=view_port)
                try:
                    console.print(f"view: {viewer.start()}  (kill, pause, partition, put ... from the page)")
                except OSError as exc:
                    raise ClusterError(f"--view: cannot serve the view on port {view_port}: {exc}") from None
            code = _watch(console, cluster, refresh, until_all_exit=not view)
        except _Stop as stop:
            console.print(f"\n{stop.args[0]}: stopping {len(layout.nodes)} nodes ...")
        except ClusterError as exc:
            _err(str(exc))
            code = 1
        finally:
            # A second Ctrl-C during shutdown must not leave processes behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if viewer is not None:
                viewer.stop()  # first: its buttons act on the processes
            cluster.stop()
    console.print("all nodes stopped")
    return code


def _restore_backup(console: Console, layout: ClusterLayout, path: str, backup: Any) -> None:
    """``up --restore``: the backup into the started cluster; ClusterError if refused."""
    from consensuskit.server.backup_api import RESTORE_TIMEOUT

    token = layout.admin_token_path.read_text(encoding="utf-8").strip()
    data = backup.data
    wait = RESTORE_TIMEOUT
    with Client(layout.endpoints, admin_token=token, timeout=wait, deadline=wait) as client:
        try:
            doc = client.restore(data)
        except ClientError as exc:
            raise ClusterError(f"--restore {path}: {exc.code}: {exc.message}") from None
    restored = doc.get("restored") if isinstance(doc, dict) else None
    console.print(
        f"restored {path}: {restored} entries of service {backup.service} "
        f"(taken from {backup.header['node']} at index {backup.header['index']})",
        soft_wrap=True,
        markup=False,
    )


def _print_endpoints(console: Console, cluster: LocalCluster, leader: str | None) -> None:
    layout = cluster.layout
    if leader is None:
        console.print(f"leader: none ({layout.protocol} has no leader: every node takes requests)")
    else:
        console.print(f"leader: [bold green]{leader}[/] ({cluster.url(leader)})")
    console.print(f"endpoints: {','.join(layout.endpoints)}")
    for name in layout.listen:  # the service's own listeners (e.g. etcd's grpc)
        addresses = ",".join(f"127.0.0.1:{layout.listen_ports(n)[name]}" for n in layout.nodes)
        console.print(f"{name} endpoints: {addresses}")
    console.print(f"admin token: {layout.admin_token_path}")
    example = _service_example(layout)
    console.print(
        (f"try: {example}\n" if example else "")
        + "Ctrl-C stops every node; `consensuskit up` on the same --data-dir recovers the cluster."
    )


def _service_example(layout: Any) -> str:
    """The cluster's service's example command (core/service.py), its endpoints filled in."""
    registry = default_registry()
    try:
        manifest = json.loads((layout.root / MANIFEST).read_text(encoding="utf-8"))
        named = (manifest.get("node_options") or {}).get("service")
        spec = service_for(registry, registry.get(layout.protocol), named)
    except (OSError, ValueError, KeyError, AttributeError):
        return ""
    values = {"endpoints": ",".join(layout.endpoints), "url": layout.endpoints[0]}
    for name in layout.listen:
        values[name] = ",".join(f"127.0.0.1:{layout.listen_ports(n)[name]}" for n in layout.nodes)
    try:
        return spec.example.format_map(values)
    except (KeyError, ValueError):  # a placeholder this cluster cannot fill
        return ""


def _watch(console: Console, cluster: LocalCluster, refresh: float, *, until_all_exit: bool = True) -> int:
    """Show the cluster's status until a signal (``_Stop``) or, with ``until_all_exit``,
    until every node process ``up`` started has exited (stopped from outside: nothing is
    left to watch, as docker compose's ``up`` returns once its containers exited).  Then
    the exit code: 0 when every node exited cleanly, 1 otherwise.  ``up --view`` keeps
    watching: its page can start a node again."""

    def render() -> tuple[Table, list[dict[str, Any]]]:
        rows = status_rows(cluster.statuses(timeout=min(0.5, refresh)), cluster.nodes)
        return status_table(rows, title=f"cluster {cluster.layout.root} (Ctrl-C stops it)"), rows

    def all_exited() -> bool:
        return until_all_exit and all(not node.running for node in cluster.nodes.values())

    if console.is_terminal:
        table, _ = render()
        with Live(table, console=console, auto_refresh=False) as live:
            while not all_exited():
                time.sleep(refresh)
                live.update(render()[0], refresh=True)
    else:
        # Not a terminal (a pipe, a log file): one line per change instead of a redrawn table.
        last = None
        while True:
            _, rows = render()
            summary = tuple((r["id"], r["role"], r["term"], r["error"]) for r in rows)
            if summary != last:
                parts = [f"{r['id']}={r['role'] or 'down'}@{_dash(r['term'])}" for r in rows]
                console.print(f"{time.strftime('%H:%M:%S')} " + " ".join(parts), soft_wrap=True)
                last = summary
            if all_exited():
                break
            time.sleep(refresh)
    codes = {node_id: node.returncode for node_id, node in cluster.nodes.items()}
    listed = ", ".join(f"{node_id} {_exit_status(code)}" for node_id, code in codes.items())
    console.print(f"every node has exited ({listed}): nothing left to watch", soft_wrap=True)
    return 0 if all(code == 0 for code in codes.values()) else 1


def _exit_status(code: int | None) -> str:
    """A child's exit as people read it: ``exit 0``, ``exit 3``, ``killed by SIGKILL``."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


# ---------------------------------------------------------------------- demo
def demo_script(
    console: Console | None = None,
    *,
    data_dir: str | None = None,
    base_port: int | None = None,
    keys: int = 10,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Writes, kill the leader with SIGKILL, watch a new one, read the writes back.

    Runs on a throwaway cluster (a temporary directory unless ``data_dir``) and stops it;
    returns True when every acknowledged write was read back after the failover.
    """
    from consensuskit.server.cluster import free_base_port

    console = console or Console(highlight=False)
    with contextlib.ExitStack() as stack:
        root = data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="consensuskit-demo-"))
        port = base_port or free_base_port(6)
        try:
            layout = ClusterLayout.prepare(Path(root), 3, port)
            cluster = stack.enter_context(LocalCluster(layout))
            return _demo_steps(console, cluster, keys, pause)
        except (ClusterError, ClientError) as exc:
            console.print(f"[bold red]demo failed:[/] {exc}")
            return False


def _demo_steps(console: Console, cluster: LocalCluster, keys: int, pause: Callable[[float], None]) -> bool:
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"[bold]{step}.[/] {text}")

    say(f"start 3 node processes on {', '.join(cluster.endpoints)}")
    cluster.start()
    t0 = time.monotonic()
    leader = cluster.wait_for_leader(30)
    console.print(f"   leader [bold green]{leader}[/] elected after {time.monotonic() - t0:.2f} s")
    console.print(status_table(status_rows(cluster.statuses(), cluster.nodes)))

    with cluster.client(timeout=1.0, deadline=20.0) as client:
        say(f"write {keys} keys through the client (it finds the leader itself)")
        written = {f"demo/{i:02d}": f"value-{i}" for i in range(keys)}
        for k, v in written.items():
            client.put(k, v)
        console.print(f"   {keys} writes acknowledged; the last: {k} = {v!r}")

        victim = cluster.leader() or leader
        victim_pid = cluster.nodes[victim].pid
        say(f"kill the leader {victim} (pid {victim_pid}) with SIGKILL")
        t0 = time.monotonic()
        cluster.nodes[victim].kill()
        new_leader = cluster.wait_for_leader(30, exclude=[victim])
        console.print(
            f"   new leader [bold green]{new_leader}[/] after {time.monotonic() - t0:.2f} s "
            f"(term {_term(cluster, new_leader)})"
        )

        say("read every write back (linearizable reads from the new leader)")
        missing = [k for k, v in written.items() if _value(client, k) != v]
        if missing:
            console.print(f"   [bold red]lost writes: {', '.join(missing)}[/]")
            return False
        console.print(f"   all {keys} writes are there")
        client.put("demo/after-failover", "yes")

        say(f"restart {victim}: it recovers its log from disk and catches up")
        cluster.nodes[victim].start()
        caught_up = _wait_caught_up(cluster, victim, new_leader, pause)
        console.print(status_table(status_rows(cluster.statuses(), cluster.nodes)))
        console.print(f"   {victim} {'caught up' if caught_up else '[red]did not catch up in time[/]'}")
    verdict = "[bold green]demo passed[/]" if caught_up else "[bold red]demo failed[/]"
    console.print(verdict)
    return caught_up


def _term(cluster: LocalCluster, node_id: str) -> Any:
    status = cluster.statuses().get(node_id)
    return status.get("term") if isinstance(status, dict) else "?"


def _value(client: Client, key: str) -> Any:
    try:
        return client.get(key).value
    except NotFound:
        return None


def _wait_caught_up(
    cluster: LocalCluster, node: str, leader: str, pause: Callable[[float], None], timeout: float = 20.0
) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        statuses = cluster.statuses()
        mine, theirs = statuses.get(node), statuses.get(leader)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            applied = _field(mine, "applied", "applied_index", "last_applied")
            commit = _field(theirs, "commit", "commit_index")
            if applied is not None and commit is not None and applied >= commit:
                return True
        pause(0.1)
    return False


__all__ = [
    "DEFAULT_ENDPOINTS",
    "ENDPOINTS_ENV",
    "demo_script",
    "parse_endpoints",
    "status_command",
    "status_rows",
    "status_table",
    "up_command",
]
