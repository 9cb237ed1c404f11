"""benchmarks/mvcc_watch.py: a small run gives the same answer both ways and writes its figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from mvcc_watch import main


def test_a_small_run_writes_its_figures(tmp_path):
    out = tmp_path / "w.json"
    assert main(["--keys", "500", "--number", "2", "--repeat", "1", "--json-out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "mvcc_watch" and doc["keys"] == 500
    assert doc["recent_changes_us"] > 0 and doc["every_key_us"] > 0
