"""In-process clusters of real NodeServers on 127.0.0.1 for the runtime and HTTP tests.

Each node gets ephemeral ports: every server binds first, then learns the others' real
addresses (``NodeServer.set_directory``).  The peer transport is the real TCP one by
default, or ``LoopbackNetwork`` (in-memory, still through the codec) where a test wants
the network out of the picture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from consensuskit.core.messages import decode, encode
from consensuskit.server.config import PeerInfo, ServerConfig, load_config
from consensuskit.server.main import NodeServer
from consensuskit.server.runtime import DurableStorage
from consensuskit.server.transport import PeerTransport
from consensuskit.statemachines.levels import RELEASE_LEVEL

ADMIN_TOKEN = "test-admin-token"
FAST_RAFT = {"election_timeout": 0.3, "heartbeat_interval": 0.05}


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test body on a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


# ---------------------------------------------------------------------- loopback network
@dataclass
class _PeerStats:
    frames_sent: int = 0
    frames_received: int = 0
    dropped_blocked: int = 0
    connected: bool = True


@dataclass
class _Stats:
    peers: dict[str, _PeerStats] = field(default_factory=dict)


class LoopbackNetwork:
    """Messages between transports of one process, encoded and decoded like on the wire."""

    def __init__(self) -> None:
        self.transports: dict[str, LoopbackTransport] = {}

    def factory(
        self, node_id: str, listen: Any, peers: dict[str, Any], secret: bytes, on_message: Any, **_: Any
    ):
        transport = LoopbackTransport(self, node_id, peers, on_message)
        self.transports[node_id] = transport
        return transport


class LoopbackTransport:
    def __init__(self, net: LoopbackNetwork, node_id: str, peers: dict[str, Any], on_message: Any) -> None:
        self.net = net
        self.node_id = node_id
        self.peers = set(peers)
        self.on_message = on_message
        self.blocked: set[str] = set()
        self.running = False
        self._stats = _Stats({p: _PeerStats() for p in sorted(self.peers)})

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    @property
    def bound_port(self) -> int:
        return 1

    def update_peers(self, peers: dict[str, Any]) -> None:
        self.peers = set(peers) - {self.node_id}
        for p in self.peers:
            self._stats.peers.setdefault(p, _PeerStats())

    def set_blocked(self, peers: set[str]) -> None:
        self.blocked = set(peers)

    def peer_levels(self) -> dict[str, int]:
        """Every running peer offers this release's cluster level (server/cluster_level.py)."""
        running = self.net.transports
        return {p: RELEASE_LEVEL for p in self.peers if p in running and running[p].running}

    @property
    def stats(self) -> _Stats:
        return self._stats

    def send(self, dst: str, msg: Any) -> None:
        dest = self.net.transports.get(dst)
        if not self.running or dest is None or not dest.running or dst not in self.peers:
            return
        if dst in self.blocked or self.node_id in dest.blocked:
            self._stats.peers[dst].dropped_blocked += 1
            return
        self._stats.peers[dst].frames_sent += 1
        data = encode(msg)
        asyncio.get_running_loop().call_soon(dest._receive, self.node_id, data)

    def _receive(self, src: str, data: bytes) -> None:
        if self.running and src not in self.blocked:
            self.on_message(src, decode(data))


# ---------------------------------------------------------------------- clusters
def node_config(base: Path, node_id: str, ids: list[str], **settings: Any) -> ServerConfig:
    base.mkdir(parents=True, exist_ok=True)
    secret = base / "secret"
    if not secret.exists():
        secret.write_text("cluster-secret-for-tests\n")
    token = base / "admin-token"
    if not token.exists():
        token.write_text(ADMIN_TOKEN + "\n")
    raw: dict[str, Any] = {
        "id": node_id,
        "peer_address": "127.0.0.1:0",
        "client_address": "127.0.0.1:0",
        "data_dir": str(base / node_id),
        "secret_file": str(secret),
        "admin_token_file": str(token),
        "request_timeout": 3.0,
        "peers": {
            p: {"peer_address": "127.0.0.1:1", "client_url": "http://127.0.0.1:1"}
            for p in ids
            if p != node_id
        },
        "options": dict(FAST_RAFT),
    }
    raw.update(settings)
    # Fresh clusters: an empty data directory is a first start (--bootstrap is ignored
    # once the directory holds data, so restarts are unaffected).
    return dataclasses.replace(load_config(None, raw), bootstrap=True)


class Cluster:
    def __init__(
        self,
        base: Path,
        ids: list[str],
        *,
        transport: str = "tcp",
        storage: Callable[[str], DurableStorage] | None = None,
        transport_options: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.base = base
        # PeerTransport keyword options (tcp only): small frames, short queues.
        self.transport_options = dict(transport_options or {})
        self.ids = list(ids)
        self.settings = settings
        self.network = LoopbackNetwork() if transport == "loopback" else None
        # None: each node opens DiskStorage in its data_dir (so a restart recovers from disk).
        self.make_storage = storage
        self.storages: dict[str, DurableStorage] = {}
        self.servers: dict[str, NodeServer] = {}
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Cluster:
        self.http = aiohttp.ClientSession()
        for node_id in self.ids:
            await self.start_node(node_id, wire=False)
        self.wire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for server in self.servers.values():
            await server.stop()
        if self.http is not None:
            await self.http.close()

    async def start_node(
        self, node_id: str, *, wire: bool = True, members: list[str] | None = None, **settings: Any
    ) -> NodeServer:
        """Start ``node_id``; ``settings`` override the cluster's for this node only."""
        settings = {**self.settings, **settings}
        if members is not None:
            settings["members"] = members
        config = node_config(self.base, node_id, self.ids, **settings)
        if self.make_storage is not None and node_id not in self.storages:
            self.storages[node_id] = self.make_storage(node_id)
        factory = self.network.factory if self.network is not None else None
        if factory is None and self.transport_options:
            options = self.transport_options

            def factory(*args: Any, **kwargs: Any) -> PeerTransport:
                return PeerTransport(*args, **{**kwargs, **options})

        server = NodeServer(config, storage=self.storages.get(node_id), transport_factory=factory)
        await server.start()
        self.servers[node_id] = server
        if wire:
            self.wire()
        return server

    async def stop_node(self, node_id: str) -> None:
        await self.servers.pop(node_id).stop()

    def wire(self) -> None:
        """Tell every running server the real ports of the others."""
        directory = {
            i: PeerInfo(peer_address=("127.0.0.1", s.peer_port), client_url=self.url(i))
            for i, s in self.servers.items()
        }
        for server in self.servers.values():
            server.set_directory(directory)

    def url(self, node_id: str) -> str:
        return f"http://127.0.0.1:{self.servers[node_id].http_port}"

    def leaders(self) -> list[str]:
        return [i for i, s in self.servers.items() if s.runtime.node.status()["role"] == "leader"]

    async def wait_leader(self, timeout: float = 10.0, exclude: tuple[str, ...] = ()) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [i for i in self.leaders() if i not in exclude]
            if len(leaders) == 1:
                leader = leaders[0]
                node = self.servers[leader].runtime.node
                if node.commit_index >= node.term_start_index:  # ready: its no-op committed
                    return leader
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no leader within {timeout}s: {[s.runtime.node.status() for s in self.servers.values()]}"
        )

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.02)

    async def call(
        self, method: str, node_id: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        """One HTTP request; returns (status, decoded JSON or text, headers)."""
        assert self.http is not None
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url(node_id) + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            if resp.content_type == "application/json":
                import json

                return resp.status, json.loads(raw), resp.headers
            return resp.status, raw.decode("utf-8", "replace"), resp.headers
