"""The serializability checker (check/serializability.py) on hand-made histories whose
verdict is in their name (Porcupine's convention), then on real ones."""

from __future__ import annotations

from consensuskit.check.serializability import check_transactions


def txn(name: str, reads: list[tuple[str, str | None, str | None]], wrote: tuple[str, ...] = ()) -> dict:
    return {"txn": name, "reads": [list(r) for r in reads], "wrote": list(wrote)}


def test_serial_transfers_and_reads_ok() -> None:
    history = [
        txn("t1", [("x", None, None), ("y", None, None)], wrote=("x", "y")),
        txn("r1", [("x", "t1", None), ("y", "t1", None)]),
        txn("t2", [("x", "t1", None)], wrote=("x",)),
        txn("r2", [("x", "t2", "t1"), ("y", "t1", None)]),
    ]
    result = check_transactions(history)
    assert result.ok, result.anomalies
    assert result.transactions == 4 and result.edges >= 4


def test_read_skew_bad_g_single() -> None:
    """r read t1's x but the y t1 replaced: t1 -wr-> r -rw-> t1."""
    history = [
        txn("t0", [("x", None, None), ("y", None, None)], wrote=("x", "y")),
        txn("t1", [("x", "t0", None), ("y", "t0", None)], wrote=("x", "y")),
        txn("r", [("x", "t1", "t0"), ("y", "t0", None)]),
    ]
    result = check_transactions(history)
    assert not result.ok
    (anomaly,) = result.anomalies
    assert anomaly["type"] == "G-single" and set(anomaly["cycle"]) == {"t1", "r"}


def test_write_skew_bad_g2() -> None:
    """Each read the other's key before the other wrote it: two rw edges."""
    history = [
        txn("a", [("x", None, None), ("y", None, None)], wrote=("x",)),
        txn("b", [("x", None, None), ("y", None, None)], wrote=("y",)),
    ]
    result = check_transactions(history)
    # a wrote x over the initial version b read; b wrote y over the one a read.
    assert [a["type"] for a in result.anomalies] == ["G2"]


def test_lost_update_bad() -> None:
    history = [
        txn("a", [("x", None, None)], wrote=("x",)),
        txn("b", [("x", None, None)], wrote=("x",)),
    ]
    assert any(a["type"] == "lost-update" for a in check_transactions(history).anomalies)


def test_unknown_transactions_count_through_what_others_saw_ok() -> None:
    """u's answer never came back, but r saw its write and the version it replaced."""
    history = [
        txn("t1", [("x", None, None)], wrote=("x",)),
        txn("r", [("x", "u", "t1")]),
        txn("t2", [("x", "u", "t1")], wrote=("x",)),
    ]
    result = check_transactions(history)
    assert result.ok and result.transactions == 4
