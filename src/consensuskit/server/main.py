"""``consensuskit server``: one node process (storage + runtime + peer transport + HTTP).

Rules this module owns:
  * start order: open storage (a corrupt log refuses to start, naming file and offset),
    build the node from it, listen for peers, serve HTTP, start the node's timers, then
    the service's own listeners (core/service.py ``listeners``: a port it cannot bind is
    a configuration error); stopping closes them first;
  * SIGTERM and SIGINT stop cleanly: the node stops taking inputs, its last sync finishes
    and releases, waiters get 503, then HTTP, transport and storage close (exit 0);
  * a node that halts (a handler raised, a sync failed) exits 70 without touching its
    storage again: memory may be half-updated, the disk is what survives;
  * a bad configuration is one line on stderr and exit status 2;
  * the data directory's identity is checked before the node is built, and an empty
    directory needs --bootstrap or --rejoin for a configured voter (server/identity.py);
    a refusal is one line on stderr and exit status 1;
  * the peers a node talks to are its ``[peers]`` with the replicated directory of
    member addresses over them (statemachines/peers.py): taken at start from what the
    node recovered, then every ``PEERS_LOOK`` seconds when it changed.  Until the node
    has applied as far as the directory it remembers (server/remembered_peers.py), the
    remembered addresses are over both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from consensuskit import __version__
from consensuskit.catalog import default_registry, service_for
from consensuskit.core.capabilities import MEMBERSHIP_CHANGE, ReplicatedLog, capabilities
from consensuskit.core.registry import Registry
from consensuskit.core.service import resolve
from consensuskit.server import edge, gc_watch
from consensuskit.server.auth import require_client_certs
from consensuskit.server.cluster_level import ClusterLevels, LevelRaiser
from consensuskit.server.config import (
    NODE_IDENTITY,
    ConfigError,
    PeerInfo,
    ServerConfig,
    format_address,
    load_config,
    parse_address,
    parse_peer_flag,
)
from consensuskit.server.conn_guard import GuardedSite
from consensuskit.server.events import EventFeed, heartbeat_types
from consensuskit.server.http_api import NodeApi
from consensuskit.server.identity import IdentityError, Owner, adopt_owner, open_data_dir, read_identity
from consensuskit.server.incarnations import IncarnationBook
from consensuskit.server.metrics import NodeMetrics
from consensuskit.server.node_interface import status_problems
from consensuskit.server.node_keys import KeysError, node_keys
from consensuskit.server.open_files import connection_cap, raise_open_file_limit
from consensuskit.server.peer_hello import PeerHello
from consensuskit.server.remembered_peers import Remembered, read_remembered, write_remembered
from consensuskit.server.reply_signing import ReplySigner, reply_signer
from consensuskit.server.runtime import DurableStorage, NodeRuntime
from consensuskit.server.session_clock import SessionClock
from consensuskit.server.tasks import cancel_and_wait
from consensuskit.server.transport import PeerTransport
from consensuskit.server.wal import CorruptLogError, DirectoryInUseError, DiskStorage
from consensuskit.statemachines.levels import level_of
from consensuskit.statemachines.peers import EMPTY, Directory, directory_of

log = logging.getLogger("consensuskit.server")

EXIT_OK = 0
EXIT_FAILED = 1  # could not start (corrupt log, address in use)
EXIT_CONFIG = 2
EXIT_HALTED = 70  # the node halted on an internal error
PEERS_LOOK = 0.2  # seconds between looks at the replicated directory of member addresses

TransportFactory = Callable[..., Any]


class NodeServer:
    """One node: what ``serve`` runs, and what in-process tests start several of."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        storage: DurableStorage | None = None,
        transport_factory: TransportFactory | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config
        self._storage = storage
        self._transport_factory = transport_factory
        self._registry = registry or default_registry()
        # The peers this node talks to: [peers] (or what set_directory gave), with the
        # replicated directory of member addresses over it (statemachines/peers.py).
        self._configured: dict[str, PeerInfo] = dict(config.peers)
        self._recorded: Directory = EMPTY  # the state machine's, last seen
        # The directory this node applied before it stopped (server/remembered_peers.py):
        # held over the others until the node has applied as far again (None: caught up).
        self._remembered: Remembered | None = None
        self._written: Directory = EMPTY  # what the data directory's file holds
        self._directory: dict[str, PeerInfo] = dict(config.peers)
        self._peer_follower: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.started_at = time.monotonic()
        self.metrics = NodeMetrics(config.node_id, config.protocol)
        self.runtime: NodeRuntime = None  # type: ignore[assignment]  # set by start()
        self.transport: Any = None
        self.api: NodeApi | None = None
        self.client_site: GuardedSite | None = None  # its .guards counts timeouts and refusals
        self.session_clock: SessionClock | None = None  # None: session_ttl = 0
        self.levels: ClusterLevels | None = None  # the cluster level (server/cluster_level.py)
        self.level_raiser: LevelRaiser | None = None
        # Signs client answers (server/reply_signing.py); None: a node that does not.
        self.reply_signer: ReplySigner | None = None
        self.events: EventFeed | None = None  # GET /v1/events (server/events.py)
        # The service's listeners' close (core/service.py ``listeners``); None: none runs.
        self._close_listeners: Callable[[], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        cfg = self.config
        self.started_at = time.monotonic()
        spec = self._registry.get(cfg.protocol)
        self.service = service_for(self._registry, spec, cfg.service)
        if cfg.rejoin and not spec.survives_disk_loss:
            raise ConfigError(f"--rejoin: {cfg.protocol} cannot rejoin after a disk loss (docs/server.md)")
        node_key, public_keys = None, None
        self.reply_signer = None
        if cfg.keys_file is not None:
            try:
                node_key, public_keys = node_keys(cfg.node_id, cfg.data_dir, cfg.keys_file, cfg.members)
            except KeysError as exc:
                raise ConfigError(str(exc)) from None
            self.reply_signer = reply_signer(cfg.node_id, node_key, spec)
        owner = Owner(spec.name, self.service.name)
        opened_here = self._storage is None  # else a test's storage: no directory to mark
        storage = self._storage if self._storage is not None else open_storage(cfg, owner)
        self._storage = storage
        try:
            self.runtime = NodeRuntime(
                cfg.node_id,
                spec,
                cfg.members,
                spec.node_options(cfg.options),  # the protocol's server defaults under ours
                storage,
                on_sync=self.metrics.on_sync,
                # A service may need the loop free during every fsync (core/service.py).
                inline_sync_bytes=cfg.inline_sync_bytes if self.service.sync_inline else 0,
                service=self.service,
                cluster_key=protocol_key(cfg.secret),
                node_key=node_key,
                public_keys=public_keys,
            )
        except ValueError as exc:  # the protocol refuses this membership (fast-paxos: n < 3f+1)
            _close(storage)
            raise ConfigError(f"protocol: {cfg.protocol}: {exc}") from None
        except Exception as exc:
            # The node is built from what the directory holds.  An owner recorded in its
            # identity was checked already, so this is an earlier release's directory
            # another protocol or service wrote, or a bug: say which directory, keep the trace.
            _close(storage)
            log.exception("node %s: building the node from %s failed", cfg.node_id, cfg.data_dir)
            raise IdentityError(
                f"cannot build a node of {owner} from data directory {cfg.data_dir} "
                f"({type(exc).__name__}: {exc}); if another protocol or service wrote it, start "
                "the node with those (the traceback is in the log above)"
            ) from None
        if opened_here:
            adopt_owner(cfg.data_dir, owner, fsync=cfg.fsync)  # built from its data: it is this owner's
        if cfg.events_ring > 0:  # before the node starts: its first records are events too
            self.events = EventFeed(
                cfg.node_id,
                self.runtime,
                capacity=cfg.events_ring,
                sample_every=cfg.events_sample,
                heartbeats=heartbeat_types(spec),
                protocol=cfg.protocol,
            )
            self.runtime.events = self.events
        problems = status_problems(self.runtime.node)
        if problems:  # a node without node_status(): nothing to serve /v1/status from
            _close(storage)
            raise ConfigError(
                f"protocol: {cfg.protocol} cannot run in the server ({'; '.join(problems)}); "
                "see docs/server.md, 'What a protocol must offer the server'"
            )
        self._remembered = read_remembered(cfg.data_dir)
        self._written = self._remembered.peers if self._remembered is not None else EMPTY
        self.follow_peers()  # what the node recovered from its disk
        factory = self._transport_factory or _peer_transport
        # A node whose protocol relies on what each node promised keeps a book of its
        # peers' data directories (server/incarnations.py).
        keeps_book = opened_here and not spec.amnesia_safe
        replaceable = MEMBERSHIP_CHANGE in capabilities(self.runtime.node)
        book = incarnation_book(cfg, spec.survives_disk_loss, replaceable) if keeps_book else None
        runtime = self.runtime
        self.levels = ClusterLevels(cfg.cluster_level, lambda: level_of(runtime.node))
        self.transport = factory(
            cfg.node_id,
            cfg.peer_address,
            self._peer_addresses(),
            cfg.secret,
            self.runtime.on_peer_message,
            ssl_server=cfg.tls.server_context() if cfg.tls else None,
            ssl_client=cfg.tls.client_context() if cfg.tls else None,
            tls_identity=cfg.tls.identity() if cfg.tls else None,
            hello=PeerHello(owner.protocol, owner.service, cfg.cluster_id or "", __version__),
            **({"incarnations": book} if book is not None else {}),
            levels=self.levels,
        )
        self.runtime.transport = self.transport
        self.metrics.attach(self.runtime, lambda: getattr(self.transport, "stats", None))
        await self.transport.start()
        try:
            self.api = NodeApi(self)
            self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=2.0)
            await self._runner.setup()
            edge.use_json_errors(self._runner.server)  # malformed HTTP answered as JSON too
            ssl_ctx = cfg.tls.server_context(verify_clients=False) if cfg.tls and cfg.tls.client_api else None
            if ssl_ctx is not None:
                require_client_certs(ssl_ctx, cfg.auth)  # [auth] client_ca: the CN names the user
            host, port = cfg.client_address
            # Every client connection is guarded: timeouts and caps (conn_guard.py).
            fast_site = getattr(self.api.routes, "fast_site", None)
            if ssl_ctx is None and fast_site is not None:  # the service's lean front (e.g. fast_http.py)
                site: GuardedSite = fast_site(self._runner, host, port, self.api, limits=cfg.limits)
            else:
                site = GuardedSite(self._runner, host, port, ssl_context=ssl_ctx, limits=cfg.limits)
            self.client_site = site
            self.metrics.attach_client_connections(site.guards)
            await site.start()
            if urlsplit(cfg.client_url).port == 0:  # asked for any free port: advertise the real one
                scheme = "https" if ssl_ctx is not None else "http"
                url = f"{scheme}://{format_address((host, self.http_port))}"
                self.config = dataclasses.replace(cfg, client_url=url)
        except BaseException:
            await self.transport.stop()
            raise
        self.runtime.start()
        self._peer_follower = asyncio.ensure_future(self._follow_peers_loop())
        if self.service.listeners:
            start = resolve(self.service.listeners)
            try:
                self._close_listeners = await start(self.api, dict(cfg.listen))
            except OSError as exc:  # e.g. the port is taken
                await self.stop()
                raise ConfigError(f"service {self.service.name}: cannot start its listeners: {exc}") from None
        if cfg.session_ttl > 0:  # the leader's clock in the log: client sessions expire
            self.session_clock = SessionClock(
                self.runtime,
                cfg.node_id,
                members=cfg.members,
                session_ttl=cfg.session_ttl,
                max_sessions=cfg.max_sessions,
                timeout=cfg.request_timeout,
            )
            self.session_clock.start()
        if level_of(self.runtime.node) is not None:
            transport = self.transport
            self.level_raiser = LevelRaiser(
                self.runtime,
                cfg.node_id,
                self.levels,
                lambda: _peer_levels(transport),
                members=cfg.members,
                timeout=cfg.request_timeout,
                on_raised=lambda _level: _judge_levels(transport),
            )
            self.level_raiser.start()

    async def stop(self) -> None:
        """Clean shutdown (see the module rules)."""
        await self._stop_peer_follower()
        await self._stop_listeners()
        await self._stop_writers()
        if self.events is not None:
            self.events.close()
        if self.runtime is not None:
            await self.runtime.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.transport is not None:
            await self.transport.stop()
        _close(self._storage)

    async def _stop_writers(self) -> None:
        """Stop what writes into the log on the node's own account."""
        if self.session_clock is not None:
            await self.session_clock.stop()
        if self.level_raiser is not None:
            await self.level_raiser.stop()

    async def _stop_listeners(self) -> None:
        close, self._close_listeners = self._close_listeners, None
        if close is not None:
            try:
                await close()
            except Exception:  # stopping must go on: the node's log says what failed
                log.exception("service %s: closing its listeners failed", self.service.name)

    async def abort(self) -> None:
        """After a halt: stop talking, leave storage as it is on disk (unsynced writes dropped)."""
        await self._stop_peer_follower()
        await self._stop_listeners()
        await self._stop_writers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.transport is not None:
            await self.transport.stop()
        if self.runtime is not None:
            await self.runtime.close()
        # Unlocks the directory, writing nothing: DiskStorage.close drops unsynced writes as
        # a crash would, and a node embedded in a process (tests, a supervisor) can then be
        # started again on it.
        _close(self._storage)

    # ------------------------------------------------------------------ addresses
    @property
    def http_port(self) -> int:
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("HTTP is not serving (call start() first)")
        return int(self._runner.addresses[0][1])

    @property
    def peer_port(self) -> int:
        return int(self.transport.bound_port)

    def directory(self) -> dict[str, PeerInfo]:
        """Every other node we know: peer address and client URL."""
        return self._directory

    def set_directory(self, peers: dict[str, PeerInfo]) -> None:
        """Replace the configured peer table (e.g. once ephemeral ports are known); the
        replicated directory's entries still win over it."""
        self._configured = dict(peers)
        self._merge_directory()

    def add_peer(self, node_id: str, info: PeerInfo) -> None:
        self.set_directory({**self._configured, node_id: info})

    def follow_peers(self) -> None:
        """Take the replicated directory of member addresses (statemachines/peers.py)
        into the peer table when it changed (it is replaced on every change), and keep
        it in the data directory once the node has applied past what that remembers."""
        node = self.runtime.node if self.runtime is not None else None
        recorded = directory_of(node)
        if recorded is None:
            return
        changed = recorded is not self._recorded
        applied = node.log_position().applied if isinstance(node, ReplicatedLog) else None
        if self._remembered is not None and (applied is None or applied >= self._remembered.applied):
            self._remembered, changed = None, True  # the state machine caught up with it
        if not changed:
            return
        self._recorded = recorded
        self._merge_directory()
        if self._remembered is None and applied is not None and recorded != self._written:
            self._remember(Remembered(applied=applied, peers=recorded))

    def _remember(self, remembered: Remembered) -> None:
        try:
            write_remembered(self.config.data_dir, remembered, fsync=self.config.fsync)
        except OSError as exc:  # a hint only: the log still holds every address
            log.warning("cannot keep the member addresses in %s: %s", self.config.data_dir, exc)
            return
        self._written = remembered.peers

    def _merge_directory(self) -> None:
        merged = dict(self._configured)
        remembered = self._remembered.peers if self._remembered is not None else EMPTY
        for node_id, (address, url) in {**self._recorded, **remembered}.items():
            try:
                peer_address = parse_address(address, "peer_address")
            except ConfigError:  # checked where it was applied; this node cannot use it
                log.warning("recorded peer address %r of %s is unusable here", address, node_id)
                continue
            merged[node_id] = PeerInfo(peer_address=peer_address, client_url=url)
        self._directory = {p: info for p, info in sorted(merged.items()) if p != self.config.node_id}
        if self.transport is not None:
            self.transport.update_peers(self._peer_addresses())

    async def _follow_peers_loop(self) -> None:
        while True:
            await asyncio.sleep(PEERS_LOOK)
            self.follow_peers()

    async def _stop_peer_follower(self) -> None:
        task, self._peer_follower = self._peer_follower, None
        await cancel_and_wait(task)

    def set_blocked(self, peers: set[str]) -> None:
        self.transport.set_blocked(peers)
        if self.events is not None:
            self.events.fault("block", peers=sorted(peers))

    def transport_status(self) -> dict[str, dict[str, Any]]:
        stats = getattr(self.transport, "stats", None)
        peers = getattr(stats, "peers", None) or {}
        levels = _peer_levels(self.transport)
        return {
            p: {
                "connected": bool(getattr(s, "connected", False)),
                "refused": getattr(s, "refused", None),
                "level": levels.get(p),
                "awaiting_level": bool(getattr(s, "awaiting_level", False)),
            }
            for p, s in peers.items()
        }

    def cluster_level(self) -> dict[str, Any]:
        """What ``/v1/status`` says of the cluster level (server/cluster_level.py)."""
        return {
            "applied": level_of(self.runtime.node) if self.runtime is not None else None,
            "offered": self.config.cluster_level,
        }

    def _peer_addresses(self) -> dict[str, tuple[str, int]]:
        return {p: info.peer_address for p, info in self._directory.items()}


