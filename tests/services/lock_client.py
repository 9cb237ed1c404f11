"""One client of Jepsen's etcd lock workload, as its own process (so a test can SIGSTOP
it): take the lock (v3lock, under a lease kept alive by a thread), read the set from the
fenced store, add a unique element, write the set back with the lock's fencing token,
unlock.  It prints one JSON line per event: ``{"hold": TOKEN}`` once it has read the set
(a nemesis stops it there), ``{"ack": E}`` when a write holding E was accepted,
``{"refused": E}`` when the store refused it, ``{"done": N}`` at the end."""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import grpc

from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2 as pb
from consensuskit.services.etcdpb.etcdserverpb import rpc_pb2_grpc as pb_grpc
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2 as lpb
from consensuskit.services.etcdpb.v3lockpb import v3lock_pb2_grpc as lpb_grpc


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


def store(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + "/value", data=data, method="GET" if body is None else "PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Lease:
    def __init__(self, channel: grpc.Channel, ttl: int) -> None:
        self.stub = pb_grpc.LeaseStub(channel)
        self.ttl = ttl
        self.id = self.stub.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl)).ID
        self.alive = True
        threading.Thread(target=self._keep, daemon=True).start()

    def _keep(self) -> None:
        while self.alive:
            time.sleep(self.ttl / 3)
            try:
                answer = next(iter(self.stub.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=self.id)]))))
                if answer.TTL <= 0:
                    self.alive = False  # expired: the next round takes a new lease
            except grpc.RpcError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ttl", type=int, default=2)
    args = parser.parse_args()
    channel = grpc.insecure_channel(args.endpoint)
    locks, kv = lpb_grpc.LockStub(channel), pb_grpc.KVStub(channel)
    lease = Lease(channel, args.ttl)
    for i in range(args.rounds):
        element = f"{args.name}-{i}"
        try:
            if not lease.alive:
                lease = Lease(channel, args.ttl)
            key = locks.Lock(lpb.LockRequest(name=b"jepsen-lock", lease=lease.id), timeout=30).key
            token = kv.Range(pb.RangeRequest(key=key)).kvs[0].create_revision
        except (grpc.RpcError, IndexError):
            lease.alive = False
            continue
        _, current = store(args.store)
        members = list(current.get("value") or [])
        say(hold=token, name=args.name)
        time.sleep(0.2)  # the critical section: where a pause hurts
        status, _ = store(args.store, {"value": [*members, element], "token": token})
        say(**({"ack": element} if status == 200 else {"refused": element}))
        with contextlib.suppress(grpc.RpcError):
            locks.Unlock(lpb.UnlockRequest(key=key))
    say(done=args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
