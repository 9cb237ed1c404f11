"""Raft's seed scenarios (seeds 000, 002, 003, 004), each asserting its outcome.

Scripts steer elections with ``RaftNode.campaign`` (a timeout firing "now") and shape
the network with message filters, so each story happens exactly as narrated.  Where a
story needs an old leader to keep believing it leads (split brain), check-quorum is
turned off and the description says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensuskit.client_cache import MISS, LeaseCache
from consensuskit.core.capabilities import leader_of
from consensuskit.core.client import CACHE, ClientRequest, ClientResponse, Op
from consensuskit.protocols.raft import HARD_STATE_KEY
from consensuskit.protocols.raft.messages import (
    COMMAND,
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    Heartbeat,
    LogEntry,
)
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.scenarios.disk_loss import expect_writes_kept, lose_a_disk
from consensuskit.sim import Simulation
from consensuskit.sim.history import OpRecord

FIVE = ("S1", "S2", "S3", "S4", "S5")


# ---------------------------------------------------------------------- helpers
def leaders(sim: Simulation) -> list[str]:
    return leader_of((i, sim.nodes.get(i)) for i in sim.node_ids)  # the one lookup (HasLeader)


def node(sim: Simulation, node_id: str) -> Any:
    n = sim.nodes.get(node_id)
    assert n is not None, f"{node_id} is down"
    return n


def log_of(sim: Simulation, node_id: str) -> list[tuple[int, int]]:
    """(index, term) of every entry the node holds."""
    return [(e.index, e.term) for e in node(sim, node_id).log.entries]


def campaign(sim: Simulation, node_id: str) -> None:
    sim.invoke(node_id, lambda n: n.campaign(), f"{node_id} election timeout fires")


def elect(sim: Simulation, node_id: str, timeout: float = 3.0) -> bool:
    """Make ``node_id`` campaign (again, after each failed round) until it leads."""
    deadline = sim.now + timeout
    while sim.now < deadline:
        campaign(sim, node_id)
        if sim.run_until_true(lambda: node(sim, node_id).role == "leader", timeout=0.1):
            return True
    return False


def put(key: str, value: Any) -> Op:
    return Op(kind="put", key=key, value=value)


def converged(sim: Simulation) -> bool:
    live = [sim.nodes[i] for i in sim.node_ids if sim.nodes.get(i) is not None]
    return (
        len({(n.last_applied, n.sm.digest()) for n in live}) == 1
        and len({tuple((e.index, e.term) for e in n.log.entries) for n in live}) == 1
    )


def settle(sim: Simulation, seconds: float = 3.0) -> None:
    """Repair every fault and let the cluster converge."""
    sim.heal()
    for i in sim.node_ids:
        if sim.nodes.get(i) is None:
            sim.restart(i)
    sim.run_until_true(lambda: converged(sim) and len(leaders(sim)) == 1, timeout=seconds)
    sim.run_for(0.2)


def expect_converged(run: ScenarioRun, sim: Simulation) -> None:
    logs = {i: log_of(sim, i) for i in sim.node_ids}
    run.expect(
        converged(sim),
        "after healing, every log and state machine is identical",
        "; ".join(f"{i}: last={logs[i][-1] if logs[i] else None}" for i in sim.node_ids),
    )


def drop_when(pred: Callable[[str, str, Any], bool]) -> Callable[[str, str, Any], str | None]:
    return lambda src, dst, msg: "drop" if pred(src, dst, msg) else None


# ---------------------------------------------------------------------- elections
def raft_election(run: ScenarioRun) -> None:
    sim = run.simulation(("A", "B", "C"))
    sim.run_until_true(lambda: bool(leaders(sim)), timeout=5.0)
    first = leaders(sim)
    run.expect(len(first) == 1, "one of A,B,C times out first and becomes leader", f"leaders={first}")
    if not first:
        return
    leader = first[0]
    term = node(sim, leader).term
    voters = [i for i in sim.node_ids if node(sim, i).voted_for == leader]
    run.expect(
        leader in voters and len(voters) >= 2,
        "it voted for itself and won a majority",
        f"voted for {leader}: {voters}",
    )
    sim.run_for(3.0)
    run.expect(
        leaders(sim) == [leader] and all(node(sim, i).term == term for i in sim.node_ids),
        "heartbeats keep it leader, in the same term, for 3 s",
    )


def raft_split_vote(run: ScenarioRun) -> None:
    sim = run.simulation(("A", "B", "C", "D"))
    # A reaches C first, B reaches D first: each candidate collects exactly two votes.
    for src, near, far in (("A", "C", "D"), ("B", "D", "C")):
        sim.set_link(src, near, latency_min=0.001, latency_max=0.001)
        sim.set_link(src, far, latency_min=0.02, latency_max=0.02)
    sim.run_for(0.01)
    campaign(sim, "A")
    campaign(sim, "B")
    sim.run_for(0.1)
    a, b = node(sim, "A"), node(sim, "B")
    run.expect(
        a.role == b.role == "candidate" and a.term == b.term == 1,
        "A and B time out together and both stand for term 1",
    )
    granted = {i: sorted(v for v, ok in node(sim, i).votes.items() if ok) for i in ("A", "B")}
    run.expect(
        granted == {"A": ["A", "C"], "B": ["B", "D"]},
        "votes split 2-2: no majority of four in term 1",
        f"votes: {granted}",
    )
    run.expect(not leaders(sim), "no leader in term 1")
    for i in sim.node_ids:
        sim.set_link(i, "C")
        sim.set_link(i, "D")
    sim.run_until_true(lambda: bool(leaders(sim)), timeout=5.0)
    winner = leaders(sim)
    run.expect(
        len(winner) == 1 and node(sim, winner[0]).term >= 2,
        "randomized timeouts elect a single leader in a later term",
        f"leader={winner} term={node(sim, winner[0]).term if winner else None}",
    )


# ---------------------------------------------------------------------- partitions
def raft_partition_5(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE, options={"check_quorum": False}, op_timeout=10.0, op_deadline=10.0)
    sim.run_for(0.01)
    run.expect(elect(sim, "S1"), "S1 is elected leader of S1..S5")
    sim.run_for(0.2)
    old_term = node(sim, "S1").term
    sim.partition([["S1", "S2"], ["S3", "S4", "S5"]])
    minority_write = sim.submit(put("x", "from-S1"), node="S1", client_id="c1")
    sim.run_for(0.05)
    run.expect(elect(sim, "S3"), "S3 times out first and wins with votes from S4,S5")
    s3 = node(sim, "S3")
    run.expect(
        s3.term > old_term and sorted(v for v, ok in s3.votes.items() if ok) == ["S3", "S4", "S5"],
        "S3's term is higher than S1's and its votes came from S3,S4,S5",
        f"S1 term {old_term}, S3 term {s3.term}",
    )
    majority_write = sim.submit(put("x", "from-S3"), node="S3", client_id="c2")
    sim.run_for(1.0)
    run.expect(majority_write.status == "ok", "the write sent to S3 commits", f"{majority_write.status}")
    run.expect(
        minority_write.status is None and node(sim, "S1").commit_index < node(sim, "S1").log.last_index,
        "the write sent to S1 never commits (S1 still believes it leads, without a majority)",
        f"S1 role={node(sim, 'S1').role} commit={node(sim, 'S1').commit_index}"
        f" last={node(sim, 'S1').log.last_index}",
    )
    run.expect(set(leaders(sim)) == {"S1", "S3"}, "two leaders coexist, in different terms")
    sim.heal()
    sim.run_until_true(lambda: node(sim, "S1").role == "follower", timeout=1.0)
    run.expect(
        node(sim, "S1").role == "follower" and node(sim, "S1").term == s3.term,
        "on heal S1 sees the higher term and steps down",
    )
    settle(sim)
    run.expect(
        all(node(sim, i).sm.get("x") == "from-S3" for i in sim.node_ids),
        "S1 and S2 roll back their uncommitted entry and catch up: x=from-S3 everywhere",
    )
    expect_converged(run, sim)


def raft_partition_set(run: ScenarioRun) -> None:
    ids = ("A", "B", "C", "D", "E")
    sim = run.simulation(ids, options={"check_quorum": False}, op_timeout=10.0, op_deadline=10.0)
    sim.run_for(0.01)
    run.expect(elect(sim, "B"), "B leads A..E")
    sim.run_for(0.2)
    sim.partition([["A", "B"], ["C", "D", "E"]])
    set3 = sim.submit(put("value", 3), node="B", client_id="client1")
    sim.run_for(0.05)
    run.expect(elect(sim, "E"), "C,D,E elect E")
    set8 = sim.submit(put("value", 8), node="E", client_id="client2")
    sim.run_for(1.0)
    run.expect(set8.status == "ok", "client 2's 'set 8' at E commits")
    run.expect(set3.status is None, "client 1's 'set 3' at B stays uncommitted")
    settle(sim)
    run.expect(all(node(sim, i).sm.get("value") == 8 for i in ids), "after heal the value is 8 everywhere")
    run.expect(node(sim, "B").role == "follower", "B is a follower")
    expect_converged(run, sim)


# ---------------------------------------------------------------------- figure 8
def raft_figure_8(run: ScenarioRun) -> None:
    """Raft paper figure 8 (seed 002, figure 5), scripted term by term."""
    ids = ("s1", "s2", "s3", "s4", "s5")
    sim = run.simulation(
        ids, options={"check_quorum": False, "max_batch_entries": 1, "election_timeout": 2.0}
    )
    unsafe = "commit-previous-term" in sim.config.bugs
    sim.run_for(0.01)
    run.expect(elect(sim, "s1"), "(a) s1 leads")
    sim.run_for(0.1)
    # (a) s1 appends a new entry that reaches no follower.
    nobody = sim.add_filter(
        drop_when(lambda s, d, m: s == "s1" and isinstance(m, AppendEntries) and bool(m.entries))
    )
    sim.send_request("s1", ClientRequest(client_id="c1", seq=1, op=put("x", "a")))
    sim.run_for(0.1)
    term_a = node(sim, "s1").term
    index = node(sim, "s1").log.last_index
    run.note(f"(a) s1 leads term {term_a} and holds {term_a}/{index} alone")
    # (b) s1 crashes; s5 wins with votes of s3,s4,s5 and appends its own entry at `index`.
    sim.crash("s1")
    sim.remove_filter(nobody)
    alone = sim.add_filter(
        drop_when(lambda s, d, m: s == "s5" and isinstance(m, AppendEntries) and bool(m.entries))
    )
    run.expect(elect(sim, "s5"), "(b) s5 is elected with votes from s3,s4,s5")
    sim.run_for(0.1)
    term_b = node(sim, "s5").term
    run.expect(
        node(sim, "s5").log.term_at(index) == term_b,
        f"(b) s5 holds its own term-{term_b} entry at index {index}",
    )
    # (c) s5 crashes; s1 restarts and wins; it copies its old entry to s2 and s3, but no
    # entry of its new term reaches a majority.
    sim.crash("s5")
    sim.remove_filter(alone)
    sim.restart("s1")

    def only_old_entries(s: str, d: str, m: Any) -> str | None:
        if s != "s1" or not isinstance(m, AppendEntries) or not m.entries:
            return None
        if d == "s4":
            return "drop"
        receiver = sim.nodes.get(d)
        current = [e for e in m.entries if e.term == m.term]
        will_match = receiver is not None and receiver.log.term_at(m.prev_log_index) == m.prev_log_term
        # Let probes through (they are rejected and make s1 back up to `index`).
        return "drop" if current and will_match else None

    hold_new = sim.add_filter(only_old_entries)
    run.expect(elect(sim, "s1"), "(c) s1 restarts and is elected again")
    term_c = node(sim, "s1").term
    sim.run_for(0.3)
    holders = [i for i in ("s1", "s2", "s3") if sim.nodes[i].log.term_at(index) == term_a]
    run.expect(
        holders == ["s1", "s2", "s3"],
        f"(c) the term-{term_a} entry {index} is now on a majority (s1,s2,s3)",
        f"holders={holders}",
    )
    committed = node(sim, "s1").commit_index >= index
    if unsafe:
        run.note(f"(c) --unsafe-commit: s1 commits {term_a}/{index} by counting replicas")
    else:
        run.expect(
            not committed,
            f"(c) s1 does NOT commit {term_a}/{index}: it is not from its term {term_c}",
        )
    # (d) s1 crashes; s5 comes back, wins, and overwrites index `index` everywhere.
    sim.crash("s1")
    sim.remove_filter(hold_new)
    sim.restart("s5")
    run.expect(elect(sim, "s5", timeout=5.0), "(d) s5 is elected again (its last term is higher)")
    sim.run_for(0.5)
    settle(sim)
    winner_term = node(sim, "s5").log.term_at(index)
    run.expect(
        all(node(sim, i).log.term_at(index) == winner_term for i in ids),
        f"(d) s5's entry replaces {term_a}/{index} on every node; it had never been committed",
    )
    expect_converged(run, sim)


# ---------------------------------------------------------------------- figure 7
FIGURE_7 = {
    # Raft paper figure 7: the leader of term 8 and six possible followers.
    "L": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def raft_disk_loss(run: ScenarioRun) -> None:
    sim = run.simulation(("S1", "S2", "S3"))
    run.expect(elect(sim, "S1"), "S1 leads")
    lose_a_disk(run, sim, lead="S1", stale="S3", wiped="S2", how="acknowledged")
    sim.run_for(3.0)
    stale = "S3, which lacks the writes, cannot win: S2 does not vote"
    run.expect(not leaders(sim), stale, f"{leaders(sim)}")
    sim.restart("S1")
    sim.run_until_true(lambda: leaders(sim) == ["S1"], timeout=5.0)
    run.expect(leaders(sim) == ["S1"], "S1, which holds the writes, leads again", f"{leaders(sim)}")
    sim.run_until_true(lambda: not node(sim, "S2").rejoining, timeout=5.0)
    run.expect(
        not node(sim, "S2").rejoining and "S2" in node(sim, "S1").config.voters,
        "S1 demotes S2 to a learner, catches it up and promotes it: a voter again",
    )
    expect_writes_kept(run, sim, via="S1")
    settle(sim)
    expect_converged(run, sim)


def raft_log_divergence(run: ScenarioRun) -> None:
    ids = tuple(FIGURE_7)
    sim = run.simulation(ids, options={"check_quorum": False, "election_timeout": 5.0})
    for node_id, terms in FIGURE_7.items():
        durable = sim.storage_of(node_id).durable
        durable.put(HARD_STATE_KEY, HardState(term=7, voted_for=None))
        entries = [
            LogEntry(
                term=t,
                index=i,
                kind=COMMAND,
                data=ClientRequest(client_id=f"t{t}", seq=i, op=put("x", f"{t}/{i}")),
            )
            for i, t in enumerate(terms, start=1)
        ]
        durable.log_append(entries)
        sim.restart(node_id)
    run.note("logs loaded as in figure 7: " + "; ".join(f"{k}={v}" for k, v in FIGURE_7.items()))
    run.expect(elect(sim, "L"), "L wins term 8 with votes from a, b, e, f (c and d refuse)")
    run.expect(node(sim, "L").term == 8, "L leads term 8", f"term={node(sim, 'L').term}")
    sim.run_until_true(lambda: converged(sim), timeout=3.0)
    leader_log = log_of(sim, "L")
    for follower in ids[1:]:
        run.expect(
            log_of(sim, follower) == leader_log,
            f"follower ({follower}) ends with exactly the leader's log",
            f"{follower}: {[t for _, t in log_of(sim, follower)]}",
        )
    run.expect(
        [t for _, t in leader_log] == [*FIGURE_7["L"], 8],
        "the leader's own log is only extended (its term-8 no-op), never rewritten",
    )


# ---------------------------------------------------------------------- leader crashes
LEADER_CRASH_STAGES = {
    1: "before the request reaches the leader",
    2: "appended at the leader only",
    3: "replicated to all followers but not acknowledged",
    4: "replicated to some followers but not acknowledged",
    5: "committed at the leader but not yet at the followers",
    6: "committed everywhere but the client not answered",
    7: "split brain: two leaders",
}


# ---------------------------------------------------------------------- lease reads
LEASE_DRIFT_DEFAULT = 0.01


def lease_read(run: ScenarioRun) -> None:
    """Raft §6.4.1: the leader serves reads alone while its lease runs.  The lease is
    ``election_timeout * (1 - clock_drift_bound)`` from the send time of a heartbeat
    round a majority acknowledged, measured on the leader's own clock; the followers'
    promise (check-quorum: no vote while they hear from a leader) makes it safe as long
    as the leader's clock runs at least ``1 - clock_drift_bound`` as fast as real time.
    ``--param drift=D`` slows S1's clock by D: beyond the bound (0.05) its lease
    outlives the election of the next leader, and S1 answers a stale read."""
    drift = run.param("drift", LEASE_DRIFT_DEFAULT, low=0, below=0.5)
    sim = run.simulation(FIVE, options={"read_mode": "lease"}, op_timeout=2.0, op_deadline=2.0)
    bound = node(sim, "S1").opts.clock_drift_bound
    beyond = drift > bound
    sim.set_clock("S1", drift=-drift)
    run.note(f"S1's clock runs {drift:.0%} slow; the lease assumes at most {bound:.0%} drift")
    run.expect(elect(sim, "S1"), "S1 leads S1..S5")
    write1 = sim.submit(put("x", 1), node="S1", client_id="w")
    sim.run_until_true(lambda: write1.done, timeout=1.0)
    sim.run_for(0.2)
    lease_left = node(sim, "S1").lease_remaining()
    read1 = sim.submit(Op(kind="get", key="x"), node="S1", client_id="r1")
    sim.run_until_true(lambda: read1.done, timeout=0.05)
    run.expect(
        lease_left > 0 and read1.status == "ok" and read1.result == {"value": 1, "version": 1},
        "S1 holds a lease and answers a read from its own state",
        f"lease left {lease_left:.3f} s by S1's clock; status={read1.status} result={read1.result}",
    )
    # Cut S1 off; clients still reach it.  The rest elect S2 as soon as they will vote.
    sim.partition([["S1"], ["S2", "S3", "S4", "S5"]])
    # From now on a client asks S1 every 20 ms: what it answers alone is what its lease
    # (by its own clock) lets it answer.
    probes: list[tuple[float, Any]] = []

    def probe() -> None:
        probes.append((sim.now, sim.submit(Op(kind="get", key="x"), node="S1", client_id=f"p{len(probes)}")))

    for k in range(60):
        sim.schedule(sim.now + 0.02 * k, probe, "read at S1")
    # Acknowledgements in flight at the cut may still extend the lease: let them land.
    sim.run_for(0.05)
    lease_end = sim.now + (node(sim, "S1").lease_until - sim.local_time("S1")) / sim.clock_of("S1").rate
    # S2 campaigns every 50 ms: the others grant votes as soon as they have not heard
    # from S1 for an election timeout (the promise the lease stands on).
    rest = ("S2", "S3", "S4", "S5")

    def new_leader() -> str | None:
        return next((i for i in rest if node(sim, i).role == "leader"), None)

    deadline = sim.now + 3.0
    while new_leader() is None and sim.now < deadline:
        campaign(sim, "S2")
        sim.run_until_true(lambda: new_leader() is not None, timeout=0.05)
    leader2 = new_leader()
    run.expect(
        leader2 is not None,
        "S2..S5 elect a new leader as soon as they stop hearing from S1",
        f"new leader {leader2} at {sim.now:.3f} s",
    )
    write2 = sim.submit(put("x", 2), node=leader2 or "S2", client_id="w")
    sim.run_until_true(lambda: write2.done, timeout=1.0)
    run.expect(write2.status == "ok", "the new leader commits x=2", f"{write2.status}")
    acked_at = sim.now
    run.note(f"S1's lease ends at {lease_end:.3f} s (real time); x=2 acknowledged at {acked_at:.3f} s")
    if beyond:
        run.expect(
            acked_at < lease_end,
            "beyond the drift bound, S1's lease outlives the election: x=2 is acknowledged while it runs",
        )
        run.note("a read S1 answers alone from now on is stale: the read-freshness invariant stops the run")
    sim.run_for(0.85)
    answered = [(at, op) for at, op in probes if op.status == "ok" and op.node == "S1"]
    last = max((at for at, _ in answered), default=None)
    run.expect(
        bool(answered) and last is not None and last < lease_end,
        "S1 answered alone only reads asked while its lease ran, all with x=1",
        f"{len(answered)} answered, the last asked at {last:.3f} s" if last is not None else "none answered",
    )
    run.expect(
        lease_end <= acked_at and all(op.result == {"value": 1, "version": 1} for _, op in answered),
        "within the bound, the lease ended before the new leader committed x=2: no stale read",
        f"lease end {lease_end:.3f} s, x=2 acknowledged at {acked_at:.3f} s",
    )
    settle(sim)
    read3 = sim.submit(Op(kind="get", key="x"), client_id="r3")
    sim.run_until_true(lambda: read3.done, timeout=2.0)
    run.expect(
        read3.result == {"value": 2, "version": 2}, "after the heal every read returns x=2", f"{read3.result}"
    )
    expect_converged(run, sim)


# ---------------------------------------------------------------------- cache leases
CACHE_LEASE = 1.0


def lease_cache(run: ScenarioRun) -> None:
    """Gray and Cheriton's cache leases on the Raft kv (``cache_lease`` option,
    protocols/raft/cache_leases.py and client_cache.py).  Client C reads x with
    ``consistency="cache"`` and keeps the answer for the lease, shortened by the drift
    bound, counted on its own clock from when it asked; the leader holds every write to
    x back until the lease ran out on its clock, lengthened by the bound.
    ``--param drift=D`` slows C's clock by D: beyond the bound C keeps answering x=1 from
    its cache after x=2 committed."""
    drift = run.param("drift", LEASE_DRIFT_DEFAULT, low=0, below=0.9)
    three = FIVE[:3]
    sim = run.simulation(three, options={"cache_lease": CACHE_LEASE}, op_timeout=3.0, op_deadline=6.0)
    bound = node(sim, "S1").opts.clock_drift_bound
    cache = LeaseCache(drift_bound=bound)
    origin = sim.now

    def client_clock() -> float:  # C's clock runs (1 - drift) as fast as real time
        return origin + (sim.now - origin) * (1.0 - drift)

    run.note(f"C's clock runs {drift:.0%} slow; leases assume at most {bound:.0%} drift")
    run.expect(elect(sim, "S1"), "S1 leads S1..S3")
    write1 = sim.submit(put("x", 1), node="S1", client_id="w")
    sim.run_until_true(lambda: write1.done, timeout=3.0)
    run.expect(write1.status == "ok", "x=1 commits (a new leader first waits out leases it cannot know)")
    asked = client_clock()
    read1 = sim.submit(Op(kind="get", key="x"), node="S1", client_id="c", consistency=CACHE)
    sim.run_until_true(lambda: read1.done, timeout=1.0)
    result = read1.result if isinstance(read1.result, dict) else {}
    lease = float(result.get("lease", 0.0))
    run.expect(
        read1.status == "ok" and result.get("value") == 1 and lease == CACHE_LEASE,
        f"C reads x=1 with a {CACHE_LEASE:g} s cache lease",
        f"result={read1.result}",
    )
    cache.store("x", {"value": result.get("value"), "version": result.get("version")}, lease, asked)
    written_at = sim.now
    write2 = sim.submit(put("x", 2), node="S2", client_id="w")  # through a follower
    hits: list[tuple[float, Any]] = []
    seqs = iter(range(1000, 10_000))

    def read_from_cache() -> None:
        entry = cache.lookup("x", client_clock())
        if entry is MISS:
            return
        # The cached answer, in the history as a read that took no time.
        sim.history.append(
            OpRecord(process="c", seq=next(seqs), op="get", key="x", invoke=sim.now, complete=sim.now,
                     status="ok", result=dict(entry))
        )  # fmt: skip
        hits.append((sim.now, entry["value"]))

    for k in range(60):
        sim.schedule(sim.now + 0.05 * k, read_from_cache, "C reads x from its cache")
    sim.run_until_true(lambda: write2.done, timeout=4.0)
    committed_at = sim.now
    run.expect(
        write2.status == "ok" and committed_at - written_at >= CACHE_LEASE * 0.9,
        "the leader holds x=2 back until C's lease ran out, then commits it",
        f"sent at {written_at:.3f} s, acknowledged at {committed_at:.3f} s",
    )
    sim.run_for(3.0 - (sim.now - written_at))
    late = [(at, value) for at, value in hits if at >= committed_at]
    if hits:
        run.note(f"C answered {len(hits)} reads from its cache, the last at {hits[-1][0]:.3f} s")
    run.expect(bool(hits), "C answers reads of x from its cache while its lease runs, with no message")
    run.expect(
        not late,
        "every cached answer came before x=2 committed" if not late else "C answered x=1 after x=2 committed",
        f"{len(late)} stale cached reads" if late else "",
    )
    read2 = sim.submit(Op(kind="get", key="x"), node="S3", client_id="c2")
    sim.run_until_true(lambda: read2.done, timeout=2.0)
    run.expect(read2.result == {"value": 2, "version": 2}, "a read after that returns x=2", f"{read2.result}")
    from consensuskit.check.linearizability import check_history

    check = check_history(sim.history, model="kv", timeout=10)
    run.expect(check.ok, "the history, cached reads included, is linearizable")


def leader_crash(stage: int) -> Callable[[ScenarioRun], None]:
    def script(run: ScenarioRun) -> None:
        options = {"check_quorum": False} if stage == 7 else {}
        sim = run.simulation(FIVE, options=options, op_timeout=0.5, op_deadline=20.0)
        sim.run_for(0.01)
        run.expect(elect(sim, "S1"), "S1 leads S1..S5")
        sim.run_for(0.2)
        index = node(sim, "S1").log.last_index + 1
        followers = FIVE[1:]
        is_response = lambda s, d, m: s == "S1" and isinstance(m, ClientResponse)  # noqa: E731

        def entry_everywhere(nodes: tuple[str, ...]) -> bool:
            return all(sim.nodes[i] is not None and sim.nodes[i].log.last_index >= index for i in nodes)

        if stage == 1:
            sim.add_filter(drop_when(lambda s, d, m: d == "S1" and isinstance(m, ClientRequest)))
        elif stage == 2:
            sim.add_filter(
                drop_when(lambda s, d, m: s == "S1" and isinstance(m, AppendEntries) and m.entries)
            )
        elif stage in (3, 4):
            reach = followers if stage == 3 else ("S2", "S3")
            sim.add_filter(
                drop_when(
                    lambda s, d, m: (
                        (s == "S1" and d not in reach and isinstance(m, AppendEntries) and m.entries)
                        or (d == "S1" and isinstance(m, AppendEntriesResponse))
                    )
                )
            )
        elif stage == 5:
            sim.add_filter(
                drop_when(
                    lambda s, d, m: (
                        is_response(s, d, m)
                        or (s == "S1" and isinstance(m, AppendEntries) and m.leader_commit >= index)
                        or (s == "S1" and isinstance(m, Heartbeat) and m.commit >= index)
                    )
                )
            )
        elif stage == 6:
            sim.add_filter(drop_when(is_response))
        else:
            sim.partition([["S1"], list(followers)])

        write = sim.submit(put("x", 1), node="S1", client_id="c1", seq=1)
        if stage == 1:
            sim.run_for(0.01)
        elif stage == 2:
            sim.run_until_true(lambda: entry_everywhere(("S1",)), timeout=1.0)
        elif stage == 3:
            sim.run_until_true(lambda: entry_everywhere(FIVE), timeout=1.0)
        elif stage == 4:
            sim.run_until_true(lambda: entry_everywhere(("S1", "S2", "S3")), timeout=1.0)
            run.expect(sim.nodes["S4"].log.last_index < index, "S4 and S5 do not have the entry")
        elif stage == 5:
            sim.run_until_true(lambda: node(sim, "S1").commit_index >= index, timeout=1.0)
            run.expect(
                all(node(sim, i).commit_index < index for i in followers),
                "committed at S1, not yet at any follower",
            )
        elif stage == 6:
            sim.run_until_true(lambda: all(node(sim, i).commit_index >= index for i in FIVE), timeout=1.0)
        if stage == 7:
            sim.run_until_true(lambda: len(leaders(sim)) == 2, timeout=3.0)
            run.expect(
                len(leaders(sim)) == 2, "split brain: S1 still leads alone while the others elect a leader"
            )
            sim.run_until_true(lambda: write.status is not None, timeout=10.0)
            run.expect(
                node(sim, "S1").commit_index < node(sim, "S1").log.last_index,
                "the write sent to the old leader S1 never commits there",
            )
            sim.heal()
        else:
            run.note(
                f"S1 crashes {LEADER_CRASH_STAGES[stage]}: S1 log last={node(sim, 'S1').log.last_index},"
                f" commit={node(sim, 'S1').commit_index}"
            )
            sim.crash("S1")
            sim.clear_filters()
        sim.run_until_true(lambda: write.status is not None, timeout=15.0)
        run.expect(
            write.status == "ok",
            "the client's write (retried with the same id) succeeds",
            f"status={write.status} attempts={write.attempts}",
        )
        settle(sim)
        versions = {i: node(sim, i).sm.execute(Op(kind="get", key="x")) for i in FIVE}
        run.expect(
            all(v == {"value": 1, "version": 1} for v in versions.values()),
            "the write is applied exactly once on every node (x=1 at version 1)",
            f"{versions}",
        )
        copies = sum(
            1
            for e in node(sim, "S2").log.entries
            if e.kind == COMMAND and (e.data.client_id, e.data.seq) == ("c1", 1)
        )
        run.note(f"entries carrying c1#1 in the final log: {copies}")
        expect_converged(run, sim)

    return script


SCENARIOS = [
    Scenario(
        "raft-election",
        "Leader election",
        "raft",
        "A,B,C start as followers; the first to time out becomes candidate, votes for "
        "itself, wins with a majority, and heartbeats keep it leader.",
        raft_election,
    ),
    Scenario(
        "raft-split-vote",
        "Split vote",
        "raft",
        "Four nodes; A and B time out together and split the votes 2-2, so term 1 has no "
        "leader; randomized timeouts elect one in a later term.",
        raft_split_vote,
    ),
    Scenario(
        "raft-partition-5",
        "Partition S1,S2 | S3,S4,S5",
        "raft",
        "S1 leads five nodes; partition S1,S2 | S3,S4,S5. S3 wins a higher term with S4,S5. "
        "A write to S1 never commits; a write to S3 does. On heal S1 steps down and S1,S2 roll "
        "back and catch up. Check-quorum is off so S1 keeps believing it leads, as in the seed; "
        "with it on (the default) S1 would step down by itself after an election timeout.",
        raft_partition_5,
    ),
    Scenario(
        "raft-partition-set",
        "Partition A,B | C,D,E with two clients",
        "raft",
        "Seed 004: client 1 sends 'set 3' to B on the minority side (uncommitted); client 2 "
        "sends 'set 8' to the new leader E (commits); after heal the value is 8 everywhere.",
        raft_partition_set,
    ),
    Scenario(
        "raft-figure-8",
        "Figure 8: never commit an old-term entry by counting",
        "raft",
        "Seed 002 figure 5 / Raft figure 8. The leader of a later term copies an old-term entry "
        "to a majority; the correct rule does not commit it by counting replicas, so when the "
        "other candidate later overwrites it nothing applied is lost. With --bug "
        "commit-previous-term (alias --unsafe-commit) the entry is committed and then "
        "overwritten: the state-machine-safety invariant fails.",
        raft_figure_8,
    ),
    Scenario(
        "raft-disk-loss",
        "A server that lost its disk rejoins as a learner",
        "raft",
        "S1 and S2 acknowledge writes while S3 is cut off; S1 dies and S2 loses its disk. "
        "S3 cannot win without S2, which votes for nobody while rejoining; S1 returns, "
        "leads, demotes S2 to a learner, catches it up and promotes it, and no write is "
        "lost. With --bug vote-after-wipe S2 votes at once, S3 wins without the writes, "
        "and leader-completeness fails.",
        raft_disk_loss,
    ),
    Scenario(
        "raft-log-divergence",
        "Figure 7: divergent follower logs",
        "raft",
        "Seed 002 figure 4: followers missing entries, holding extra uncommitted entries from "
        "old terms, or both; the leader's consistency check backs up and overwrites until every "
        "log matches the leader's.",
        raft_log_divergence,
    ),
    Scenario(
        "lease-read",
        "Leader lease reads and the clock-drift bound",
        "raft",
        "Raft §6.4.1 lease reads: S1 leads five nodes and answers reads alone while its lease "
        "runs (election timeout * (1 - drift bound) after a heartbeat round a majority "
        "acknowledged, on its own clock). S1 is cut off; the others elect a leader that commits x=2. With "
        "S1's clock 1% slow (the default; the bound is 5%) the lease has ended before that commit, "
        "so S1 never answers x=1 after x=2. With --param drift=0.3 (30% slow, beyond "
        "the bound) S1's lease outlives the election and S1 answers the stale x=1: the "
        "read-freshness invariant fails.",
        lease_read,
        params={"drift": f"how much slower S1's clock runs (default {LEASE_DRIFT_DEFAULT}; bound 0.05)"},
    ),
    Scenario(
        "lease-cache",
        "Client cache leases and the clock-drift bound",
        "raft",
        "Gray and Cheriton's leases for cache consistency: C reads x=1 with a cache lease "
        f"({CACHE_LEASE:g} s) and answers later reads of x from its cache; a write x=2 waits "
        "at the leader until the lease ran out (the leader's clock, lengthened by the drift "
        "bound), so C never answers x=1 after x=2 committed and the history, cached reads "
        "included, is linearizable. With --param drift=0.3 C's clock runs 30% slow, beyond "
        "the 5% bound: it keeps its copy too long and answers a stale x=1; the "
        "linearizability checker fails.",
        lease_cache,
        params={"drift": f"how much slower C's clock runs (default {LEASE_DRIFT_DEFAULT}; bound 0.05)"},
    ),
    *(
        Scenario(
            f"raft-leader-crash-{stage}",
            f"Leader fails {what}",
            "raft",
            f"Seed 004, stage {stage}: the leader fails {what}. No acknowledged write is lost, "
            "the client's retry (same client id and sequence) is applied exactly once, and all "
            "logs converge."
            + (" Check-quorum is off so the old leader keeps leading." if stage == 7 else ""),
            leader_crash(stage),
        )
        for stage, what in LEADER_CRASH_STAGES.items()
    ),
]
