"""PBFT on real processes: Ed25519 signatures and HMACs over TCP, one Byzantine replica
(an equivocating primary) while the Jepsen-style nemesis SIGKILLs the primary, pauses
and partitions nodes.  The history stays linearizable and no acknowledged write is lost.

The first test's client trusts the one replica that answered, so its faulty replica lies
to the other replicas, never to clients.  The second's faulty replica lies to clients
(``forge``: made-up results) and its client is the f+1 one (``replies=2``): every
operation to every replica, the answer two gave alike.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from tests.server.jepsen import (
    ClientLoad,
    HistoryRecorder,
    Nemesis,
    Workload,
    assert_acknowledged_writes_survive,
    check_linearizable,
    final_state,
    read_all,
)
from tests.server.test_processes import NODE_OPTIONS, PBFT_OPTIONS, heal, partition, restart_everyone

# About 40 s on a 2-core machine: with the slow suite (``make sweep``); the default run
# already covers PBFT's processes through test_processes.py's per-protocol suites.
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_a_byzantine_primary_and_sigkills_keep_the_history_linearizable(tmp_path: Path) -> None:
    options = {**NODE_OPTIONS, "options": {**PBFT_OPTIONS, "byzantine": "n1:equivocate"}}
    layout = ClusterLayout.prepare(
        tmp_path / "data", 4, free_base_port(8), node_options=options, protocol="pbft"
    )
    recorder = HistoryRecorder()
    workload = Workload(keys=8, workers=4, seed=5, timeout=1.0, deadline=6.0)
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        nemesis = Nemesis(cluster, random.Random(5), partition=partition, heal=heal)
        load = ClientLoad(cluster.endpoints, workload, recorder).start()
        try:
            nemesis.run(10.0)
        finally:
            nemesis.heal_all()
            load.stop()
        cluster.wait_ready(30)
        keys = [workload.key(i) for i in range(workload.keys)]
        before = final_state(read_all(cluster.endpoints, recorder, keys, "before-restart"))
        restart_everyone(cluster, power_loss=False)
        after = final_state(read_all(cluster.endpoints, recorder, keys, "after-restart"))
        counts = recorder.counts()
    assert recorder.unexpected == []
    assert counts["ok"] > 20, f"too little got through the faults: {counts}"
    assert after == before
    assert_acknowledged_writes_survive(recorder, after)
    check_linearizable(recorder, tmp_path / "history.jsonl")


def test_a_replica_lying_to_clients_and_sigkills_keep_the_f_plus_1_history_linearizable(
    tmp_path: Path,
) -> None:
    options = {**NODE_OPTIONS, "options": {**PBFT_OPTIONS, "byzantine": "n2:forge"}}
    layout = ClusterLayout.prepare(
        tmp_path / "data", 4, free_base_port(8), node_options=options, protocol="pbft"
    )
    recorder = HistoryRecorder()
    quorum = {"replies": 2}
    workload = Workload(keys=8, workers=4, seed=7, timeout=1.0, deadline=6.0, client_options=quorum)
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        nemesis = Nemesis(cluster, random.Random(7), partition=partition, heal=heal)
        load = ClientLoad(cluster.endpoints, workload, recorder).start()
        try:
            nemesis.run(10.0)
        finally:
            nemesis.heal_all()
            load.stop()
        cluster.wait_ready(30)
        keys = [workload.key(i) for i in range(workload.keys)]
        after = final_state(read_all(cluster.endpoints, recorder, keys, "final", **quorum))
        counts = recorder.counts()
    assert recorder.unexpected == []
    assert counts["ok"] > 20, f"too little got through the faults: {counts}"
    assert not any("forged" in str(v) for v, _ in after.values())
    assert_acknowledged_writes_survive(recorder, after)
    check_linearizable(recorder, tmp_path / "history.jsonl")
