"""The etcd v3 API on one node of the real server, behind both of its fronts: the gRPC
server (services/etcd_grpc.py) and the JSON gateway (services/etcd_gateway.py).

Requests and results are the store's dicts (statemachines/mvcc.py); the fronts translate
them from and to etcd's protobuf messages.  This module submits them through the node's
runtime, turns refusals into etcd's gRPC status codes and texts, forwards to the leader,
runs the node's lessor, and builds what etcd builds beside its store: watches, locks,
elections and the status (the member list: services/etcd_cluster.py).

Rules this module owns:
  * any node serves every call: a write (or a linearizable read) that reaches a node
    which does not lead is forwarded, once, to the leader's gateway (``FORWARD_PATH``,
    msgpack), and the answer comes back the same way.  No leader known:
    ``UNAVAILABLE etcdserver: no leader``;
  * reads are linearizable unless the request says ``serializable`` (served from this
    node's applied state, as etcd does); watches, the lessor's polls and the waits of
    locks and elections read this node's state too (etcd serves them from its member);
  * the node's revision loop (``_revision_loop``) is woken by the runtime when the
    applied revision moves, and then reads the new events once for all its watches and
    hands each its own (services/etcd_watch_hub.py); a watch behind that read (a start
    revision in the past, a slow client) reads the store itself until it has caught up.
    An idle watch costs nothing (each used to look itself: 1,000 idle watches took 30%
    of a core), a write costs one read however many watches wait (each used to read:
    1,000 idle watches took a one-node cluster's puts from 1,244/s to 104/s), and at
    most one read per ``WATCH_POLL`` is made, so a burst of writes shares one.  An
    event reaches its watch about a millisecond after it is applied (the loop used to
    look every 20 ms: 10 ms from a put's start to its event, 3.5 ms of it the put);
  * errors are ``EtcdError(code, message)`` with etcd's gRPC codes and texts
    (rpctypes): compacted and future revisions OUT_OF_RANGE, lease not found NOT_FOUND,
    an existing lease FAILED_PRECONDITION, a bad request INVALID_ARGUMENT, no leader or
    a timeout UNAVAILABLE;
  * leases: the TTL is decided here, at the node that takes the grant (at least
    ``MIN_TTL``, etcd's minimum); every node runs a lessor (services/etcd_lessor.py) fed
    by a poll of its applied leases every ``etcd_lessor.LOOK``; only the leader's proposes
    expiries;
  * gRPC writes and linearizable reads are handed to the node in groups: grpcio's asyncio
    server takes one call per loop wake-up, so each alone would make a batch of one (a
    sync, or a read-index round, of its own).  A call that finds none of ours in the node
    goes on the same loop turn (a lone client waits for nobody); otherwise it waits, with
    the others arriving meanwhile, until the group in the node is answered or
    ``COALESCE`` has passed, and they go to the node together (measured: 10 ms cut the
    leader's CPU per gRPC put from about 1.0-1.2 ms to 0.6-0.75 ms at concurrency 64).
    The gateway needs none of it: its lean front reads every ready request in one go;
  * etcd's writes carry no request id, so each goes under this node's anonymous session
    with the next seq; concurrent writes may reach the log out of seq order (a
    Multi-Paxos follower forwards them), and the later one is refused stale-session,
    unapplied: it is submitted again under a new seq (``STALE_RETRIES`` times);
  * a write whose command, encoded for the log, is over ``max_request_bytes`` is
    refused ``INVALID_ARGUMENT etcdserver: request is too large`` before the node sees
    it, as etcd refuses a proposal over ``--max-request-bytes``.  The limit follows the
    node's own settings: ``max_value_bytes + max_key_bytes + REQUEST_SLACK_BYTES``,
    1.5 MiB and 4 KiB with the defaults (etcd's default is 1.5 MiB).  The gRPC server
    takes messages up to ``GRPC_OVERHEAD_BYTES`` more (etcd's margin); a bigger one is
    grpcio's RESOURCE_EXHAUSTED, as with etcd;
  * locks (v3lock) and elections (v3election) are etcd's client recipes, run here
    (services/etcd_recipes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgpack

from consensuskit.core.capabilities import is_leading
from consensuskit.core.client import (
    BUSY,
    INVALID_TOKEN,
    NOT_LEADER,
    PERMISSION_DENIED,
    STALE_OK,
    STALE_SESSION,
    UNAUTHENTICATED,
    ClientRequest,
    ServiceOp,
)
from consensuskit.services import etcd_auth
from consensuskit.services.etcd import make_op, validate
from consensuskit.services.etcd_auth import CALLER, EtcdAuth
from consensuskit.services.etcd_cluster import CLUSTER, EtcdCluster
from consensuskit.services.etcd_errors import (
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    LEADER_CHANGED,
    NO_LEADER,
    NOT_FOUND,
    OUT_OF_RANGE,
    TIMEOUT,
    UNAVAILABLE,
    EtcdError,
)
from consensuskit.services.etcd_lessor import LOOK, Lessor
from consensuskit.services.etcd_recipes import Recipes
from consensuskit.services.etcd_watch_hub import ALL_KEYS, Watcher, WatchHub
from consensuskit.statemachines.auth import AUTH, AUTH_READ
from consensuskit.statemachines.levels import BASE_LEVEL, level_of
from consensuskit.statemachines.mvcc import (
    READ_KINDS,
)

if TYPE_CHECKING:
    from consensuskit.server.http_api import NodeApi

log = logging.getLogger("consensuskit.etcd")


ERROR_CODES = {
    "empty-key": INVALID_ARGUMENT,
    "key-not-found": INVALID_ARGUMENT,
    "value-provided": INVALID_ARGUMENT,
    "lease-provided": INVALID_ARGUMENT,
    "duplicate-key": INVALID_ARGUMENT,
    "bad-request": INVALID_ARGUMENT,
    "lease-not-found": NOT_FOUND,
    "lease-exists": FAILED_PRECONDITION,
    "lease-ttl-too-large": OUT_OF_RANGE,
    "compacted": OUT_OF_RANGE,
    "future-revision": OUT_OF_RANGE,
}
MIN_TTL = 2  # seconds: etcd's minimum lease TTL (1.5 election timeouts, rounded up)
WATCH_POLL = 0.005  # seconds at least between the revision loop's looks (module rules)
WATCH_IDLE_LOOK = 1.0  # seconds the loop waits for the runtime's wake before it looks anyway
WATCH_WAKE = 30.0  # seconds at most a quiet watch sleeps (close() wakes them all at once)
TERM_CACHE = 0.05  # seconds a header's raft_term may lag the node's
PROGRESS_INTERVAL = 600.0  # seconds: a quiet watch with progress_notify hears this often (etcd's)
STALE_RETRIES = 5  # attempts of a write refused as stale-session (module rules)
COALESCE = 0.01  # seconds at most a gRPC call waits for others to share its batch (module rules)
VERSION = "3.5.0"  # the etcd API version we answer to (Maintenance.Status)
REQUEST_SLACK_BYTES = 512 * 1024  # over max_value_bytes + max_key_bytes (module rules)
GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's grpcOverheadBytes: the gRPC limit's margin
REQUEST_TOO_LARGE = "etcdserver: request is too large"
FORWARD_PATH = "/v3/consensuskit/forward"
FORWARDED_HEADER = "X-Consensuskit-Forwarded"


def max_request_bytes(cfg: Any) -> int:
    """The largest write command a node with settings ``cfg`` takes (module rules)."""
    return int(cfg.max_value_bytes) + int(cfg.max_key_bytes) + REQUEST_SLACK_BYTES


def max_gateway_body_bytes(cfg: Any) -> int:
    """The largest JSON body the gateway reads: a request at the limit, base64'd (3 bytes
    make 4), with the platform's room for the JSON around it."""
    from consensuskit.server.http_api import JSON_BODY_LIMIT

    return max_request_bytes(cfg) * 4 // 3 + JSON_BODY_LIMIT


