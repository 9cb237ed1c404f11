"""The simulator's runtimes: "batched" drives nodes as the server does (batches within a
window, on_batch_end, send_early, on_durable, drawn sync times); "unbatched" hands over
one input per batch; "random" picks one per seed, from the seed."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from consensuskit.core.client import ClientRequest, Op
from consensuskit.sim import InvariantViolation, NetworkConfig, SimConfig, Simulation
from consensuskit.sim.env import SYNC, BatchedSimEnv, SimEnv

from .build import interpreted_only
from .toy import Note, echo_sim

FIXED = NetworkConfig(latency_min=0.001, latency_max=0.001, fsync_latency=0.01, fsync_sigma=0.0)


def put(sim: Simulation, node: str, key: str, value: Any, seq: int) -> None:
    sim.send_request(node, ClientRequest(client_id="c1", seq=seq, op=Op(kind="put", key=key, value=value)))


def raft(runtime: str, **config: Any) -> Simulation:
    fields: dict[str, Any] = {"protocol": "raft", "seed": 1, "runtime": runtime, **config}
    return Simulation(SimConfig(**fields))


def lead(sim: Simulation) -> str:
    nodes = sim.nodes.values()
    assert sim.run_until_true(lambda: any(n is not None and n.role == "leader" for n in nodes), 5.0)
    sim.run_for(0.2)  # the new term's entry is committed and durable everywhere
    return next(i for i, n in sim.nodes.items() if n is not None and n.role == "leader")


def appends_after(sim: Simulation, src: str, t0: float) -> list[dict[str, Any]]:
    """AppendEntries carrying entries that ``src`` sent after ``t0`` (trace records)."""
    return [
        r
        for r in sim.trace.tail(2000)
        if r["t"] > t0
        and r["ev"] == "send"
        and r["src"] == src
        and r["type"] == "AppendEntries"
        and "entries=[]" not in r["msg"]
    ]


def syncs_after(sim: Simulation, node: str, t0: float) -> list[dict[str, Any]]:
    return [r for r in sim.trace.tail(2000) if r["t"] > t0 and r["ev"] == "sync" and r["node"] == node]


def test_random_picks_a_runtime_per_seed_from_the_seed():
    picked = [Simulation(SimConfig(protocol="raft", seed=s)).runtime for s in range(12)]
    assert set(picked) == {"batched", "unbatched"}
    assert picked == [Simulation(SimConfig(protocol="raft", seed=s)).runtime for s in range(12)]
    assert raft("batched").runtime == "batched" and raft("unbatched").runtime == "unbatched"
    assert type(raft("batched").env_of("n1")) is BatchedSimEnv
    assert type(raft("unbatched").env_of("n1")) is SimEnv


def test_an_unknown_runtime_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown runtime 'fast'; valid: batched, unbatched, random"):
        SimConfig(runtime="fast").validate()


def test_inputs_within_the_window_form_one_batch():
    sim = echo_sim(network=FIXED, runtime="batched")
    put(sim, "n1", "a", 1, seq=1)  # arrives at 0.001
    sim.schedule(0.0001, lambda: put(sim, "n1", "b", 2, seq=2), "b")  # at 0.0011: same batch
    sim.schedule(0.002, lambda: put(sim, "n1", "c", 3, seq=3), "c")  # at 0.003: a new one
    sim.run_until(0.05)
    batches = [r for r in sim.trace.tail(500) if r["ev"] == "batch" and r["node"] == "n1"]
    assert [(r["t"], r["inputs"]) for r in batches] == [(0.0012, 2)]  # a lone input's is not traced
    syncs = [r for r in sim.trace.tail(500) if r["ev"] == "sync"]
    assert [r["writes"] for r in syncs] == [2, 1]  # one sync for the first batch's writes
    assert [m.value for _, _, m in sim.nodes["n2"].seen if isinstance(m, Note)] == [1, 2, 3]


@interpreted_only
def test_batched_sync_times_are_drawn_around_fsync_latency(monkeypatch):
    sim = raft("batched", node_ids=("n1", "n2", "n3", "n4", "n5"), clients=3, duration=3.0)
    starts: dict[str, float] = {}
    times: list[float] = []
    run_sync = BatchedSimEnv.run_sync

    def timed(env: Any, writes: Any) -> None:
        starts[env.node_id] = sim.now
        run_sync(env, writes)

    monkeypatch.setattr(BatchedSimEnv, "run_sync", timed)
    sim.start_workload()
    while sim.step():
        rec = sim.trace.tail(1)[0]
        if rec["ev"] == "sync":
            times.append(rec["t"] - starts[rec["node"]])
        if sim.now > 3.0:
            break
    mean = sim.network.fsync_latency
    assert len(times) > 250
    assert 0.7 * mean < statistics.mean(times) < 1.3 * mean
    assert max(times) > 3 * mean and min(times) < mean / 2
    unbatched = raft("unbatched")
    assert unbatched.network.fsync_sigma > 0  # the same config: only the runtime differs


def test_a_raft_leaders_append_entries_leave_before_its_own_sync_completes():
    sim = raft("batched", network=FIXED)
    leader = lead(sim)
    env = sim.env_of(leader)
    first = sim.nodes[leader].log.last_index + 1
    t0 = sim.now
    batch_ends: list[float] = []
    batch_end = env.batch_end
    env.batch_end = lambda: (batch_ends.append(sim.now), batch_end())
    put(sim, leader, "x", 1, seq=1)
    sim.run_for(0.05)
    sends = appends_after(sim, leader, t0)
    syncs = syncs_after(sim, leader, t0)
    assert sends and syncs and batch_ends
    assert sends[0]["t"] < syncs[0]["t"]  # early: the leader's fsync takes 10 ms
    assert any(abs(sends[0]["t"] - t) < 1e-6 for t in batch_ends)  # at the end of a batch
    node = sim.nodes[leader]
    assert node.commit_index >= first and node.durable_index >= first  # on_durable ran
    answer = next(r for r in sim.responses if r[2].seq == 1)
    assert answer[0] > syncs[0]["t"]  # the answer waited for the leader's sync


def test_unbatched_sends_nothing_early_and_calls_no_batch_end_but_reports_durability():
    sim = raft("unbatched", network=FIXED)
    leader = lead(sim)
    node = sim.nodes[leader]
    assert not node.early_replication and not node.share_read_rounds and node.reports_durable
    first = node.log.last_index + 1
    t0 = sim.now
    put(sim, leader, "x", 1, seq=1)
    sim.run_for(0.05)
    sends = appends_after(sim, leader, t0)
    syncs = syncs_after(sim, leader, t0)
    assert sends and syncs and sends[0]["t"] >= syncs[0]["t"]  # behind the barrier
    assert not any(r["ev"] == "batch" for r in sim.trace.tail(2000))
    assert node.durable_index >= first and node.commit_index >= first


def test_batched_multi_paxos_shares_a_batchs_commands_in_one_accept():
    sim = Simulation(SimConfig(protocol="multipaxos", seed=1, runtime="batched", network=FIXED))
    leader = lead(sim)
    assert sim.nodes[leader].share_read_rounds
    for seq in range(1, 4):
        put(sim, leader, f"k{seq}", seq, seq)
    sim.run_for(0.1)
    accepts = [
        r for r in sim.trace.tail(3000) if r["ev"] == "send" and r["src"] == leader and r["type"] == "Accept"
    ]
    assert accepts and len({r["t"] for r in accepts}) < 3 * len(accepts)
    assert sorted(r[2].seq for r in sim.responses if r[2].ok) == [1, 2, 3]


def test_a_crash_during_a_batched_sync_loses_that_batch():
    sim = echo_sim(network=FIXED, runtime="batched")
    put(sim, "n1", "a", 1, seq=1)  # handled at 0.001, batch ends at 0.0012, sync until 0.0112
    sim.run_until(0.005)
    assert sim.env_of("n1").syncing
    sim.crash("n1")
    sim.run_until(0.1)
    assert sim.responses == [] and sim.nodes["n2"].seen == []
    sim.restart("n1")
    assert sim.storage_of("n1").get("a") is None


def test_a_batch_cut_short_by_a_crash_sends_nothing():
    sim = raft("batched", network=FIXED)
    leader = lead(sim)
    t0 = sim.now
    put(sim, leader, "x", 1, seq=1)
    sim.run_for(0.0011)  # the request is handled, its batch not ended yet
    assert sim.env_of(leader).batch_inputs == 1 and sim.env_of(leader).held == 0
    sim.crash(leader)
    sim.run_for(0.05)
    assert appends_after(sim, leader, t0) == []


class SlowDiskEnv(BatchedSimEnv):
    """A node whose fsync takes 20 ms (its followers' take the usual time)."""

    __slots__ = ()

    def run_sync(self, writes: Any) -> None:
        self.sync_batch = writes
        self.sync_depth = self.depth
        self.sim.schedule(self.sim.now + 0.02, self._synced, "slow fsync")

    def _synced(self) -> None:
        if not self.dead:
            self.sim._on_sync((self.sim.now, 0, SYNC, self))


def lose_an_entry_the_leader_counted_before_its_fsync(count_unsynced_self: bool) -> Simulation:
    """The leader's disk is slow; one follower acknowledges the new entry while the
    leader's fsync runs, and the leader crashes before it completes.  Then the nodes
    without the entry (the restarted leader and the other follower) elect a leader."""
    sim = raft("batched", network=NetworkConfig(latency_min=0.001, latency_max=0.001, fsync_sigma=0.0))
    leader = lead(sim)
    near, far = (n for n in sim.node_ids if n != leader)
    env = sim.env_of(leader)
    env.__class__ = SlowDiskEnv
    if count_unsynced_self:
        sim.nodes[leader].reports_durable = False  # what a count-self-before-durable bug does
    sim.block(leader, far)
    put(sim, leader, "x", 1, seq=1)
    try:
        sim.run_for(0.01)  # the near follower's ack is back; the leader's fsync is not done
        node = sim.nodes[leader]
        assert node.commit_index == (node.log.last_index if count_unsynced_self else 1)
        sim.crash(leader)
        sim.partition([[near], [leader, far]])
        sim.restart(leader)
        sim.run_for(2.0)
        sim.heal()
        sim.run_for(2.0)
    except InvariantViolation:
        pass  # recorded in sim.violations
    return sim


@interpreted_only
def test_the_batched_runtime_reaches_a_leader_that_counts_its_unsynced_entries():
    """Early replication plus durable-prefix counting run under the invariants: the
    correct leader survives the crash above, and one that counts its own unsynced log
    (the control) commits an entry a majority never held, which the checker catches."""
    safe = lose_an_entry_the_leader_counted_before_its_fsync(count_unsynced_self=False)
    assert not safe.violations
    assert any(n.log.last_index >= 2 and n.role == "leader" for n in safe.nodes.values() if n is not None)
    broken = lose_an_entry_the_leader_counted_before_its_fsync(count_unsynced_self=True)
    assert [v.name for v in broken.violations] == ["leader-completeness"]


@pytest.mark.parametrize("runtime", ["batched", "unbatched"])
def test_a_read_the_state_machine_fails_fails_the_simulation(runtime, monkeypatch):
    """The server refuses such a read and goes on (protocols/common/replies.py); in the
    simulator it is a bug to report, so the run stops with it."""
    sim = raft(runtime)
    leader = lead(sim)
    node = sim.nodes[leader]
    assert node is not None

    def broken(self: Any, request: ClientRequest) -> Any:
        raise KeyError(request.op.key)

    monkeypatch.setattr(type(node.sm), "read", broken)
    get = ClientRequest(client_id="c1", seq=1, op=Op(kind="get", key="k"), consistency="linearizable")
    sim.send_request(leader, get)
    with pytest.raises(RuntimeError, match=f"{leader}: a get read failed: ") as failed:
        sim.run_for(1.0)
    assert "KeyError: 'k'" in str(failed.value)
