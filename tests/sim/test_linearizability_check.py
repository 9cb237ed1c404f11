"""Every simulation checks its client history with the linearizability checker."""

from __future__ import annotations

from consensuskit.sim import NEMESIS_KINDS, SimConfig, Simulation


def run(seed: int, **overrides: object):
    config = SimConfig(protocol="raft", clients=5, seed=seed, duration=10.0, nemesis=tuple(NEMESIS_KINDS))
    for name, value in overrides.items():
        setattr(config, name, value)
    return Simulation(config).run()


def test_a_correct_run_is_reported_linearizable() -> None:
    result = run(1)
    assert result.linearizable is True and result.ok
    doc = result.to_json()["linearizability"]
    assert doc["verdict"] == "linearizable" and doc["ops"] == result.ops["ok"] + result.ops["unknown"]


def test_stale_reads_are_caught_by_the_history_check_alone() -> None:
    # With per-step invariants off, only the history check can notice the bug.  Clients
    # mostly talk to the leader, so only some seeds (7, 20, 27 of the first 30) send a
    # read to a lagging follower.
    verdicts = []
    for seed in range(40):
        result = run(seed, bugs=frozenset({"stale-read"}), check_every_step=False)
        verdicts.append(result.linearizable)
        if result.linearizable is False:
            assert not result.ok
            assert result.to_json()["linearizability"]["failing_partition"]["unplaced"]
            break
    assert False in verdicts, verdicts


def test_the_check_can_be_switched_off() -> None:
    result = run(1, check_linearizability=False)
    assert result.linearizable is None and result.linearizability is None
