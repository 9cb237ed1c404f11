"""The live side of the browser view: a running cluster as a ``LiveSource`` (view/source.py).

Rules this module owns:
  * one websocket per node to its ``GET /v1/events`` (server/events.py), with the admin
    token when there is one; the streams are merged into one, in arrival order;
  * a record keeps its node's ``seq``; ``t`` is rewritten to seconds since this source
    started (from the node's ``epoch``), so every node is on one clock; the node's own
    ``t`` stays as ``t_node``;
  * records this source makes itself advance no ``seq``: ``{"ev": "snapshot", ...}``
    when a node's stream (re)starts anywhere but right after the last record seen
    carries the ``seq`` the stream goes on after (the page expects ``seq + 1`` next;
    ``status`` is the node's status then); ``{"ev": "fault", ...}`` records carry no
    ``seq``: ``"kind": "down"`` when a node's stream breaks (killed, paused past the
    websocket heartbeat, stopped), and one per action done (``crash`` for a kill,
    ``restart``, ``pause``, ``resume``, ``partition`` with ``groups``, ``heal``), so
    the faults are on the timeline;
  * a record whose ``seq`` is not the last + 1 is a gap: it is not passed on; the stream
    is reopened with ``since`` = the last seq seen, so the node replays what is missing
    from its ring, or says with a snapshot that it cannot (``gaps`` counts them);
  * a broken stream is reopened every ``RETRY`` seconds until ``close``: a restarted
    node is found again (a new incarnation: its events from its first on);
  * actions never raise: every answer is ``{"ok": bool, "detail": one line}``; an
    action that cannot be done here (no admin token, fault injection disabled, no
    process control) says so.  ``partition``/``heal`` use each node's
    ``/v1/debug/faults`` block list, ``transfer`` ``/v1/leader/transfer``, ``put``/``get``
    the kv client, and ``kill``/``restart``/``pause``/``resume`` a ``NodeControl``:
    the ``up`` process's own (``ClusterControl``: SIGKILL, start again as ``up`` does,
    SIGSTOP, SIGCONT), else ``PidControl`` (the pid a node on this host reports, and
    the launch that /proc shows for it when its stream opens: a restart stops the node
    if it runs and starts that command again, in the same directory with the same
    environment, its output appended where it went before);
  * ``ClusterView`` is ``consensuskit up --view``: the page (view/app.py) on this source,
    served from a thread of ``up``'s own, stopped before ``up`` stops the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from consensuskit.client import AsyncClient, ClientError, NotFound, parse_endpoints
from consensuskit.view.source import check_action

RETRY = 0.25  # seconds between two attempts to reopen a node's stream
CONNECT_TIMEOUT = 2.0
ACTION_TIMEOUT = 10.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# The fault record each action leaves on the timeline (the simulator's kinds: sim/nemesis.py).
FAULT_KINDS = {
    "kill": "crash",
    "restart": "restart",
    "pause": "pause",
    "resume": "resume",
    "partition": "partition",
    "heal": "heal",
}


class NodeControl(Protocol):
    """What can be done to a node's process; each returns a one-line detail or raises
    ``ActionRefused`` (a one-line reason)."""

    async def kill(self, node: str) -> str: ...

    async def restart(self, node: str) -> str: ...

    async def pause(self, node: str) -> str: ...

    async def resume(self, node: str) -> str: ...


class ActionRefused(Exception):
    """An action that cannot be done here; ``str()`` is one line saying why."""


class ClusterControl:
    """The processes of ``consensuskit up`` (a ``server.cluster.LocalCluster``), acted on
    in a worker thread (a kill or a stop reaps the process: it may take a moment)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def _process(self, node: str) -> Any:
        process = self.cluster.nodes.get(node)
        if process is None:
            raise ActionRefused(f"no node {node!r}; nodes: {', '.join(self.cluster.nodes)}")
        return process

    async def kill(self, node: str) -> str:
        process = self._process(node)
        if not process.running:
            raise ActionRefused(f"{node} is not running")
        pid = process.pid
        await asyncio.to_thread(process.kill)
        return f"{node} (pid {pid}) killed with SIGKILL"

    async def restart(self, node: str) -> str:
        process = self._process(node)
        if process.running:
            await asyncio.to_thread(process.restart)
            return f"{node} stopped and started again (pid {process.pid})"
        await asyncio.to_thread(process.start)
        return f"{node} started again (pid {process.pid})"

    async def pause(self, node: str) -> str:
        process = self._process(node)
        if not process.running:
            raise ActionRefused(f"{node} is not running")
        process.pause()
        return f"{node} (pid {process.pid}) paused with SIGSTOP"

    async def resume(self, node: str) -> str:
        process = self._process(node)
        if not process.running:
            raise ActionRefused(f"{node} is not running")
        process.resume()
        return f"{node} (pid {process.pid}) resumed with SIGCONT"


