"""check/etcd_leases.py and services/etcd_sim_lessor.py: leases expire in the simulator,
through the leader's lessor and the log, and each lease rule fails the run when its bug
knob breaks it (scripted runs: each rule's situation made on purpose)."""

from __future__ import annotations

from typing import Any

import pytest

from consensuskit.cli import build_config
from consensuskit.core.capabilities import leader_of
from consensuskit.core.client import ClientResponse
from consensuskit.services.etcd import make_op
from consensuskit.sim import SimConfig, Simulation

NODES = ("n1", "n2", "n3")


def cluster(*bugs: str, nodes: tuple[str, ...] = NODES) -> Simulation:
    """A quiet etcd cluster on raft with its lessors running and a leader elected."""
    config = SimConfig(protocol="raft", service="etcd", node_ids=nodes, clients=0, bugs=frozenset(bugs))
    sim = Simulation(config)
    sim.service_monitor.start(sim)  # run() does this; a scripted run does it by hand
    assert sim.run_until_true(lambda: bool(leader_of(sim.nodes.items())), 5.0)
    return sim


def leader(sim: Simulation) -> str:
    return leader_of(sim.nodes.items())[0]


def call(sim: Simulation, kind: str, key: str = "", body: dict[str, Any] | None = None) -> Any:
    run = sim.submit(make_op(kind, key, body or {}), node=leader(sim))
    assert sim.run_until_true(lambda: run.done, 5.0) and run.status == "ok", run.status
    return run.result


def failures(sim: Simulation) -> list[str]:
    return sim.service_monitor.failures(sim)


def lease_of(sim: Simulation, node: str, lease_id: int) -> Any:
    return sim.service_monitor.checker.machines[node].store.leases.get(lease_id)


def test_a_lapsed_lease_expires_through_the_log_and_takes_its_keys() -> None:
    sim = cluster()
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    call(sim, "put", "k", {"value": b"v", "lease": 7})
    call(sim, "put", "j", {"value": b"w"})
    sim.run_for(0.5)
    assert all(lease_of(sim, n, 7) is not None for n in NODES)  # not before its TTL
    sim.run_for(1.0)
    for node in NODES:  # every replica applied the expiry: the lease and its key are gone
        store = sim.service_monitor.checker.machines[node].store
        assert 7 not in store.leases and set(store.live()) == {b"j"}
    assert failures(sim) == []
    assert sim.service_monitor.report(sim)["etcd_leases_expired"] == 1


def test_keep_alives_keep_a_lease() -> None:
    sim = cluster()
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    for _ in range(6):
        sim.run_for(0.5)
        assert call(sim, "lease_keepalive", "", {"id": 7})["ttl"] == 1
    assert lease_of(sim, leader(sim), 7) is not None and failures(sim) == []


def test_lease_keys_survive_is_caught() -> None:
    """lease-keys-deleted: the expiry applied, the key still names the lease."""
    sim = cluster("lease-keys-survive")
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    call(sim, "put", "k", {"value": b"v", "lease": 7})
    sim.run_for(1.5)
    assert failures(sim) and all(f.startswith("lease-keys-deleted:") for f in failures(sim))
    assert "keys [b'k'] still name it" in failures(sim)[0]


def race_a_keepalive_with_the_expiry(sim: Simulation) -> Any:
    """A keep-alive the leader takes just before its lessor's deadline, and cannot commit
    until after: the lessor asks the expiry of the old stamp, logged after the keep-alive."""
    boss = leader(sim)
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    granted = sim.now
    sim.run_until(granted + 0.95)
    handle = sim.add_filter(lambda src, dst, msg: "hold" if src == boss and dst in NODES else None)
    keepalive = sim.submit(make_op("lease_keepalive", "", {"id": 7}), node=boss)
    asked = sim.service_monitor.lessors.asked
    assert sim.run_until_true(lambda: sim.service_monitor.lessors.asked > asked, 0.25)
    sim.remove_filter(handle)
    sim.release_held()
    assert sim.run_until_true(lambda: keepalive.done, 2.0) and keepalive.status == "ok"
    sim.run_for(0.2)
    return keepalive.result


