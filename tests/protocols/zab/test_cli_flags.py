"""``--observers N`` (a ProtocolFlag) on ``consensuskit sim zab``: the last N servers
observe (they get INFORM, never PROPOSAL), and the run stays correct."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensuskit.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_observers_flag_runs_a_simulation_with_observers(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    trace = tmp_path / "trace.jsonl"
    code, out, _ = run(
        capsys,
        "sim",
        "zab",
        "--nodes",
        "5",
        "--observers",
        "2",
        "--duration",
        "2",
        "--json",
        "--trace",
        str(trace),
    )
    assert code == 0, out
    assert json.loads(out)["ops"]["ok"] > 0
    sends = [json.loads(line) for line in trace.read_text().splitlines() if '"send"' in line]
    to_observers = {r["type"] for r in sends if r.get("dst") in ("n4", "n5")}
    assert "Inform" in to_observers and "Proposal" not in to_observers


def test_an_unknown_zab_flag_is_one_line_naming_the_valid_ones(capsys: pytest.CaptureFixture[str]):
    code, _, err = run(capsys, "sim", "zab", "--observer", "2")
    assert code == 2 and "--observers" in err and err.strip().count("\n") <= 1
