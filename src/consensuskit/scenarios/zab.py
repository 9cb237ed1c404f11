"""ZAB's seed scenarios (seeds 002, 004; SCENARIOS.md), each asserting its outcome, and
the three flaws model checking found in the Zab paper's pseudocode
(zookeeper-specifications, protocol-spec/issues.md) as regression scenarios: each
passes with ZooKeeper's rule and fails with the paper's (its ``paper-*`` bug knob).

Scripts shape the network with partitions and message filters ("hold" parks a message
until ``release_held``) and watch the synchronisation a learner gets through a filter
that only looks at NEWLEADER messages.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.capabilities import leader_of
from consensuskit.core.client import Op
from consensuskit.protocols.zab.messages import Ack, NewLeader
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.scenarios.disk_loss import expect_writes_kept, lose_a_disk
from consensuskit.sim import Simulation

THREE = ("n1", "n2", "n3")
FIVE = ("n1", "n2", "n3", "n4", "n5")


# ---------------------------------------------------------------------- helpers
def leaders(sim: Simulation) -> list[str]:
    return leader_of((i, sim.nodes.get(i)) for i in sim.node_ids)


def node(sim: Simulation, node_id: str) -> Any:
    n = sim.nodes.get(node_id)
    assert n is not None, f"{node_id} is down"
    return n


def established(sim: Simulation) -> str | None:
    for i in leaders(sim):
        if node(sim, i).established:
            return i
    return None


def wait_established(sim: Simulation, timeout: float = 5.0, among: tuple[str, ...] = ()) -> str | None:
    """The established leader (one of ``among`` if given) once there is one."""

    def found() -> str | None:
        for i in leaders(sim):
            if node(sim, i).established and (not among or i in among):
                return i
        return None

    sim.run_until_true(lambda: found() is not None, timeout=timeout)
    return found()


def wait_sync(sim: Simulation, syncs: dict[str, list[str]], learner: str, before: int) -> None:
    sim.run_until_true(lambda: len(syncs.get(learner, [])) > before, timeout=3.0)


def put(key: str, value: Any) -> Op:
    return Op(kind="put", key=key, value=value)


def write(sim: Simulation, key: str, value: Any, via: str | None = None, timeout: float = 3.0) -> bool:
    """Submit a put (to ``via`` or the established leader) and wait for its answer."""
    target = via or established(sim)
    handle = sim.submit(put(key, value), node=target)
    sim.run_until_true(lambda: handle.status is not None, timeout=timeout)
    return handle.status == "ok"


def converged(sim: Simulation) -> bool:
    live = [sim.nodes[i] for i in sim.node_ids if sim.nodes.get(i) is not None]
    return len({(n.last_applied, n.sm.digest(), n.log.last_zxid) for n in live}) == 1


def settle(sim: Simulation, seconds: float = 5.0) -> None:
    sim.heal()
    sim.clear_filters()
    for i in sim.node_ids:
        if sim.nodes.get(i) is None:
            sim.restart(i)
    sim.run_until_true(lambda: converged(sim) and established(sim) is not None, timeout=seconds)
    sim.run_for(0.2)


def expect_converged(run: ScenarioRun, sim: Simulation) -> None:
    run.expect(
        converged(sim),
        "after healing, every server holds the same history and state",
        "; ".join(
            f"{i}: applied={node(sim, i).last_applied} last={node(sim, i).log.last_zxid:#x}"
            for i in sim.node_ids
            if sim.nodes.get(i) is not None
        ),
    )


def watch_syncs(sim: Simulation) -> dict[str, list[str]]:
    """learner -> the sync modes its NEWLEADERs carried (a filter with no opinion)."""
    seen: dict[str, list[str]] = {}

    def look(src: str, dst: str, msg: Any) -> str | None:
        if isinstance(msg, NewLeader):
            seen.setdefault(dst, []).append(msg.mode if msg.txns or msg.mode != "DIFF" else "empty DIFF")
        return None

    sim.add_filter(look)
    return seen


def vote_of(sim: Simulation, node_id: str) -> tuple[int, int, int]:
    return node(sim, node_id).my_vote()


def zxids(sim: Simulation, node_id: str) -> list[int]:
    return [t.zxid for t in node(sim, node_id).log.entries]


# ---------------------------------------------------------------------- scenarios
def zab_fast_leader_election(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE)
    first = wait_established(sim)
    run.expect(
        first == "n5", "equal votes (epoch, zxid): the greatest server id, n5, leads", f"leader={first}"
    )
    if first is None:
        return
    for k in range(3):
        write(sim, f"a{k}", k)
    # n5 goes away: n1..n4 hold the same history; n4 has the greatest id.
    sim.crash("n5")
    second = wait_established(sim)
    run.expect(second == "n4", "with equal epochs and zxids the greatest id (n4) wins", f"leader={second}")
    if second is None:
        return
    # n3 falls behind while n4 commits more: then n4 crashes and n5 returns (older epoch).
    sim.partition([["n3"], ["n1", "n2", "n4"]])
    for k in range(3):
        write(sim, f"b{k}", k)
    sim.crash("n4")
    sim.heal()
    sim.restart("n5")
    votes = {i: vote_of(sim, i) for i in ("n1", "n2", "n3", "n5")}
    best = max(votes, key=lambda i: votes[i])
    third = wait_established(sim)
    run.expect(
        third == best == "n2",
        "the winner has the greatest (epoch, zxid, id) among the live servers: n2 (epoch, then "
        "zxid beat n3 and n5; the id beats n1)",
        f"leader={third} votes={ {i: (v[0], hex(v[1]), v[2]) for i, v in votes.items()} }",
    )
    sim.run_until_true(
        lambda: all(node(sim, i).leader_id == third for i in ("n1", "n2", "n3", "n5")), timeout=2.0
    )
    rounds = {i: node(sim, i).logicalclock for i in ("n1", "n2", "n3", "n5")}
    run.note(f"election rounds (logical clocks): {rounds}")
    run.expect(
        all(node(sim, i).leader_id == third for i in ("n1", "n2", "n3", "n5")),
        "every live server follows it, the restarted n5 included (it adopted the reported leader)",
    )
    settle(sim)
    expect_converged(run, sim)


def zab_recovery(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE, options={"snapshot_threshold": 20, "snapshot_trailing": 5})
    syncs = watch_syncs(sim)
    if wait_established(sim) != "n5":
        run.expect(False, "n5 leads epoch 1")
        return
    for k in range(3):
        write(sim, f"k{k}", k)
    sim.crash("n1")  # will be beyond the retained history: SNAP
    # n5 alone takes two writes it can never commit: proposals of a dead epoch.
    sim.partition([["n5"], ["n2", "n3", "n4"]])
    for k in range(2):
        sim.submit(put(f"dead{k}", k), node="n5")
    sim.run_for(0.05)
    new = wait_established(sim, among=("n2", "n3", "n4"))
    run.expect(new == "n4", "n2, n3, n4 elect n4 for a new epoch", f"leader={new}")
    for k in range(3):
        write(sim, f"e{k}", k)
    sim.crash("n5")
    sim.heal()
    before = len(syncs.get("n5", []))
    sim.restart("n5")
    wait_sync(sim, syncs, "n5", before)
    sim.crash("n2")  # misses a few commits: DIFF
    for k in range(3):
        write(sim, f"f{k}", k)
    before = len(syncs.get("n2", []))
    sim.restart("n2")
    wait_sync(sim, syncs, "n2", before)
    for k in range(30):  # the leader snapshots and compacts past what n1 has
        write(sim, f"g{k}", k)
    before = len(syncs.get("n1", []))
    sim.restart("n1")
    wait_sync(sim, syncs, "n1", before)
    run.note(f"sync modes: {syncs}")
    run.expect(
        any(m.startswith("TRUNC") for m in syncs.get("n5", [])),
        "n5, holding the dead epoch's proposals, is cut back by TRUNC",
        f"n5 got {syncs.get('n5')}",
    )
    run.expect(
        syncs.get("n2", [None])[-1] == "DIFF", "n2, a few commits behind, gets a DIFF", f"{syncs.get('n2')}"
    )
    run.expect(
        syncs.get("n1", [None])[-1] == "SNAP",
        "n1, behind the retained log, gets a SNAP",
        f"{syncs.get('n1')}",
    )
    settle(sim)
    dead = [hex(z) for i in FIVE for z in zxids(sim, i) if z >> 32 == 1 and z & 0xFFFFFFFF > 3]
    run.expect(not dead, "the dead epoch's proposals (1:4, 1:5) are gone everywhere", f"{dead}")
    expect_converged(run, sim)


def zab_broadcast(run: ScenarioRun) -> None:
    sim = run.simulation(THREE)
    leader = wait_established(sim)
    if leader is None:
        run.expect(False, "a leader is established")
        return
    epoch = node(sim, leader).epoch
    oks = [write(sim, f"k{k}", k) for k in range(5)]
    run.expect(all(oks), "five writes are acknowledged after a quorum ACKed each proposal")
    mine = [z for z in zxids(sim, leader) if z >> 32 == epoch]
    run.expect(
        mine == [(epoch << 32) | c for c in range(1, 6)],
        f"their zxids are epoch {epoch} << 32 | 1..5",
        f"{[hex(z) for z in mine]}",
    )
    sim.run_for(0.2)
    run.expect(
        all(zxids(sim, i) == zxids(sim, leader) for i in THREE), "every follower holds them in the same order"
    )
    # Duplicated PROPOSALs are dropped: followers accept only zxids above their last.
    sim.set_network(duplicate=1.0)
    write(sim, "dup", 1)
    sim.set_network(duplicate=0.0)
    sim.run_for(0.2)
    run.expect(
        all(len(set(zxids(sim, i))) == len(zxids(sim, i)) for i in THREE),
        "a duplicated PROPOSAL is not logged twice",
    )
    sim.crash(leader)
    second = wait_established(sim)
    if second is None:
        run.expect(False, "a new leader is established")
        return
    new_epoch = node(sim, second).epoch
    write(sim, "x", 1)
    write(sim, "y", 2)
    fresh = [z for z in zxids(sim, second) if z >> 32 == new_epoch]
    run.expect(
        new_epoch > epoch and fresh == [(new_epoch << 32) | 1, (new_epoch << 32) | 2],
        "the next epoch's counter starts again at 1",
        f"epoch {new_epoch}: {[hex(z) for z in fresh]}",
    )
    settle(sim)
    expect_converged(run, sim)


def zab_observer(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE, options={"observers": 2})
    leader = wait_established(sim)
    run.expect(leader in ("n1", "n2", "n3"), "a voter leads; observers never win", f"leader={leader}")
    if leader is None:
        return
    sim.run_for(0.2)
    run.expect(all(node(sim, i).state == "observing" for i in ("n4", "n5")), "n4 and n5 are OBSERVING")
    run.expect(
        write(sim, "via-observer", 1, via="n4"), "a write sent to an observer is forwarded and commits"
    )
    sim.run_for(0.2)
    run.expect(
        all(node(sim, i).last_applied == node(sim, leader).last_applied for i in ("n4", "n5")),
        "observers learn every commit (INFORM)",
    )
    others = [i for i in ("n1", "n2", "n3") if i != leader]
    sim.crash(others[0])
    sim.crash(others[1])
    handle = sim.submit(put("no-quorum", 1), node=leader)
    sim.run_for(0.5)
    run.expect(
        handle.status != "ok",
        "with two of three voters down the write does not commit: observers are in no quorum",
        f"status={handle.status}",
    )
    settle(sim)
    expect_converged(run, sim)


def zab_old_leader_returns(run: ScenarioRun) -> None:
    sim = run.simulation(FIVE)
    old = wait_established(sim)
    if old is None:
        run.expect(False, "a leader is established")
        return
    old_epoch = node(sim, old).epoch
    write(sim, "before", 1)
    mark = node(sim, old).log.last_zxid
    sim.partition([[old], [i for i in FIVE if i != old]])
    for k in range(2):
        sim.submit(put(f"lost{k}", k), node=old)
    sim.run_for(0.05)
    new = wait_established(sim, among=tuple(i for i in FIVE if i != old))
    run.expect(new is not None and new != old, "the majority elects a new leader", f"leader={new}")
    if new is None:
        return
    run.expect(node(sim, new).epoch > old_epoch, "in a higher epoch")
    write(sim, "after", 2)
    sim.heal()
    sim.run_until_true(lambda: node(sim, old).state == "following", timeout=3.0)
    run.expect(
        node(sim, old).state == "following" and node(sim, old).leader_id == new,
        "the old leader comes back and follows the new one",
    )
    run.expect(all(node(sim, i).leader_id != old for i in FIVE if i != old), "nobody follows the old leader")
    settle(sim)
    cut = [hex(z) for i in FIVE for z in zxids(sim, i) if z >> 32 == old_epoch and z > mark]
    run.expect(not cut, "its unacknowledged proposals of the old epoch were truncated everywhere", f"{cut}")
    run.note("(their clients retry elsewhere; a retry commits in the new epoch under a new zxid)")
    expect_converged(run, sim)


def zab_disk_loss(run: ScenarioRun) -> None:
    sim = run.simulation(THREE)
    lead = wait_established(sim)
    if lead is None:
        run.expect(False, "a leader is established")
        return
    stale, wiped = (i for i in THREE if i != lead)
    lose_a_disk(run, sim, lead=lead, stale=stale, wiped=wiped, how="acknowledged")
    sim.run_for(3.0)
    run.expect(
        established(sim) is None,
        f"{stale}, which lacks the writes, cannot win: {wiped} votes for nobody",
        f"established={established(sim)}",
    )
    sim.restart(lead)
    back = wait_established(sim)
    run.expect(back == lead, f"{lead}, which holds the writes, leads again", f"leader={back}")
    sim.run_until_true(lambda: not node(sim, wiped).rejoining, timeout=5.0)
    run.expect(
        not node(sim, wiped).rejoining and node(sim, wiped).state == "following",
        f"{wiped} observes until UPTODATE, then follows as a voter",
        f"state={node(sim, wiped).state}",
    )
    expect_writes_kept(run, sim, via=lead)
    settle(sim)
    expect_converged(run, sim)


def _late_joiner(run: ScenarioRun) -> tuple[Simulation, str] | None:
    """n1 restarts into an established epoch; its ACK of NEWLEADER is held while the
    leader commits a write."""
    sim = run.simulation(THREE, runtime="unbatched")
    leader = wait_established(sim)
    if leader is None or leader == "n1":
        run.expect(False, "n2 or n3 leads", f"leader={leader}")
        return None
    write(sim, "w0", 0)
    sim.crash("n1")
    sim.add_filter(
        lambda src, dst, msg: "hold" if src == "n1" and isinstance(msg, Ack) and msg.newleader else None
    )
    sim.restart("n1")
    # n1 processed NEWLEADER (its ACK is held): the leader counts it as syncing.
    sim.run_until_true(lambda: sim.nodes["n1"] is not None and node(sim, "n1").phase == "synced", timeout=3.0)
    return sim, leader


def zab_issue1_propose_to_acked(run: ScenarioRun) -> None:
    """issues.md #1: PROPOSALs must go to learners that ACKed the epoch (ackeRecv), not
    only to those that ACKed NEWLEADER (ackldRecv)."""
    joined = _late_joiner(run)
    if joined is None:
        return
    sim, _leader = joined
    run.expect(write(sim, "w1", 1), "w1 commits while n1's ACK of NEWLEADER is in flight")
    sim.clear_filters()
    sim.release_held()
    write(sim, "w2", 2)
    settle(sim)
    expect_converged(run, sim)


def zab_issue2_redundant_propose(run: ScenarioRun) -> None:
    """issues.md #2: a learner drops a PROPOSAL it already holds."""
    joined = _late_joiner(run)
    if joined is None:
        return
    sim, _leader = joined
    sim.clear_filters()
    sim.release_held()
    sim.set_network(duplicate=1.0)  # every PROPOSAL arrives twice, as a DIFF'd one and a live one
    write(sim, "w1", 1)
    sim.set_network(duplicate=0.0)
    settle(sim)
    expect_converged(run, sim)