def test_an_expiry_that_meets_a_newer_keepalive_is_refused() -> None:
    sim = cluster()
    result = race_a_keepalive_with_the_expiry(sim)
    assert result["ttl"] == 1 and result["stamp"] == 1
    assert all(lease_of(sim, n, 7) is not None for n in NODES)  # the keep-alive won
    assert sim.service_monitor.report(sim)["etcd_lease_expiries_stale"] == 1
    assert failures(sim) == []


def test_expire_ignores_keepalive_is_caught() -> None:
    sim = cluster("expire-ignores-keepalive")
    race_a_keepalive_with_the_expiry(sim)
    assert all(lease_of(sim, n, 7) is None for n in NODES)
    assert failures(sim) and failures(sim)[0].startswith("expire-honours-keepalive:")


def crash_the_leader_before_the_deadline(sim: Simulation) -> tuple[str, str]:
    """The lease lapses while the cluster elects a new leader: the old one dies 0.5 s into
    a 1 s TTL; the new one is elected after the old deadline has passed."""
    old = leader(sim)
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    sim.run_for(0.5)
    sim.crash(old)
    new: list[str] = []

    def elected() -> bool:
        new[:] = leader_of(sim.nodes.items())
        return bool(new)

    sim.run_for(0.6)  # past the old deadline, whoever leads by then
    assert sim.run_until_true(elected, 5.0)
    return old, new[0]


def test_a_new_leader_gives_every_lease_a_whole_ttl() -> None:
    sim = cluster()
    _, new = crash_the_leader_before_the_deadline(sim)
    promoted = sim.local_time(new)
    sim.run_until_true(lambda: lease_of(sim, new, 7) is None, 3.0)
    assert lease_of(sim, new, 7) is None  # it did expire, a TTL after the promotion
    assert sim.local_time(new) >= promoted + 0.9
    assert failures(sim) == []


def test_no_promote_extend_is_caught() -> None:
    sim = cluster("no-promote-extend")
    crash_the_leader_before_the_deadline(sim)
    sim.run_for(1.0)
    assert failures(sim) and failures(sim)[0].startswith("promote-extends:")


def test_ignore_new_leases_is_caught() -> None:
    """lease-expires: a lease granted under this leader lapses and is never expired."""
    sim = cluster("ignore-new-leases")
    sim.run_for(0.2)  # the leader's lessor has looked as a leader: lease 7 will be new
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    sim.run_for(2.5)
    assert failures(sim) == []  # not yet past its deadline and the slack
    sim.run_for(1.0)
    assert lease_of(sim, leader(sim), 7) is not None
    assert [f.split(":")[0] for f in failures(sim)] == ["lease-expires"]


@pytest.mark.parametrize("protocol", ["raft", "multipaxos", "zab"])
def test_a_default_sweep_seed_expires_leases_and_keeps_every_rule(protocol: str) -> None:
    """``consensuskit sweep P --service etcd --nemesis all``'s seed 0 (the slow matrix in
    tests/check/test_bug_knobs.py runs 40)."""
    result = Simulation(build_config(protocol, 5, 0, 10.0, 3, "all", [], service="etcd")).run()
    assert result.ok and result.linearizable is True, result.invariant_violations
    metrics = result.metrics
    assert metrics["etcd_leases_granted"] > 5 and metrics["etcd_leases_expired"] > 0, metrics
    assert metrics["etcd_lease_expiries_asked"] >= metrics["etcd_leases_expired"]


def test_an_unknown_service_bug_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"valid: .*lease-keys-survive"):
        Simulation(SimConfig(protocol="raft", service="etcd", bugs=frozenset({"lease-keys-vanish"})))


def test_raw_expiry_answers_are_not_in_the_history() -> None:
    sim = cluster()
    call(sim, "lease_grant", "", {"id": 7, "ttl": 1})
    sim.run_for(1.5)
    assert [r.op for r in sim.history] == ["lease_grant"]
    answers = [r for _, _, r in sim.responses if isinstance(r, ClientResponse)]
    assert any(r.client_id.startswith("lessor/") and r.ok for r in answers)


def test_lessors_keep_a_run_deterministic() -> None:
    config = build_config("zab", 5, 5, 4.0, 3, "all", [], service="etcd")
    first, second = Simulation(config).run(), Simulation(config).run()
    assert first.trace_sha256 == second.trace_sha256 and first.metrics == second.metrics
    assert first.metrics["etcd_lease_expiries_asked"] > 0
