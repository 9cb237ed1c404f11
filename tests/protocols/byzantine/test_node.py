"""The generals as simulator nodes: the same rules over a network, timed in rounds,
checked by check/byzantine.py's IC1/IC2 checker on every step."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.catalog import generals_catalog
from consensuskit.protocols.byzantine import message_count
from consensuskit.protocols.byzantine.messages import OralOrder, SignedOrder
from consensuskit.sim import NetworkConfig, SimConfig, Simulation

REGISTRY = generals_catalog().registry()
FOUR = ("n1", "n2", "n3", "n4")
THREE = ("n1", "n2", "n3")
SEVEN = tuple(f"n{i}" for i in range(1, 8))
FIG_1 = {"m": 1, "traitors": ["n3"], "strategy": "counterexample", "order": "attack"}


def simulate(nodes: tuple[str, ...], options: dict, seed: int = 0, **config) -> Simulation:  # type: ignore[no-untyped-def, type-arg]
    cfg = SimConfig(
        protocol="byzantine-generals", node_ids=nodes, seed=seed, duration=config.pop("duration", 1.0),
        settle=0.2, options=options, **config,
    )  # fmt: skip
    return Simulation(cfg, REGISTRY)


@pytest.mark.parametrize(
    ("nodes", "options"),
    [
        (FOUR, {"m": 1, "traitors": ["n4"], "strategy": "counterexample"}),
        (FOUR, {"m": 1, "traitors": ["n1"], "strategy": "split"}),
        (SEVEN, {"m": 2, "traitors": ["n1", "n6"], "strategy": "random"}),
        (THREE, {"m": 1, "mode": "signed", "traitors": ["n3"], "strategy": "counterexample"}),
        (THREE, {"m": 1, "mode": "signed", "traitors": ["n1"], "strategy": "per-recipient"}),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_loyal_generals_agree_in_every_instance(nodes, options, seed) -> None:  # type: ignore[no-untyped-def]
    result = simulate(nodes, {**options, "instances": 6}, seed).run()
    assert result.ok, [str(v) for v in result.invariant_violations]
    assert result.metrics["instances_decided"] == 6
    if options.get("mode", "oral") == "oral":
        # Each instance sends exactly OM(m)'s count, over a real (simulated) network.
        assert result.metrics["messages_per_instance"] == [message_count(len(nodes), options["m"])]


def test_oral_messages_with_three_generals_are_caught_breaking_ic2() -> None:
    result = simulate(THREE, FIG_1).run()
    names = [v["name"] for v in result.invariant_violations]
    assert not result.ok and names[0] == "ic2"


@pytest.mark.parametrize(
    ("bug", "nodes", "options", "broken"),
    [
        ("trust-commander", FOUR, {"m": 1, "traitors": ["n1"], "strategy": "split"}, "ic1"),
        ("accept-forgeries", THREE, {**FIG_1, "mode": "signed"}, "ic2"),
    ],
)  # fmt: skip
def test_each_bug_knob_is_caught(bug, nodes, options, broken) -> None:  # type: ignore[no-untyped-def]
    clean = simulate(nodes, {**options, "instances": 3}).run()
    assert clean.ok
    result = simulate(nodes, {**options, "instances": 3}, bugs=frozenset({bug})).run()
    assert [v["name"] for v in result.invariant_violations][:1] == [broken]


def test_signing_costs_cpu_time_before_the_messages_leave() -> None:
    """Tokens are free to compute but charged: a node's signed sends leave after the
    CPU time it spent; oral ones leave at the round's start."""
    seen: dict[str, list[float]] = {"oral": [], "signed": []}
    for mode in seen:
        sim = simulate(THREE, {"m": 1, "mode": mode, "instances": 1, "round": 0.05})

        def watch(src, dst, msg, mode=mode, sim=sim):  # type: ignore[no-untyped-def]
            seen[mode].append(sim.now)

        sim.add_filter(watch)
        sim.run()
    assert min(seen["oral"]) == pytest.approx(0.0, abs=1e-6)
    assert min(seen["signed"]) == pytest.approx(2 * 45e-6, abs=1e-6)  # the commander signs twice


