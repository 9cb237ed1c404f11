"""Partitions, blocks, filters, loss/duplication/reordering statistics."""

from __future__ import annotations

import pytest

from consensuskit.sim import NetworkConfig

from .toy import Note, echo_sim

FIXED = NetworkConfig(latency_min=0.001, latency_max=0.001, fsync_latency=0.0)


def blast(sim, src: str, dst: str, n: int, spacing: float = 0.0) -> None:
    env = sim.env_of(src)
    for i in range(n):
        env.send(dst, Note(key="k", value=i))
        sim._after_handler(env)
        if spacing:
            sim.run_for(spacing)


def got(sim, node: str, src: str | None = None) -> list[int]:
    return [m.value for _, s, m in sim.nodes[node].seen if src is None or s == src]


def test_partition_is_symmetric_and_unlisted_form_a_group():
    sim = echo_sim(node_ids=("n1", "n2", "n3", "n4"), network=FIXED)
    sim.partition([["n1"], ["n2"]])  # n3, n4 form a third group
    for src in sim.node_ids:
        for dst in sim.node_ids:
            if src != dst:
                blast(sim, src, dst, 1)
    sim.run_for(0.1)
    assert got(sim, "n1") == [] and got(sim, "n2") == []
    assert got(sim, "n3", "n4") == [0] and got(sim, "n4", "n3") == [0]
    assert got(sim, "n3", "n1") == []
    drops = [r for r in sim.trace.tail(100) if r["ev"] == "drop"]
    assert drops and all(r["reason"] == "partition" for r in drops)
    sim.heal()
    blast(sim, "n1", "n2", 1)
    sim.run_for(0.1)
    assert got(sim, "n2") == [0]


def test_block_is_one_way():
    sim = echo_sim(network=FIXED)
    sim.block("n1", "n2")
    blast(sim, "n1", "n2", 1)
    blast(sim, "n2", "n1", 1)
    sim.run_for(0.1)
    assert got(sim, "n2") == [] and got(sim, "n1") == [0]
    sim.unblock("n1", "n2")
    blast(sim, "n1", "n2", 1)
    sim.run_for(0.1)
    assert got(sim, "n2") == [0]


def test_messages_in_flight_to_crashed_node_are_dropped():
    sim = echo_sim(network=FIXED)
    blast(sim, "n1", "n2", 1)
    sim.crash("n2")
    sim.run_for(0.1)
    drops = [r for r in sim.trace.tail(50) if r["ev"] == "drop"]
    assert [d["reason"] for d in drops] == ["crashed"]


@pytest.mark.parametrize("loss", [0.1, 0.5])
def test_loss_rate(loss):
    sim = echo_sim(network=NetworkConfig(loss=loss))
    blast(sim, "n1", "n2", 4000)
    sim.run_for(1.0)
    rate = 1 - len(got(sim, "n2")) / 4000
    assert rate == pytest.approx(loss, abs=0.03)


def test_duplicate_rate():
    sim = echo_sim(network=NetworkConfig(duplicate=0.2))
    blast(sim, "n1", "n2", 4000)
    sim.run_for(1.0)
    extra = len(got(sim, "n2")) / 4000 - 1
    assert extra == pytest.approx(0.2, abs=0.03)


def test_reorder_rate():
    # Fixed latency: only the reorder delay can make a message overtake another.
    net = NetworkConfig(latency_min=0.001, latency_max=0.001, reorder=0.3, reorder_delay=0.05)
    sim = echo_sim(network=net)
    blast(sim, "n1", "n2", 2000, spacing=0.001)
    sim.run_for(1.0)
    values = got(sim, "n2")
    assert sorted(values) == list(range(2000))
    delivered = [r for r in sim.trace.tail(2000) if r["ev"] == "deliver"]
    # Sent at (mid-1) ms; anything later than send + 1.1 ms got the extra delay.
    late = sum(1 for r in delivered if r["t"] > 0.001 * (r["mid"] - 1) + 0.0011)
    assert values != sorted(values)
    assert late / len(delivered) == pytest.approx(0.3, abs=0.06)


