"""The command line's stable interface: outputs, JSON fields and exit codes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from consensuskit.catalog import default_registry
from consensuskit.cli import build_config, main, parse_nemesis, parse_nemesis_interval
from consensuskit.core.client import CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE
from consensuskit.sim import NEMESIS_KINDS, Simulation
from consensuskit.sweep import reproduce_command


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Call the real entry point (with its usage-error handling) in-process."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_scenario_list_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scenario", "list")
    assert code == 0
    assert "raft-election" in out
    code, out, _ = run(capsys, "scenario", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {"id", "protocol", "title", "params"} == set(rows[0])
    assert next(r for r in rows if r["id"] == "lease-read")["params"].keys() == {"drift"}
    assert any(r["id"] == "raft-election" and r["protocol"] == "raft" for r in rows)


def test_scenario_run_passes_with_verdict_and_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scenario", "run", "raft-election", "--timeline")
    assert code == 0
    assert "✓" in out and "PASSED raft-election" in out
    assert "becomes LEADER" in out and "heartbeats" in out
    assert len(out.splitlines()) < 150


def test_scenario_run_json_and_trace_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    args = ("scenario", "run", "raft-election", "--seed", "3", "--json", "--trace", str(trace))
    code, out, _ = run(capsys, *args)
    assert code == 0
    doc = json.loads(out)
    assert doc["passed"] is True and doc["seed"] == 3
    assert trace.read_text().count("\n") == doc["events"]


def test_sim_json_fields_and_determinism(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("sim", "raft", "--nodes", "3", "--duration", "2", "--seed", "5", "--nemesis", "crash,partition")
    code, out, _ = run(capsys, *args, "--json")
    first = json.loads(out)
    for key in (
        "protocol",
        "nodes",
        "seed",
        "ops",
        "invariant_violations",
        "linearizable",
        "trace_sha256",
        "events",
        "wall_seconds",
    ):
        assert key in first
    assert first["protocol"] == "raft" and first["nodes"] == 3 and first["seed"] == 5
    assert first["runtime"] in ("batched", "unbatched")  # the default "random", resolved
    assert set(first["ops"]) >= {"ok", "fail", "unknown"}
    assert code == (0 if not first["invariant_violations"] and first["linearizable"] is not False else 1)
    _, out, _ = run(capsys, *args, "--json")
    assert json.loads(out)["trace_sha256"] == first["trace_sha256"]


def test_sim_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sim", "raft", "--nodes", "3", "--duration", "1")
    assert code == 0
    assert "trace sha256" in out and out.rstrip().endswith("OK")


def test_sim_exit_1_and_trace_tail_on_violation(capsys: pytest.CaptureFixture[str]) -> None:
    # vote-twice breaks election safety; some seed among the first few shows it quickly.
    for seed in range(20):
        code, out, _ = run(
            capsys,
            "sim",
            "raft",
            "--seed",
            str(seed),
            "--duration",
            "2",
            "--bug",
            "vote-twice",
            "--clients",
            "0",
        )
        if code == 1:
            assert "invariant violated: election-safety" in out
            assert "!! VIOLATION election-safety" in out
            assert out.rstrip().endswith("FAILED")
            return
    pytest.fail("vote-twice never violated election safety in 20 seeds")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scenario", "run", "no-such-scenario"], "raft-election"),
        (["sim", "paxos9"], "raft"),
        (["sweep", "paxos9", "--seeds", "2"], "raft"),
        (["sim", "raft", "--nemesis", "partition,meteor"], "reorder"),
        (["sim", "raft", "--bug", "no-such-bug"], "vote-twice"),
        (["sweep", "raft", "--bug", "no-such-bug"], "vote-twice"),
        (["sim", "raft", "--service", "no-such-service"], "service 'no-such-service'; valid:"),
        (["sweep", "multipaxos", "--service", "no-such-service"], "service 'no-such-service'; valid:"),
        (["check", "no-file.jsonl", "--service", "no-such-service"], "service 'no-such-service'; valid:"),
        (["up", "--listen-base-port", "grpc"], "expected NAME=PORT"),
        (["up", "--set", "data_dir=/tmp/x"], "not a setting up passes to its nodes; valid: max_value_bytes"),
        (["up", "--set", "max_sessions=0"], "max_sessions: expected a positive integer"),
        (["up", "--set", "fsync"], "expected KEY=VALUE, got 'fsync'"),
        (["up", "--shards", "x"], "--shards: expected int"),  # sharded Raft's flag, not raft's
        (["sim", "raft", "--nodes", "0"], "--nodes"),
        (["sim", "raft", "--nodes", "-3"], "--nodes"),
        (["sim", "raft", "--duration", "-1"], "--duration"),
        (["sweep", "raft", "--seeds", "0"], "--seeds"),
        (["sim", "raft", "--runtime", "threaded"], "batched, unbatched, random"),
        (["sweep", "raft", "--runtime", "threaded"], "batched, unbatched, random"),
        (["sim", "raft", "--frobnicate"], "--nemesis"),
        (["sim", "raft", "--nemesis-interval", "2,1"], "0 < LO <= HI"),
        (["sweep", "raft", "--nemesis-interval", "0,1"], "0 < LO <= HI"),
        (["sim", "raft", "--nemesis-interval", "soon"], "expected LO,HI"),
        (["sim", "raft", "--nemesis-interval", "1,2,3"], "expected LO,HI"),
        (["sim", "raft", "--server-options", "--option", "election_timeout=-1"], "election_timeout"),
        (["frobnicate"], "scenario"),
        (["scenario", "run", "raft-election", "--heartbeats", "some"], "collapse"),
        (["scenario", "run", "lease-read", "--param", "speed=2"], "valid: drift"),
        (["scenario", "run", "raft-election", "--param", "drift=0.3"], "valid: none"),
        (["scenario", "run", "lease-read", "--param", "drift"], "expected KEY=VALUE"),
        # A value the script cannot run with: a traceback (ValueError) or a failed run before.
        (["scenario", "run", "lease-read", "--param", "drift=abc"], "drift must be a number, got 'abc'"),
        (["scenario", "run", "lease-read", "--param", "drift=true"], "drift must be a number, got True"),
        (["scenario", "run", "lease-read", "--param", "drift=0.5"], "drift must be in [0, 0.5), got 0.5"),
        (["scenario", "run", "lease-cache", "--param", "drift=-0.1"], "drift must be in [0, 0.9), got -0.1"),
        (["scenario", "list", "--protocol", "viewstamped"], "multipaxos"),
        (["sweep", "raft", "--seeds", "1", "--dask", "local:0"], "local:N"),
        (["fenced-store", "--port", "-5"], "--port"),  # a traceback (OverflowError from bind) before
        (["fenced-store", "--port", "65536"], "--port"),
        (["sweep", "raft", "--seeds", "1", "--dask", "local:many"], "local:N"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


def test_parse_nemesis() -> None:
    assert parse_nemesis("") == () == parse_nemesis("none")
    assert parse_nemesis("all") == tuple(k for k in NEMESIS_KINDS if k != "membership")
    assert parse_nemesis("all,membership") == NEMESIS_KINDS
    assert parse_nemesis("skew, crash") == ("crash", "skew")  # canonical order


def test_parse_nemesis_interval() -> None:
    assert parse_nemesis_interval("2,6") == (2.0, 6.0)
    assert parse_nemesis_interval(" 0.5 , 0.5 ") == (0.5, 0.5)
    assert parse_nemesis_interval("3") == (3.0, 3.0)  # one number: a fixed gap


def test_server_options_run_the_servers_timers_and_an_option_still_wins() -> None:
    server = default_registry().get("raft").server_options
    assert server["election_timeout"] == 1.0  # what a real node runs (raft/options.py)
    config = build_config("raft", 3, 0, 1.0, 0, "none", None, server_options=True)
    assert config.options == server
    config = build_config("raft", 3, 0, 1.0, 0, "none", None, ["election_timeout=2.0"], server_options=True)
    assert config.options == {**server, "election_timeout": 2.0}
    assert build_config("raft", 3, 0, 1.0, 0, "none", None).options == {}


def test_a_sweep_with_the_servers_timers_and_slower_faults_reproduces_its_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The faults come no faster than an election at 1 s timeouts can finish, so every
    # seed completes operations; the reproduce command carries the interval.
    code, out, _ = run(
        capsys,
        "sweep",
        "raft",
        "--seeds",
        "2",
        "--nodes",
        "3",
        "--duration",
        "8",
        "--clients",
        "2",
        "--nemesis",
        "partition,crash",
        "--nemesis-interval",
        "2,4",
        "--server-options",
        "--workers",
        "1",
        "--no-progress",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["passed"] == 2 and doc["seeds_without_ops"] == 0
    config = build_config(
        "raft", 3, 0, 8.0, 2, "partition,crash", None, nemesis_interval="2,4", server_options=True
    )
    assert config.nemesis_interval == (2.0, 4.0)
    command = reproduce_command(config, 1)
    assert "--nemesis-interval 2,4" in command and "--option election_timeout=1.0" in command
    assert "--server-options" in command  # the clients' timeouts are the real client's
    assert (config.op_timeout, config.op_deadline) == (CLIENT_ATTEMPT_TIMEOUT, CLIENT_DEADLINE)
    code, out, _ = run(capsys, *command.split()[1:], "--json")
    replayed = json.loads(out)
    assert code == 0 and replayed["faults"]
    assert replayed["trace_sha256"] == Simulation(dataclasses.replace(config, seed=1)).run().trace_sha256
    assert "--nemesis-interval" not in reproduce_command(build_config("raft", 3, 0, 1.0, 0, "all", None), 1)


def test_sweep_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "sweep", "raft", "--seeds", "4", "--nodes", "3", "--duration", "1", "--workers", "2", "--json"
    )
    doc = json.loads(out)  # stdout holds the JSON only: the progress bar went to stderr
    assert doc["seeds"] == 4 and doc["passed"] + len(doc["failures"]) == 4
    assert doc["protocol"] == "raft" and doc["nodes"] == 3 and doc["events"] > 0
    assert code == (0 if not doc["failures"] else 1)
    assert doc["runtime"] == "random" and sum(doc["runtimes"].values()) == 4
    assert set(doc["runtimes"]) <= {"batched", "unbatched"}


@pytest.mark.parametrize("runtime", ["batched", "unbatched"])
def test_sim_and_sweep_take_a_runtime(capsys: pytest.CaptureFixture[str], runtime: str) -> None:
    args = ("--nodes", "3", "--duration", "1", "--runtime", runtime)
    code, out, _ = run(capsys, "sim", "raft", "--seed", "2", *args, "--json")
    single = json.loads(out)
    assert single["runtime"] == runtime and code == 0
    code, out, _ = run(
        capsys,
        "sweep",
        "raft",
        "--seeds",
        "2",
        "--first-seed",
        "2",
        "--workers",
        "1",
        "--no-progress",
        *args,
        "--json",
    )
    doc = json.loads(out)
    assert doc["runtime"] == runtime and doc["runtimes"] == {runtime: 2} and code == 0


def test_a_dask_sweep_without_the_extra_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "distributed" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code, out, err = run(capsys, "sweep", "raft", "--seeds", "1", "--dask", "local:1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "pip install 'consensuskit[dask]'" in err


def test_scenario_list_reads_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    from consensuskit.catalog import default_catalog

    code, out, _ = run(capsys, "scenario", "list", "--json")
    assert code == 0
    assert [s["id"] for s in json.loads(out)] == list(default_catalog().scenarios())
    code, out, _ = run(capsys, "scenario", "list", "--json", "--protocol", "fast-paxos")
    listed = json.loads(out)
    assert code == 0 and listed and {s["protocol"] for s in listed} == {"fast-paxos"}


def test_sweep_failures_name_seed_and_reproduce(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys,
        "sweep",
        "raft",
        "--seeds",
        "12",
        "--nodes",
        "3",
        "--duration",
        "1",
        "--clients",
        "0",
        "--bug",
        "vote-twice",
        "--workers",
        "1",
        "--json",
        "--no-progress",
        "--save-failures",
        str(tmp_path),
    )
    doc = json.loads(out)
    assert code == 1 and doc["failures"], "vote-twice should fail some of 12 seeds"
    failure = doc["failures"][0]
    assert failure["reason"].startswith("invariant election-safety")
    assert failure["runtime"] in ("batched", "unbatched")
    assert (tmp_path / f"seed-{failure['seed']}.jsonl").exists()
    assert doc["saved_traces"][str(failure["seed"])].endswith(f"seed-{failure['seed']}.jsonl")
    assert doc["nondeterministic_seeds"] == []
    # The printed command reproduces the failure alone.
    argv = failure["command"].split()[1:]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 1
    assert json.loads(out)["invariant_violations"][0]["name"] == "election-safety"


@pytest.mark.skipif(
    shutil.which("consensuskit", path=str(Path(sys.executable).parent)) is None,
    reason="console script not installed",
)
def test_console_script_bad_input_has_no_traceback() -> None:
    exe = str(Path(sys.executable).parent / "consensuskit")
    proc = subprocess.run(
        [exe, "sim", "raft", "--nemesis", "meteor"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run(
        [exe, "scenario", "run", "raft-election"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_options_only_the_nodes_can_judge_are_bad_input(capsys):
    from consensuskit.cli import main

    for args in (
        ["sim", "fast-paxos", "--nodes", "3"],
        ["sweep", "basic-paxos", "--seeds", "2", "--option", 'acceptors=["n7"]'],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1


def test_demo_runs_every_scenario_and_both_faulty_runs(capsys):
    from consensuskit.catalog import default_catalog
    from consensuskit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "demo passed" in out
    for scenario_id in default_catalog().scenarios():
        assert f"scenario {scenario_id}" in out
    assert "raft: 5 nodes" in out and "multipaxos: 5 nodes" in out


def test_a_scenario_without_a_simulation_runs_with_a_timeline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A family's scenario that computes directly (Catalog.add_scenarios) leaves no trace
    to draw: `scenario run --timeline` (and the demo) report it without one."""
    import consensuskit.cli as cli
    from consensuskit.catalog import builtin_catalog
    from consensuskit.scenarios import Scenario

    def script(run) -> None:  # type: ignore[no-untyped-def]
        run.expect(1 + 1 == 2, "computed directly")

    catalog = builtin_catalog()
    catalog.add_scenarios("abacus", lambda: [Scenario("abacus-sum", "sum", "abacus", "adds", script)])
    monkeypatch.setattr(cli, "default_catalog", lambda: catalog)
    code, out, err = run(capsys, "scenario", "run", "abacus-sum", "--timeline")
    assert code == 0 and "PASSED abacus-sum" in out, err


def every_command() -> list[tuple[str, object]]:
    import typer

    from consensuskit.cli import app

    found: list[tuple[str, object]] = []

    def walk(command: object, path: str) -> None:
        found.append((path, command))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def test_every_command_has_a_one_line_summary_for_the_command_lists():
    """The command lists show a help's first paragraph with its line breaks (rich
    markup), so a summary wrapped over two lines breaks mid-sentence there."""
    import inspect

    wrapped = [
        path or "consensuskit"
        for path, command in every_command()
        if "\n" in inspect.cleandoc(getattr(command, "help", None) or "").split("\n\n")[0]
    ]
    assert wrapped == []


def test_a_history_that_is_not_text_and_a_taken_port_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "history.jsonl"
    binary.write_bytes(b"\xed\xa0\x80 not utf-8")
    code, out, err = run(capsys, "check", str(binary))
    assert (code, out) == (2, "")
    assert err.strip() == f"Error: {binary}: not UTF-8 text (invalid continuation byte at byte 0)"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "fenced-store", "--port", str(port))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "address already in use" in err
