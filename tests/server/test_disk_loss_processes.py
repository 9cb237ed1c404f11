"""Issue 10's disk-loss story with real processes: a node that lost its disk cannot
vote until it is re-added, so no acknowledged write is lost.

Leader L, follower P paused (SIGSTOP), 20 writes acknowledged by L and W; L and W
SIGKILLed; W's data directory emptied; W refuses to start on it without a flag, then
starts with --rejoin; P resumed (it cannot win: W does not vote); L comes back; every
acknowledged write is there and W is a voter again.  Before the fix P was elected with
W's vote and 12 of the 20 writes were lost.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from consensuskit.catalog import default_registry
from consensuskit.server.cluster import LocalCluster
from consensuskit.server.identity import empty_voter_message
from consensuskit.server.incarnations import read_incarnations
from tests.server.test_processes import PROTOCOLS, make_cluster, wait_exit

# Only protocols whose catalog entry says they survive a disk loss (--rejoin).
DISK_LOSS = tuple(p for p in PROTOCOLS if default_registry().get(p).survives_disk_loss)

pytestmark = pytest.mark.timeout(240)


def status_of(cluster: LocalCluster, node: str) -> dict | None:
    status = cluster.statuses(timeout=1.0).get(node)
    return status if isinstance(status, dict) else None


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def votes_again(status: dict | None, node: str) -> bool:
    """Readmitted: a voter again (Raft and Multi-Paxos list their voters; ZAB, whose
    membership is static, says whether the node observes)."""
    if status is None or status.get("rejoining") is not False:
        return False
    if "voters" in status:
        return node in status["voters"] and not status.get("learners")
    return status.get("observer") is False


def lose_a_disk(cluster: LocalCluster) -> tuple[str, str, str, Path]:
    """The story's start: 20 writes acknowledged by the leader and `wiped` while `paused`
    is stopped, then the leader and `wiped` killed and `wiped`'s directory emptied."""
    cluster.start()
    leader = cluster.wait_for_leader(30)
    paused, wiped = sorted(n for n in cluster.nodes if n != leader)
    # Each node has met the others (server/incarnations.py): a peer that never heard from
    # `wiped` before its disk was lost cannot tell its new directory from a first start.
    assert wait_for(
        lambda: all(
            set(read_incarnations(cluster.layout.node(n).data_dir)) == set(cluster.nodes) - {n}
            for n in cluster.nodes
        ),
        20,
    )
    cluster.nodes[paused].pause()
    with cluster.client(timeout=1.0, deadline=20.0) as kv:
        for i in range(20):
            kv.put(f"story/{i}", f"v{i}")  # acknowledged by the leader and `wiped`
    cluster.nodes[leader].kill()
    cluster.nodes[wiped].kill()
    data_dir = cluster.layout.node(wiped).data_dir
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    return leader, paused, wiped, data_dir


@pytest.mark.parametrize("protocol", DISK_LOSS)
def test_a_wiped_node_rejoins_as_a_learner_and_no_acknowledged_write_is_lost(
    tmp_path: Path, protocol: str
) -> None:
    with make_cluster(tmp_path / "data", protocol=protocol) as cluster:
        leader, paused, wiped, data_dir = lose_a_disk(cluster)

        # Without a flag a configured voter refuses the empty directory, in one line.
        cluster.nodes[wiped].start()
        assert wait_exit(cluster, wiped) == 1
        log = cluster.nodes[wiped].log_tail(5)
        assert f"error: {empty_voter_message(wiped, data_dir)}" in log.splitlines()

        cluster.nodes[wiped].start(["--rejoin"])
        cluster.nodes[paused].resume()
        assert wait_for(lambda: (s := status_of(cluster, wiped)) is not None and s.get("rejoining"), 20)
        time.sleep(3.0)  # `paused` campaigns meanwhile: without `wiped`'s vote it cannot win
        assert cluster.leader() is None, cluster.statuses()

        cluster.nodes[leader].start()
        cluster.wait_for_leader(30)
        with cluster.client(timeout=1.0, deadline=20.0) as kv:
            values = {e.key: e.value for e in kv.list("story/")}
        assert values == {f"story/{i}": f"v{i}" for i in range(20)}

        assert wait_for(lambda: votes_again(status_of(cluster, wiped), wiped), 30), status_of(cluster, wiped)
        # It votes again: with the old leader gone, the other two elect a leader.
        old = cluster.leader()
        assert old is not None
        cluster.nodes[old].kill()
        assert cluster.wait_for_leader(30, exclude=[old]) != old
        with cluster.client(timeout=1.0, deadline=20.0) as kv:
            values = {e.key: e.value for e in kv.list("story/")}
        assert values == {f"story/{i}": f"v{i}" for i in range(20)}


@pytest.mark.parametrize("protocol", DISK_LOSS)
def test_a_wiped_node_started_with_bootstrap_by_mistake_is_refused_and_no_write_is_lost(
    tmp_path: Path, protocol: str
) -> None:
    """The same story with the wrong flag: --bootstrap (a new cluster's) instead of
    --rejoin.  The peers that knew the node on its lost directory drop its messages
    (server/incarnations.py), so the stale follower still cannot win with its vote.
    Without that, Raft, Multi-Paxos and ZAB all elected the stale follower.  (The
    refusal of a protocol without --rejoin: tests/server/test_incarnations.py.)"""

    with make_cluster(tmp_path / "data", protocol=protocol) as cluster:
        leader, paused, wiped, data_dir = lose_a_disk(cluster)

        cluster.nodes[wiped].start(["--bootstrap"])
        cluster.nodes[paused].resume()

        def refused_by_paused() -> bool:
            status = status_of(cluster, paused)
            refused = (status or {}).get("peers", {}).get(wiped, {}).get("refused") or ""
            return "made by --bootstrap" in refused and "--rejoin" in refused

        assert wait_for(refused_by_paused, 20), status_of(cluster, paused)
        assert wait_for(lambda: "knew this node on data directory" in cluster.nodes[wiped].log_tail(50), 10)
        time.sleep(3.0)  # `paused` campaigns meanwhile: `wiped`'s vote does not count
        assert cluster.leader() is None, cluster.statuses()

        cluster.nodes[leader].start()
        cluster.wait_for_leader(30, exclude=[wiped])
        with cluster.client(timeout=1.0, deadline=20.0) as kv:
            values = {e.key: e.value for e in kv.list("story/")}
        assert values == {f"story/{i}": f"v{i}" for i in range(20)}

        # The way out the refusal names: an empty directory and --rejoin.
        cluster.nodes[wiped].kill()
        shutil.rmtree(data_dir)
        data_dir.mkdir()
        cluster.nodes[wiped].start(["--rejoin"])

        assert wait_for(lambda: votes_again(status_of(cluster, wiped), wiped), 30), status_of(cluster, wiped)
        assert wait_for(lambda: not (status_of(cluster, paused) or {})["peers"][wiped]["refused"], 10)
