"""etcd's Cluster service (MemberList, MemberAdd, MemberRemove, MemberUpdate,
MemberPromote) and Maintenance.MoveLeader, on the platform's membership changes: the
same work as ``POST/DELETE /v1/members`` and ``/v1/leader/transfer``
(server/http_api.py ``add_member_as``, ``remove_member_as``, ``transfer_as``).

Rules this module owns:
  * a member is a voter or a learner of the protocol's membership (the
    membership-change capability; a protocol without it: the configured members).  Its
    etcd ``ID`` is ``EtcdNode.member_of(node id)``, its ``name`` the node id, its peer URL
    ``http://`` its peer address, its client URL its gRPC URL (else its HTTP API's);
  * MemberList with ``linearizable`` runs a read barrier first (etcd's
    ``linearizableReadNotify``), so a follower lists every change committed before the
    call; without it, the node's own view;
  * MemberAdd names the node by its peer URL: the node whose peer address (in ``[peers]``
    or the replicated directory, statemachines/peers.py) the URL gives.  etcd's request
    carries no name (etcdctl keeps it to print ``ETCD_NAME``), so a node this cluster does
    not know yet cannot be added here: the refusal (FAILED_PRECONDITION) names
    ``consensuskit member add ID --peer-address --client-url``, which records a new
    node's addresses and adds it;
  * MemberUpdate records the member's new peer address in the replicated directory;
  * MemberPromote makes a learner a voter once it is in sync: the log the leader knows it
    holds reaches at least ``READY`` of the leader's (etcd's ``isLearnerReady``; a
    protocol that reports no per-peer progress is not checked);
  * MoveLeader is answered by the leader only (``etcdserver: not leader`` elsewhere: etcdctl
    asks the leader itself); a target that is not a voter is a bad transferee;
  * changes need the root role while auth is enabled (etcd's membership permission);
  * a change that reaches a follower goes to the leader as any write does (the forward
    route, kind ``CLUSTER``) and is judged there again as its caller;
  * refusals use etcd's texts: ``member not found`` (NOT_FOUND), ``Peer URLs already
    exists``, ``can only promote a learner member``, ``... which is in sync with
    leader`` (FAILED_PRECONDITION), ``given member URLs are invalid`` (INVALID_ARGUMENT);
    a protocol without the capability: UNIMPLEMENTED naming it;
  * changes are strict, as etcd's default ``--strict-reconfig-check`` (the platform's
    check, server/http_api.py): adding or promoting a voter that would leave fewer voters
    up than a quorum is ``re-configuration failed due to not enough started members``
    (FAILED_PRECONDITION), removing one ``unhealthy cluster`` (UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from consensuskit.core.capabilities import HasLeader, is_leading, peer_progress, status_dict
from consensuskit.server.config import ConfigError, PeerInfo, format_address, parse_address
from consensuskit.services.etcd_auth import CALLER, INTERNAL
from consensuskit.services.etcd_errors import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    LEADER_CHANGED,
    NO_LEADER,
    NOT_FOUND,
    TIMEOUT,
    UNAVAILABLE,
    UNIMPLEMENTED,
    EtcdError,
)
from consensuskit.statemachines.mvcc_auth import ROOT_ONLY
from consensuskit.statemachines.peers import directory_of

if TYPE_CHECKING:
    from consensuskit.server.http_api import ApiError
    from consensuskit.services.etcd_api import EtcdNode

CLUSTER = "cluster"  # the forward route's kind for a membership change
READY = 0.9  # a learner's log must reach this share of the leader's to be promoted
MEMBER_NOT_FOUND = "etcdserver: member not found"
PEER_URL_EXISTS = "etcdserver: Peer URLs already exists"
BAD_URLS = "etcdserver: given member URLs are invalid"
NOT_LEARNER = "etcdserver: can only promote a learner member"
LEARNER_NOT_READY = "etcdserver: can only promote a learner member which is in sync with leader"
NOT_LEADER = "etcdserver: not leader"
BAD_TRANSFEREE = "etcdserver: bad leader transferee"
# etcd's answers to a change the strict check refused (module rules): (code, text).
NOT_ENOUGH_STARTED = (
    FAILED_PRECONDITION,
    "etcdserver: re-configuration failed due to not enough started members",
)
UNHEALTHY = (UNAVAILABLE, "etcdserver: unhealthy cluster")
ACTIONS = ("add", "remove", "update", "promote", "move_leader")


class EtcdCluster:
    """The Cluster service of one node's etcd API (see the module rules)."""

    def __init__(self, node: EtcdNode) -> None:
        self.node = node
        self._peer_grpc: dict[str, str] = {}  # peer -> its gRPC URL, from its /v1/status

    # ------------------------------------------------------------------ members
    def _membership(self) -> tuple[list[str], list[str]]:
        """(voters, learners): the protocol's, else the configured members."""
        status = status_dict(self.node.api.runtime.node)
        if "voters" in status:
            return list(status["voters"]), list(status.get("learners") or [])
        return sorted(self.node.api.config.members), []

    def _peer_address(self, node_id: str) -> tuple[str, int] | None:
        api = self.node.api
        if node_id == api.config.node_id:
            recorded = (directory_of(api.runtime.node) or {}).get(node_id)  # as the others reach it
            if recorded is not None:
                with contextlib.suppress(ConfigError):
                    return parse_address(recorded[0], "peer_address")
            host, port = api.config.peer_address
            bound = getattr(api.host, "peer_port", None) if port == 0 else port
            return (host, int(bound or port))
        info = api.host.directory().get(node_id)
        return None if info is None else info.peer_address

    async def members(self, *, linearizable: bool = False) -> list[dict[str, Any]]:
        """Every member as etcd's ``Member`` fields; ``linearizable`` (MemberList's flag):
        after a read barrier, so every change committed before the call shows."""
        if linearizable:
            await self._read_barrier()
        voters, learners = self._membership()
        directory = self.node.api.host.directory()
        await self._learn_peer_grpc({p: directory[p] for p in {*voters, *learners} if p in directory})
        return [self._member(node_id, node_id in learners) for node_id in sorted({*voters, *learners})]

    async def _read_barrier(self) -> None:
        """etcd's ``linearizableReadNotify``: a linearizable read of the node's own (the
        auth status: cheap, and MemberList needs no user), then the member addresses
        this node applied up to it."""
        token = CALLER.set(INTERNAL)
        try:
            await self.node.auth.status()
        finally:
            CALLER.reset(token)
        self.node.api.host.follow_peers()

    def _member(self, node_id: str, learner: bool) -> dict[str, Any]:
        """One member's etcd ``Member`` fields."""
        api = self.node.api
        info = api.host.directory().get(node_id)
        if node_id == api.config.node_id:
            urls = [self.node.grpc_url or api.config.client_url]
        elif info is not None:
            urls = [self._peer_grpc.get(node_id) or info.client_url]
        else:
            urls = []  # a member whose addresses this node does not know
        address = self._peer_address(node_id)
        return {
            "ID": self.node.member_of(node_id),
            "name": node_id,
            "peerURLs": [] if address is None else [f"http://{format_address(address)}"],
            "clientURLs": urls,
            "isLearner": learner,
        }

    def _member_named(self, member_id: int) -> str:
        """The node id of the member with etcd ID ``member_id`` (else NOT_FOUND)."""
        voters, learners = self._membership()
        for node_id in {*voters, *learners}:
            if self.node.member_of(node_id) == member_id:
                return node_id
        raise EtcdError(NOT_FOUND, MEMBER_NOT_FOUND)

    def _node_at(self, peer_urls: list[str]) -> str | None:
        """The node whose peer address one of ``peer_urls`` gives, if any."""
        wanted = {_address_of(url) for url in peer_urls}
        api = self.node.api
        for node_id in [api.config.node_id, *sorted(api.host.directory())]:
            if self._peer_address(node_id) in wanted:
                return node_id
        return None

    async def _learn_peer_grpc(self, directory: dict[str, Any]) -> None:
        """Ask peers not asked yet for their gRPC URL (their /v1/status)."""
        import aiohttp

        missing = [p for p in sorted(directory) if p not in self._peer_grpc]
        if not missing:
            return
        session = self.node.http_session()
        admin = self.node.api.config.admin_token  # /v1/status may need credentials (auth enabled)
        headers = {"Authorization": f"Bearer {admin}"} if admin else {}

        async def ask(peer: str) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with session.get(
                    directory[peer].client_url + "/v1/status",
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=0.5),
                ) as resp:
                    url = (await resp.json()).get("grpc_url")
                    if url:
                        self._peer_grpc[peer] = url

        await asyncio.gather(*(ask(p) for p in missing))

    # ------------------------------------------------------------------ changes
    async def change(self, action: str, args: dict[str, Any], *, forwarded: bool = False) -> dict[str, Any]:
        """Run one membership change (``ACTIONS``) here when this node leads, else at the
        leader; its result: ``{"members": [...]}``, and ``"member"`` for an add."""
        if action not in ACTIONS:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: unknown cluster action {action!r}")
        self.node.auth.require(ROOT_ONLY)
        runtime_node = self.node.api.runtime.node
        if not is_leading(runtime_node):
            if action == "move_leader":
                raise EtcdError(FAILED_PRECONDITION, NOT_LEADER)
            leader = runtime_node.current_leader() if isinstance(runtime_node, HasLeader) else None
            if forwarded or leader in (None, self.node.node_id):
                raise EtcdError(UNAVAILABLE, NO_LEADER)
            return await self.node.forward(str(leader), CLUSTER, {"action": action, "args": args}, False)
        try:
            result = await getattr(self, "_" + action)(args)
        except (KeyError, TypeError, ValueError) as exc:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: malformed cluster request: {exc}") from None
        return {**result, "members": await self.members()}

    async def _add(self, args: dict[str, Any]) -> dict[str, Any]:
        urls = list(args["peerURLs"])
        if not urls or any(_address_of(url) is None for url in urls):
            raise EtcdError(INVALID_ARGUMENT, BAD_URLS)
        node_id = self._node_at(urls)
        if node_id is None:
            raise EtcdError(
                FAILED_PRECONDITION,
                f"etcdserver: no node of this cluster has peer URL {urls[0]}: name the new node "
                "with `consensuskit member add ID --peer-address HOST:PORT --client-url URL` "
                "(add --learner for a learner), or list it in [peers] (docs/server.md)",
            )
        voters, learners = self._membership()
        if node_id in voters or node_id in learners:
            raise EtcdError(FAILED_PRECONDITION, PEER_URL_EXISTS)
        learner = bool(args.get("isLearner"))
        await self._platform(self.node.api.add_member_as(node_id, voter=not learner))
        return {"member": self._member(node_id, learner)}

    async def _remove(self, args: dict[str, Any]) -> dict[str, Any]:
        node_id = self._member_named(int(args["ID"]))
        await self._platform(self.node.api.remove_member_as(node_id), unhealthy=UNHEALTHY)
        return {}

    async def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        node_id = self._member_named(int(args["ID"]))
        urls = list(args["peerURLs"])
        addresses = [_address_of(url) for url in urls]
        if not urls or None in addresses:
            raise EtcdError(INVALID_ARGUMENT, BAD_URLS)
        owner = self._node_at(urls)
        if owner is not None and owner != node_id:
            raise EtcdError(FAILED_PRECONDITION, PEER_URL_EXISTS)
        api = self.node.api
        if node_id == api.config.node_id:
            client_url = api.config.client_url
        else:
            known = api.host.directory().get(node_id)
            if known is None:
                raise EtcdError(FAILED_PRECONDITION, f"etcdserver: {node_id}'s client URL is not known here")
            client_url = known.client_url
        address = addresses[0]
        assert address is not None
        await self._platform(api.record_peer(node_id, PeerInfo(peer_address=address, client_url=client_url)))
        return {}

    async def _promote(self, args: dict[str, Any]) -> dict[str, Any]:
        node_id = self._member_named(int(args["ID"]))
        _, learners = self._membership()
        if node_id not in learners:
            raise EtcdError(FAILED_PRECONDITION, NOT_LEARNER)
        status = status_dict(self.node.api.runtime.node)
        progress = peer_progress(status).get(node_id)
        if progress is not None:  # a protocol that tells no progress is not second-guessed
            match, last = progress.get("match"), status.get("last_index") or 0
            if not isinstance(match, int) or match < READY * last:
                raise EtcdError(FAILED_PRECONDITION, LEARNER_NOT_READY)
        await self._platform(self.node.api.add_member_as(node_id, voter=True))
        return {}

    async def _move_leader(self, args: dict[str, Any]) -> dict[str, Any]:
        target = int(args["targetID"])
        voters, _ = self._membership()
        chosen = next((v for v in voters if self.node.member_of(v) == target), None)
        if chosen is None:
            raise EtcdError(FAILED_PRECONDITION, BAD_TRANSFEREE)
        if chosen != self.node.node_id:
            await self._platform(self.node.api.transfer_as(chosen))
        return {}

    @staticmethod
    async def _platform(work: Any, *, unhealthy: tuple[int, str] = NOT_ENOUGH_STARTED) -> Any:
        """Await one of the platform's membership calls, its ApiError as etcd's error
        (``unhealthy``: etcd's code and text for a change the strict check refused)."""
        from consensuskit.server.http_api import ApiError

        try:
            return await work
        except ApiError as exc:
            if exc.code == "unhealthy":
                raise EtcdError(*unhealthy) from None
            raise _etcd_error(exc) from None


def _etcd_error(exc: ApiError) -> EtcdError:
    if exc.status == 501:
        return EtcdError(UNIMPLEMENTED, f"etcdserver: {exc.message}")
    if exc.status == 421 or exc.code == "leadership-lost":
        return EtcdError(UNAVAILABLE, LEADER_CHANGED)
    if exc.code == "timeout":
        return EtcdError(UNAVAILABLE, TIMEOUT)
    if exc.status == 503:
        return EtcdError(UNAVAILABLE, f"etcdserver: {exc.message}")
    if exc.status == 409:
        return EtcdError(FAILED_PRECONDITION, f"etcdserver: {exc.message}")
    return EtcdError(INVALID_ARGUMENT, f"etcdserver: {exc.message}")


def _address_of(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a peer URL such as ``http://10.0.0.4:2380``; None if it is not one."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.port is None or not parts.hostname:
            return None
        return parse_address(format_address((parts.hostname, parts.port)), "peer URL")
    except (ValueError, ConfigError):
        return None