def test_latency_bounds_and_per_link_override():
    sim = echo_sim(network=NetworkConfig(latency_min=0.002, latency_max=0.004))
    sim.set_link("n1", "n3", latency_min=0.5, latency_max=0.5)
    blast(sim, "n1", "n2", 200)
    blast(sim, "n1", "n3", 5)
    sim.run_for(0.45)
    assert all(0.002 <= t <= 0.004 for t, _, _ in sim.nodes["n2"].seen)
    assert got(sim, "n3") == []
    sim.run_for(0.1)
    assert len(got(sim, "n3")) == 5
    sim.set_link("n1", "n3")  # clear
    blast(sim, "n1", "n3", 1)
    sim.run_for(0.01)
    assert len(got(sim, "n3")) == 6


def test_set_network_loss_burst():
    sim = echo_sim()
    sim.set_network(loss=1.0)
    blast(sim, "n1", "n2", 50)
    sim.run_for(0.1)
    sim.set_network(loss=0.0)
    blast(sim, "n1", "n2", 1)
    sim.run_for(0.1)
    assert got(sim, "n2") == [0]
    with pytest.raises(ValueError):
        sim.set_network(bogus=1.0)
    with pytest.raises(ValueError):
        sim.set_network(loss=2.0)


def test_filters_drop_deliver_hold():
    sim = echo_sim(network=NetworkConfig(loss=1.0, latency_min=0.001, latency_max=0.001))
    sim.partition([["n1"], ["n2", "n3"]])
    h1 = sim.add_filter(lambda s, d, m: "deliver" if d == "n2" else None)
    h2 = sim.add_filter(lambda s, d, m: "hold" if d == "n3" else None)
    blast(sim, "n1", "n2", 3)
    blast(sim, "n1", "n3", 2)
    sim.run_for(0.1)
    assert got(sim, "n2") == [0, 1, 2]  # through partition and 100% loss
    assert got(sim, "n3") == [] and len(sim.held) == 2
    sim.remove_filter(h1)
    sim.remove_filter(h2)
    sim.heal()
    sim.set_network(loss=0.0)
    assert sim.release_held(lambda s, d, m: m.value == 1) == 1
    sim.run_for(0.1)
    assert got(sim, "n3") == [1]
    assert sim.release_held() == 1
    sim.run_for(0.1)
    assert got(sim, "n3") == [1, 0]
    h3 = sim.add_filter(lambda s, d, m: "drop")
    blast(sim, "n1", "n2", 1)
    sim.run_for(0.1)
    assert got(sim, "n2") == [0, 1, 2]
    sim.remove_filter(h3)
    bad = sim.add_filter(lambda s, d, m: "maybe")
    with pytest.raises(ValueError):
        blast(sim, "n1", "n2", 1)
    sim.remove_filter(bad)


def test_observers_see_every_send_once_and_change_nothing():
    """An observer sees node-to-node sends, also those a partition or a filter drops and
    those held (once, not again on release), changes no fate, and is no fault: the trace
    is the same as without it."""

    def run(observe: bool) -> tuple[list, str, dict]:
        sim = echo_sim(network=FIXED)
        seen: list[tuple[str, str, int]] = []
        if observe:
            sim.add_observer(lambda s, d, m: seen.append((s, d, m.value)))
        sim.partition([["n1"], ["n2", "n3"]])
        blast(sim, "n1", "n2", 2)  # dropped by the partition
        sim.heal()
        sim.add_filter(lambda s, d, m: "hold" if d == "n3" else None)
        blast(sim, "n1", "n3", 1)
        blast(sim, "n1", "n2", 1)
        sim.run_for(0.1)
        sim.release_held()
        sim.run_for(0.1)
        return seen, sim.trace.sha256(), dict(sim.faults)

    seen, traced, faults = run(observe=True)
    assert seen == [("n1", "n2", 0), ("n1", "n2", 1), ("n1", "n3", 0), ("n1", "n2", 0)]
    _, plain, plain_faults = run(observe=False)
    assert traced == plain and faults == plain_faults
