"""The durability barrier: outputs leave only after the writes before them are durable."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.sim import NetworkConfig

from .toy import Note, echo_sim

FIXED = NetworkConfig(latency_min=0.001, latency_max=0.001, fsync_latency=0.01)


def put(sim, node: str, key: str, value: int, seq: int = 1) -> None:
    sim.send_request(node, ClientRequest(client_id="c1", seq=seq, op=Op(kind="put", key=key, value=value)))


def notes(sim, node: str) -> list[int]:
    return [m.value for _, _, m in sim.nodes[node].seen if isinstance(m, Note)]


def test_crash_before_sync_loses_write_and_message():
    sim = echo_sim(network=FIXED)
    put(sim, "n1", "x", 7)  # arrives at 0.001, sync done at 0.011
    sim.run_until(0.005)
    assert sim.storage_of("n1").get("x") == 7  # working view sees it at once
    assert sim.storage_of("n1").durable.get("x") is None
    sim.crash("n1")
    sim.run_until(0.1)
    assert notes(sim, "n2") == [] and notes(sim, "n3") == []
    assert sim.responses == []
    sim.restart("n1")
    assert sim.storage_of("n1").get("x") is None


def test_write_survives_restart_after_sync():
    sim = echo_sim(network=FIXED)
    put(sim, "n1", "x", 7)
    sim.run_until(0.0105)
    assert notes(sim, "n2") == []  # held: the sync completes at 0.011
    sim.run_until(0.0115)
    assert sim.storage_of("n1").durable.get("x") == 7
    sim.run_until(0.02)
    assert notes(sim, "n2") == [7] and len(sim.responses) == 1
    sim.crash("n1")
    sim.restart("n1")
    assert sim.storage_of("n1").get("x") == 7


def test_outputs_without_writes_are_immediate():
    sim = echo_sim(network=FIXED)
    sim.send_request("n1", ClientRequest(client_id="c1", seq=1, op=Op(kind="get", key="x")))
    sim.run_until(0.0025)  # request at 0.001, note at 0.002: no fsync in between
    assert notes(sim, "n2") == [None]


def test_group_commit_and_waiting_for_inflight_sync():
    sim = echo_sim(network=FIXED)
    put(sim, "n1", "a", 1, seq=1)  # handled at 0.001: sync #1 until 0.011
    sim.schedule(0.004, lambda: put(sim, "n1", "b", 2, seq=2), "b")  # at 0.005: waits
    sim.schedule(0.005, lambda: put(sim, "n1", "c", 3, seq=3), "c")  # at 0.006: same batch
    sim.schedule(
        0.006,
        lambda: sim.send_request("n1", ClientRequest(client_id="c1", seq=4, op=Op(kind="get", key="a"))),
        "read",
    )  # at 0.007: no write, but nothing may overtake unsynced writes
    sim.run_until(0.0115)
    st = sim.storage_of("n1")
    assert st.durable.get("a") == 1 and st.durable.get("b") is None
    sim.run_until(0.0125)
    assert notes(sim, "n2") == [1]
    sim.run_until(0.0215)  # sync #2 (b and c together) done at 0.021
    assert st.durable.get("b") == 2 and st.durable.get("c") == 3
    sim.run_until(0.03)
    assert notes(sim, "n2") == [1, 2, 3, None]
    syncs = [r for r in sim.trace.tail(200) if r["ev"] == "sync"]
    assert [r["writes"] for r in syncs] == [1, 2]


def test_crash_during_second_sync_keeps_first():
    sim = echo_sim(network=FIXED)
    put(sim, "n1", "a", 1, seq=1)
    sim.schedule(0.004, lambda: put(sim, "n1", "b", 2, seq=2), "b")
    sim.run_until(0.015)  # sync #1 done, sync #2 in flight until 0.021
    sim.crash("n1")
    sim.run_until(0.1)
    assert notes(sim, "n2") == [1]
    sim.restart("n1")
    st = sim.storage_of("n1")
    assert st.get("a") == 1 and st.get("b") is None


def test_durable_copy_not_aliased_by_working_view():
    sim = echo_sim(network=FIXED)
    env = sim.env_of("n1")
    value = [1, 2]
    env.storage.put("list", value)
    sim._after_handler(env)
    sim.run_until(0.02)
    value.append(3)
    sim.storage_of("n1").get("list").append(4)
    assert sim.storage_of("n1").durable.get("list") == [1, 2]
    sim.crash("n1")
    sim.restart("n1")
    sim.storage_of("n1").get("list").append(5)
    assert sim.storage_of("n1").durable.get("list") == [1, 2]
