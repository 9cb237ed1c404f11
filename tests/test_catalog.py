"""The catalog is the composition root: it wires checkers, registers scenarios per
protocol, and the docs' protocol tables are generated from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensuskit.catalog import (
    CATALOG_ENV,
    Catalog,
    builtin_catalog,
    default_catalog,
    default_registry,
)
from consensuskit.catalog_docs import DOCUMENTS, protocol_table, render, service_table, stale_documents
from consensuskit.check.commit import CommitChecker
from consensuskit.check.multipaxos import MultiPaxosChecker
from consensuskit.check.paxos import PaxosChecker
from consensuskit.check.pbft import PbftChecker
from consensuskit.check.raft import RaftChecker
from consensuskit.check.sharded import ShardedChecker
from consensuskit.check.swim import SwimChecker
from consensuskit.check.zab import ZabChecker
from consensuskit.core.registry import ProtocolSpec, Registry
from consensuskit.protocols.paxos import basic_paxos_spec, fast_paxos_spec, multipaxos_spec
from consensuskit.protocols.pbft import pbft_spec
from consensuskit.protocols.raft import raft_spec
from consensuskit.protocols.swim import swim_spec
from consensuskit.protocols.zab import zab_spec
from consensuskit.scenarios.base import Scenario

ROOT = Path(__file__).resolve().parents[1]
CATALOG = default_catalog()


def test_the_catalog_wires_each_protocols_checker_from_check() -> None:
    expected = {
        "raft": RaftChecker,
        "multipaxos": MultiPaxosChecker,
        "basic-paxos": PaxosChecker,
        "fast-paxos": PaxosChecker,
        "zab": ZabChecker,
        "2pc": CommitChecker,
        "3pc": CommitChecker,
        "paxos-commit": CommitChecker,
        "swim": SwimChecker,
        "pbft": PbftChecker,
        "sharded-raft": ShardedChecker,
    }
    registry = CATALOG.registry()
    assert registry.names() == sorted([*expected, "gossip", "gossip-kv"])
    # Gossip has no per-step invariant: its monitor checks convergence at the end of a run.
    for name in ("gossip", "gossip-kv"):
        assert registry.get(name).make_checker is None and registry.get(name).make_monitor is not None
    for name, checker in expected.items():
        make_checker = registry.get(name).make_checker
        assert make_checker is not None and isinstance(make_checker(frozenset()), checker)


def test_protocol_specs_carry_no_checker_of_their_own() -> None:
    """Protocols do not import check/: only the catalog wires a checker."""
    for spec in (
        raft_spec(),
        multipaxos_spec(),
        basic_paxos_spec(),
        fast_paxos_spec(),
        zab_spec(),
        swim_spec(),
        pbft_spec(),
    ):
        assert spec.make_checker is None, spec.name


def test_the_raft_checker_gets_the_bugs() -> None:
    checker = CATALOG.registry().get("raft").make_checker(frozenset({"vote-after-wipe"}))  # type: ignore[misc]
    assert checker.wiped_servers_vote


def test_every_protocol_has_its_scenarios_and_each_scenario_one_protocol() -> None:
    scenarios = CATALOG.scenarios()
    for entry in CATALOG.protocols():
        own = CATALOG.scenarios(entry.name)
        assert own, f"{entry.name} registers no scenario"
        assert all(s.protocol == entry.name for s in own.values())
    families = CATALOG.scenario_families()
    owners = [*(e.name for e in CATALOG.protocols()), *families]
    assert sum(len(CATALOG.scenarios(name)) for name in owners) == len(scenarios)
    # SCENARIOS.md order: Paxos, Fast Paxos, Multi-Paxos, Raft, the later protocols (SWIM,
    # PBFT); then the families' own.
    of_protocols = [s for s in scenarios.values() if s.protocol not in families]
    assert next(iter(scenarios)) == "paxos-x-wins" and of_protocols[-1].id.startswith("pbft-")
    assert [s.protocol for s in scenarios.values()][len(of_protocols) :] == [
        s.protocol for s in scenarios.values() if s.protocol in families
    ]


def test_a_family_registers_scenarios_that_run_no_catalog_protocol() -> None:
    from consensuskit.scenarios import Scenario

    def script(run) -> None:  # type: ignore[no-untyped-def]
        run.expect(True, "computed directly")

    catalog = builtin_catalog()
    catalog.add_scenarios("abacus", lambda: [Scenario("abacus-sum", "sum", "abacus", "adds", script)])
    scenarios = catalog.scenarios()
    assert list(scenarios)[-1] == "abacus-sum" and catalog.scenario_families()[-1] == "abacus"
    assert list(catalog.scenarios("abacus")) == ["abacus-sum"]
    with pytest.raises(ValueError, match="registered twice"):
        catalog.add_scenarios("abacus", lambda: [])
    catalog.add_scenarios("slide-rule", lambda: [Scenario("rule", "r", "abacus", "wrong owner", script)])
    with pytest.raises(ValueError, match="registered under 'slide-rule'"):
        catalog.scenarios()


def test_unknown_names_are_one_line_naming_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="raft-election") as exc:
        CATALOG.scenario("raft-nope")
    assert "\n" not in str(exc.value)
    valid = (
        "basic-paxos, fast-paxos, gossip, gossip-kv, multipaxos, paxos-commit, pbft, raft, "
        "sharded-raft, swim, zab"
    )
    with pytest.raises(KeyError, match=valid):
        CATALOG.protocol("chubby")


def test_the_demo_runs_the_leader_protocols() -> None:
    assert CATALOG.demo_protocols() == ["multipaxos", "raft"]


# ------------------------------------------------------------ a protocol from outside
def toy_spec() -> ProtocolSpec:
    return ProtocolSpec(name="toy", description="a toy", make_node=lambda *a: None, bugs=("lie",))


def toy_scenario(protocol: str = "toy", scenario_id: str = "toy-hello") -> Scenario:
    return Scenario(scenario_id, "Hello", protocol, "says hello", lambda run: None)


def test_a_new_protocol_is_one_catalog_entry() -> None:
    catalog = default_catalog()
    seen: list[frozenset[str]] = []
    catalog.add_protocol(
        toy_spec(), family="toy", checker=lambda bugs: seen.append(bugs), scenarios=lambda: [toy_scenario()]
    )
    spec = catalog.registry().get("toy")
    assert spec.make_checker is not None
    spec.make_checker(frozenset({"lie"}))
    assert seen == [frozenset({"lie"})]
    assert catalog.scenario("toy-hello").protocol == "toy"
    assert "| `toy` | a toy | `lie` | 1 | — | no |" in protocol_table(catalog)
    assert "toy" not in default_catalog().registry().names()  # no global state


def test_the_catalog_refuses_inconsistent_entries() -> None:
    catalog = Catalog()
    catalog.add_protocol(toy_spec(), family="toy", scenarios=lambda: [toy_scenario("raft")])
    with pytest.raises(ValueError, match="registered under 'toy'"):
        catalog.scenarios()
    with pytest.raises(ValueError, match="registered twice"):
        catalog.add_protocol(toy_spec(), family="toy")
    twice = Catalog()
    twice.add_protocol(toy_spec(), family="toy", scenarios=lambda: [toy_scenario(), toy_scenario()])
    with pytest.raises(ValueError, match="'toy-hello' registered twice"):
        twice.scenarios()


# ------------------------------------------------------------------- the docs' tables
def test_the_docs_protocol_tables_are_the_catalogs() -> None:
    """Fails when a protocol, bug knob or scenario changed without `make docs`."""
    assert stale_documents(ROOT) == [], "run `make docs`"
    for document in DOCUMENTS:
        assert "<!-- catalog:protocols" in (ROOT / document).read_text(encoding="utf-8"), document


def test_the_service_table_names_each_services_protocols_knobs_and_monitor() -> None:
    """A service's own bug knobs and monitor are in the table (the protocol table lists only
    the protocols' knobs), with the protocols that serve it."""
    table = service_table(CATALOG)
    etcd = next(line for line in table.splitlines() if line.startswith("| `etcd` |"))
    assert "`lease-keys-survive`" in etcd and etcd.endswith("| yes |")
    assert "`raft`" in etcd and "`swim`" not in etcd
    membership = next(line for line in table.splitlines() if line.startswith("| `membership` |"))
    assert "| `swim` | — | — |" in membership
    text = "a\n<!-- catalog:services -->\nold\n<!-- /catalog:services -->\nb\n"
    fresh = render(text, CATALOG)
    assert fresh == f"a\n<!-- catalog:services -->\n{table}<!-- /catalog:services -->\nb\n"