def _close(storage: Any) -> None:
    close = getattr(storage, "close", None)
    if close is not None:
        close()


def _peer_levels(transport: Any) -> dict[str, int]:
    """The levels ``transport``'s peers offer (a test's transport may know none)."""
    peer_levels = getattr(transport, "peer_levels", None)
    return peer_levels() if peer_levels is not None else {}


def _judge_levels(transport: Any) -> None:
    judge = getattr(transport, "judge_levels", None)
    if judge is not None:
        judge()


def _peer_transport(*args: Any, **kwargs: Any) -> Any:
    return PeerTransport(*args, **kwargs)


def incarnation_book(config: ServerConfig, rejoins: bool, replaceable: bool) -> IncarnationBook | None:
    """The node's book of incarnations, from the identity its data directory holds
    (``rejoins``: the protocol takes a node back after a disk loss, with --rejoin;
    ``replaceable``: its nodes change membership)."""
    identity = read_identity(config.data_dir)
    if identity is None or identity.incarnation is None or identity.origin is None:
        return None  # open_data_dir gives every directory one: a test's storage
    return IncarnationBook(
        config.node_id,
        identity.incarnation,
        identity.origin,
        config.data_dir,
        fsync=config.fsync,
        protocol=config.protocol,
        rejoins=rejoins,
        replaceable=replaceable,
        founders=identity.founders or (),
    )


