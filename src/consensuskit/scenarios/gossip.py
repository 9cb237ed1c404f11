"""Gossip's seed scenarios (seeds 000, 003; SCENARIOS.md), each asserting its outcome.

  * gossip-rumor: one write spreads by rumor mongering alone (fan-out 3, a fixed period);
    a node forwards it the period after it learned it, never back to the node it heard it
    from; every node learns it; the rounds and the redundant sends are reported;
  * gossip-partial-mesh: the same plus anti-entropy on a partial mesh of degree 3: every
    message travels along a mesh edge and every node learns the write;
  * gossip-churn: writes while nodes crash and restart and three nodes join late (they
    start empty mid-run); once the faults stop, every replica converges to the newest
    acknowledged write of every key;
  * gossip-modes: the same writes under anti-entropy alone (full-state exchange), rumor
    mongering alone, and both with digests: rumors cost far fewer bytes but leave a
    residue, anti-entropy removes it; traffic and residue are reported for each.
Scripts read the replicas through the node's ``digest()`` and count traffic with a message
filter, as check/gossip.py's monitor does in ``sim`` runs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from consensuskit.check.gossip import GOSSIP_TYPES, replica_states, residue
from consensuskit.core.messages import encode
from consensuskit.protocols.gossip.messages import Rumor
from consensuskit.scenarios.base import Scenario, ScenarioRun
from consensuskit.sim import SimConfig, Simulation

SERVICE_OPS = "gossip-map"


def _ids(n: int) -> tuple[str, ...]:
    return tuple(f"n{i:02d}" for i in range(1, n + 1))


class Traffic:
    """A message filter counting gossip messages and their encoded bytes."""

    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()
        self.bytes = 0

    def __call__(self, src: str, dst: str, msg: Any) -> None:
        if isinstance(msg, GOSSIP_TYPES):
            self.messages[type(msg).__name__] += 1
            self.bytes += len(encode(msg))

    @property
    def total(self) -> int:
        return sum(self.messages.values())


def _put(sim: Simulation, node_id: str, key: str, value: Any) -> Any:
    return sim.submit(sim.service.op("put", key, value), node=node_id)


def _knows(sim: Simulation, node_id: str, key: str, value: Any) -> bool:
    node = sim.nodes.get(node_id)
    entry = None if node is None else node.replica.get(key)
    return entry is not None and entry.value == value


# ---------------------------------------------------------------------- gossip-rumor
def rumor(run: ScenarioRun) -> None:
    n, period = 16, 0.1
    sim = run.simulation(
        _ids(n),
        clients=0,
        options={"rumor": True, "fanout": 3, "rumor_k": 4, "rumor_period": period, "anti_entropy_period": 0},
    )
    traffic = Traffic()
    sim.add_filter(traffic)
    heard_first: dict[str, str] = {}
    back_to_sender: list[str] = []
    learned_at: dict[str, float] = {}

    def watch(src: str, dst: str, msg: Any) -> None:
        if (
            isinstance(msg, Rumor)
            and any(e.key == "news" for e in msg.entries)
            and heard_first.get(src) == dst
        ):
            back_to_sender.append(f"{src}->{dst}")

    sim.add_filter(watch)
    origin = sim.node_ids[0]
    start = sim.now
    op = _put(sim, origin, "news", "hello")
    sim.run_until_true(lambda: op.done, 1.0)
    run.expect(op.status == "ok", f"{origin} accepts the write")

    def everyone() -> bool:
        # Polled after every event: a node's first source is noted before it can forward.
        for node_id in sim.node_ids:
            if node_id not in learned_at and _knows(sim, node_id, "news", "hello"):
                learned_at[node_id] = sim.now
                source = sim.nodes[node_id].heard_from.get("news")
                if source is not None:
                    heard_first[node_id] = source
        return len(learned_at) == n

    sim.run_until_true(everyone, 5.0)
    sim.run_for(2.0)  # let the rumor go cold everywhere
    run.expect(len(learned_at) == n, f"every one of the {n} nodes learns the rumor", f"{len(learned_at)} did")
    run.expect(not back_to_sender, "no node sends the rumor back to the node it first heard it from",
               ", ".join(back_to_sender[:5]))  # fmt: skip
    rounds = math.ceil((max(learned_at.values(), default=start) - start) / period)
    still_hot = sum(len(node.hot) for node in sim.nodes.values() if node is not None)
    redundant = traffic.messages["Rumor"] - (n - 1)
    run.expect(rounds <= 2 * math.ceil(math.log2(n)) + 2, f"it takes {rounds} rounds (log-ish in n)")
    run.expect(still_hot == 0, "the rumor goes cold everywhere (feedback, counter k=4)")
    run.note(f"{traffic.messages['Rumor']} rumor messages for {n - 1} necessary ones: {redundant} redundant")


# ---------------------------------------------------------------------- gossip-partial-mesh
def partial_mesh(run: ScenarioRun) -> None:
    n = 30
    sim = run.simulation(
        _ids(n),
        clients=0,
        options={"topology": "mesh", "degree": 3, "fanout": 2, "rumor_k": 2, "anti_entropy_period": 0.5},
    )
    graph = {node_id: set(sim.nodes[node_id].peers) for node_id in sim.node_ids}
    off_mesh: list[str] = []

    def on_edges(src: str, dst: str, msg: Any) -> None:
        if isinstance(msg, GOSSIP_TYPES) and dst not in graph.get(src, ()):
            off_mesh.append(f"{src}->{dst}")

    sim.add_filter(on_edges)
    traffic = Traffic()
    sim.add_filter(traffic)
    degrees = sorted(len(p) for p in graph.values())
    run.note(f"mesh degrees {degrees[0]}..{degrees[-1]} (of {n - 1} possible)")
    op = _put(sim, sim.node_ids[0], "news", "mesh")
    sim.run_until_true(lambda: op.done, 1.0)
    done = sim.run_until_true(lambda: all(_knows(sim, i, "news", "mesh") for i in sim.node_ids), 10.0)
    run.expect(done, f"every one of the {n} nodes learns the write over the mesh", f"at t={sim.now:.2f}")
    run.expect(not off_mesh, "every gossip message travels along a mesh edge", ", ".join(off_mesh[:5]))
    run.expect(degrees[-1] < n - 1, "the mesh is partial: no node talks to everyone")
    run.note(f"{traffic.total} gossip messages, {traffic.bytes} bytes")


# ---------------------------------------------------------------------- gossip-churn
def churn(run: ScenarioRun) -> None:
    n = 12
    sim = run.simulation(_ids(n), clients=0, options={"fanout": 2, "rumor_k": 2, "anti_entropy_period": 0.5})
    late = sim.node_ids[-3:]
    for node_id in late:
        sim.crash(node_id)  # not started yet: they join, empty, at t=3
    acked: dict[str, tuple[int, str, Any]] = {}
    rng = random.Random(run.seed)
    steps = 0
    for step in range(60):
        t = step * 0.1
        if step == 30:
            for node_id in late:
                sim.restart(node_id)
        if step in (10, 25, 40):
            victim = sim.node_ids[rng.randrange(n - 3)]
            sim.crash(victim)
            sim.schedule(sim.now + 0.7, lambda v=victim: sim.restart(v), f"restart {victim}")
        live = [i for i in sim.node_ids if sim.nodes.get(i) is not None]
        key, value = f"k{rng.randrange(5)}", 1000 + step
        op = _put(sim, live[rng.randrange(len(live))], key, value)
        sim.run_until(max(sim.now, t + 0.1))
        if op.status == "ok":
            stamp = (op.result["counter"], op.result["origin"])
            if key not in acked or stamp > acked[key][:2]:
                acked[key] = (*stamp, value)
            steps += 1
    for node_id in sim.node_ids:
        if sim.nodes.get(node_id) is None:
            sim.restart(node_id)
    converged = sim.run_until_true(lambda: len(set(replica_states(sim).values())) == 1, 10.0)
    run.expect(converged, "after the faults stop, every replica holds the same map", f"at t={sim.now:.2f}")
    states = replica_states(sim)
    some = next(iter(states.values()), ())
    final = {key: (counter, origin) for key, counter, origin in some}
    lost = [k for k, (c, o, _) in acked.items() if final.get(k, (-1, "")) < (c, o)]
    run.expect(
        not lost, "no acknowledged write is lost (each key holds its newest one or a newer)", str(lost)
    )
    run.expect(all(dict(((k, (c, o)) for k, c, o in s)) == final for s in states.values()),
               f"the {len(late)} late joiners caught up")  # fmt: skip
    run.note(f"{steps} acknowledged writes over {len(acked)} keys; faults: {dict(sim.faults)}")


# ---------------------------------------------------------------------- gossip-modes
MODES: dict[str, dict[str, Any]] = {
    "anti-entropy (full state)": {"rumor": False, "exchange": "full", "anti_entropy_period": 0.5},
    "rumor mongering": {"rumor": True, "fanout": 1, "rumor_k": 1, "anti_entropy_period": 0},
    "rumor + anti-entropy (digests)": {
        "rumor": True, "fanout": 1, "rumor_k": 1, "exchange": "digest", "anti_entropy_period": 0.5,
    },
}  # fmt: skip


def _modes_run(sim: Simulation, writes: int, settle: float) -> dict[str, Any]:
    traffic = Traffic()
    sim.add_filter(traffic)
    for i in range(writes):
        node_id = sim.node_ids[(i * 7) % len(sim.node_ids)]
        _put(sim, node_id, f"key{i}", i)
        sim.run_for(0.05)
    sim.run_for(settle)
    states = replica_states(sim)
    return {
        "messages": traffic.total,
        "bytes": traffic.bytes,
        "residue": residue(states),
        "converged": len(set(states.values())) == 1,
        "keys": len({key for s in states.values() for key, _, _ in s}),
    }


def modes(run: ScenarioRun) -> None:
    nodes, writes, settle = _ids(40), 20, 3.0
    results: dict[str, dict[str, Any]] = {}
    for index, (label, options) in enumerate(MODES.items()):
        if index == 0:
            sim = run.simulation(nodes, clients=0, options=options)
        else:  # the other modes run beside the scenario's own simulation, same seed
            merged = {**options, **run.options}
            sim = Simulation(
                SimConfig(protocol="gossip", node_ids=nodes, seed=run.seed, clients=0, options=merged)
            )
        results[label] = _modes_run(sim, writes, settle)
        if index:
            sim.close()
        r = results[label]
        run.note(f"{label}: {r['messages']} messages, {r['bytes']} bytes, residue {r['residue']:.3f}")
    full, rumors, both = results.values()
    run.expect(full["converged"] and full["residue"] == 0, "anti-entropy alone leaves no residue")
    run.expect(rumors["residue"] > 0, "rumor mongering alone (k=1, fan-out 1) leaves a residue",
               f"residue {rumors['residue']:.3f}")  # fmt: skip
    run.expect(rumors["bytes"] * 3 < full["bytes"], "rumors cost under a third of full-state anti-entropy",
               f"{rumors['bytes']} vs {full['bytes']}")  # fmt: skip
    run.expect(
        both["converged"] and both["residue"] == 0, "backing rumors with anti-entropy removes the residue"
    )
    run.expect(both["bytes"] < full["bytes"], "and still costs less than full-state anti-entropy",
               f"{both['bytes']} vs {full['bytes']}")  # fmt: skip


SCENARIOS = [
    Scenario(
        id="gossip-rumor",
        title="a rumor reaches every node",
        protocol="gossip",
        description="fan-out 3, fixed period; forwarded the next period to others than the sender; "
        "every node learns it; rounds and redundant messages reported",
        script=rumor,
    ),
    Scenario(
        id="gossip-partial-mesh",
        title="gossip over a partial mesh",
        protocol="gossip",
        description="30 nodes, mesh of degree 3: messages only along edges; every node learns the write",
        script=partial_mesh,
    ),
    Scenario(
        id="gossip-churn",
        title="churn: crashes, restarts, late joiners",
        protocol="gossip",
        description="writes during crashes and restarts, 3 nodes join late; all replicas converge "
        "to the newest acknowledged write of every key",
        script=churn,
    ),
    Scenario(
        id="gossip-modes",
        title="anti-entropy vs rumor mongering",
        protocol="gossip",
        description="full-state anti-entropy vs rumors vs both: traffic and residue of each",
        script=modes,
    ),
]
