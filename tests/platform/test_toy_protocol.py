"""A toy protocol with its own toy service (tests/platform/toy_counter.py), registered
from outside the package, runs through ``sim``, ``sweep``, a scenario and a real server
process with no change to sim/, sweep, scenarios/ or server/: the walk-through "How to
add a protocol" in docs/architecture.md, followed step by step."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consensuskit.catalog import CATALOG_ENV, builtin_registry, default_registry
from consensuskit.cli import app
from consensuskit.client import Client
from consensuskit.core.client import ServiceOp
from consensuskit.scenarios import run_scenario
from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from consensuskit.sim import SimConfig, Simulation
from consensuskit.sweep import failure_reason, run_sweep

from . import toy_counter
from .toy_counter import SERVICE, Counters, registry

PLUGIN = "tests.platform.toy_counter:catalog"
ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("partition", "crash", "pause", "loss", "dup", "reorder", "skew")


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog plug-in, as a user sets it; subprocesses see the repository root."""
    monkeypatch.setenv(CATALOG_ENV, PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_the_service_validates_its_ops_in_one_line():
    assert SERVICE.op("incr", "c0", 2) == ServiceOp(kind="incr", key="c0", value=2)
    assert SERVICE.op("read", "c0").is_read()
    with pytest.raises(ValueError, match=r"^unknown counter operation 'put'; valid: incr, read$"):
        SERVICE.op("put", "c0")
    with pytest.raises(ValueError, match="positive integer"):
        SERVICE.op("incr", "c0", -1)


def test_sim_runs_the_toy_with_its_workload_and_model():
    cfg = SimConfig(protocol="counter-primary", clients=3, duration=4.0, nemesis=FAULTS, seed=1)
    result = Simulation(cfg, registry()).run()
    assert result.ok and result.linearizable is True
    assert result.service == "counter" and result.ops["ok"] > 100
    again = Simulation(
        SimConfig(protocol="counter-primary", clients=3, duration=4.0, nemesis=FAULTS, seed=1), registry()
    ).run()
    assert again.trace_sha256 == result.trace_sha256


def test_the_toy_model_catches_a_counter_that_loses_increments(monkeypatch: pytest.MonkeyPatch):
    """The check can fail: a state machine that drops every third increment is caught."""
    original = Counters.execute
    calls = {"n": 0}

    def lossy(self: Counters, op):  # type: ignore[no-untyped-def]
        if op.kind == "incr":
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                return {"total": self.totals.get(op.key, 0) + 1}  # answers, does not store
        return original(self, op)

    monkeypatch.setattr(Counters, "execute", lossy)
    cfg = SimConfig(protocol="counter-primary", clients=3, duration=2.0, seed=2)
    result = Simulation(cfg, registry()).run()
    assert result.linearizable is False


def test_a_protocol_and_a_service_that_do_not_fit_are_refused():
    with pytest.raises(KeyError, match="counter-primary cannot serve 'kv'; valid: counter"):
        Simulation(SimConfig(protocol="counter-primary", service="kv"), registry())
    with pytest.raises(KeyError, match=r"raft cannot serve 'counter'; valid: (.*, )?kv"):
        Simulation(SimConfig(protocol="raft", service="counter"), registry())


def test_cli_sim_and_sweep_through_the_plugin(plugged: None):
    assert "counter-primary" in default_registry().names()
    runner = CliRunner()
    out = runner.invoke(app, ["sim", "counter-primary", "--nodes", "3", "--duration", "2", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["service"] == "counter" and doc["linearizable"] is True
    out = runner.invoke(
        app,
        [
            "sweep",
            "counter-primary",
            "--seeds",
            "4",
            "--nodes",
            "3",
            "--duration",
            "2",
            "--nemesis",
            ",".join(FAULTS),
            "--workers",
            "2",
            "--json",
            "--no-progress",
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["passed"] == 4 and doc["failures"] == []
    out = runner.invoke(app, ["sim", "raft", "--service", "counter", "--duration", "1"])
    assert out.exit_code == 2
    assert "raft cannot serve 'counter'; valid: " in out.output


def test_cli_check_reads_a_history_with_the_services_model(plugged: None, tmp_path: Path):
    history = tmp_path / "history.jsonl"
    runner = CliRunner()
    out = runner.invoke(app, ["sim", "counter-primary", "--duration", "1", "--history", str(history)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["check", str(history), "--service", "counter", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["verdict"] == "linearizable"
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    wrong = next(r for r in lines if r["op"] == "read" and r["status"] == "ok" and r["result"]["total"] > 0)
    wrong["result"] = {"total": wrong["result"]["total"] + 1000}  # a read nobody could have seen
    history.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = runner.invoke(app, ["check", str(history), "--service", "counter"])
    assert out.exit_code == 1, out.output
    out = runner.invoke(app, ["check", str(history), "--service", "nope"], env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "unknown service 'nope'; valid: counter, " in out.output


def test_sweep_in_process_with_the_plugin(plugged: None):
    cfg = SimConfig(protocol="counter-primary", clients=2, duration=1.5, nemesis=FAULTS)
    result = run_sweep(cfg, range(3), workers=1, progress=False)
    assert result.passed == 3, [f.reason for f in result.failures]


def test_a_scenario_of_the_toy_runs_from_the_catalog(plugged: None):
    run = run_scenario(toy_counter.scenarios()[0])
    assert run.passed, (run.error, run.expectations)
    runner = CliRunner()
    out = runner.invoke(app, ["scenario", "list", "--json"])
    assert out.exit_code == 0, out.output
    row = {"id": "toy-primary-crash", "protocol": "counter-primary", "title": "primary crash", "params": {}}
    assert row in json.loads(out.stdout)
    out = runner.invoke(app, ["scenario", "run", "toy-primary-crash", "--json"])
    assert out.exit_code == 0, out.output


def test_toy_module_has_no_server_imports():
    source = Path(toy_counter.__file__).read_text()
    assert "consensuskit.server" not in source and "consensuskit.sim" not in source


def _http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.timeout(120)
def test_a_real_server_process_serves_the_toy(tmp_path: Path, plugged: None):
    """Three node processes of the toy protocol, started as ``consensuskit up`` starts them,
    serve the counter service's routes; an acknowledged increment survives a restart of
    every node, and a retried write (same X-Request-Id) is applied once."""
    layout = ClusterLayout.prepare(
        tmp_path, 3, free_base_port(6), node_options={"request_timeout": 2.0}, protocol="counter-primary"
    )
    env = {CATALOG_ENV: PLUGIN, "PYTHONPATH": str(ROOT)}
    with LocalCluster(layout, extra_env=env) as cluster:
        cluster.start()
        primary = cluster.wait_for_leader(30.0)
        url = cluster.url(primary)
        assert _http("POST", f"{url}/v1/counter/x", b"2")["total"] == 2
        once = {"X-Request-Id": "toy-client:1"}
        assert _http("POST", f"{url}/v1/counter/x", b"3", once)["total"] == 5
        assert _http("POST", f"{url}/v1/counter/x", b"3", once)["total"] == 5  # the retry
        assert _http("GET", f"{url}/v1/counter/x")["total"] == 5
        with pytest.raises(urllib.error.HTTPError) as refused:
            _http("GET", f"{url}/v1/kv/x")  # the kv routes belong to the kv service
        assert refused.value.code == 404
        with Client(cluster.endpoints) as client:  # the service's client methods
            counter = client.service("counter")
            assert counter.incr("y", 4) == 4 and counter.read("y") == 4
        # ... and its CLI verbs, in the catalog's CLI
        verbs = subprocess.run(
            [sys.executable, "-m", "consensuskit.cli", "counter", "incr", "y", "--endpoints", url],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        assert verbs.returncode == 0 and verbs.stdout.strip() == "5", verbs.stderr
        cluster.stop()
        cluster.start()
        primary = cluster.wait_for_leader(30.0)
        assert _http("GET", f"{cluster.url(primary)}/v1/counter/x")["total"] == 5
        assert _http("GET", f"{cluster.url(primary)}/v1/counter/y")["total"] == 5


@pytest.mark.parametrize("protocol", ["raft", "multipaxos", "basic-paxos", "fast-paxos"])
def test_every_log_protocol_serves_another_log_service(protocol: str):
    """The counter service marked as a log service runs on each log protocol of the
    catalog: the protocol replicates the service's state machine, the workload and the
    model are the service's, and the protocol's invariants hold."""
    reg = builtin_registry()
    reg.add_service(dataclasses.replace(SERVICE, name="counter-log", log=True))
    nodes = tuple(f"n{i}" for i in range(1, 6))
    cfg = SimConfig(
        protocol=protocol,
        service="counter-log",
        node_ids=nodes,
        clients=3,
        duration=3.0,
        nemesis=FAULTS,
        seed=4,
    )
    sim = Simulation(cfg, reg)
    result = sim.run()
    assert result.ok and result.linearizable is True, (result.invariant_violations, result.ops)
    assert result.ops["ok"] > 20
    assert all(type(node.sm).__name__ == "Sessioned" for node in sim.nodes.values() if node is not None)


class _CountingMonitor:
    """A service monitor: it makes every node's state machine (and so sees each start),
    runs something beside the log, and reports and fails the run by the config's bugs."""

    def __init__(self, config: SimConfig) -> None:
        self.bugs = config.bugs
        self.made: list[str] = []
        self.started = False

    def make_state_machine(self, node_id: str) -> Any:
        self.made.append(node_id)
        return SERVICE.make_state_machine()

    def start(self, sim: Simulation) -> None:
        self.started = True

    def report(self, sim: Simulation) -> dict[str, Any]:
        return {"machines_made": len(self.made)}

    def failures(self, sim: Simulation) -> list[str]:
        return ["the knob says so"] if "fail-me" in self.bugs else []


def test_a_services_monitor_makes_the_state_machines_reports_and_fails_the_run():
    reg = builtin_registry()
    monitors: list[_CountingMonitor] = []

    def make(config: SimConfig) -> _CountingMonitor:
        monitors.append(_CountingMonitor(config))
        return monitors[-1]

    spec = dataclasses.replace(
        SERVICE, name="counter-watched", log=True, make_monitor=make, bugs=("fail-me",)
    )
    reg.add_service(spec)
    cfg = SimConfig(
        protocol="raft", service="counter-watched", clients=2, duration=2.0, nemesis=("crash",), seed=3
    )
    sim = Simulation(cfg, reg)
    result = sim.run()
    monitor = monitors[-1]
    assert result.ok and monitor.started
    assert sorted(set(monitor.made)) == list(sim.node_ids)
    assert result.metrics["machines_made"] == len(monitor.made) >= len(sim.node_ids)
    assert all(type(node.sm).__name__ == "Sessioned" for node in sim.nodes.values() if node is not None)
    failed = Simulation(dataclasses.replace(cfg, bugs=frozenset({"fail-me"})), reg).run()
    assert [v["name"] for v in failed.invariant_violations] == ["counter-watched-monitor"]
    with pytest.raises(ValueError, match=r"valid: .*fail-me"):
        Simulation(dataclasses.replace(cfg, bugs=frozenset({"nope"})), reg)


def test_a_service_without_a_model_owes_no_verdict():
    """A service that is not linearizable (model None) is not failed by a sweep for the
    verdict it never owed; the kv service's runs still owe one."""
    reg = builtin_registry()
    reg.add_service(dataclasses.replace(SERVICE, name="counter-unchecked", model=None))
    reg.add(dataclasses.replace(toy_counter.PROTOCOL, services=("counter-unchecked",)))
    cfg = SimConfig(protocol="counter-primary", clients=2, duration=1.0)
    result = Simulation(cfg, reg).run()
    assert result.linearizable is None and not result.verdict_due
    assert failure_reason(result, cfg) == ""
    unchecked = dataclasses.replace(
        Simulation(SimConfig(protocol="raft", clients=2, duration=1.0), reg).run(), linearizable=None
    )
    assert "no linearizability verdict" in failure_reason(unchecked, cfg)


# ------------------------------------------------------------ the protocol's own flags
def test_a_protocols_flags_reach_options_the_monitor_and_the_report(plugged: None):
    """--primary-index is an option flag (the nodes read it); --crash-primary-at and
    --need-ok only reach the simulation, where the toy's monitor acts on them."""
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "sim",
            "counter-primary",
            "--nodes",
            "3",
            "--duration",
            "2",
            "--json",
            "--primary-index",
            "1",
            "--crash-primary-at=1.0",
            "--loud",
            "on",
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["metrics"]["crashed_at"] == 1.0
    assert doc["faults"]["crash"] == 1  # the monitor's crash, counted like the nemesis's
    # The run fails when the monitor's end-of-run property fails.
    out = runner.invoke(
        app, ["sim", "counter-primary", "--nodes", "3", "--duration", "1", "--json", "--need-ok", "100000"]
    )
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    assert doc["invariant_violations"][0]["name"] == "counter-primary-monitor"
    assert "operations completed, 100000 needed" in doc["invariant_violations"][0]["detail"]


def test_a_sim_config_with_flags_runs_without_the_cli():
    config = SimConfig(
        protocol="counter-primary",
        node_ids=("a", "b", "c"),
        duration=1.0,
        clients=1,
        flags={"primary_index": 2},
    )
    sim = Simulation(config, registry())
    assert sim.options["primary_index"] == 2 and sim.flags["need_ok"] == 0
    assert sim.nodes["a"].primary == "c"
    sim.close()
    with pytest.raises(ValueError, match=r"unknown flag\(s\) no_such for counter-primary; valid: crash"):
        Simulation(dataclasses.replace(config, flags={"no_such": 1}), registry())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--primary-index", "x"], "--primary-index: expected int, got 'x'"),
        (["--style", "odd"], "--style: 'odd' is not one of plain, fancy"),
        (["--loud", "maybe"], "--loud: expected one of on, true, yes, 1, off, false, no, 0"),
        (["--no-such", "1"], "no such option '--no-such' for counter-primary"),
        (["--primary-index"], "--primary-index needs a value"),
        (["--primary-index", "-3"], "primary_index must be an int >= 0"),
    ],
)
def test_bad_protocol_flags_are_one_line_and_exit_2(plugged: None, args: list[str], message: str):
    out = CliRunner().invoke(app, ["sim", "counter-primary", "--duration", "1", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output
    if "no such option" in message:  # names the command's options and the protocol's flags
        assert "--seed" in out.output and "--crash-primary-at" in out.output


def test_raft_takes_no_flags_and_says_so(plugged: None):
    out = CliRunner().invoke(app, ["sweep", "raft", "--seeds", "1", "--loss", "0.1"])
    assert out.exit_code == 2
    assert "no such option '--loss' for raft" in out.output


def test_a_sweeps_reproduce_line_carries_the_flags():
    from consensuskit.sweep import reproduce_command

    config = SimConfig(
        protocol="counter-primary",
        flags={"primary_index": 1, "loud": True, "style": "a b"},
        options={"primary_index": 1, "other": 2},
    )
    line = reproduce_command(config, 7)
    assert "--primary-index 1" in line and "--loud on" in line and "--style 'a b'" in line
    assert "--option other=2" in line and "--option primary_index" not in line


def test_the_families_commands_come_from_the_catalog(plugged: None):
    env = {**os.environ, CATALOG_ENV: PLUGIN}
    cases = ((["toy-hello", "--name", "you"], "hello you"), (["toy", "count", "--n", "4"], "1 2 3 4"))
    for argv, expected in cases:
        done = subprocess.run(
            [sys.executable, "-m", "consensuskit.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr


def test_up_writes_option_flags_into_the_nodes_configs_and_keeps_them(plugged: None, tmp_path: Path):
    """``up --primary-index 2`` reaches every node's [options]; a later ``up`` without it
    keeps it (and the service), as the cluster's manifest remembers them."""
    layout = ClusterLayout.prepare(
        tmp_path,
        3,
        free_base_port(6),
        node_options={"options": {"primary_index": 2}},
        protocol="counter-primary",
    )
    assert "primary_index = 2" in layout.nodes[0].config_path.read_text()
    again = ClusterLayout.prepare(tmp_path)
    assert "primary_index = 2" in again.nodes[1].config_path.read_text()
    changed = ClusterLayout.prepare(tmp_path, node_options={"options": {"primary_index": 1}})
    assert "primary_index = 1" in changed.nodes[2].config_path.read_text()


@pytest.mark.parametrize("command", ["up", "server"])
def test_up_and_server_take_the_protocols_flags_too(plugged: None, command: str, tmp_path: Path):
    out = CliRunner().invoke(
        app, [command, "--protocol", "counter-primary", "--data-dir", str(tmp_path), "--style", "odd"]
    )
    assert out.exit_code == 2, out.output
    assert "--style: 'odd' is not one of plain, fancy" in out.output
