"""Every Porcupine test history gets Porcupine's verdict (tests/data/porcupine/EXPECTED.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from consensuskit.check.linearizability import KVModel, check_file, check_operations, read_history

DATA = Path(__file__).resolve().parents[1] / "data" / "porcupine"
ROWS = list(csv.DictReader((DATA / "verdicts.tsv").open(encoding="utf-8"), delimiter="\t"))
CASES = [
    (r["file"], r["expected"] == "linearizable") for r in ROWS if r["expected"] != "none(empty file, no test)"
]


def test_every_supplied_file_has_a_verdict_row() -> None:
    files = {f"jepsen/{p.name}" for p in (DATA / "jepsen").glob("*.log")} | {
        f"kv/{p.name}" for p in (DATA / "kv").glob("*.txt")
    }
    assert files == {r["file"] for r in ROWS}
    assert len(CASES) == 108  # 102 etcd histories (095 is empty) and 6 kv histories


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "linearizable"), CASES, ids=[c[0] for c in CASES])
def test_porcupine_verdict(name: str, linearizable: bool) -> None:
    fmt = "porcupine-etcd" if name.startswith("jepsen/") else "porcupine-kv"
    result = check_file(DATA / name, fmt=fmt)
    assert result.ok is linearizable, result.explain(KVModel(missing=""))
    if not linearizable:
        failing = result.failing
        assert failing is not None and failing.unplaced, "a failure must name what cannot be placed"


def test_empty_history_is_trivially_linearizable() -> None:
    result = check_file(DATA / "jepsen/etcd_095.log", fmt="porcupine-etcd")
    assert result.ok is True and result.ops == 0


@pytest.mark.parametrize("name", ["kv/c01-ok.txt", "kv/c01-bad.txt"])
def test_unpartitioned_kv_model_agrees(name: str) -> None:
    ops = read_history(DATA / name, "porcupine-kv")
    split = check_operations(ops, KVModel(missing=""))
    whole = check_operations(ops, KVModel(missing="", partitioned=False))
    assert len(whole.partitions) == 1
    assert whole.ok is split.ok is name.endswith("-ok.txt")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kv/c10-ok.txt", "kv/c10-bad.txt"])
def test_unpartitioned_kv_model_agrees_on_ten_clients(name: str) -> None:
    ops = read_history(DATA / name, "porcupine-kv")
    whole = check_operations(ops, KVModel(missing="", partitioned=False))
    assert whole.ok is name.endswith("-ok.txt")


def test_all_parts_mode_checks_every_part_of_a_bad_history() -> None:
    ops = read_history(DATA / "kv/c10-bad.txt", "porcupine-kv")
    first = check_operations(ops, KVModel(missing=""))
    every = check_operations(ops, KVModel(missing=""), stop_at_first_failure=False)
    assert first.ok is every.ok is False
    assert "skipped" not in {p.verdict for p in every.partitions}
    assert sum(p.verdict == "illegal" for p in every.partitions) >= 1
