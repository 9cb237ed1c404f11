"""The shard state machine's rules (protocols/sharded/shard.py), command by command."""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.protocols.sharded import ABORT, COMMIT, ShardMachine


def run(sm: ShardMachine, kind: str, name: str, **value: Any) -> Any:
    return sm.apply(ClientRequest(client_id="h.1", seq=1, op=ServiceOp(kind=kind, key=name, value=value)))


def test_prepare_locks_and_a_second_transaction_is_refused_naming_the_holder() -> None:
    sm = ShardMachine(0)
    assert run(sm, "prepare", "t1", keys=["a", "b"], coord=1, read_only=False)["vote"] == "yes"
    assert sm.locks == {"a": "t1", "b": "t1"}
    refused = run(sm, "prepare", "t2", keys=["b"], coord=0, read_only=True)
    assert refused == {"vote": "no", "holder": "t1", "holder_coord": 1}
    assert "t2" not in sm.prepared
    # Idempotent: the same prepare again answers yes and changes nothing.
    assert run(sm, "prepare", "t1", keys=["a", "b"], coord=1, read_only=False)["vote"] == "yes"


def test_resolve_commit_applies_the_writes_names_the_writer_and_releases() -> None:
    sm = ShardMachine(0)
    run(sm, "prepare", "t1", keys=["a"], coord=0, read_only=False)
    run(sm, "resolve", "t1", outcome=COMMIT, writes={"a": [5, 1]})
    assert sm.data["a"] == [5, 1, "t1", None] and not sm.locks and not sm.prepared
    run(sm, "prepare", "t2", keys=["a"], coord=0, read_only=False)
    snap = run(sm, "prepare", "t2", keys=["a"], coord=0, read_only=False)["snapshot"]
    assert snap == [["a", 5, 1, "t1", None]]
    run(sm, "resolve", "t2", outcome=COMMIT, writes={"a": [7, 2]})
    assert sm.data["a"] == [7, 2, "t2", "t1"]  # the version names who it replaced


def test_a_prepare_after_its_abort_locks_nothing() -> None:
    """A pusher aborted and resolved t1 before t1's own prepare reached this shard."""
    sm = ShardMachine(0)
    run(sm, "resolve", "t1", outcome=ABORT, writes={})
    assert run(sm, "prepare", "t1", keys=["a"], coord=0, read_only=False) == {
        "vote": "resolved",
        "outcome": ABORT,
    }
    assert not sm.locks


def test_the_first_decision_wins() -> None:
    sm = ShardMachine(0)
    assert run(sm, "decide", "t1", outcome=None) == {"outcome": None}
    assert run(sm, "decide", "t1", outcome=ABORT)["outcome"] == ABORT
    assert run(sm, "decide", "t1", outcome=COMMIT, writes={"a": [1, 1]})["outcome"] == ABORT
    assert run(sm, "decide", "t2", outcome=COMMIT, writes={"a": [1, 1]}, result={"ok": 1}) == {
        "outcome": COMMIT,
        "writes": {"a": [1, 1]},
        "result": {"ok": 1},
    }
    assert run(sm, "decide", "t2", outcome=ABORT)["outcome"] == COMMIT


def test_one_phase_respects_locks_and_answers_retries_from_its_record() -> None:
    sm = ShardMachine(0)
    body = {"success": [("add", "a", 3), ("get", "a", None)]}
    first = run(sm, "one-phase", "t1", txn=body)
    assert first["vote"] == "committed" and first["responses"][0]["add"]["value"] == 3
    assert run(sm, "one-phase", "t1", txn=body) == first  # a retry does not add again
    run(sm, "prepare", "t2", keys=["a"], coord=0, read_only=False)
    assert run(sm, "one-phase", "t3", txn=body)["vote"] == "no"
    assert run(sm, "read", "t4", keys=["a"])["vote"] == "no"


def test_the_knob_lets_reads_ignore_locks() -> None:
    sm = ShardMachine(0, frozenset({"read-ignores-locks"}))
    run(sm, "prepare", "t1", keys=["a"], coord=0, read_only=False)
    assert run(sm, "read", "r", keys=["a"])["vote"] == "yes"
    assert run(sm, "prepare", "r2", keys=["a"], coord=0, read_only=True)["vote"] == "yes"


def test_malformed_commands_change_nothing_and_never_raise() -> None:
    sm = ShardMachine(0)
    for op in (
        ServiceOp(kind="prepare", key="t", value={"keys": None}),
        ServiceOp(kind="resolve", key="t", value={"outcome": "maybe"}),
        ServiceOp(kind="nope", key="t", value={}),
        ServiceOp(kind="decide", key="", value={}),
    ):
        assert "error" in sm.apply(ClientRequest(client_id="x", seq=1, op=op))
    assert sm.snapshot() == ShardMachine(0).snapshot()


def test_snapshot_and_restore_round_trip_including_the_lock_table() -> None:
    sm = ShardMachine(0)
    run(sm, "prepare", "t1", keys=["a"], coord=1, read_only=False)
    run(sm, "one-phase", "t2", txn={"success": [("put", "b", 1)]})
    run(sm, "decide", "t3", outcome=COMMIT, writes={"c": [1, 1]})
    copy = ShardMachine(0)
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot() and copy.locks == {"a": "t1"}
