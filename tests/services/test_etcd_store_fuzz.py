"""Any etcd request the edge admits (services/etcd.py's ``validate``), in any order and at
any revision, is answered by the store (statemachines/mvcc.py) without raising: an
exception in a command's apply halts the node, and every replica applies the same
command.  The requests are drawn from the edge's own field table, so a field added there
is fuzzed here too.  Checked to fail on a sort-target lookup that raises for an unknown
target; the recent-changes KeyError of a watch from the compact revision needs a state
too rare for it (its example is in tests/statemachines/test_mvcc.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from consensuskit.services import etcd
from consensuskit.services.etcd import make_op, validate
from consensuskit.statemachines.mvcc import MVCCStore

# the drawn requests' reprs are long; hypothesis warns when it builds them
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

KEYS = st.sampled_from([b"a", b"b", b"c", b"\0", b""])
ENDS = st.sampled_from([b"", b"", b"c", b"\0"])
# small numbers hit the store's revisions, lease ids, targets and sort codes; the edges
# of the admitted range hit its arithmetic
INTS = st.one_of(st.integers(-2, 12), st.sampled_from([2**31, 2**63 - 1, 2**64 - 1, -(2**63)]))


def _value(name: str, types: tuple[type, ...]) -> st.SearchStrategy[Any]:
    if bool in types:
        return st.booleans()
    if int in types:
        return INTS
    if name == "range_end":
        return ENDS
    if name == "key":
        return KEYS
    return st.binary(max_size=3)


def _body(fields: dict[str, tuple[type, ...]], leaf: st.SearchStrategy[Any] | None) -> st.SearchStrategy[Any]:
    parts = {name: _value(name, types) for name, types in fields.items() if list not in types}
    # mostly with the fields without which the edge refuses it (a key, a revision)
    needed = {name: parts.pop(name) for name in ("key", "revision") if name in parts}
    if "key" in needed:
        needed["key"] = KEYS.filter(bool)
    whole = st.fixed_dictionaries(needed, optional=parts)
    body = st.one_of(whole, whole, whole, st.fixed_dictionaries({}, optional=parts))
    if leaf is None:  # not a txn
        return body
    optional = {name: _value(name, types) for name, types in etcd._COMPARE.items() if name != "key"}
    compare = st.fixed_dictionaries({"key": KEYS}, optional=optional)
    return st.fixed_dictionaries(
        {},
        optional={
            "compare": st.lists(compare, max_size=3),
            "success": st.lists(leaf, max_size=3),
            "failure": st.lists(leaf, max_size=3),
        },
    )


def _requests(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """One txn branch item: {kind: body}, nested txns ``depth`` deep at most."""
    kinds = [k for k in etcd._TXN_REQUESTS if k != "txn" or depth > 0]
    return st.one_of(
        *(
            st.builds(
                lambda body, kind=kind: {kind: body},
                _body(etcd._FIELDS[kind], _requests(depth - 1) if kind == "txn" else None),
            )
            for kind in kinds
        )
    )


# writes, compactions and watches more often than lease calls: the states they make
# together (a key deleted at the compact revision, a watch from it) are the rare ones
WEIGHTS = {"put": 8, "delete_range": 6, "watch": 6, "compact": 4, "range": 3, "txn": 3}
OPS = st.one_of(
    *(
        st.tuples(st.just(kind), _body(fields, _requests(1) if kind == "txn" else None))
        for kind, fields in etcd._FIELDS.items()
        for _ in range(WEIGHTS.get(kind, 1))
    )
)


REVISIONS = ("revision", "start_revision", "min_mod_revision", "max_mod_revision")
NAMED_KEYS = KEYS.filter(bool)


class AnyAdmittedRequest(RuleBasedStateMachine):
    """Requests in any order: the common ones as rules of their own, whose revisions are
    mostly the ones the store has just now (its edges: the compact revision, the last
    write), and any request the edge's table describes."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MVCCStore()

    def near(self) -> st.SearchStrategy[int]:
        s = self.store
        compacted, now = s.compact_revision, s.revision
        return st.sampled_from([now, now, compacted, compacted, 0, now - 1, compacted + 1]) | INTS

    def run(self, kind: str, body: dict[str, Any]) -> None:
        op = make_op(kind, "", body)
        try:
            validate(op)
        except ValueError:
            return  # the edge refuses it: it never reaches a store
        result = self.store.execute(op)
        assert isinstance(result, dict), (kind, body, result)

    @rule(key=NAMED_KEYS, value=st.binary(max_size=2))
    def put(self, key: bytes, value: bytes) -> None:
        self.run("put", {"key": key, "value": value})

    @rule(key=NAMED_KEYS, end=ENDS, prev=st.booleans())
    def delete(self, key: bytes, end: bytes, prev: bool) -> None:
        self.run("delete_range", {"key": key, "range_end": end, "prev_kv": prev})

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        self.run("compact", {"revision": data.draw(self.near(), label="revision")})

    @rule(data=st.data(), key=NAMED_KEYS, end=ENDS, prev=st.booleans())
    def watch(self, data: st.DataObject, key: bytes, end: bytes, prev: bool) -> None:
        start = data.draw(self.near(), label="start_revision")
        self.run("watch", {"key": key, "range_end": end, "start_revision": start, "prev_kv": prev})

    @rule(data=st.data(), key=NAMED_KEYS, body=_body(etcd._FIELDS["range"], None))
    def range(self, data: st.DataObject, key: bytes, body: dict[str, Any]) -> None:
        self.any_request(data, ("range", {**body, "key": key}))

    @rule(data=st.data(), body=_body(etcd._FIELDS["txn"], _requests(1)))
    def txn(self, data: st.DataObject, body: dict[str, Any]) -> None:
        self.any_request(data, ("txn", body))

    @rule(data=st.data(), request=OPS)
    def any_request(self, data: st.DataObject, request: tuple[str, dict[str, Any]]) -> None:
        kind, body = request
        for name in REVISIONS:
            if name in body:
                body[name] = data.draw(self.near(), label=name)
        self.run(kind, body)

    def teardown(self) -> None:
        # the state it ended in snapshots, restores and reads back the same
        copy = MVCCStore()
        copy.restore(self.store.snapshot())
        assert copy.digest() == self.store.digest()


AnyAdmittedRequest.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_every_admitted_request_is_answered_without_raising = AnyAdmittedRequest.TestCase
