"""The gossip kv's monitor (check/gossip_kv.py): lost acknowledged writes told apart from
ordinary overwrites, convergence and causality failures, and the two bug knobs caught at
the CLI's default options (``consensuskit sweep gossip-kv``) while the same seeds pass
without them."""

from __future__ import annotations

import pytest

from consensuskit.check.gossip_kv import causality_breaks, classify_writes, describe
from consensuskit.cli import build_config
from consensuskit.protocols.gossip.hlc import pack
from consensuskit.sim import Simulation
from consensuskit.sweep import run_seed

pytestmark = pytest.mark.timeout(300)


def s(l: int, origin: str) -> tuple[int, str]:  # noqa: E741
    return (pack(l, 0), origin)


def test_an_overwrite_that_saw_the_write_supersedes_it_a_concurrent_one_loses_it() -> None:
    # x: a1 <- a2 (a2 saw a1) and, concurrently with both, b1 (saw nothing) wins by clock.
    links = {s(1, "a"): None, s(2, "a"): s(1, "a"), s(3, "b"): None, s(4, "a"): s(3, "b")}
    writes = [
        ("x", s(1, "a"), None, "a1"),
        ("x", s(2, "a"), s(1, "a"), "a2"),
        ("x", s(3, "b"), None, "b1"),
        ("x", s(4, "a"), s(3, "b"), "a3"),
        ("y", s(1, "b"), None, "y1"),
    ]
    final = {"x": s(4, "a"), "y": s(1, "b")}
    classes = classify_writes(writes, final, links)
    assert [v for _, _, v in classes["survived"]] == ["a3", "y1"]
    assert [v for _, _, v in classes["superseded"]] == ["b1"]
    assert [v for _, _, v in classes["lost"]] == ["a1", "a2"]  # b1 never saw them
    # A key whose tombstone was collected: nothing says what replaced what.
    gone = classify_writes([("z", s(1, "a"), None, "z1")], final, links)
    assert [v for _, _, v in gone["collected"]] == ["z1"] and not gone["lost"]


def test_causality_breaks_are_versions_not_above_what_they_replaced() -> None:
    links = {s(5, "a"): None, s(4, "b"): s(5, "a"), s(6, "b"): s(5, "a")}
    assert causality_breaks(links) == [(s(4, "b"), s(5, "a"))]
    assert describe(s(4, "b")) == "0.004s+0@b"


def run(seed: int, bugs: list[str] | None = None, nemesis: str = "none"):
    """What ``consensuskit sweep gossip-kv --nemesis NEMESIS [--bug B]`` runs for one seed."""
    return run_seed(build_config("gossip-kv", 5, 0, 10.0, 3, nemesis, bugs), seed)


def test_a_clean_run_converges_and_measures_lost_writes() -> None:
    """Seed 3 of ``sweep --nemesis all``: passes; the monitor reports lost writes (three
    clients on three keys always collide) and how soon after the heal replicas agreed."""
    config = build_config("gossip-kv", 5, 3, 10.0, 3, "all", None)
    result = Simulation(config).run()
    assert result.ok, result.invariant_violations
    m = result.metrics
    assert m["converged"] and m["causality_breaks"] == 0
    classified = (
        m["survived_writes"] + m["superseded_writes"] + m["lost_writes"] + m["writes_of_collected_keys"]
    )
    assert m["acknowledged_writes"] == classified
    assert m["lost_writes"] > 0 and m["survived_writes"] <= 3  # one final version per key
    assert 0 <= m["converged_within_seconds_of_settle"] < config.settle
    assert run(15).ok


def test_missing_keys_only_is_caught_by_the_convergence_check() -> None:
    """Seed 15 of the default sweep (no nemesis): rumors leave a residue that only
    anti-entropy of newer versions repairs."""
    outcome = run(15, ["missing-keys-only"])
    assert not outcome.ok and outcome.reason.startswith(
        "invariant gossip-kv-monitor: replicas did not converge"
    )


def test_physical_clock_only_is_caught_by_the_causality_check() -> None:
    """Seed 0 of ``sweep --nemesis all``: clock skew makes an overwrite lose to what it saw."""
    outcome = run(0, ["physical-clock-only"], nemesis="all")
    assert not outcome.ok and "stamped at or below the version they replaced" in outcome.reason
    clean = run(0, nemesis="all")
    assert clean.ok, clean.reason
