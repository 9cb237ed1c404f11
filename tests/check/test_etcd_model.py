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


def leased(value: bytes, version: int, create: int, mod: int, lease: int) -> tuple[Any, ...]:
    return (b"k", create, mod, version, value, lease)


def put_leased(
    seq: int, value: str, lease: int, invoke: float, complete: float | None, rev: int | None
) -> dict:
    result = {"revision": rev} if complete is not None else None
    return record(
        seq, "put", {"key": "k", "value": value, "lease": lease, "prev_kv": True}, invoke, complete, result
    )


def test_a_leased_key_may_vanish_on_its_own_and_stays_gone() -> None:
    """An expiry is no client operation: the key goes between two reads, legally; seen
    again without a put, it is a violation."""
    history = [
        put_leased(1, "1", 7, 0, 1, 2),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": (leased(b"1", 1, 2, 2, 7),)}),
        record(3, "range", {"key": "k"}, 4, 5, {"kvs": ()}),
    ]
    assert check_history(history, model=EtcdModel()).ok
    history.append(record(4, "range", {"key": "k"}, 6, 7, {"kvs": (leased(b"1", 1, 2, 2, 7),)}))
    assert not check_history(history, model=EtcdModel()).ok


def test_a_key_without_a_lease_never_vanishes() -> None:
    history = [
        record(1, "put", {"key": "k", "value": "1"}, 0, 1, {"revision": 2}),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": ()}),
    ]
    assert not check_history(history, model=EtcdModel()).ok
    # ... nor does one whose later put dropped the lease
    history = [
        put_leased(1, "1", 7, 0, 1, 2),
        record(2, "put", {"key": "k", "value": "2"}, 2, 3, {"revision": 3}),
        record(3, "range", {"key": "k"}, 4, 5, {"kvs": ()}),
    ]
    assert not check_history(history, model=EtcdModel()).ok


def test_after_an_expiry_a_put_starts_a_new_generation() -> None:
    """prev_kv absent and version 1 again: the key expired before the put."""
    history = [
        put_leased(1, "1", 7, 0, 1, 2),
        record(2, "put", {"key": "k", "value": "2", "prev_kv": True}, 2, 3, {"revision": 4}),
        record(3, "range", {"key": "k"}, 4, 5, {"kvs": ((b"k", 4, 4, 1, b"2", 0),)}),
    ]
    assert check_history(history, model=EtcdModel()).ok
    # the put saw the key still there (prev_kv): then the version is 2, not 1
    history[1]["result"] = {"revision": 4, "prev_kv": leased(b"1", 1, 2, 2, 7)}
    assert not check_history(history, model=EtcdModel()).ok


def test_a_read_must_show_the_lease_the_put_attached() -> None:
    history = [
        put_leased(1, "1", 7, 0, 1, 2),
        record(2, "range", {"key": "k"}, 2, 3, {"kvs": (leased(b"1", 1, 2, 2, 8),)}),
    ]
    assert not check_history(history, model=EtcdModel()).ok


def lease_op(seq: int, kind: str, lease: int, invoke: float, complete: float | None, result: Any) -> dict:
    op = record(
        seq, kind, {"id": lease, **({"ttl": 2} if kind == "lease_grant" else {})}, invoke, complete, result
    )
    op["key"] = ""
    return op


def test_a_lease_lives_until_revoked_or_expired_and_never_comes_back() -> None:
    history = [
        lease_op(1, "lease_grant", 7, 0, 1, {"id": 7, "ttl": 2, "revision": 1}),
        lease_op(2, "lease_keepalive", 7, 2, 3, {"id": 7, "ttl": 2, "stamp": 1, "revision": 1}),
        lease_op(3, "lease_keepalive", 7, 4, 5, {"id": 7, "ttl": 0, "revision": 1}),  # expired
        lease_op(4, "lease_revoke", 7, 6, 7, {"error": "lease-not-found"}),
        lease_op(5, "lease_grant", 8, 0, 1, {"id": 8, "ttl": 2, "revision": 1}),  # its own partition
        lease_op(6, "lease_revoke", 8, 2, 3, {"deleted": 0, "revision": 1}),
    ]
    assert check_history(history, model=EtcdModel()).ok
    # kept alive after it was seen gone: a lease does not come back
    history.append(lease_op(7, "lease_keepalive", 7, 8, 9, {"id": 7, "ttl": 2, "stamp": 2, "revision": 1}))
    assert not check_history(history, model=EtcdModel()).ok
    # a revoke that succeeds twice
    history[-1] = lease_op(7, "lease_revoke", 8, 8, 9, {"deleted": 0, "revision": 1})
    assert not check_history(history, model=EtcdModel()).ok
    # a keep-alive that finds a lease before its grant
    history[-1] = lease_op(7, "lease_keepalive", 9, 0, 1, {"id": 9, "ttl": 2, "stamp": 1, "revision": 1})
    history.append(lease_op(8, "lease_grant", 9, 2, 3, {"id": 9, "ttl": 2, "revision": 1}))
    assert not check_history(history, model=EtcdModel()).ok


def test_unanswered_ranges_are_left_out_of_the_search() -> None:
    # 30 unanswered ranges that differ (a limit each) after an unanswered delete: as
    # twins they are not, so only the model's read_only keeps this from 2^30 orders.
    history = [record(1, "put", {"key": "k", "value": "1"}, 0, 1, {"revision": 2})]
    history.append(record(2, "delete_range", {"key": "k"}, 2, None, None))
    history += [
        record(3 + n, "range", {"key": "k", "limit": n + 1}, 2 + n / 10, None, None) for n in range(30)
    ]
    seen = {"kvs": (kv(b"1", 1, 2, 2),)}
    history += [record(40 + n, "range", {"key": "k"}, 10 + n, 10.5 + n, seen) for n in range(10)]
    result = check_history(history, model=EtcdModel(), timeout=5)
    assert result.ok is True
    assert result.partitions[0].explored < 1000
