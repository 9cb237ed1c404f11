"""``consensuskit serializable HISTORY`` (cli_sharded.py): exit 0 for a serializable
history, 1 with the cycle named for one that is not, 2 for an unreadable file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensuskit.cli import main


def write(path: Path, results: list[dict]) -> str:
    lines = [
        {"process": "c1", "seq": i, "op": "transfer", "key": "", "invoke": float(i), "complete": i + 0.5,
         "status": "ok", "result": r}
        for i, r in enumerate(results, 1)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return str(path)


def exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0)


def test_the_command_gives_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = {"txn": "t0", "reads": [["x", None, None], ["y", None, None]], "wrote": ["x", "y"]}
    t1 = {"txn": "t1", "reads": [["x", "t0", None], ["y", "t0", None]], "wrote": ["x", "y"]}
    skew = {"txn": "r", "reads": [["x", "t1", "t0"], ["y", "t0", None]], "wrote": []}
    fine = {"txn": "r", "reads": [["x", "t1", "t0"], ["y", "t1", "t0"]], "wrote": []}
    assert exit_code(["serializable", write(tmp_path / "ok.jsonl", [t0, t1, fine])]) == 0
    assert exit_code(["serializable", write(tmp_path / "bad.jsonl", [t0, t1, skew])]) == 1
    assert "G-single" in capsys.readouterr().out
    assert exit_code(["serializable", str(tmp_path / "missing.jsonl")]) == 2