def zab_issue3_commit_ld(run: ScenarioRun) -> None:
    """issues.md #3: COMMIT-LD (UPTODATE) carries the leader's commit point, not the
    zxid of the learner's ACK-LD."""
    joined = _late_joiner(run)
    if joined is None:
        return
    sim, _leader = joined
    write(sim, "w1", 1)
    sim.clear_filters()
    sim.release_held()
    sim.run_for(0.05)
    write(sim, "w2", 2)
    settle(sim)
    expect_converged(run, sim)


SCENARIOS = [
    Scenario(
        "zab-fast-leader-election",
        "Fast Leader Election: the greatest (epoch, zxid, id) wins",
        "zab",
        "Five servers elect the greatest id when all else is equal; later a quorum with "
        "different epochs and zxids elects the server with the greatest (epoch, zxid, id), "
        "and a restarted server adopts the leader the others report.",
        zab_fast_leader_election,
    ),
    Scenario(
        "zab-recovery",
        "Recovery: DIFF, TRUNC and SNAP followers",
        "zab",
        "After a new epoch: a follower with a dead epoch's proposals is cut back (TRUNC), one "
        "a few commits behind gets a DIFF, one behind the leader's retained log a SNAP.",
        zab_recovery,
    ),
    Scenario(
        "zab-broadcast",
        "Broadcast: PROPOSAL, quorum ACK, COMMIT; zxid = epoch<<32 | counter",
        "zab",
        "Writes commit in zxid order on every server; duplicated PROPOSALs are dropped; a new "
        "epoch starts its counter at 1.",
        zab_broadcast,
    ),
    Scenario(
        "zab-observer",
        "Observers learn commits but never vote",
        "zab",
        "Three voters and two observers: observers forward writes and apply every commit, "
        "and no quorum forms without the voters.",
        zab_observer,
    ),
    Scenario(
        "zab-old-leader-returns",
        "A deposed leader comes back",
        "zab",
        "A leader cut off with uncommitted proposals is replaced in a higher epoch; when it "
        "returns nobody follows it, it follows the new leader and its proposals are truncated.",
        zab_old_leader_returns,
    ),
    Scenario(
        "zab-disk-loss",
        "A server that lost its disk observes until readmitted",
        "zab",
        "Two servers acknowledge writes while the third is cut off; the leader dies and the "
        "other loses its disk. The stale server cannot win with the empty one's vote; the old "
        "leader returns and leads, the empty one observes until UPTODATE and votes again, and no "
        "write is lost. With --bug vote-after-wipe (ZooKeeper's own behaviour with an empty "
        "dataDir) the stale server wins and the writes are gone.",
        zab_disk_loss,
    ),
    Scenario(
        "zab-issue1-propose-to-acked",
        "issues.md #1: propose to learners that ACKed the epoch",
        "zab",
        "A late joiner's ACK of NEWLEADER is delayed while the leader commits a write; with "
        "the paper's rule (--bug paper-propose-acked) the joiner never gets that PROPOSAL.",
        zab_issue1_propose_to_acked,
    ),
    Scenario(
        "zab-issue2-redundant-propose",
        "issues.md #2: a redundant PROPOSAL is dropped",
        "zab",
        "A learner gets a PROPOSAL it already holds; the paper's follower "
        "(--bug paper-redundant-propose) logs it twice.",
        zab_issue2_redundant_propose,
    ),
    Scenario(
        "zab-issue3-commit-ld",
        "issues.md #3: COMMIT-LD carries the leader's commit point",
        "zab",
        "A late joiner misses a COMMIT while its ACK-LD is in flight; with the paper's rule "
        "(--bug paper-commit-ld-ack) UPTODATE names only the ACK-LD's zxid and the next "
        "COMMIT is illegal for it.",
        zab_issue3_commit_ld,
    ),
]
