"""Node clocks (skew, drift) and pause/resume."""

from __future__ import annotations

import pytest

from consensuskit.sim import NetworkConfig

from .toy import Note, echo_sim

FIXED = NetworkConfig(latency_min=0.001, latency_max=0.001, fsync_latency=0.0)


def test_timer_fires_by_drifting_clock():
    sim = echo_sim()
    sim.set_clock("n1", skew=0.0, drift=0.25)
    sim.env_of("n1").set_timer("t", 1.0)
    sim.run_until(0.79)
    assert sim.nodes["n1"].fired == []
    sim.run_until(0.81)
    [(local, key)] = sim.nodes["n1"].fired
    assert key == "t"
    assert local == pytest.approx(1.0)  # one local second elapsed
    assert sim.now == pytest.approx(0.81)


def test_skew_offsets_local_clock_not_timers():
    sim = echo_sim()
    sim.set_clock("n2", skew=0.5)
    env = sim.env_of("n2")
    assert env.now() == pytest.approx(0.5)
    env.set_timer("t", 0.1)
    sim.run_until(0.2)
    assert sim.nodes["n2"].fired == [(pytest.approx(0.6), "t")]
    assert sim.local_time("n1") == pytest.approx(0.2)


def test_drift_change_keeps_clock_continuous():
    sim = echo_sim()
    sim.set_clock("n1", drift=0.01)
    sim.run_until(10.0)
    before = sim.local_time("n1")
    sim.set_clock("n1", drift=-0.01)
    assert sim.local_time("n1") == pytest.approx(before)
    sim.run_until(20.0)
    assert sim.local_time("n1") == pytest.approx(before + 10 * 0.99)


def test_rearm_and_cancel_timer():
    sim = echo_sim()
    env = sim.env_of("n1")
    env.set_timer("a", 0.1)
    env.set_timer("a", 0.3)  # replaces
    env.set_timer("b", 0.2)
    env.cancel_timer("b")
    env.cancel_timer("never-set")
    sim.run_until(1.0)
    assert sim.nodes["n1"].fired == [(pytest.approx(0.3), "a")]


def test_pause_defers_and_resumes_in_order():
    sim = echo_sim(network=FIXED)
    env1 = sim.env_of("n1")
    sim.pause("n2")
    for i in range(5):
        env1.send("n2", Note(key="k", value=i))
        sim._after_handler(env1)
        sim.run_for(0.01)
    sim.env_of("n2").set_timer("t", 0.0)
    sim.run_until(1.0)
    n2 = sim.nodes["n2"]
    assert n2.seen == [] and n2.fired == []
    sim.resume("n2")
    sim.run_until(1.0)
    assert [m.value for _, _, m in n2.seen] == [0, 1, 2, 3, 4]
    assert all(t == pytest.approx(1.0) for t, _, _ in n2.seen)  # time jumped
    assert [k for _, k in n2.fired] == ["t"]


def test_crash_of_paused_node_drops_deferred():
    sim = echo_sim(network=FIXED)
    env1 = sim.env_of("n1")
    sim.pause("n2")
    env1.send("n2", Note(key="k", value=1))
    sim._after_handler(env1)
    sim.run_until(0.1)
    sim.crash("n2")
    assert not sim.paused("n2") and not sim.alive("n2")
    sim.restart("n2")
    sim.run_until(0.2)
    assert sim.nodes["n2"].seen == []