def open_storage(config: ServerConfig, owner: Owner | None = None) -> DurableStorage:
    storage: DiskStorage = open_data_dir(
        config.data_dir,
        config.node_id,
        cluster_id=config.cluster_id,
        voter=config.node_id in config.members,
        bootstrap=config.bootstrap,
        rejoin=config.rejoin,
        fsync=config.fsync,
        owner=owner,
        members=config.members,
    )
    for note in getattr(storage, "recovery_notes", ()) or ():
        log.warning("node %s recovery: %s", config.node_id, note)
    return storage


async def serve(config: ServerConfig, *, stop: asyncio.Event | None = None) -> int:
    """Run one node until SIGTERM/SIGINT (or ``stop`` is set); returns the exit status."""
    gc_watch.install()  # one node per process: its collector's pauses are the node's
    # Client connections must leave the storage its descriptors (server/open_files.py).
    listeners = 1 + len(config.listen)  # HTTP, and the service's own (etcd's gRPC)
    cap = connection_cap(config.limits.max_connections, raise_open_file_limit(), listeners)
    if cap != config.limits.max_connections:
        config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_connections=cap))
    server = NodeServer(config)
    try:
        await server.start()
    except (CorruptLogError, DirectoryInUseError) as exc:
        log.error("node %s refuses to start: %s", config.node_id, exc)
        return EXIT_FAILED
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        log.error("node %s cannot start: %s", config.node_id, exc)
        return EXIT_FAILED
    frozen = gc_watch.freeze_startup()  # full collections skip the imports (gc_watch.py)
    gc_watch.raise_young_threshold()  # what is in flight dies young (gc_watch.py)
    log.debug("node %s: %d objects frozen out of garbage collection", config.node_id, frozen)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    ready = {
        "id": config.node_id,
        "pid": os.getpid(),
        "client_url": server.config.client_url,
        "http_port": server.http_port,
        "peer_address": format_address((config.peer_address[0], server.peer_port)),
    }
    log.info("node %s ready: %s", config.node_id, json.dumps(ready))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopping, server.runtime.halted], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if server.runtime.failure is not None:
        await server.abort()
        advice = disk_full_advice(server.runtime.failure, config.data_dir)
        if advice:
            log.critical("node %s: %s", config.node_id, advice)
        log.critical("node %s exits after halting (status %d)", config.node_id, EXIT_HALTED)
        return EXIT_HALTED
    log.info("node %s stopping", config.node_id)
    await server.stop()
    log.info("node %s stopped", config.node_id)
    return EXIT_OK


