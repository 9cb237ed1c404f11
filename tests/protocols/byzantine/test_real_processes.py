"""The generals as real node processes over TCP with real Ed25519 signatures, started as
``consensuskit up`` starts them through the ``generals_catalog`` plug-in."""

from __future__ import annotations

import time
from pathlib import Path

from consensuskit.catalog import CATALOG_ENV
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port

PLUGIN = "consensuskit.catalog:generals_catalog"


def test_sm1_over_tcp_with_ed25519_drops_the_forgery_and_obeys(tmp_path: Path) -> None:
    """LSP82 Fig. 1 with signatures: n3 forges "n1 said retreat" in every instance; the
    loyal n2 drops it (a bad Ed25519 signature) and obeys n1's attack."""
    options = {
        "mode": "signed",
        "scheme": "ed25519",
        "traitors": ["n3"],
        "strategy": "counterexample",
        "order": "attack",
        "round": 0.5,  # wide rounds: a loaded CI machine still meets the synchronous model
    }
    layout = ClusterLayout.prepare(
        tmp_path, 3, free_base_port(6), node_options={"options": options}, protocol="byzantine-generals"
    )
    env = {CATALOG_ENV: PLUGIN}  # the plug-in lives in the installed package
    with LocalCluster(layout, extra_env=env) as cluster:
        cluster.start()
        assert cluster.wait_ready(60.0) is None  # no leader: every node answers its status
        # LSP82's synchronous model holds only once every peer connection is up: an
        # instance that runs while n1's connection to n2 is still being made loses the
        # order, and n2 decides the default (retreat), as the model says.  So judge the
        # instances that start after every node reports all its peers connected.
        deadline = time.monotonic() + 30.0
        start: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline and not start:
            statuses = cluster.statuses(1.0)
            if all(
                isinstance(s, dict) and all(p.get("connected") for p in s.get("peers", {}).values())
                for s in statuses.values()
            ):
                start = statuses["n2"]  # type: ignore[assignment]
            time.sleep(0.1)
        assert start, "the generals' peer connections were not all up in 30 s"
        status: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            got = cluster.statuses(1.0).get("n2")
            if isinstance(got, dict) and got.get("decided", 0) >= start["decided"] + 4:
                status = got
                break
            time.sleep(0.2)
        assert status, "n2 decided fewer than 4 instances in 30 s once connected"
        assert status["role"] == "lieutenant" and status["loyal"] is True
        assert status["last_decision"] == "attack"
        # n2 relays the commander's order in every instance it receives it: in at least
        # the last three of the four (the first may have begun before the connections).
        assert status["sent"] - start["sent"] >= 3, (start, status)
        assert status["dropped"] - start["dropped"] >= 3  # the forged relays, one per instance
        commander = cluster.statuses(1.0)["n1"]
        assert isinstance(commander, dict) and commander["role"] == "commander"
