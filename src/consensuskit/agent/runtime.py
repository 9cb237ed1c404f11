"""One membership agent process: a ``SwimNode`` on asyncio sockets.

Rules this module owns:
  * a member's id is its address ``HOST:PORT`` (the UDP and TCP port are the same
    number); SWIM messages go by UDP, ``PushPull`` by one TCP connection per message;
  * every packet is sealed (keyring.py); whatever fails to open, to decode, or to be
    handled is dropped and counted (``stats``), never raised out of the agent;
  * the TCP listener takes two kinds of connection, told apart by the first byte:
    ``0x01`` + 4-byte length + a sealed packet (push-pull), or ``0x02`` + a query line
    (``members`` or ``stats``) answered in plain JSON: the query is read-only and is what
    ``consensuskit members --agent`` uses, so anyone who can reach the port may read the
    member list (as Serf's RPC without a token).  At most ``MAX_TCP_CONNECTIONS`` are
    served at once; one more is closed at once and counted (``refused_tcp``);
  * the incarnation lives in ``DATA_DIR/incarnation.json`` (written and fsynced before the
    handler that raised it returns, so before any message announcing it leaves): a
    restarted agent comes back one above it;
  * timers run on the event loop's monotonic clock; SIGTERM/SIGINT make the agent leave
    (announce ``left``, gossip it for a probe interval) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from consensuskit.agent.keyring import Keyring
from consensuskit.core.client import ClientResponse
from consensuskit.core.messages import CodecError, decode, encode
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.swim import SwimNode, SwimOptions
from consensuskit.protocols.swim.messages import PushPull

FRAME = 1
QUERY = 2
MAX_FRAME = 8 << 20
# TCP connections served at once (memberlist's maxPushPullRequests); one more is closed at
# once and counted: anyone who reaches the port can open them, each may hold MAX_FRAME.
MAX_TCP_CONNECTIONS = 128


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)


class FileStorage(MemoryStorage):
    """Named records kept in one JSON file; each ``put`` is durable when it returns."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self.values: dict[str, Any] = {}
        if path is not None and path.exists():
            try:
                self.values = dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                raise ValueError(f"unreadable agent state {path}: {exc}") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.values, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class AgentEnv:
    """The real Env of a SWIM member (core/env.py)."""

    def __init__(self, agent: Agent, storage: FileStorage) -> None:
        self.agent = agent
        self.node_id = agent.id
        self.rng = random.Random(os.urandom(16))
        self.storage = storage
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def now(self) -> float:
        return time.monotonic()

    def send(self, dst: str, msg: Any) -> None:
        self.agent.send(dst, msg)

    def set_timer(self, key: str, delay: float) -> None:
        self.cancel_timer(key)
        self._timers[key] = asyncio.get_running_loop().call_later(max(0.0, delay), self.agent.fire, key)

    def cancel_timer(self, key: str) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def fired(self, key: str) -> None:
        self._timers.pop(key, None)

    def cancel_all(self) -> None:
        for key in list(self._timers):
            self.cancel_timer(key)

    def deliver(self, response: ClientResponse) -> None:
        pass  # an agent has no clients: queries are answered by the listener

    def record(self, kind: str, **fields: Any) -> None:
        self.agent.log(kind, fields)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.agent.on_packet(data)

    def error_received(self, exc: Exception) -> None:
        self.agent.stats["udp_errors"] += 1