def disk_full_advice(failure: BaseException, data_dir: Path) -> str | None:
    """The operator's way out when the node halted because its disk is full, else None.

    A full disk is the one storage failure an operator fixes in a minute, so it gets its own
    line instead of only the OSError: what was written but not synced was never
    acknowledged, and recovery discards the torn tail the failed write left."""
    if not isinstance(failure, OSError) or failure.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    try:
        free = f"{shutil.disk_usage(data_dir).free:,} bytes free now"
    except OSError:
        free = "free space unknown"
    return (
        f"the disk holding {data_dir} is full ({free}): free space there and start the node "
        "again; every write it acknowledged is on disk, and it catches up from its peers"
    )


def run(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional in spirit
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def build_config(
    config: Path | None = None,
    *,
    peer: list[str] | None = None,
    option: list[str] | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
    bootstrap: bool | None = None,
    rejoin: bool | None = None,
    **flags: Any,
) -> ServerConfig:
    """Config file + flags (``None`` = not given) -> ``ServerConfig``; raises ConfigError."""
    if bootstrap and rejoin:
        raise ConfigError("--bootstrap and --rejoin exclude each other: a new cluster, or a lost disk")
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    for key in ("data_dir", "secret_file", "admin_token_file"):
        if key in overrides:
            overrides[key] = str(overrides[key])
    if "members" in overrides and isinstance(overrides["members"], str):
        overrides["members"] = [m for m in overrides["members"].split(",") if m]
    if peer:
        overrides["peers"] = dict(parse_peer_flag(p) for p in peer)
    if option:
        overrides["options"] = _parse_options(option)
    tls = {k: str(v) for k, v in (("cert", tls_cert), ("key", tls_key), ("ca", tls_ca)) if v is not None}
    if tls:
        overrides["tls"] = tls
    cfg = load_config(config, overrides)
    return dataclasses.replace(cfg, bootstrap=bool(bootstrap), rejoin=bool(rejoin))


def protocol_key(secret: bytes) -> bytes:
    """The key protocols authenticate with (core/env.py ``cluster_key``): derived from the
    cluster secret, so no protocol message can reveal the secret the handshake checks."""
    return hmac.new(secret, b"consensuskit protocol key v1", hashlib.sha256).digest()


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def serve_command(config: Path | None = None, **flags: Any) -> int:
    """The ``consensuskit server`` entry: returns the process exit status.

    ``flags`` are the settings of ``server/config.py`` by name (``id``, ``peer_address``,
    ``client_address``, ``data_dir``, ...), plus ``peer`` (list of ``ID=HOST:PORT,URL``),
    ``option`` (list of ``KEY=JSON``), ``tls_cert``/``tls_key``/``tls_ca``, and the
    ``bootstrap``/``rejoin`` flags (server/identity.py).
    """
    try:
        cfg = build_config(config, **flags)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(cfg)
    try:
        return int(run(serve(cfg)))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def configure_logging(cfg: ServerConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper()),
        format=f"%(asctime)s %(levelname)s [{cfg.node_id}] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m consensuskit.server.main --config node.toml [flags]`` (no typer needed)."""
    import argparse

    parser = argparse.ArgumentParser(prog="consensuskit-server", description="Run one consensuskit node.")
    parser.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    for name in (*NODE_IDENTITY, "tls_cert", "tls_key", "tls_ca", "log_level"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name)
    parser.add_argument("--max-value-bytes", dest="max_value_bytes", type=int)
    parser.add_argument("--request-timeout", dest="request_timeout", type=float)
    for name in ("header_timeout", "body_timeout", "idle_timeout"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=float)
    parser.add_argument("--max-connections", dest="max_connections", type=int)
    parser.add_argument("--max-buffered-bytes", dest="max_buffered_bytes", type=int)
    parser.add_argument("--session-ttl", dest="session_ttl", type=float)
    parser.add_argument("--max-sessions", dest="max_sessions", type=int)
    parser.add_argument("--cluster-level", dest="cluster_level", type=int)
    parser.add_argument("--inline-sync-bytes", dest="inline_sync_bytes", type=int)
    parser.add_argument("--events-ring", dest="events_ring", type=int)
    parser.add_argument("--events-sample", dest="events_sample", type=int)
    parser.add_argument("--fsync", dest="fsync", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--enable-fault-injection", dest="enable_fault_injection", action="store_true", default=None
    )
    parser.add_argument(
        "--bootstrap",
        action="store_true",
        default=None,
        help="an empty data directory is the first start of a new cluster",
    )
    parser.add_argument(
        "--rejoin",
        action="store_true",
        default=None,
        help="this node lost its disk: rejoin as a learner, vote again once caught up",
    )
    parser.add_argument("--peer", action="append", help="ID=HOST:PORT,CLIENT_URL (repeatable)")
    parser.add_argument("--option", action="append", help="protocol option KEY=VALUE (JSON value)")
    args = vars(parser.parse_args(argv))
    config = args.pop("config")
    return serve_command(config, **args)


if __name__ == "__main__":
    sys.exit(main())