def test_malformed_and_stray_messages_are_dropped_and_counted() -> None:
    sim = simulate(FOUR, {"m": 1, "instances": 2})
    sim.run_for(0.01)  # instance 0, round 1
    node = sim.nodes["n2"]
    before = node.dropped
    # A round-2 path, a round early: held until round 2 begins here, then judged (it
    # does not start at the commander) and dropped.
    node.on_message("n3", OralOrder(instance=0, path=("n2", "n3"), value="attack"))
    node.on_message("n3", OralOrder(instance=0, path=("n1",), value="attack"))  # path does not end at n3
    node.on_message("n1", OralOrder(instance=7, path=("n1",), value="attack"))  # another instance
    node.on_message("n1", SignedOrder(instance=0, value="attack", signers=("n1",), signatures=(b"x",)))
    node.on_message("n9", OralOrder(instance=0, path=("n9",), value="attack"))  # not a general
    node.on_message("n1", "garbage")
    assert node.dropped == before + 5
    sim.run_for(node.opts.round)  # into round 2
    assert node.dropped == before + 6
    assert sim.run().ok


def test_a_message_a_hair_early_is_held_for_its_round() -> None:
    """The commander's clock (or event loop) ran ahead: its order reaches n2 while n2's
    instance is armed but its round 1 has not begun.  It is held, not dropped, and n2
    obeys it (on real processes this decided retreat now and then)."""
    sim = simulate(FOUR, {"m": 1, "instances": 1, "order": "attack"})
    node = sim.nodes["n2"]
    assert node.instance == 0 and node.round == 0
    node.on_message("n1", OralOrder(instance=0, path=("n1",), value="attack"))
    assert node.dropped == 0
    result = sim.run()
    assert result.ok and node.decisions() == {0: "attack"}


def test_late_messages_count_as_missing() -> None:
    """A round shorter than the latency breaks the synchronous model: every relay comes
    a round late, is dropped, and the lieutenants fall back to the default order."""
    slow = NetworkConfig(latency_min=0.03, latency_max=0.03)
    sim = simulate(FOUR, {"m": 1, "instances": 1, "round": 0.02, "order": "attack"}, network=slow)
    result = sim.run()
    assert result.metrics["dropped"] > 0
    assert [v["name"] for v in result.invariant_violations][:1] == ["ic2"]


def test_same_seed_same_trace() -> None:
    options = {"m": 1, "traitors": ["n4"], "strategy": "random", "instances": 3}
    a = simulate(FOUR, options, seed=5).run()
    b = simulate(FOUR, options, seed=5).run()
    assert a.trace_sha256 == b.trace_sha256


def test_bad_options_are_one_line() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'bribe'; valid: random") as exc:
        simulate(FOUR, {"strategy": "bribe"}).run()
    assert "\n" not in str(exc.value)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 2),
    data=st.data(),
    mode=st.sampled_from(["oral", "signed"]),
    strategy=st.sampled_from(["random", "split", "silent", "per-recipient", "counterexample"]),
    seed=st.integers(0, 1000),
)
def test_any_m_traitors_among_more_than_3m_simulated_generals_agree(m, data, mode, strategy, seed) -> None:  # type: ignore[no-untyped-def]
    nodes = tuple(f"n{i}" for i in range(1, 3 * m + 2))
    traitors = data.draw(st.lists(st.sampled_from(nodes), max_size=m, unique=True))
    options = {"m": m, "mode": mode, "traitors": traitors, "strategy": strategy, "instances": 2}
    result = simulate(nodes, options, seed, duration=0.6).run()
    assert result.ok, result.invariant_violations
    assert result.metrics["instances_decided"] == 2


def test_the_plug_in_runs_the_generals_from_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from consensuskit.catalog import CATALOG_ENV
    from consensuskit.cli import main

    monkeypatch.setenv(CATALOG_ENV, "consensuskit.catalog:generals_catalog")
    argv = ["sim", "byzantine-generals", "--nodes", "4", "--duration", "1", "--clients", "0", "--json"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--traitors", "n4", "--strategy", "counterexample"])
    doc = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and doc["metrics"]["messages_per_instance"] == [9]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--strategy", "bribe"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "bribe" in err


def test_a_restarted_general_sits_out_and_rejoins_at_the_next_instance() -> None:
    """No storage: a crashed lieutenant misses the instances it was down for (it is
    simply absent, like a silent traitor for that time) and decides again after."""
    sim = simulate(FOUR, {"m": 1, "instances": 6, "order": "attack"})
    sim.schedule(0.12, lambda: sim.crash("n4"), "crash n4")
    sim.schedule(0.33, lambda: sim.restart("n4"), "restart n4")
    result = sim.run()
    assert result.ok, result.invariant_violations
    decided = sim.nodes["n4"].decisions()
    assert min(decided) >= 3 and max(decided) == 5  # instances 3..5 after the restart at 0.33
    assert all(len(sim.nodes[n].decisions()) == 6 for n in ("n2", "n3"))
