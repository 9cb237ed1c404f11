"""A local cluster of node processes on loopback (``consensuskit up``, tests, benchmarks).

Rules this module owns:
  * layout of a cluster directory: ``cluster.json`` (node count, ports), ``cluster.secret``
    and ``admin.token`` (generated once, mode 0600), and per node ``nI.toml`` (its config),
    ``nI/`` (its data) and ``nI.log`` (its stdout and stderr).  A second start on the same
    directory reuses all of it, so the nodes recover their logs;
  * ports: client HTTP on ``base_port .. base_port+N-1``, peer TCP on
    ``base_port+N .. base_port+2N-1``, then N ports per extra listener the service names
    (core/service.py ``ports``, e.g. etcd's gRPC on ``base_port+2N .. base_port+3N-1``,
    or from ``--listen-base-port NAME=P`` on ``P .. P+N-1``, kept in the manifest),
    written as each node's ``[listen]`` table; every one is checked free before any node
    starts;
  * each node is a separate OS process (``python -m consensuskit.server.main --config``),
    so SIGKILL, SIGSTOP and restarts act on real processes;
  * what a start was told beyond ports -- the service, protocol options (``--option``) and
    server settings (``--set``, ``UP_SETTINGS``; checked as a node checks them before
    anything is written) -- is kept in the manifest and holds on every later start
    unless said again (the ``options`` and ``auth`` tables merged key by key);
  * a cluster has an id (``cluster_id`` in the manifest and in every node's config,
    generated once; a manifest of an earlier release gets one), and the nodes are
    started with ``--bootstrap`` only while no node of the cluster has data yet: the
    first start.  After that a node whose directory is empty refuses to start until it
    is started with ``--rejoin`` (server/identity.py);
  * stopping is terminate, wait, then kill, and always reaps the process;
  * the cluster is ready when a node leads, or, in a protocol without the ``has-leader``
    capability (as ``/v1/status`` says), when every running node answers (``wait_ready``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from consensuskit.client import AsyncClient, Client, ClientError
from consensuskit.core.capabilities import HAS_LEADER, LEADER
from consensuskit.server import node_keys
from consensuskit.server.config import NODE_IDENTITY, TOP_LEVEL, ConfigError, load_config
from consensuskit.server.wal_format import IDENTITY_NAME, SEGMENT_PREFIX, SEGMENT_SUFFIX

HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 7100
MANIFEST = "cluster.json"
SECRET_FILE = "cluster.secret"
ADMIN_TOKEN_FILE = "admin.token"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


class ClusterError(Exception):
    """A cluster that cannot be laid out or started; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: str
    client_port: int
    peer_port: int
    config_path: Path
    data_dir: Path
    log_path: Path

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_address(self) -> str:
        return f"{HOST}:{self.peer_port}"


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    root: Path
    base_port: int
    nodes: tuple[NodeSpec, ...]
    protocol: str = "raft"
    cluster_id: str | None = None
    listen: tuple[str, ...] = ()  # the service's extra listeners (core/service.py ``ports``)
    listen_base: tuple[tuple[str, int], ...] = ()  # (name, first port) given for some of them

    def listen_ports(self, spec: NodeSpec) -> dict[str, int]:
        """Each extra listener's port on ``spec``'s node (see the module rules)."""
        n, i = len(self.nodes), self.nodes.index(spec)
        given = dict(self.listen_base)
        return {
            name: given[name] + i if name in given else self.base_port + (2 + k) * n + i
            for k, name in enumerate(self.listen)
        }

    @property
    def secret_path(self) -> Path:
        return self.root / SECRET_FILE

    @property
    def keys_path(self) -> Path:
        """The nodes' public keys (server/node_keys.py), written at every prepare."""
        return self.root / "keys.json"

    def uses_node_keys(self) -> bool:
        """Each node gets its own key pair when its protocol's nodes may lie (a reply
        quorum, core/registry.py): a crash-fault protocol keeps none, so a node of it
        that lost its disk rejoins without a key to republish."""
        from consensuskit.catalog import default_registry  # here: the catalog imports the server

        registry = default_registry()
        if self.protocol not in registry.names():
            return False
        return registry.get(self.protocol).reply_quorum is not None

    @property
    def admin_token_path(self) -> Path:
        return self.root / ADMIN_TOKEN_FILE

    @property
    def admin_token(self) -> str:
        return self.admin_token_path.read_text(encoding="utf-8").strip()

    @property
    def endpoints(self) -> list[str]:
        return [n.client_url for n in self.nodes]

    def node(self, node_id: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return spec
        raise KeyError(f"no node {node_id!r}; nodes: {', '.join(n.node_id for n in self.nodes)}")

    @classmethod
    def plan(cls, root: Path, nodes: int, base_port: int, protocol: str = "raft") -> ClusterLayout:
        if nodes < 1:
            raise ClusterError(f"--nodes must be at least 1, not {nodes}")
        if not 1024 <= base_port <= 65535 - 2 * nodes:
            raise ClusterError(f"--base-port must be in 1024..{65535 - 2 * nodes}, not {base_port}")
        root = root.absolute()
        specs = tuple(
            NodeSpec(
                node_id=f"n{i + 1}",
                client_port=base_port + i,
                peer_port=base_port + nodes + i,
                config_path=root / f"n{i + 1}.toml",
                data_dir=root / f"n{i + 1}",
                log_path=root / f"n{i + 1}.log",
            )
            for i in range(nodes)
        )
        return cls(root, base_port, specs, protocol)

    @classmethod
    def prepare(
        cls,
        root: Path | str,
        nodes: int | None = None,
        base_port: int | None = None,
        *,
        node_options: dict[str, Any] | None = None,
        protocol: str | None = None,
        listen_base: dict[str, int] | None = None,
    ) -> ClusterLayout:
        """Create the directory (configs, secret, token) or reuse an existing one.

        ``nodes``/``base_port``/``protocol`` None means "as before, or the default"; a
        value that contradicts an existing cluster directory is refused rather than
        silently ignored.
        """
        root = Path(root).absolute()
        manifest_path = root / MANIFEST
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
                stored_nodes, stored_port = int(manifest["nodes"]), int(manifest["base_port"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ClusterError(
                    f"{manifest_path} is not a cluster manifest ({exc}); move it away"
                ) from None
            stored_protocol = str(manifest.get("protocol", "raft"))
            for name, asked, stored in (
                ("--nodes", nodes, stored_nodes),
                ("--base-port", base_port, stored_port),
                ("--protocol", protocol, stored_protocol),
            ):
                if asked is not None and asked != stored:
                    raise ClusterError(
                        f"{root} holds a {stored_nodes}-node cluster on base port {stored_port}; "
                        f"{name} {asked} contradicts it (it runs {stored_protocol}; omit {name} to "
                        "recover that cluster, or choose another --data-dir)"
                    )
            layout = cls.plan(root, stored_nodes, stored_port, stored_protocol)
            stored_id = manifest.get("cluster_id")
            if not isinstance(stored_id, str):  # an earlier release's manifest
                stored_id = new_cluster_id()
                manifest["cluster_id"] = stored_id
                manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            layout = dataclasses.replace(layout, cluster_id=stored_id)
            # What the first start was told (service, protocol options) holds on every
            # later start unless said again: a restart must not change the service.
            stored_options = manifest.get("node_options")
            _check_same_service(root, layout, stored_options, node_options)
            if isinstance(stored_options, dict):
                node_options = _merge_node_options(stored_options, node_options or {})
            kept = _kept_options(node_options or {})
            if kept and kept != stored_options:
                manifest["node_options"] = kept
                manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        else:
            layout = cls.plan(
                root,
                3 if nodes is None else nodes,
                DEFAULT_BASE_PORT if base_port is None else base_port,
                protocol or "raft",
            )
            layout = dataclasses.replace(layout, cluster_id=new_cluster_id())
        service = (node_options or {}).get("service")
        if service is not None:
            from consensuskit.catalog import default_registry  # here: the catalog imports the server

            names = default_registry().services.get(str(service)).ports
            last = layout.base_port + (2 + len(names)) * len(layout.nodes) - 1
            if last > 65535:
                raise ClusterError(f"--base-port {layout.base_port} leaves no room for {service}'s ports")
            layout = dataclasses.replace(layout, listen=tuple(names))
        stored_base = _stored_listen_base(manifest_path)
        bases = {**stored_base, **(listen_base or {})}
        unknown = sorted(set(bases) - set(layout.listen))
        if unknown:
            served = ", ".join(layout.listen) or "none"
            raise ClusterError(f"--listen-base-port {unknown[0]}: the service listens on: {served}")
        for name, first in bases.items():
            if not 1024 <= first <= 65535 - len(layout.nodes):
                raise ClusterError(
                    f"--listen-base-port {name}={first}: not a port range for {len(layout.nodes)} nodes"
                )
        layout = dataclasses.replace(layout, listen_base=tuple(sorted(bases.items())))
        if bases and bases != stored_base and manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            manifest["listen_base"] = bases
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        layout._write_files(node_options or {}, fresh=not manifest_path.exists())
        return layout

    def _write_files(self, node_options: dict[str, Any], *, fresh: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for path, make in ((self.secret_path, 32), (self.admin_token_path, 24)):
            if not path.exists():
                _write_private(path, secrets.token_hex(make) + "\n")
        entries = {}
        for spec in self.nodes:
            spec.data_dir.mkdir(exist_ok=True)
            if self.uses_node_keys():
                # Each node's own key pair (kept), their public keys in one file (rewritten).
                entries[spec.node_id] = node_keys.entry(node_keys.load_or_create(spec.data_dir))
        if entries:
            node_keys.write_keys_file(self.keys_path, entries)
        for spec in self.nodes:
            # Configs are rewritten each time (they follow from the manifest); data is not.
            spec.config_path.write_text(self.node_config(spec, node_options), encoding="utf-8")
        if fresh:
            manifest = {
                **({"listen_base": dict(self.listen_base)} if self.listen_base else {}),
                "nodes": len(self.nodes),
                "base_port": self.base_port,
                "protocol": self.protocol,
                "cluster_id": self.cluster_id,
                **({"node_options": kept} if (kept := _kept_options(node_options)) else {}),
            }
            (self.root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def node_config(self, spec: NodeSpec, options: dict[str, Any]) -> str:
        """The node's TOML config (format of server/config.py).

        ``options`` are extra top-level settings (``max_value_bytes``, ``fsync``,
        ``enable_fault_injection``, ...); its ``options`` table goes to the protocol, its
        ``auth`` table to client auth.
        """
        settings = {k: v for k, v in options.items() if k not in TABLES}
        lines = [
            f"# node {spec.node_id} of the local cluster in {self.root} (written by consensuskit up)",
            f"id = {_toml(spec.node_id)}",
            f"protocol = {_toml(self.protocol)}",
            *([f"cluster_id = {_toml(self.cluster_id)}"] if self.cluster_id else []),
            f"data_dir = {_toml(str(spec.data_dir))}",
            f"client_address = {_toml(f'{HOST}:{spec.client_port}')}",
            f"peer_address = {_toml(spec.peer_address)}",
            f"secret_file = {_toml(str(self.secret_path))}",
            f"admin_token_file = {_toml(str(self.admin_token_path))}",
            *([f"keys_file = {_toml(str(self.keys_path))}"] if self.uses_node_keys() else []),
        ]
        lines += [f"{k} = {_toml(v)}" for k, v in sorted(settings.items())]
        listen = self.listen_ports(spec)
        if listen:
            lines += ["", "[listen]"] + [f"{k} = {_toml(f'{HOST}:{p}')}" for k, p in listen.items()]
        for peer in self.nodes:
            if peer.node_id != spec.node_id:
                lines += [
                    "",
                    f"[peers.{peer.node_id}]",
                    f"peer_address = {_toml(peer.peer_address)}",
                    f"client_url = {_toml(peer.client_url)}",
                ]
        for table in TABLES:  # [options] goes to the protocol, [auth] to client auth
            values = options.get(table) or {}
            if values:
                lines += ["", f"[{table}]"] + [f"{k} = {_toml(v)}" for k, v in sorted(values.items())]
        return "\n".join(lines) + "\n"

    def never_started(self) -> bool:
        """No node of the cluster has data yet: the next start is the cluster's first."""
        return not any(_holds_data(spec.data_dir) for spec in self.nodes)

    def ports(self) -> list[tuple[int, str]]:
        out = [(n.client_port, f"{n.node_id} client HTTP") for n in self.nodes]
        out += [(n.peer_port, f"{n.node_id} peer TCP") for n in self.nodes]
        for n in self.nodes:
            out += [(p, f"{n.node_id} {name}") for name, p in self.listen_ports(n).items()]
        return out

    def check_ports_free(self) -> None:
        for port, use in self.ports():
            if not port_is_free(port):
                raise ClusterError(
                    f"port {port} ({use}) is already in use on {HOST}; stop whatever holds it "
                    f"or choose another --base-port (this cluster needs {self.base_port}.."
                    f"{self.base_port + (2 + len(self.listen)) * len(self.nodes) - 1})"
                )


# The server settings (server/config.py) ``up --set KEY=VALUE`` gives every node: all but
# up's own (ids, addresses, files, peers) and those with a flag of their own (--service,
# --option, --listen-base-port, --view).  A table's keys are set one by one
# (``--set auth.token_ttl=600``).  What later starts keep unless told otherwise is these
# and the service and protocol options (not --view's fault hooks).
UP_OWNS = (*NODE_IDENTITY, "keys_file", "enable_fault_injection", "peers", "tls", "options", "listen")
UP_TABLES = ("auth",)
UP_SETTINGS = tuple(k for k in TOP_LEVEL if k not in UP_OWNS and k not in UP_TABLES)
TABLES = ("options", *UP_TABLES)  # merged key by key with what a cluster kept
KEPT_NODE_OPTIONS = ("service", "options", *UP_SETTINGS, *UP_TABLES)


def parse_settings(values: dict[str, Any]) -> dict[str, Any]:
    """``up --set`` values by key (``auth.KEY`` for a table's) as node options, every one
    checked as a node would check it (ClusterError, one line naming the setting)."""
    settings: dict[str, Any] = {}
    for key, value in values.items():
        table, dot, name = key.partition(".")
        if key not in UP_SETTINGS and not (dot and name and table in UP_TABLES):
            valid = ", ".join([*UP_SETTINGS, *(f"{t}.KEY" for t in UP_TABLES)])
            raise ClusterError(f"--set {key}: not a setting up passes to its nodes; valid: {valid}")
        if dot:
            settings.setdefault(table, {})[name] = value
        else:
            settings[key] = value
    _check_settings(settings)
    return settings


def _check_settings(settings: dict[str, Any]) -> None:
    """Build one node's config with ``settings``, as the node will at its start."""
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / SECRET_FILE
        secret.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
        trial = {
            "id": "n1",
            "peer_address": f"{HOST}:1",
            "client_address": f"{HOST}:2",
            "data_dir": tmp,
            "secret_file": str(secret),
            **settings,
        }
        try:
            load_config(None, trial)
        except ConfigError as exc:
            raise ClusterError(f"--set: {exc}") from None


def _check_same_service(root: Path, layout: ClusterLayout, stored: Any, given: dict[str, Any] | None) -> None:
    """A restart must not change the service either: its nodes' data is the old one's
    (each node would refuse it, server/identity.py; say so once, before writing a config)."""
    asked = (given or {}).get("service")
    if asked is None:
        return
    from consensuskit.catalog import default_registry, service_for  # the catalog imports the server

    registry = default_registry()
    spec = registry.get(layout.protocol)
    kept = stored.get("service") if isinstance(stored, dict) else None
    try:
        serves = service_for(registry, spec, None if kept is None else str(kept)).name
        wanted = service_for(registry, spec, str(asked)).name
    except KeyError:
        return  # a service the protocol cannot serve: refused where the configs are checked
    if wanted != serves:
        raise ClusterError(
            f"{root} holds a cluster that serves {serves}; --service {asked} contradicts it (its "
            "nodes hold that service's data; omit --service to recover that cluster, or choose "
            "another --data-dir)"
        )


def _kept_options(node_options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k in KEPT_NODE_OPTIONS if (v := node_options.get(k)) is not None and v != {}}


def _merge_node_options(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``stored``, the ``options`` and ``auth`` tables merged key by key."""
    merged = {**_kept_options(stored), **given}
    for table in TABLES:
        if isinstance(stored.get(table), dict) or isinstance(given.get(table), dict):
            merged[table] = {**(stored.get(table) or {}), **(given.get(table) or {})}
    return merged


def _stored_listen_base(manifest_path: Path) -> dict[str, int]:
    """The ``--listen-base-port`` values an earlier start kept in the manifest."""
    try:
        stored = json.loads(manifest_path.read_text(encoding="utf-8")).get("listen_base") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): int(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


def new_cluster_id() -> str:
    return "c-" + secrets.token_hex(8)


def _holds_data(directory: Path) -> bool:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return False
    return any(
        n == IDENTITY_NAME or (n.startswith(SEGMENT_PREFIX) and n.endswith(SEGMENT_SUFFIX)) for n in names
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


# Test and benchmark ports come from below the kernel's ephemeral range: a port drawn
# inside it can be taken, between the check and the bind, by any outgoing connection's
# source port (a real flake: EADDRINUSE in a real-process test).
LOWEST_TEST_PORT = 10000
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_port_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for outgoing source ports (Linux; the IANA range elsewhere)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


def free_base_port(count: int, start: int | None = None, stop: int | None = None) -> int:
    """A base port with ``count`` consecutive free ports (tests and benchmarks), drawn
    below the ephemeral range unless ``start``/``stop`` say otherwise."""
    if start is None:
        start = LOWEST_TEST_PORT
    if stop is None:
        stop = ephemeral_port_range()[0]
        if stop - start < 1000 + count:  # an unusual kernel setting: use the ports above it
            start, stop = ephemeral_port_range()[1] + 1, 65536
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(start, stop - count)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise ClusterError(f"found no {count} consecutive free ports in {start}..{stop}")


def free_port() -> int:
    """One free port outside the ephemeral range (see ``free_base_port``)."""
    return free_base_port(1)


def node_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "consensuskit.server.main", "--config", str(config_path)]


# ---------------------------------------------------------------------- processes
class NodeProcess:
    """One node's OS process: start, signal, stop, restart; output appended to its log."""

    def __init__(self, spec: NodeSpec, extra_env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.extra_env = extra_env or {}
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.paused = False
        self.starts = 0

    @property
    def node_id(self) -> str:
        return self.spec.node_id

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def start(self, extra_args: Sequence[str] = ()) -> None:
        """Start the process; ``extra_args`` go to its command line (``--rejoin``, ...)."""
        if self.running:
            raise ClusterError(f"{self.node_id} is already running (pid {self.pid})")
        self._close_log()
        self._log = open(self.spec.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log.write(f"--- consensuskit: starting {self.node_id} at {time.ctime()}\n".encode())
        self._log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        self.popen = subprocess.Popen(
            [*node_command(self.spec.config_path), *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches `up`, which stops us in order
        )
        self.paused = False
        self.starts += 1

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (power loss for this node: whatever was not fsynced is gone) and reap."""
        self.signal(signal.SIGKILL)
        self._reap(STOP_GRACE)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM (after SIGCONT, so a paused node can act on it), wait, then SIGKILL."""
        if self.popen is None:
            return None
        if self.running:
            self.resume()
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        code = self._reap(grace)
        self._close_log()
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def _reap(self, timeout: float) -> int | None:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.spec.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """The processes of one ``ClusterLayout``; a context manager that stops them all."""

    def __init__(self, layout: ClusterLayout, extra_env: dict[str, str] | None = None) -> None:
        self.layout = layout
        self.nodes = {spec.node_id: NodeProcess(spec, extra_env) for spec in layout.nodes}
        self._status_client: Client | None = None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoints(self) -> list[str]:
        return self.layout.endpoints

    def url(self, node_id: str) -> str:
        return self.layout.node(node_id).client_url

    def node_of(self, url: str) -> str:
        for spec in self.layout.nodes:
            if spec.client_url == url.rstrip("/"):
                return spec.node_id
        raise KeyError(url)

    def start(self, check_ports: bool = True) -> None:
        if check_ports:
            self.layout.check_ports_free()
        first = ("--bootstrap",) if self.layout.never_started() else ()
        for node in self.nodes.values():
            if not node.running:
                node.start(first)

    def stop(self) -> None:
        # Signal everyone first so they shut down in parallel, then reap one by one.
        for node in self.nodes.values():
            if node.running:
                node.resume()
                node.signal(signal.SIGTERM)
        for node in self.nodes.values():
            node.stop()
        if self._status_client is not None:
            self._status_client.close()
            self._status_client = None

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.signal(signal.SIGKILL)
        for node in self.nodes.values():
            if node.popen is not None:
                node.kill()

    def client(self, **options: Any) -> Client:
        options.setdefault("admin_token", self.layout.admin_token)
        return Client(self.endpoints, **options)

    def async_client(self, **options: Any) -> AsyncClient:
        options.setdefault("admin_token", self.layout.admin_token)
        return AsyncClient(self.endpoints, **options)

    def dead_nodes(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.popen is not None and not n.running]

    def statuses(self, timeout: float = 0.5) -> dict[str, dict[str, Any] | ClientError]:
        """Every node's ``/v1/status`` (or the error that stood in its way), by node id."""
        if self._status_client is None:
            # The admin token: /v1/status may need credentials once client auth is enabled.
            self._status_client = Client(
                self.endpoints, timeout=timeout, deadline=timeout, admin_token=self.layout.admin_token
            )
        by_url = self._status_client.cluster_status()
        return {self.node_of(url): status for url, status in by_url.items()}

    def leader(self, timeout: float = 0.5) -> str | None:
        """The node id that a running node reports as leader with the highest generation
        (term, ballot round), agreed on by that node itself; None in a protocol without
        a leader (the ``has-leader`` capability, core/capabilities.py)."""
        return self._leader_in(self.statuses(timeout))

    def _leader_in(self, statuses: dict[str, dict[str, Any] | ClientError]) -> str | None:
        leaders = [
            (s.get("generation", s.get("term", 0)), node_id)
            for node_id, s in statuses.items()
            if isinstance(s, dict)
            and s.get("role") == LEADER
            and HAS_LEADER in s.get("capabilities", (HAS_LEADER,))
            and not self.nodes[node_id].paused
        ]
        return max(leaders)[1] if leaders else None

    def has_leader(self, timeout: float = 0.5) -> bool | None:
        """Whether the protocol has a leader, as the nodes' status says (None: no node
        answered yet)."""
        for status in self.statuses(timeout).values():
            if isinstance(status, dict):
                return HAS_LEADER in status.get("capabilities", (HAS_LEADER,))
        return None

    def wait_for_leader(self, timeout: float = 20.0, exclude: Sequence[str] = ()) -> str:
        """Block until some node (not in ``exclude``) is leader; raise ``ClusterError`` if none
        is within ``timeout``, a node process died, or the protocol has no leader."""
        leader = self.wait_ready(timeout, exclude)
        if leader is None:
            raise ClusterError(f"{self.layout.protocol} has no leader (no has-leader capability)")
        return leader

    def wait_ready(
        self, timeout: float = 20.0, exclude: Sequence[str] = (), *, every_node: bool = False
    ) -> str | None:
        """Block until the cluster serves: some node (not in ``exclude``) leads, or, in a
        protocol without a leader, every running node not in ``exclude`` answers its
        status.  With ``every_node`` a leader is not enough: every running node not in
        ``exclude`` must answer too (a majority elects before the last process listens).
        Returns the leader, or None for a protocol without one; raises ``ClusterError``
        on timeout or when every node process died."""
        end = time.monotonic() + timeout
        while True:
            dead = [n for n in self.dead_nodes() if n.node_id not in exclude]
            if dead and len(dead) == len([n for n in self.nodes if n not in exclude]):
                raise ClusterError("every node process exited:\n" + _death_report(dead))
            statuses = self.statuses()
            leader = self._leader_in(statuses)
            answered = {n: s for n, s in statuses.items() if isinstance(s, dict) and n not in exclude}
            wanted = [n for n, p in self.nodes.items() if n not in exclude and p.running and not p.paused]
            all_answered = all(n in answered for n in wanted)
            if leader is not None and leader not in exclude and (all_answered or not every_node):
                return leader
            leaderless = bool(answered) and all(
                HAS_LEADER not in s.get("capabilities", (HAS_LEADER,)) for s in answered.values()
            )
            if leaderless and all_answered:
                return None
            if time.monotonic() > end:
                hint = _death_report(dead) if dead else "see the node logs under " + str(self.layout.root)
                raise ClusterError(f"no leader elected within {timeout:g} s; {hint}")
            time.sleep(0.1)

    @contextlib.contextmanager
    def running(self, timeout: float = 30.0) -> Iterator[LocalCluster]:
        self.start()
        try:
            self.wait_ready(timeout)
            yield self
        finally:
            self.stop()


def _death_report(dead: Sequence[NodeProcess]) -> str:
    parts = []
    for node in dead:
        parts.append(
            f"{node.node_id} exited with code {node.returncode}; last lines of {node.spec.log_path}:\n"
            + node.log_tail(8)
        )
    return "\n".join(parts)
