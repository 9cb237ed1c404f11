"""core.service.StateMachine's snapshot contract, for every log service in the catalog: a
snapshot is a value.  Commands applied after it is taken never change it, because the
disk WAL and the peer transport encode a snapshot later, piece by piece (a message class
registered streamed, core/messages.py), off the moment it was taken."""

from __future__ import annotations

import random

import pytest

from consensuskit.catalog import builtin_registry
from consensuskit.core.client import ClientRequest
from consensuskit.core.messages import encode
from consensuskit.core.service import ProtocolKeepsState

REGISTRY = builtin_registry()
# Log services: the state machines a log protocol snapshots into its WAL and sends.
SERVICES = sorted(name for name in REGISTRY.services.names() if REGISTRY.service(name).log)


def drive(name: str, seed: int, commands: int = 300) -> list[tuple[object, bytes]]:
    """Apply a service's own workload; every 25 commands take a snapshot and its bytes."""
    spec = REGISTRY.service(name)
    sm = spec.make_state_machine()
    assert not isinstance(sm, ProtocolKeepsState)
    rng = random.Random(seed)
    workloads = [spec.make_workload(i, 6) for i in range(3)]
    taken: list[tuple[object, bytes]] = []
    seqs = [0, 0, 0]
    for step in range(commands):
        client = step % 3
        workload = workloads[client]
        if hasattr(workload, "now"):
            workload.now = step * 0.05
        op = workload.next_op(rng)
        if op is None:
            continue
        seqs[client] += 1
        result = sm.apply(ClientRequest(client_id=f"c{client}", seq=seqs[client], op=op))
        workload.learn(op, result)
        if step % 25 == 0:
            snap = sm.snapshot()
            taken.append((snap, encode(snap)))
    return taken


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("seed", range(3))
def test_a_snapshot_never_changes_after_it_is_taken(name: str, seed: int):
    taken = drive(name, seed)
    assert len(taken) >= 4
    assert len({blob for _, blob in taken}) > 1, "the workload changed nothing: the test proves nothing"
    for snap, blob in taken:
        assert encode(snap) == blob
