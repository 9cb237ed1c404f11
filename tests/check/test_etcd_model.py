"""check/linearizability/etcd_model.py: the etcd service's histories, judged per key."""

from __future__ import annotations

from typing import Any

from consensuskit.check.linearizability import check_history
from consensuskit.check.linearizability.etcd_model import EtcdModel


def record(
    seq: int, op: str, value: dict[str, Any], invoke: float, complete: float | None, result: Any
) -> dict:
    return {
        "process": f"c{seq}",
        "seq": seq,
        "op": op,
        "key": "k",
        "value": value,
        "invoke": invoke,
        "complete": complete,
        "status": "ok" if complete is not None else "unknown",
        "result": result,
    }


def kv(value: bytes, version: int, create: int, mod: int) -> tuple[Any, ...]:
    return (b"k", create, mod, version, value, 0)


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        record(1, "put", {"key": "k", "value": "1", "prev_kv": True}, 0, 1, {"revision": 2}),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": (kv(b"1", 1, 2, 2),)}),
        record(
            3,
            "put",
            {"key": "k", "value": "2", "prev_kv": True},
            4,
            5,
            {"revision": 5, "prev_kv": kv(b"1", 1, 2, 2)},
        ),
        record(
            4,
            "txn",
            {
                "compare": [{"key": "k", "target": 0, "result": 0, "version": 2}],
                "success": [{"put": {"key": "k", "value": "3"}}],
                "failure": [{"range": {"key": "k"}}],
            },
            6,
            7,
            {"succeeded": True, "responses": ({"put": {"revision": 6}},), "revision": 6},
        ),
        record(
            5,
            "delete_range",
            {"key": "k", "prev_kv": True},
            8,
            9,
            {"deleted": 1, "prev_kvs": (kv(b"3", 3, 2, 6),)},
        ),
        record(6, "range", {"key": "k"}, 10, 11, {"kvs": ()}),
    ]
    assert check_history(history, model=EtcdModel()).ok


def test_a_stale_read_is_caught() -> None:
    history = [
        record(1, "put", {"key": "k", "value": "1"}, 0, 1, {"revision": 2}),
        record(2, "put", {"key": "k", "value": "2"}, 2, 3, {"revision": 3}),
        record(3, "range", {"key": "k"}, 4, 5, {"kvs": (kv(b"1", 1, 2, 2),)}),
    ]
    assert not check_history(history, model=EtcdModel()).ok


def test_a_wrong_revision_is_caught_even_with_the_right_value() -> None:
    history = [
        record(1, "put", {"key": "k", "value": "1"}, 0, 1, {"revision": 2}),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": (kv(b"1", 1, 2, 7),)}),
    ]
    assert not check_history(history, model=EtcdModel()).ok


def test_a_txn_whose_compare_lied_is_caught() -> None:
    txn = {
        "compare": [{"key": "k", "target": 0, "result": 0, "version": 5}],
        "success": [{"put": {"key": "k", "value": "9"}}],
        "failure": [{"range": {"key": "k"}}],
    }
    history = [
        record(1, "put", {"key": "k", "value": "1"}, 0, 1, {"revision": 2}),
        record(
            2, "txn", txn, 2, 3, {"succeeded": True, "responses": ({"put": {"revision": 3}},), "revision": 3}
        ),
    ]
    assert not check_history(history, model=EtcdModel()).ok


def test_an_unknown_write_may_or_may_not_have_happened() -> None:
    history = [
        record(1, "put", {"key": "k", "value": "1"}, 0, None, None),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": (kv(b"1", 1, 9, 9),)}),
        record(3, "range", {"key": "k"}, 4, 5, {"kvs": (kv(b"1", 1, 9, 9),)}),
    ]
    assert check_history(history, model=EtcdModel()).ok
    history.append(record(4, "range", {"key": "k"}, 6, 7, {"kvs": (kv(b"1", 1, 9, 10),)}))
    assert not check_history(history, model=EtcdModel()).ok
