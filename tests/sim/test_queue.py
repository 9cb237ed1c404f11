"""The event queue's shortcuts keep the order of a plain heap: a timer re-armed later is
queued only when its carrier pops (yet orders by when it was set), and batch ends wait in
a FIFO beside the heap (one that would break its order goes to the heap)."""

from __future__ import annotations

import math

from consensuskit.sim.env import TIMER

from .toy import echo_sim


def arm(sim, node_id: str, key: str, delay: float) -> None:
    sim.invoke(node_id, lambda n: n.env.set_timer(key, delay), f"arm {node_id} {key}")


def timer_records(sim) -> list[tuple[float, str, str]]:
    return [(r["t"], r["node"], r["key"]) for r in sim.trace.tail(2000) if r["ev"] == "timer"]


def queued(sim, key: str) -> int:
    return sum(1 for ev in sim._queue if ev[2] == TIMER and ev[4] == key)


def test_a_timer_rearmed_later_fires_once_at_its_new_time_in_the_order_it_was_set():
    sim = echo_sim(node_ids=("n1", "n2"))
    arm(sim, "n1", "x", 1.0)
    sim.run_until(0.5)
    arm(sim, "n1", "x", 1.0)  # now due at 1.5: its carrier (due 1.0) stays queued alone
    arm(sim, "n2", "y", 1.0)  # also due at 1.5, set after n1's x
    assert queued(sim, "x") == 1
    assert sim.armed_timers("n1") == [(1.5, "x")]
    sim.run_until(1.2)
    assert timer_records(sim) == []  # the carrier popped at 1.0 and queued the timer
    sim.run_until(2.0)
    # Equal times: n1's x was set first, so it fires first (a timer queued with a new
    # sequence number when its carrier popped would fire after n2's y).
    assert timer_records(sim) == [(1.5, "n1", "x"), (1.5, "n2", "y")]
    assert [k for _, k in sim.nodes["n1"].fired] == ["x"]
    assert sim.armed_timers("n1") == []


def test_a_timer_rearmed_earlier_or_cancelled():
    sim = echo_sim(node_ids=("n1", "n2"))
    arm(sim, "n1", "x", 1.0)
    arm(sim, "n1", "z", 1.0)
    sim.run_until(0.2)
    arm(sim, "n1", "x", 0.3)  # earlier: queued at once, the old entry goes stale
    sim.invoke("n1", lambda n: n.env.cancel_timer("z"), "cancel z")
    assert sim.armed_timers("n1") == [(0.5, "x")]
    sim.run_until(3.0)
    assert timer_records(sim) == [(0.5, "n1", "x")]
    assert all(ev[2] != TIMER for ev in sim._queue)


def test_a_paused_nodes_timer_fires_on_resume_unless_rearmed_meanwhile():
    sim = echo_sim(node_ids=("n1", "n2"))
    arm(sim, "n1", "x", 0.1)
    arm(sim, "n1", "w", 0.1)
    sim.pause("n1")
    sim.run_until(0.5)
    assert sim.armed_timers("n1") == []  # both firings are deferred
    arm(sim, "n1", "w", 1.0)  # an admin call re-arms w: its deferred firing is stale
    sim.resume("n1")
    sim.run_until(0.6)
    assert timer_records(sim) == [(0.5, "n1", "x")]
    assert sim.armed_timers("n1") == [(1.5, "w")]
    sim.run_until(2.0)
    assert timer_records(sim)[1:] == [(1.5, "n1", "w")]


def test_a_batch_end_out_of_the_fifos_order_goes_to_the_heap():
    sim = echo_sim(node_ids=("n1", "n2"), runtime="batched")
    sim.run_until(1.0)  # the start-up batches are over
    sim.set_network(batch_window=0.01)
    arm(sim, "n1", "x", 5.0)  # an input: n1's batch ends at 1.01
    sim.set_network(batch_window=0.001)
    sim.run_until(1.001)
    arm(sim, "n2", "y", 5.0)  # n2's batch ends at 1.002, before n1's
    assert len(sim._batches) == 1 and len(sim._queue) == 3
    sim.run_until(1.005)
    assert sim.env_of("n2").batch_inputs == 0 and sim.env_of("n1").batch_inputs == 1
    sim.run_until(1.02)
    assert sim.env_of("n1").batch_inputs == 0 and not sim._batches


def test_batch_ends_and_heap_events_pop_in_time_order():
    sim = echo_sim(node_ids=("n1", "n2", "n3"), runtime="batched", clients=3, duration=1.0)
    sim.run()
    times = [r["t"] for r in sim.trace.tail(2000)]
    assert len(times) > 500 and times == sorted(times)


def test_a_positive_delay_below_the_clocks_resolution_fires_at_a_later_instant():
    """At t=1000 s a delay of 1e-14 s is below the float resolution (about 1e-13): it
    must still fire after now, or a node that re-arms for what is left of a deadline
    its local clock has not reached would spin at one instant forever."""
    sim = echo_sim(node_ids=("n1", "n2"))
    sim.run_until(1000.0)
    arm(sim, "n1", "x", 1e-14)
    ((due, key),) = sim.armed_timers("n1")
    assert key == "x" and due > 1000.0 and due == math.nextafter(1000.0, math.inf)
    arm(sim, "n1", "now", 0.0)  # a zero delay still fires at this instant
    assert (1000.0, "now") in sim.armed_timers("n1")