def member_id(name: str) -> int:
    """A stable 63-bit id for a node (etcd's member ids are uint64)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


class EtcdNode(Recipes):
    """The etcd API of one node (see the module rules; locks and elections:
    services/etcd_recipes.py)."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api
        cfg = api.config
        self.node_id = cfg.node_id
        self._cluster = cfg.cluster_id or ",".join(cfg.members)
        self.cluster_id = member_id(self._cluster)
        self.member_id = self.member_of(cfg.node_id)
        self.max_request_bytes = max_request_bytes(cfg)
        self.lessor = Lessor()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: Any = None  # aiohttp.ClientSession for forwarding, made on first use
        self.closed = False
        self.forwarded = 0  # calls this node forwarded to the leader
        self.expired = 0  # expiry commands this node's lessor had applied
        self.grpc_url: str | None = None
        self._term = 0
        self._term_until = 0.0
        self._held: list[tuple[ClientRequest, asyncio.Future[Any]]] = []  # calls to coalesce
        self._in_node = 0  # coalesced calls handed to the node and not answered yet
        self._flush_timer: asyncio.TimerHandle | None = None
        self.progress_interval = PROGRESS_INTERVAL
        self.hub = WatchHub()  # the watches the loop hands events to (module rules)
        self.auth = EtcdAuth(self)
        self.cluster = EtcdCluster(self)

    def http_session(self) -> Any:
        """This node's aiohttp session to its peers' HTTP APIs (made on first use)."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def member_of(self, node_id: str) -> int:
        """A node's etcd member id: unique to this cluster (two clusters' n1 differ)."""
        return member_id(f"{self._cluster}/{node_id}")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._lessor_loop()))
        self._tasks.append(asyncio.ensure_future(self._revision_loop()))
        self.hub.start(_applied_revision(self.api.runtime.node))  # watches join from the first

    async def _revision_loop(self) -> None:
        CALLER.set(etcd_auth.INTERNAL)  # the hub's reads are the node's (this task's context)
        seen, failing = -1, False
        runtime = self.api.runtime
        while not self.closed:
            await asyncio.sleep(WATCH_POLL)
            try:
                # woken after the runtime's step that moved the revision (module rules)
                moved = partial(_moved_from, seen)
                await runtime.wait_until(moved, WATCH_IDLE_LOOK)
                now = await self.local_revision()
                if now != seen:
                    await self._feed_hub(now)
            except Exception:  # the watches must outlive a bad look; the log says why, once
                if not failing:
                    log.exception("watch: reading the applied revision failed")
                failing = True
                continue
            failing, seen = False, now

    async def _feed_hub(self, now: int) -> None:
        """Read the events since the hub's revision, up to ``now`` at least, and hand
        them to its watches (services/etcd_watch_hub.py)."""
        hub = self.hub
        if hub.revision is None or now < hub.revision:  # first look, or a store replaced
            hub.start(now)
            return
        if not hub.synced:  # nobody is owed these events: no read
            hub.start(max(hub.revision, now))
            return
        while hub.revision < now:
            try:
                body = {**ALL_KEYS, "start_revision": hub.revision + 1, "prev_kv": True}
                answer = await self.call("watch", body, serializable=True)
            except EtcdError as exc:
                if "compact_revision" not in exc.extra:
                    raise
                hub.compacted(int(exc.extra["compact_revision"]))
                continue
            hub.dispatch(answer)

    async def changed_after(self, key: bytes, end: bytes, revision: int, timeout: float) -> None:
        """Return once a key of [key, end) may have changed after ``revision`` (a watch
        of the hub's, woken by an event of its range, or by falling behind), or after
        ``timeout`` seconds (services/etcd_recipes.py: a claimant is not woken by other
        keys' writes)."""
        watcher = Watcher(key, end, False, frozenset(), revision + 1)
        if not self.hub.join(watcher):
            if self.hub.revision is None:  # no hub (the node not started): look again soon
                await asyncio.sleep(min(timeout, WATCH_POLL))
            return  # the hub is past ``revision``: look again
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not (watcher.pending or not watcher.synced or self.closed):
                        watcher.wake.clear()
                        await watcher.wake.wait()
        finally:
            self.hub.leave(watcher)

    async def close(self) -> None:
        self.closed = True
        self.hub.close()  # every waiting watch sees the node closed
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------------ calls
    def term(self) -> int:
        """The node's generation (Raft's term), looked up at most every TERM_CACHE seconds:
        a header's raft_term is informational, and a node's status is not free to build."""
        now = time.monotonic()
        if now >= self._term_until:
            try:
                self._term = int(self.api.runtime.node.node_status().generation)
            except Exception:  # a node without a status: no term to tell
                self._term = 0
            self._term_until = now + TERM_CACHE
        return self._term

    def header(self, revision: int) -> dict[str, int]:
        return {
            "cluster_id": self.cluster_id,
            "member_id": self.member_id,
            "revision": revision,
            "raft_term": self.term(),
        }

    async def call(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        serializable: bool = False,
        forwarded: bool = False,
        coalesce: bool = False,
    ) -> dict[str, Any]:
        """Run one store op; its result, or ``EtcdError``.  ``coalesce``: hand a write to
        the node together with the others arriving within ``COALESCE`` (module rules)."""
        op = self.prepare(kind, body)
        for _ in range(STALE_RETRIES):
            response = await self._submit(op, kind, serializable, coalesce)
            if response.ok or response.error != STALE_SESSION:
                break
            # This node's anonymous session already applied a later seq (concurrent writes
            # reordered on their way, e.g. forwarded by a Multi-Paxos follower): this one
            # was not applied, so it goes again under a new seq.
        leader = self.leader_to_ask(response, forwarded)
        if leader is not None:
            return await self.forward(leader, kind, body, serializable)
        if response.ok and (kind in READ_KINDS or kind == AUTH_READ):
            # Judged by this node's state once it applied what the read saw (a protocol
            # may have served it at the leader): services/etcd_auth.py.  Before the
            # read's own refusal, as etcd judges the caller first: a caller without the
            # right learnt from "user name not found" whether a user exists.
            await self._applied_to(response.index)
            self.auth.check_read(kind, body)
        return self.result(response)

    async def _applied_to(self, index: int) -> None:
        """Wait (up to the request timeout) until this node applied up to ``index``."""
        node = self.api.runtime.node
        position = getattr(node, "log_position", None)
        if position is None or position().applied >= index:
            return
        caught_up = await self.api.runtime.wait_until(
            lambda n: n.log_position().applied >= index, self.api.config.request_timeout
        )
        if not caught_up:
            raise EtcdError(UNAVAILABLE, TIMEOUT)

    async def snapshot(self) -> bytes:
        """Maintenance.Snapshot: the backup file of the whole store, read as a
        linearizable read on this node (server/backup_api.py; docs/server.md, "Backup
        and restore"); ``EtcdError`` when the node cannot answer."""
        from consensuskit.core.client import LINEARIZABLE
        from consensuskit.server.backup_api import backup_bytes
        from consensuskit.server.runtime import LeadershipLost, NodeHalted, RequestTimeout
        from consensuskit.statemachines.backup import backup_op

        api = self.api
        client_id, seq = api.read_id()
        request = ClientRequest(client_id=client_id, seq=seq, op=backup_op(), consistency=LINEARIZABLE)
        try:
            response = await api.runtime.request(request, api.config.request_timeout)
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            raise self.failure(exc) from None
        if not response.ok:
            if response.error == NOT_LEADER:
                raise EtcdError(UNAVAILABLE, NO_LEADER if response.leader_hint is None else LEADER_CHANGED)
            raise EtcdError(INTERNAL, f"etcdserver: {response.error}")
        return await backup_bytes(api, response.result, response.index)

    # The steps of ``call``, which a front that answers from callbacks (the gateway's lean
    # front, services/etcd_gateway.py) takes one by one.
    def prepare(self, kind: str, body: dict[str, Any]) -> Any:
        """The op of ``kind`` with request ``body``, validated (else ``EtcdError``)."""
        if kind in (AUTH, AUTH_READ):  # body: {"action": ..., "args": [...]}
            action, args = body.get("action"), body.get("args")
            if not isinstance(action, str) or not isinstance(args, (list, tuple)):
                raise EtcdError(INVALID_ARGUMENT, "etcdserver: malformed auth request")
            args = tuple(args) if kind == AUTH else (args[0] if args else None)
            return ServiceOp(kind=kind, key=action, value=args, read=kind == AUTH_READ)
        level = level_of(self.api.runtime.node) or BASE_LEVEL  # the rules every replica applies
        op = make_op(kind, "", body, level=level)
        try:
            validate(op)
        except ValueError as exc:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: {exc}") from None
        return op

    def request(self, op: Any, serializable: bool) -> ClientRequest:
        """One attempt's request: a write under the next seq of this node's anonymous
        session, a read under a read id; admitted at the edge (else ``EtcdError``)."""
        from consensuskit.server import edge

        api = self.api
        read = op.is_read()
        client_id, seq = api.read_id() if read else api.request_id(None)
        request = ClientRequest(
            client_id=client_id,
            seq=seq,
            op=op,
            consistency=STALE_OK if read and serializable else None,
            principal=None if read else CALLER.get().principal,
        )
        try:
            size = edge.admit(request)
        except edge.EdgeError as exc:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: {exc.message}") from None
        if size > self.max_request_bytes and not read:
            raise EtcdError(INVALID_ARGUMENT, REQUEST_TOO_LARGE)
        return request

    @staticmethod
    def failure(exc: BaseException) -> EtcdError:
        """The ``EtcdError`` for a request the node did not answer."""
        from consensuskit.server.runtime import LeadershipLost, RequestTimeout

        if isinstance(exc, RequestTimeout):
            return EtcdError(UNAVAILABLE, TIMEOUT)
        if isinstance(exc, LeadershipLost):
            return EtcdError(UNAVAILABLE, LEADER_CHANGED)
        return EtcdError(UNAVAILABLE, f"etcdserver: {exc}")  # NodeHalted

    def leader_to_ask(self, response: Any, forwarded: bool) -> str | None:
        """The leader to forward the call to when this node refused it as a follower
        (``EtcdError`` when there is none to ask); None: the answer stands."""
        if response.ok or response.error != NOT_LEADER:
            return None
        if forwarded or response.leader_hint in (None, self.node_id):
            raise EtcdError(UNAVAILABLE, NO_LEADER)
        return str(response.leader_hint)

    @staticmethod
    def result(response: Any) -> dict[str, Any]:
        """The store's result in ``response``, or its refusal as ``EtcdError``."""
        if not response.ok:
            if response.error == BUSY:
                raise EtcdError(UNAVAILABLE, LEADER_CHANGED)
            if response.error in (UNAUTHENTICATED, INVALID_TOKEN, PERMISSION_DENIED):
                raise etcd_auth.refusal(response.error)
            raise EtcdError(INTERNAL, f"etcdserver: {response.error}")
        result = response.result
        if isinstance(result, dict) and "error" in result:
            if result["error"] in etcd_auth.ERRORS or result["error"] == "bad-command":
                raise etcd_auth.refusal(result["error"], result.get("message"))
            extra = {k: v for k, v in result.items() if k not in ("error", "message")}
            raise EtcdError(ERROR_CODES.get(result["error"], INTERNAL), str(result.get("message")), **extra)
        return result  # type: ignore[no-any-return]

    async def _submit(self, op: Any, kind: str, serializable: bool, coalesce: bool) -> Any:
        """One attempt: the node's ``ClientResponse``, or ``EtcdError`` for no answer."""
        from consensuskit.server.runtime import LeadershipLost, NodeHalted, RequestTimeout

        api = self.api
        request = self.request(op, serializable)
        try:
            if coalesce and not (kind in READ_KINDS and serializable):
                response = await self._coalesced(request)
            else:
                response = await api.runtime.request(request, api.config.request_timeout)
        except (RequestTimeout, LeadershipLost, NodeHalted) as exc:
            raise self.failure(exc) from None
        return response

    def _coalesced(self, request: ClientRequest) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._held.append((request, fut))
        if len(self._held) == 1:
            # Nothing of ours in the node: go on this loop turn (a lone client waits for
            # nobody); else wait for the batch in the node to be answered, or COALESCE.
            if self._in_node == 0:
                self._flush_timer = loop.call_soon(self._flush)  # type: ignore[assignment]
            else:
                self._flush_timer = loop.call_later(COALESCE, self._flush)
        return fut

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        held, self._held = self._held, []
        runtime, timeout = self.api.runtime, self.api.config.request_timeout
        for request, fut in held:
            if fut.done():  # its caller gave up
                continue
            try:
                runtime.wait_for_answer(request, timeout, self._coalesced_answer, fut)
            except Exception as exc:  # NodeHalted: the node is not running
                fut.set_exception(exc)
                continue
            self._in_node += 1

    def _coalesced_answer(self, waiter: Any, response: Any, error: BaseException | None) -> None:
        self._in_node -= 1
        fut: asyncio.Future[Any] = waiter.context
        if not fut.done():  # else its caller gave up (the node may still apply a write)
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(response)
        if self._in_node == 0 and self._held:
            self._flush()  # the batch in the node is answered: the next one goes

    async def forward(
        self, leader: str, kind: str, body: dict[str, Any], serializable: bool
    ) -> dict[str, Any]:
        import aiohttp

        info = self.api.host.directory().get(leader)
        if info is None:
            raise EtcdError(UNAVAILABLE, NO_LEADER)
        session = self.http_session()
        principal = CALLER.get().principal
        call = {
            "kind": kind,
            "body": body,
            "serializable": serializable,
            "principal": None if principal is None else (principal.name, principal.via, principal.rev),
        }
        payload = msgpack.packb(call, use_bin_type=True)
        self.forwarded += 1
        try:
            async with session.post(
                info.client_url + FORWARD_PATH,
                data=payload,
                headers={
                    FORWARDED_HEADER: self.node_id,
                    etcd_auth.MAC_HEADER: self.auth.sign(payload),
                    "Content-Type": "application/msgpack",
                },
                timeout=aiohttp.ClientTimeout(total=self.api.config.request_timeout + 1),
            ) as resp:
                answer = msgpack.unpackb(await resp.read(), raw=False)
        except (aiohttp.ClientError, TimeoutError, ValueError, msgpack.UnpackException) as exc:
            message = f"etcdserver: forwarding to the leader {leader} failed: {exc}"
            raise EtcdError(UNAVAILABLE, message) from None
        if not isinstance(answer, dict):
            raise EtcdError(UNAVAILABLE, f"etcdserver: leader {leader} answered nonsense")
        if answer.get("ok"):
            return answer["result"]
        code, message = int(answer.get("code", UNAVAILABLE)), str(answer.get("message"))
        raise EtcdError(code, message, **answer.get("extra", {}))

    async def serve_forwarded(self, payload: bytes, mac: str | None = None) -> bytes:
        """The leader's side of ``forward``: run the call here, as the caller it names
        when its HMAC ``mac`` holds (services/etcd_auth.py), never forward again."""
        try:
            req = msgpack.unpackb(payload, raw=False)
            kind, body = req["kind"], req["body"]
            if not isinstance(kind, str) or not isinstance(body, dict):
                raise ValueError("kind and body")
            caller = self.auth.forwarded_caller(req.get("principal"), payload, mac)
            token = CALLER.set(caller)
            try:
                if kind == CLUSTER:  # a membership change (services/etcd_cluster.py)
                    result = await self.cluster.change(body["action"], body["args"], forwarded=True)
                else:
                    serializable = bool(req.get("serializable"))
                    result = await self.call(kind, body, serializable=serializable, forwarded=True)
            finally:
                CALLER.reset(token)
            answer: dict[str, Any] = {"ok": True, "result": result}
        except EtcdError as exc:
            answer = {"ok": False, "code": exc.code, "message": exc.message, "extra": exc.extra}
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            message = f"etcdserver: bad forwarded call: {exc}"
            answer = {"ok": False, "code": INVALID_ARGUMENT, "message": message}
        return msgpack.packb(answer, use_bin_type=True)

    async def local_revision(self) -> int:
        """The revision this node's store applied (a serializable read's header)."""
        return _applied_revision(self.api.runtime.node)

    # ------------------------------------------------------------------ leases
    async def lease_grant(self, ttl: int, lease_id: int = 0) -> dict[str, Any]:
        result = await self.call("lease_grant", {"id": lease_id, "ttl": max(ttl, MIN_TTL)})
        self.lessor.refreshed(result["id"], 0, result["ttl"], time.monotonic())
        return result

    async def lease_keepalive(self, lease_id: int) -> dict[str, Any]:
        result = await self.call("lease_keepalive", {"id": lease_id})
        if result.get("ttl", 0) > 0 and "stamp" in result:
            self.lessor.refreshed(lease_id, result["stamp"], result["ttl"], time.monotonic())
        return result

    async def lease_ttl(self, lease_id: int, keys: bool) -> dict[str, Any]:
        result = await self.call("lease_ttl", {"id": lease_id, "keys": keys})
        if result["ttl"] > 0:
            result["ttl"] = self.lessor.remaining(lease_id, result["granted_ttl"], time.monotonic())
        return result

    async def _lessor_loop(self) -> None:
        node = self.api.runtime.node
        CALLER.set(etcd_auth.INTERNAL)  # the node's own calls (this task's context only)
        while not self.closed:
            await asyncio.sleep(LOOK)
            try:
                leases = (await self.call("lease_leases", {}, serializable=True))["leases"]
                due = self.lessor.observe(leases, time.monotonic(), is_leading(node))
                for lease_id, stamp in due:
                    result = await self.call("lease_expire", {"id": lease_id, "stamp": stamp}, forwarded=True)
                    if result.get("expired"):
                        self.expired += 1
                        log.info("lease %x expired: %s keys deleted", lease_id, result.get("deleted", 0))
            except EtcdError as exc:
                log.debug("lessor: %s", exc.message)
            except asyncio.CancelledError:
                raise
            except Exception:  # the lessor must outlive one bad poll; the log says why
                log.exception("lessor poll failed")

    # ------------------------------------------------------------------ watches
    async def watch(
        self, create: dict[str, Any], on_watcher: Callable[[Watcher], None] | None = None
    ) -> AsyncIterator[tuple[str, Any]]:
        """("created", revision), then ("events", (revision, events)) as they are applied
        here; with ``progress_notify``, ("progress", revision) after ``progress_interval``
        without events; ("caught-up", revision) once it has every event up to there after
        its stream asked (``Watcher.progress_asked``; ``on_watcher`` gets the watch's
        ``Watcher`` once created); ("compacted", compact_revision) ends it."""
        span = {"key": create.get("key") or b"", "range_end": create.get("range_end") or b""}
        progress = bool(create.get("progress_notify"))
        self.auth.check_read("watch", span)  # before "created", as etcd
        current = await self.local_revision()
        start = int(create.get("start_revision") or 0) or current + 1
        yield ("created", current)
        watcher = Watcher(
            span["key"],
            span["range_end"],
            bool(create.get("prev_kv")),
            frozenset(create.get("filters") or ()),  # NOPUT = 0 = PUT's type
            start,
        )
        if on_watcher is not None:
            on_watcher(watcher)
        quiet_since = time.monotonic()
        try:
            while not self.closed:
                if watcher.pending:
                    kind, data = watcher.pending.popleft()
                    if kind == "compacted":
                        yield (kind, data)
                        return
                    self.auth.check_read("watch", span)  # judged as the watch's own reads are
                    quiet_since = time.monotonic()
                    yield (kind, data)
                    continue
                if not self.hub.join(watcher):
                    current = await self.local_revision()
                    if current >= watcher.next:  # behind the hub: read the store itself
                        try:
                            answer = await self._watch_read(watcher)
                        except EtcdError as exc:
                            if "compact_revision" in exc.extra:
                                yield ("compacted", exc.extra["compact_revision"])
                                return
                            raise
                        if answer is not None:
                            quiet_since = time.monotonic()
                            yield ("events", answer)
                        continue
                elif self.hub.revision is not None:
                    # All handed up to here (the hub's revision may lag the store's while
                    # it had no watch).  A watch that starts ahead of the store is owed
                    # nothing up to the store's revision, but not beyond: etcd's progress
                    # names a written revision.
                    ahead = min(watcher.next - 1, await self.local_revision())
                    current = max(self.hub.revision, ahead)
                if watcher.progress_asked:
                    watcher.progress_asked = False
                    yield ("caught-up", current)
                    continue
                if progress and time.monotonic() - quiet_since >= self.progress_interval:
                    quiet_since = time.monotonic()
                    yield ("progress", current)  # nothing new up to here: etcd's progress notify
                    continue
                wake = WATCH_WAKE
                if progress:
                    wake = min(wake, max(0.0, quiet_since + self.progress_interval - time.monotonic()))
                if watcher.synced:
                    watcher.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wake):
                            await watcher.wake.wait()
                else:  # no hub (the node not started): look again soon
                    await asyncio.sleep(min(wake, WATCH_POLL))
        finally:
            self.hub.leave(watcher)

    async def _watch_read(self, watcher: Watcher) -> tuple[int, list[Any]] | None:
        """One read of ``watcher``'s own from its next revision: (revision, events) when
        it found any it wants; moves its ``next``."""
        r = await self.call(
            "watch",
            {
                "key": watcher.key,
                "range_end": watcher.end,
                "start_revision": watcher.next,
                "prev_kv": watcher.prev_kv,
            },
            serializable=True,
        )
        watcher.next = max(watcher.next, int(r["next"]))
        events = [e for e in r["events"] if e[0] not in watcher.filters]
        return (r["revision"], events) if events else None

    # ------------------------------------------------------------------ cluster
    def status(self) -> dict[str, Any]:
        body = self.api.status_body()
        leader = body.get("leader")
        size = _dir_size(self.api.config.data_dir)
        return {
            "version": VERSION,
            "dbSize": size,
            "dbSizeInUse": size,  # nothing to defragment: all of it is in use
            "leader": self.member_of(leader) if leader else 0,
            "raftIndex": int(body.get("commit") or 0),
            "raftTerm": int(body.get("generation") or 0),
            "raftAppliedIndex": int(body.get("applied") or 0),
            "isLearner": body.get("role") == "learner",
        }


def _applied_revision(node: Any) -> int:
    return int(node.sm.store.revision)


def _moved_from(revision: int, node: Any) -> bool:
    return _applied_revision(node) != revision


def _dir_size(path: Any) -> int:
    import os

    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.is_file():
                    total += entry.stat().st_size
    return total


async def start(api: NodeApi, listen: dict[str, tuple[str, int]]) -> Callable[[], Awaitable[None]]:
    """The etcd service's listeners (core/service.py): the lessor and, when ``[listen]``
    names a ``grpc`` address, the gRPC server (services/etcd_grpc.py)."""
    node = etcd_node(api)
    node.start()
    close_grpc: Callable[[], Awaitable[None]] | None = None
    if "grpc" in listen:
        from consensuskit.services.etcd_grpc import serve_grpc

        try:
            close_grpc, url = await serve_grpc(node, listen["grpc"])
        except BaseException:
            await node.close()
            raise
        node.grpc_url = url
        api.status_extra["grpc_url"] = url

    async def close() -> None:
        if close_grpc is not None:
            await close_grpc()
        await node.close()

    return close


# api -> its EtcdNode: the gateway's routes (mounted when the app is built) and the
# listeners (started once the node runs) share one per node; weak, so a stopped node's
# api takes its EtcdNode with it.
_NODES: weakref.WeakKeyDictionary[Any, EtcdNode] = weakref.WeakKeyDictionary()


def etcd_node(api: NodeApi) -> EtcdNode:
    """The one ``EtcdNode`` of ``api``."""
    node = _NODES.get(api)
    if node is None:
        node = _NODES[api] = EtcdNode(api)
    return node
