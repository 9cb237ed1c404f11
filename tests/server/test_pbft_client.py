"""PBFT's client on real processes: it trusts an answer only once f+1 replicas gave it.

One replica runs the ``forge`` strategy (``--byzantine n2:forge``): it orders requests
honestly but answers its clients with made-up results of the right shape (another value,
another version).  A client that trusts one replica is fooled (the check that this test
can fail); the f+1 client (``Client(..., replies=f+1)``: every replica at once, one
request id, the answer f+1 replicas gave alike) reads and writes the true values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from consensuskit.cli_kv import kv_command
from consensuskit.client import Client, Unavailable
from consensuskit.core.keys import REPLY_SIGNATURE_HEADER, verify_reply
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from tests.server.test_processes import NODE_OPTIONS, PBFT_OPTIONS

pytestmark = pytest.mark.timeout(120)

F = 1


def test_the_f_plus_1_client_gets_the_truth_past_a_replica_that_lies_to_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {**NODE_OPTIONS, "options": {**PBFT_OPTIONS, "byzantine": "n2:forge"}}
    layout = ClusterLayout.prepare(
        tmp_path / "data", 4, free_base_port(8), node_options=options, protocol="pbft"
    )
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        liar = cluster.url("n2")
        # reply_keys: answers count by the node whose signature they carry (up's keys.json).
        quorum = {"replies": F + 1, "reply_keys": layout.keys_path}
        with Client(cluster.endpoints, timeout=2.0, deadline=20.0, **quorum) as kv:
            for i in range(1, 4):
                written = kv.put("k", f"v{i}")
                assert written.version == i
                entry = kv.get("k")
                assert (entry.value, entry.version) == (f"v{i}", i)
            assert kv.cas("k", "v4", expected="v3").version == 4
            # Each answer is signed by its node (X-Node-Signature), on the fast path too.
            answer = kv.request("GET", "/v1/kv/k", endpoint=cluster.endpoints[0], leader_only=False)
            header = answer.headers.get(REPLY_SIGNATURE_HEADER)
            public = {n: bytes.fromhex(e["ed25519"]) for n, e in keys_doc(layout)["nodes"].items()}
            assert verify_reply(header, "", answer.status, answer.raw, public) == "n1"
            assert verify_reply(header, "", answer.status, answer.raw + b" ", public) is None
        # The liar alone: what a client trusting one replica would have believed.
        with Client([liar], timeout=2.0, deadline=20.0) as one:
            entry = one.get("k")
            assert entry.value == "forged-by-n2" and entry.version == 1004
        # The CLI: ``consensuskit kv get k --protocol pbft`` takes the reply quorum from
        # the catalog (f+1 of the endpoints given).
        capsys.readouterr()
        urls = ",".join(cluster.endpoints)
        assert kv_command("get", "k", endpoints=urls, protocol="pbft", as_json=True) == 0
        assert json.loads(capsys.readouterr().out) == {"key": "k", "value": "v4", "version": 4}
        assert kv_command("get", "k", endpoints=urls, protocol="nope") == 2
        # ``up`` gave each node its own key pair: signatures prove who signed.
        with Client(cluster.endpoints) as admin:
            for endpoint in cluster.endpoints:
                assert status_of(admin, endpoint)["signatures"] == "ed25519-node-keys"


def status_of(client: Client, endpoint: str) -> dict:
    """A node's status, waiting for a node a loaded machine started late."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return client.status(endpoint)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def keys_doc(layout: ClusterLayout) -> dict:
    return json.loads(layout.keys_path.read_text(encoding="utf-8"))
