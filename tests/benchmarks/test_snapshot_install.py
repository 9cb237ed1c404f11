"""benchmarks/snapshot_install.py: a small run's figures and its arguments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gc

import pytest

from snapshot_install import main


def test_a_small_run_restores_both_stores_and_writes_its_figures(tmp_path):
    before = gc.get_threshold(), gc.get_freeze_count()
    out = tmp_path / "si.json"
    assert main(["--keys", "300", "--repeat", "2", "--json-out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [row["store"] for row in doc["rows"]] == ["kv", "mvcc"]
    for row in doc["rows"]:
        assert row["keys"] == 300 and row["repeat"] == 2 and row["snapshot_bytes"] > 300 * 100
        for step in ("decode_s", "restore_s"):
            assert 0 <= row[step]["best"] <= row[step]["worst"]
    assert (gc.get_threshold(), gc.get_freeze_count()) == before  # the collector as it was


@pytest.mark.parametrize("argv", [["--store", "kv,bogus"], ["--keys", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "valid: kv, mvcc" in capsys.readouterr().err or "--keys" in argv
