"""The disk-loss story (issue 10) that every protocol surviving a lost disk tells, as
scenario steps: two servers acknowledge writes while the third is cut off; the leader
dies and the other loses its disk, restarting empty as ``consensuskit server --rejoin``
would; the network heals.  The stale server must not win with the empty one's help;
each protocol's scenario says how its own rule keeps it from winning, and how the
server is readmitted, then checks every write is still there.
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import Op
from consensuskit.scenarios.base import ScenarioRun
from consensuskit.sim import Simulation

WRITES = 10


def lose_a_disk(run: ScenarioRun, sim: Simulation, lead: str, stale: str, wiped: str, how: str) -> None:
    """The story up to the heal; ``how``: what the writes were ("acknowledged", "chosen")."""
    sim.partition([[stale], [lead, wiped]])
    writes = [sim.submit(Op(kind="put", key=f"acked{k}", value=k), node=lead) for k in range(WRITES)]
    sim.run_until_true(lambda: all(w.status is not None for w in writes), timeout=3.0)
    acked = all(w.status == "ok" for w in writes)
    run.expect(acked, f"{WRITES} writes {how} by {lead} and {wiped} while {stale} is cut off")
    sim.crash(lead)
    sim.wipe(wiped)  # its disk is lost: it restarts empty, as `consensuskit server --rejoin`
    sim.heal()
    node: Any = sim.nodes.get(wiped)
    run.expect(node is not None and node.rejoining, f"{wiped} comes back empty, rejoining")


def expect_writes_kept(run: ScenarioRun, sim: Simulation, via: str) -> None:
    """Every write of the story reads back through ``via``."""
    reads = [sim.submit(Op(kind="get", key=f"acked{k}"), node=via) for k in range(WRITES)]
    sim.run_until_true(lambda: all(r.status is not None for r in reads), timeout=3.0)
    values = [r.result.get("value") if r.status == "ok" and r.result else None for r in reads]
    run.expect(values == list(range(WRITES)), "every acknowledged write is there", f"{values}")