@dataclass(frozen=True, slots=True)
class Launch:
    """How a local node process was started, as /proc shows it: enough to start it again."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    output: str | None  # the regular file its stdout went to (its log), if any

    @classmethod
    def of(cls, pid: int) -> Launch | None:
        """The launch of ``pid``, or None where /proc does not tell it (another user's
        process, not Linux, already gone)."""
        proc = Path(f"/proc/{pid}")
        try:
            argv = tuple(
                a.decode(errors="surrogateescape") for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            )
            cwd = os.readlink(proc / "cwd")
            env = dict(
                item.decode(errors="surrogateescape").partition("=")[::2]
                for item in (proc / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
            stdout = os.readlink(proc / "fd" / "1")
        except OSError:
            return None
        if not argv:
            return None  # a zombie: it shows no command line
        output = stdout if stdout.startswith("/") and Path(stdout).is_file() else None
        # A restart is never a cluster's first start.
        return cls(tuple(a for a in argv if a != "--bootstrap"), cwd, env, output)


def _pid_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (gone, or a zombie its parent has not reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


class PidControl:
    """Signals to the pid a node reports in its snapshot, when it runs on this host; a
    restart starts the command /proc showed for it again (``Launch``)."""

    STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL on a restart

    def __init__(self, source: LiveCluster) -> None:
        self.source = source
        self.started: list[subprocess.Popen[bytes]] = []  # kept so that they are reaped

    def _pid(self, node: str) -> int:
        url = self.source.urls.get(node)
        if url is None:
            raise ActionRefused(f"no node {node!r}; nodes: {', '.join(self.source.node_ids)}")
        if not self.source.local(node):
            raise ActionRefused(f"{node} runs on another host ({url}): its process is out of reach")
        pid = self.source.pids.get(node)
        if pid is None:
            raise ActionRefused(f"{node}'s pid is unknown (its event stream never opened)")
        return pid

    def _signal(self, node: str, sig: signal.Signals) -> int:
        pid = self._pid(node)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            raise ActionRefused(f"{node} (pid {pid}) is not running") from None
        except PermissionError:
            raise ActionRefused(f"not allowed to signal {node} (pid {pid})") from None
        return pid

    async def kill(self, node: str) -> str:
        return f"{node} (pid {self._signal(node, signal.SIGKILL)}) killed with SIGKILL"

    async def restart(self, node: str) -> str:
        pid = self._pid(node)
        launch = self.source.launches.get(node)
        if launch is None:
            raise ActionRefused(
                f"{node}'s command line is unknown (/proc did not show it): restart it where it was "
                "started, or run the cluster with `consensuskit up --view`"
            )
        if not _pid_gone(pid):
            await asyncio.to_thread(self._stop, pid)
        process = await asyncio.to_thread(self._launch, launch)
        return f"{node} started again (pid {process.pid})"

    def _stop(self, pid: int) -> None:
        """SIGTERM (after SIGCONT, so a paused node can act on it), wait, then SIGKILL."""
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + self.STOP_GRACE
        while not _pid_gone(pid):
            if time.monotonic() > end:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                end = float("inf")
            time.sleep(0.02)

    def _launch(self, launch: Launch) -> subprocess.Popen[bytes]:
        self.started = [p for p in self.started if p.poll() is None]
        try:
            log = open(launch.output, "ab") if launch.output else None  # noqa: SIM115 - closed below
        except OSError:
            log = None
        try:
            if log is not None:
                log.write(f"--- consensuskit view: starting again at {time.ctime()}\n".encode())
                log.flush()
            try:
                process = subprocess.Popen(
                    launch.argv,
                    cwd=launch.cwd,
                    env=launch.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log if log is not None else subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # it outlives this page's process
                )
            except OSError as exc:
                raise ActionRefused(f"could not start {launch.argv[0]}: {exc.strerror or exc}") from None
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor
        self.started.append(process)
        return process

    async def pause(self, node: str) -> str:
        return f"{node} (pid {self._signal(node, signal.SIGSTOP)}) paused with SIGSTOP"

    async def resume(self, node: str) -> str:
        return f"{node} (pid {self._signal(node, signal.SIGCONT)}) resumed with SIGCONT"


class LiveCluster:
    """A ``LiveSource`` over the nodes at ``urls`` (node id -> client URL)."""

    def __init__(
        self,
        urls: dict[str, str],
        admin_token: str | None,
        *,
        control: NodeControl | None = None,
        retry: float = RETRY,
        protocol: str | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.protocol = protocol  # the catalog name, when known (else from a snapshot)
        self.node_ids: list[str] = list(self.urls)
        self.admin_token = admin_token
        self.control: NodeControl = control if control is not None else PidControl(self)
        self.retry = retry
        self.origin = time.time()  # t = 0 of every record this source gives
        self.last: dict[str, int] = {}  # node -> the last seq passed on
        self.incarnations: dict[str, str] = {}
        self.epochs: dict[str, float] = {}
        self.pids: dict[str, int] = {}
        self.launches: dict[str, Launch] = {}  # how each local node was started (PidControl)
        self.connected: dict[str, bool] = dict.fromkeys(self.node_ids, False)
        self.gaps: dict[str, int] = dict.fromkeys(self.node_ids, 0)
        self.received = 0  # records passed on
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self._client: AsyncClient | None = None
        self._closed = False

    # ------------------------------------------------------------------ records
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        self._http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(node)) for node in self.node_ids]

    async def records(self) -> AsyncIterator[dict[str, Any]]:
        """Every node's records, merged (see the module rules), until ``close``."""
        self._start()
        while not self._closed:
            record = await self._queue.get()
            if record.get("ev") == "closed":
                return
            yield record

    async def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once every node's stream is open (tests, ``up --view``)."""
        self._start()
        end = time.monotonic() + timeout
        while not all(self.connected.values()):
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.05)
        return True

    def _t(self, node: str, t: float) -> float:
        return round(self.epochs.get(node, self.origin) + t - self.origin, 6)

    async def _follow(self, node: str) -> None:
        url = self.urls[node]
        while not self._closed:
            query: dict[str, str] = {}
            if node in self.last:
                query["since"] = str(self.last[node])
                if node in self.incarnations:
                    query["incarnation"] = self.incarnations[node]
            try:
                assert self._http is not None
                async with self._http.ws_connect(
                    url.rstrip("/") + "/v1/events",
                    params=query,
                    headers=self._headers(),
                    timeout=aiohttp.ClientWSTimeout(ws_close=CONNECT_TIMEOUT),
                    heartbeat=5.0,
                    max_msg_size=0,
                ) as ws:
                    await self._read(node, ws)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._down(node, str(exc) or type(exc).__name__)
            else:
                self._down(node, "stream closed")
            if not self._closed:
                await asyncio.sleep(self.retry)

    def _down(self, node: str, reason: str) -> None:
        if self.connected.get(node):
            self.connected[node] = False
            self._emit(
                {
                    "t": round(time.time() - self.origin, 6),
                    "ev": "fault",
                    "kind": "down",
                    "node": node,
                    "reason": reason[:200],
                }
            )

    def _emit(self, record: dict[str, Any]) -> None:
        self._queue.put_nowait(record)

    async def _read(self, node: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                data = json.loads(msg.data)
            except ValueError:
                break  # not the feed we know: reopen
            if "snapshot" in data:
                self._on_snapshot(node, data["snapshot"])
            elif "records" in data and not self._on_records(node, data["records"]):
                self.gaps[node] += 1
                return  # reopen with since = the last seq seen
        # The loop ends when the node closes the stream.

    def local(self, node: str) -> bool:
        """Whether ``node``'s URL is on this host (its process is within reach)."""
        url = self.urls.get(node)
        return url is not None and urlsplit(url).hostname in LOOPBACK

    def _on_snapshot(self, node: str, snap: dict[str, Any]) -> None:
        self.connected[node] = True
        if self.protocol is None and isinstance(snap.get("protocol"), str):
            self.protocol = snap["protocol"]
        self.epochs[node] = float(snap.get("epoch", self.origin))
        if isinstance(snap.get("pid"), int):
            if self.pids.get(node) != snap["pid"] or node not in self.launches:
                launch = Launch.of(snap["pid"]) if self.local(node) else None
                if launch is not None:
                    self.launches[node] = launch
            self.pids[node] = snap["pid"]
        same_run = snap.get("incarnation") == self.incarnations.get(node)
        self.incarnations[node] = str(snap.get("incarnation"))
        seq = int(snap.get("seq", 0))
        if snap.get("resumed") and same_run and seq == self.last.get(node):
            return  # the stream goes on right after the last record seen: nothing to say
        self.last[node] = seq
        rest = {k: v for k, v in snap.items() if k not in ("t", "seq", "node", "resumed")}
        t = self._t(node, float(snap.get("t", 0.0)))
        self._emit({"t": t, "ev": "snapshot", "node": node, "seq": seq, **rest})

    def _on_records(self, node: str, records: list[dict[str, Any]]) -> bool:
        """Pass on ``records``; False at the first gap (the rest is dropped)."""
        last = self.last.get(node, 0)
        for record in records:
            seq = record.get("seq")
            if seq != last + 1:
                return False
            last = seq
            record["node"] = node
            t = record.get("t", 0.0)
            record["t_node"] = t
            record["t"] = self._t(node, float(t))
            self.last[node] = last
            self.received += 1
            self._emit(record)
        return True

    # ------------------------------------------------------------------ actions
    def _kv(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(
                list(self.urls.values()), timeout=2.0, deadline=ACTION_TIMEOUT, admin_token=self.admin_token
            )
        return self._client

    async def act(self, action: dict[str, Any]) -> dict[str, Any]:
        """Do one action (view/source.py); never raises."""
        problem = check_action(action)
        if problem is not None:
            return {"ok": False, "detail": problem}
        name = action["action"]
        try:
            detail = await asyncio.wait_for(self._act(name, action), ACTION_TIMEOUT + 5.0)
            self._mark(name, action)
        except ActionRefused as exc:
            return {"ok": False, "detail": str(exc)}
        except NotFound as exc:
            if name == "get" and "no route" not in str(exc):
                return {"ok": False, "detail": f"{action.get('key')!r} not found"}
            return {"ok": False, "detail": f"{name}: this cluster's service has no key-value API ({exc})"}
        except ClientError as exc:
            return {"ok": False, "detail": f"{name}: {' '.join(str(exc).split())}"}
        except TimeoutError:
            return {"ok": False, "detail": f"{name}: no answer within {ACTION_TIMEOUT + 5.0:g} s"}
        except Exception as exc:  # an action must answer, whatever broke
            return {"ok": False, "detail": f"{name} failed: {type(exc).__name__}: {exc}"}
        return {"ok": True, "detail": detail}

    def _mark(self, name: str, action: dict[str, Any]) -> None:
        """A fault record for an action done (see the module rules)."""
        fault = FAULT_KINDS.get(name)
        if fault is None:
            return
        record: dict[str, Any] = {"t": round(time.time() - self.origin, 6), "ev": "fault", "kind": fault}
        if "node" in action:
            record["node"] = action["node"]
        if name == "partition":
            record["groups"] = " | ".join(",".join(g) for g in action["groups"])
        self._emit(record)

    async def _act(self, name: str, action: dict[str, Any]) -> str:
        if name in ("kill", "restart", "pause", "resume"):
            node = action["node"]
            if node not in self.urls:
                raise ActionRefused(f"no node {node!r}; nodes: {', '.join(self.node_ids)}")
            return str(await getattr(self.control, name)(node))
        if name == "partition":
            return await self._partition(action["groups"])
        if name == "heal":
            await self._block({node: [] for node in self.node_ids})
            return "healed: every node talks to every node"
        if name == "transfer":
            if not self.admin_token:
                raise ActionRefused("transfer needs the admin token (--admin-token-file)")
            body = await self._kv().transfer_leadership(action["to"])
            leader = body.get("leader", action["to"]) if isinstance(body, dict) else action["to"]
            return f"leader is now {leader}"
        if name == "put":
            written = await self._kv().put(action["key"], action["value"])
            return f"put {action['key']!r}: version {written.version}"
        entry = await self._kv().get(action["key"])
        return f"{action['key']!r} = {entry.value!r} (version {entry.version})"

    async def _partition(self, groups: Sequence[Sequence[str]]) -> str:
        unknown = sorted({n for g in groups for n in g} - set(self.node_ids))
        if unknown:
            raise ActionRefused(f"no node {', '.join(map(repr, unknown))}; nodes: {', '.join(self.node_ids)}")
        side = {node: i for i, group in enumerate(groups) for node in group}
        # Each node blocks every node of the other groups; a node in no group blocks nobody.
        blocks = {
            node: sorted(other for other, j in side.items() if j != side[node]) if node in side else []
            for node in self.node_ids
        }
        await self._block(blocks)
        return "partitioned: " + " | ".join(",".join(g) for g in groups)

    async def _block(self, blocks: dict[str, list[str]]) -> None:
        if not self.admin_token:
            raise ActionRefused("partitions need the admin token (--admin-token-file)")
        http = self._http if self._http is not None else aiohttp.ClientSession()
        try:
            answers = await asyncio.gather(*(self._block_one(http, n, b) for n, b in blocks.items()))
        finally:
            if http is not self._http:
                await http.close()
        # One line: the nodes that refused for the same reason together.
        by_reason: dict[str, list[str]] = {}
        for node, reason in zip(blocks, answers, strict=True):
            if reason is not None:
                by_reason.setdefault(reason, []).append(node)
        if by_reason:
            raise ActionRefused("; ".join(f"{', '.join(nodes)}: {why}" for why, nodes in by_reason.items()))

    async def _block_one(self, http: aiohttp.ClientSession, node: str, block: list[str]) -> str | None:
        """None when ``node`` now blocks ``block``, else why not (a short phrase)."""
        try:
            async with http.post(
                self.urls[node].rstrip("/") + "/v1/debug/faults",
                json={"block": block},
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT),
            ) as response:
                if response.status == 200:
                    return None
                if response.status == 404:
                    return "fault injection is disabled (enable_fault_injection; `up --view` turns it on)"
                body = await response.text()
                return f"{response.status} {' '.join(body.split())[:160]}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"unreachable ({str(exc) or type(exc).__name__})"

    # ------------------------------------------------------------------ close
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._queue.put_nowait({"ev": "closed"})
        if self._http is not None:
            await self._http.close()
        if self._client is not None:
            await self._client.close()


def discover(
    endpoints: Sequence[str], admin_token: str | None, timeout: float = 2.0
) -> tuple[dict[str, str], str | None]:
    """(node id -> client URL, protocol): each endpoint's ``/v1/status`` names its node,
    its protocol and its peers' client URLs; an endpoint no answer names keeps its URL
    as its id."""
    from consensuskit.client import Client

    urls: dict[str, str] = {}
    known: dict[str, str] = {}  # client URL -> node id, as the answers name them
    protocol: str | None = None
    with Client(list(endpoints), timeout=timeout, deadline=timeout, admin_token=admin_token) as client:
        statuses = client.cluster_status()
    for url, status in statuses.items():
        if isinstance(status, dict) and isinstance(status.get("id"), str):
            known[url.rstrip("/")] = status["id"]
            protocol = protocol or status.get("protocol")
            for peer, info in (status.get("peers") or {}).items():
                if isinstance(info, dict) and isinstance(info.get("client_url"), str):
                    known.setdefault(info["client_url"].rstrip("/"), str(peer))
    for url in endpoints:
        node = known.get(url.rstrip("/"), url)
        urls[node] = url
    return dict(sorted(urls.items())), protocol


def make_live_source(
    endpoints: str | Sequence[str],
    admin_token: str | None,
    *,
    control: NodeControl | None = None,
    urls: dict[str, str] | None = None,
) -> LiveCluster:
    """The ``LiveSource`` of the cluster at ``endpoints`` (``consensuskit view
    --endpoints``, ``consensuskit up --view``).  ``urls`` (node id -> client URL) skips
    asking the nodes who they are; ``control`` acts on the processes (default: by pid)."""
    protocol = None
    if urls is None:
        urls, protocol = discover(parse_endpoints(endpoints), admin_token)
    return LiveCluster(urls, admin_token, control=control, protocol=protocol)


# ---------------------------------------------------------------------- up --view
def live_meta(source: LiveCluster, title: str = "") -> dict[str, Any]:
    """The page's meta for a live source (view/app.py): its protocol's catalog view."""
    from consensuskit.view.summaries import catalog_views

    views = catalog_views()
    name = source.protocol if source.protocol in views else None
    return {
        "protocol": name or "",
        "nodes": list(source.node_ids),
        "view": views[name].to_json() if name is not None else {},
        "title": title or "live cluster",
    }


class ClusterView:
    """``consensuskit up --view``: the view of ``cluster`` (a ``LocalCluster``), served
    from a thread of its own (``up`` keeps its main thread for the status table and
    its signals); the actions act on ``up``'s own processes (``ClusterControl``)."""

    def __init__(self, cluster: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cluster = cluster
        self.host = host
        self.port = port
        self.url: str | None = None
        self.source: LiveCluster | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> str:
        """Serve the page; returns its URL.  Raises OSError (say, the port is taken)."""
        self._thread = threading.Thread(target=self._run, name="consensuskit-view", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f"the view did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        assert self.url is not None
        return self.url

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # the caller hears of it through start()
            self._error = exc if isinstance(exc, OSError) else OSError(f"the view failed: {exc}")
            self._ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        from consensuskit.view.app import make_app

        layout = self.cluster.layout
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        urls = {spec.node_id: spec.client_url for spec in layout.nodes}
        self.source = source = LiveCluster(
            urls, layout.admin_token, control=ClusterControl(self.cluster), protocol=layout.protocol
        )
        runner = web.AppRunner(make_app(live_meta(source), source=source), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            port = self.port
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                port = server.sockets[0].getsockname()[1]
            shown = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{shown}:{port}/"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()  # the app's cleanup closes the source


__all__ = [
    "ActionRefused",
    "ClusterControl",
    "ClusterView",
    "LiveCluster",
    "NodeControl",
    "PidControl",
    "live_meta",
    "make_live_source",
]
