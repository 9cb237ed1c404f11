"""benchmarks/etcd_watchers.py: a small run on consensuskit alone writes its rows, and
every put reached the counted watch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from etcd_watchers import main

pytestmark = pytest.mark.timeout(120)


def test_a_small_run_writes_its_rows(tmp_path):
    out = tmp_path / "w.json"
    argv = ["--no-etcd", "--watches", "0,20", "--duration", "0.5", "--concurrency", "4"]
    argv += ["--json-out", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "etcd_watchers" and [r["watches"] for r in doc["rows"]] == [0, 20]
    for row in doc["rows"]:
        assert row["system"] == "consensuskit" and row["puts"] > 0 and row["errors"] == 0
        assert row["watch_events"] == row["puts"]  # every put reached the watch on the written keys
    assert doc["rows"][0]["vs_no_watches"] == 1.0


def test_a_bad_watch_list_is_refused_naming_what_it_wants(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--watches", "a,b"])
    assert exited.value.code == 2
    assert "--watches: a comma list of counts, not 'a,b'" in capsys.readouterr().err