class Agent:
    def __init__(
        self,
        bind: str,
        key: bytes,
        join: list[str] | None = None,
        data_dir: Path | None = None,
        options: dict[str, Any] | None = None,
        verbose: bool = True,
    ) -> None:
        split_address(bind)
        for seed in join or []:
            split_address(seed)
        self.id = bind
        self.keyring = Keyring(key, bind)
        self.verbose = verbose
        self.stats: Counter[str] = Counter()
        opts = dict(options or {})
        seeds = tuple(s for s in (join or []) if s != bind)
        if seeds:
            opts["join"] = seeds
        self.options = SwimOptions.from_dict(opts)
        storage = FileStorage(data_dir / "incarnation.json" if data_dir is not None else None)
        self.env = AgentEnv(self, storage)
        self.node: SwimNode | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.server: asyncio.base_events.Server | None = None
        self.stopping = asyncio.Event()
        self._tcp_open = 0  # TCP connections being served (MAX_TCP_CONNECTIONS)

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = split_address(self.id)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
        self.server = await asyncio.start_server(self._on_tcp, host, port)
        self.node = SwimNode(self.id, self.env, [self.id], self.options)
        self.node.on_start()
        self.log("ready", {"incarnation": self.node.incarnation, "join": list(self.options.join)})

    async def leave_and_stop(self) -> None:
        if self.node is not None and not self.node.left:
            self.node.leave()
            await asyncio.sleep(self.options.probe_interval)
        self.close()

    def close(self) -> None:
        self.env.cancel_all()
        if self.transport is not None:
            self.transport.close()
        if self.server is not None:
            self.server.close()
        self.stopping.set()

    # ------------------------------------------------------------------ inputs
    def fire(self, key: str) -> None:
        self.env.fired(key)
        self._guard(lambda node: node.on_timer(key))

    def on_packet(self, data: bytes) -> None:
        opened = self.keyring.open(data)
        if opened is None:
            return
        sender, payload = opened
        try:
            msg = decode(payload)
        except (CodecError, ValueError, TypeError):
            self.stats["undecodable"] += 1
            return
        self._guard(lambda node: node.on_message(sender, msg))

    def _guard(self, fn: Any) -> None:
        node = self.node
        if node is None:
            return
        try:
            fn(node)
        except Exception as exc:  # a peer's message must never take the agent down
            self.stats["handler_errors"] += 1
            self.log("error", {"error": f"{type(exc).__name__}: {exc}"})

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_open >= MAX_TCP_CONNECTIONS:
            self.stats["refused_tcp"] += 1
            writer.close()
            return
        self._tcp_open += 1
        try:
            kind = (await asyncio.wait_for(reader.readexactly(1), 5.0))[0]
            if kind == FRAME:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 5.0), "big")
                if size > MAX_FRAME:
                    self.stats["oversized"] += 1
                    return
                self.on_packet(await asyncio.wait_for(reader.readexactly(size), 10.0))
            elif kind == QUERY:
                line = (await asyncio.wait_for(reader.readline(), 5.0)).decode("ascii", "replace").strip()
                writer.write(json.dumps(self.query(line)).encode() + b"\n")
                await writer.drain()
            else:
                self.stats["garbage_tcp"] += 1
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            self.stats["broken_tcp"] += 1
        finally:
            self._tcp_open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def query(self, line: str) -> Any:
        node = self.node
        if node is None:
            return {"error": "not started"}
        if line == "members":
            return node.member_list()
        if line == "stats":
            dropped = {**self.keyring.stats(), **dict(self.stats), "malformed_updates": node.malformed}
            return {
                "id": self.id,
                "incarnation": node.incarnation,
                "health": node.awareness.score,
                "refutations": node.refutations,
                "sent": node.sent,
                "dropped": dropped,
            }
        return {"error": f"unknown query {line!r}; valid: members, stats"}

    # ------------------------------------------------------------------ outputs
    def send(self, dst: str, msg: Any) -> None:
        try:
            host, port = split_address(dst)
        except ValueError:
            self.stats["bad_address"] += 1
            return
        packet = self.keyring.seal(encode(msg))
        if isinstance(msg, PushPull):
            asyncio.get_running_loop().create_task(self._tcp_send(host, port, packet))
        elif self.transport is not None:
            self.transport.sendto(packet, (host, port))

    async def _tcp_send(self, host: str, port: int, packet: bytes) -> None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
            writer.write(bytes([FRAME]) + len(packet).to_bytes(4, "big") + packet)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (TimeoutError, OSError):
            self.stats["push_pull_failed"] += 1

    def log(self, kind: str, fields: dict[str, Any]) -> None:
        if self.verbose:
            parts = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"{time.strftime('%H:%M:%S')} {self.id} {kind} {parts}", file=sys.stderr, flush=True)


async def serve(agent: Agent) -> None:
    await agent.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(agent.leave_and_stop()))
    await agent.stopping.wait()


def query(address: str, line: str, timeout: float = 5.0) -> Any:
    """Ask an agent (``members`` or ``stats``); OSError or ValueError when it cannot answer."""
    import socket

    host, port = split_address(address)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(bytes([QUERY]) + line.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks))