def test_render_regenerates_only_between_the_markers() -> None:
    text = (
        "intro\n<!-- catalog:protocols family=paxos -->\nold table\n<!-- /catalog:protocols -->\n"
        "outro | raft\n"
    )
    fresh = render(text, CATALOG)
    assert fresh.startswith("intro\n") and fresh.endswith("<!-- /catalog:protocols -->\noutro | raft\n")
    assert "old table" not in fresh and "`multipaxos`" in fresh and "`raft`" not in fresh
    assert render(fresh, CATALOG) == fresh


def test_a_stale_table_is_found_and_rewritten(tmp_path: Path) -> None:
    for document in DOCUMENTS:
        path = tmp_path / document
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((ROOT / document).read_text(encoding="utf-8"), encoding="utf-8")
    catalog = default_catalog()
    catalog.add_protocol(toy_spec(), family="toy")
    assert stale_documents(tmp_path, catalog) == ["README.md", "docs/architecture.md"]
    assert stale_documents(tmp_path, catalog, write=True) == ["README.md", "docs/architecture.md"]
    assert stale_documents(tmp_path, catalog) == []
    assert "`toy`" in (tmp_path / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------- the plug-in point
def toy_catalog() -> Catalog:
    """A plug-in: the built-in catalog plus the toy (CONSENSUSKIT_CATALOG names this)."""
    catalog = builtin_catalog()
    catalog.add_protocol(toy_spec(), family="toy", scenarios=lambda: [toy_scenario()])
    return catalog


def toy_registry() -> Registry:
    registry = Registry()
    registry.add(toy_spec())
    return registry


def test_a_plugin_catalog_reaches_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from consensuskit.cli import main

    monkeypatch.setenv(CATALOG_ENV, f"{__name__}:toy_catalog")
    assert "toy" in default_registry().names() and "raft" in default_registry().names()
    assert default_catalog().scenario("toy-hello").protocol == "toy"
    with pytest.raises(SystemExit) as exc:
        main(["scenario", "list", "--json", "--protocol", "toy"])
    assert exc.value.code == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["toy-hello"]


def test_a_plugin_registry_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CATALOG_ENV, f"{__name__}:toy_registry")
    assert default_registry().names() == ["toy"]
    assert [e.name for e in default_catalog().protocols()] == ["toy"]
    assert default_catalog().scenarios() == {}


@pytest.mark.parametrize(
    ("reference", "error"), [("nocolon", ValueError), (f"{__name__}:toy_spec", TypeError)]
)
def test_a_bad_plugin_is_refused(monkeypatch: pytest.MonkeyPatch, reference: str, error: type) -> None:
    monkeypatch.setenv(CATALOG_ENV, reference)
    with pytest.raises(error, match=CATALOG_ENV):
        default_registry()
