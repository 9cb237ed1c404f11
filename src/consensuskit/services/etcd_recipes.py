"""etcd's lock (v3lock) and election (v3election) services: etcd's client recipes
(clientv3/concurrency), run on the node that takes the call, over the node's own KV calls.

Rules this module owns:
  * a claim is the key ``NAME/LEASE-in-hex``, created under the lease in one txn (or
    found, when this lease already claimed it: locking twice with one lease is one
    acquisition); its create revision orders the claimants and is the lock's fencing
    token, and the election leader's ``rev``;
  * the holder is the claimant with the lowest create revision under ``NAME/``: a
    claimant waits until no key under ``NAME/`` was created before its own, then checks
    its own key still stands (its lease may have ended meanwhile: NOT_FOUND);
  * a Lock or Campaign of lease 0 runs under a lease of its own, granted for 60 s and
    never kept alive, as etcd's servers run them (a ``concurrency.Session`` on the
    request's lease, orphaned; 60 s is its default TTL): the claim ends with the lease
    unless released first.  (Before, every lease-0 claimant of a name shared the key
    ``NAME/0``, so each of them held the lock at once, and for ever);
  * a waiting Lock or Campaign whose client gives up deletes its claim, leaving no waiter
    behind (and revokes the lease it granted itself);
  * Proclaim and Resign act only while the leader key still has the leader's create
    revision (``election: not leader`` otherwise); Leader is the lowest claimant's
    key-value (``election: no leader`` when none).  The fronts answer every error of
    these services with gRPC code Unknown (services/etcd_grpc.py), as etcd does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from consensuskit.services.etcd_errors import FAILED_PRECONDITION, INTERNAL, NOT_FOUND, UNAVAILABLE, EtcdError
from consensuskit.statemachines.mvcc import (
    CREATE,
    EQUAL,
    SORT_ASCEND,
    SORT_CREATE,
    SORT_DESCEND,
    prefix_end,
)

ELECTION_NOT_LEADER = "election: not leader"
ELECTION_NO_LEADER = "election: no leader"
# A waiting claimant or an observer looks again when a key under its NAME/ changed
# (EtcdNode.changed_after, a watch of the node's hub: other keys' writes do not wake it),
# or after this long.
RECHECK = 10.0
# clientv3/concurrency's defaultSessionTTL: the lease a Lock or Campaign of lease 0 gets.
SESSION_TTL = 60


def lock_key(name: bytes, lease: int) -> bytes:
    return name + b"/" + f"{lease:x}".encode()


class Recipes:
    """Mixed into ``EtcdNode``: needs its ``call``, ``closed`` and ``EtcdError``."""

    closed: bool

    async def call(self, kind: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def changed_after(self, key: bytes, end: bytes, revision: int, timeout: float) -> None:
        raise NotImplementedError

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> dict[str, Any]:
        raise NotImplementedError

    async def _claimed(self, name: bytes, lease: int, value: bytes) -> tuple[bytes, int, int, int]:
        """Claim NAME under ``lease`` (a lease of its own for 0, module rules) and wait for
        its turn: (key, create revision, revision, lease) once first.  A client that gives
        up leaves no claim behind."""
        granted = 0
        if lease == 0:
            lease = granted = int((await self.lease_grant(SESSION_TTL))["id"])
        try:
            key, rev, _ = await self._claim(name, lease, value)
            revision = await self._wait_turn(name, key, rev)
        except asyncio.CancelledError:  # the client gave up: do not leave a waiter behind
            with contextlib.suppress(Exception):
                if granted:
                    await self.call("lease_revoke", {"id": granted})  # its keys go with it
                else:
                    await self.call("delete_range", {"key": lock_key(name, lease)})
            raise
        return key, rev, revision, lease

    async def _claim(self, name: bytes, lease: int, value: bytes) -> tuple[bytes, int, int]:
        """Create NAME/LEASE under ``lease`` (or find it): (key, create revision, revision)."""
        key = lock_key(name, lease)
        r = await self.call(
            "txn",
            {
                "compare": [{"key": key, "target": CREATE, "result": EQUAL, "create_revision": 0}],
                "success": [{"put": {"key": key, "value": value, "lease": lease}}],
                "failure": [{"range": {"key": key}}],
            },
        )
        if r["succeeded"]:
            return key, r["revision"], r["revision"]
        kvs = r["responses"][0]["range"]["kvs"]
        if not kvs:  # deleted between compare and read: cannot happen in one txn
            raise EtcdError(INTERNAL, "etcdserver: lock key vanished")
        return key, kvs[0][1], r["revision"]

    async def _wait_turn(self, name: bytes, key: bytes, rev: int) -> int:
        """Wait until no key under NAME/ was created before ``rev``; the revision then."""
        prefix = name + b"/"
        while not self.closed:
            r = await self.call(
                "range",
                {
                    "key": prefix,
                    "range_end": prefix_end(prefix),
                    "max_create_revision": rev - 1,
                    "sort_order": SORT_DESCEND,
                    "sort_target": SORT_CREATE,
                    "limit": 1,
                },
            )
            if not r["kvs"]:
                mine = await self.call("range", {"key": key})
                if not mine["kvs"] or mine["kvs"][0][1] != rev:
                    raise EtcdError(NOT_FOUND, "etcdserver: requested lease not found")  # our lease ended
                return int(r["revision"])
            await self.changed_after(prefix, prefix_end(prefix), int(r["revision"]), RECHECK)
        raise EtcdError(UNAVAILABLE, "etcdserver: server stopped")

    async def lock(self, name: bytes, lease: int) -> tuple[bytes, int, int]:
        """(key, its create revision = the fencing token, revision) once held."""
        key, rev, revision, _ = await self._claimed(name, lease, b"")
        return key, rev, revision

    async def campaign(self, name: bytes, lease: int, value: bytes) -> tuple[dict[str, Any], int]:
        key, rev, revision, lease = await self._claimed(name, lease, value)
        leader = {"name": name, "key": key, "rev": rev, "lease": lease}
        current = await self.call("range", {"key": key})
        if current["kvs"] and current["kvs"][0][4] != value:  # campaigned again with another value
            revision = (await self.proclaim(leader, value))["revision"]
        return leader, revision

    async def proclaim(self, leader: dict[str, Any], value: bytes) -> dict[str, Any]:
        key, rev = leader.get("key") or b"", int(leader.get("rev") or 0)
        r = await self.call(
            "txn",
            {
                "compare": [{"key": key, "target": CREATE, "result": EQUAL, "create_revision": rev}],
                "success": [{"put": {"key": key, "value": value, "ignore_lease": True}}],
            },
        )
        if not r["succeeded"] or not rev:
            raise EtcdError(FAILED_PRECONDITION, ELECTION_NOT_LEADER)
        return r

    async def leader(self, name: bytes, *, serializable: bool = False) -> tuple[Any, int]:
        prefix = name + b"/"
        r = await self.call(
            "range",
            {
                "key": prefix,
                "range_end": prefix_end(prefix),
                "sort_order": SORT_ASCEND,
                "sort_target": SORT_CREATE,
                "limit": 1,
            },
            serializable=serializable,
        )
        return (r["kvs"][0] if r["kvs"] else None), int(r["revision"])

    async def observe(self, name: bytes) -> AsyncIterator[tuple[Any, int]]:
        """Each new leader or proclamation, as (key-value, revision)."""
        last = None
        while not self.closed:
            kv, revision = await self.leader(name, serializable=True)
            if kv is not None and (kv[0], kv[2]) != last:
                last = (kv[0], kv[2])
                yield kv, revision
            await self.changed_after(name + b"/", prefix_end(name + b"/"), revision, RECHECK)

    async def resign(self, leader: dict[str, Any]) -> dict[str, Any]:
        key, rev = leader.get("key") or b"", int(leader.get("rev") or 0)
        return await self.call(
            "txn",
            {
                "compare": [{"key": key, "target": CREATE, "result": EQUAL, "create_revision": rev}],
                "success": [{"delete_range": {"key": key}}],
            },
        )
