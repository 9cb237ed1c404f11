"""Bodies for ``POST /v1/txn`` (services/txn_http.py), for the txn and shard-kv fuzz:
transactions of the route's shape with hostile keys, values and versions, shapes almost
right, and JSON that is no transaction at all."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.services.http_fuzz import JSON_GARBAGE, hostile_json, hostile_texts

# The keys a fuzzed transaction may write: none is a key the checks afterwards use.
FUZZ_KEYS = ["f0", "f1", "f2", "f3"]


def keys() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(FUZZ_KEYS), hostile_texts(), st.sampled_from([5, None, ["f0"], {"k": 1}])
    )


def versions() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-3, 5), st.sampled_from([2**63, 2**64, -(2**64), 1.5, True, "1", None]), hostile_json()
    )


@st.composite
def compares(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["version", "value", "both", "neither", "junk"]))
    item: dict[str, Any] = {"key": draw(keys())}
    if kind in ("version", "both"):
        item["version"] = draw(versions())
    if kind in ("value", "both"):
        item["value"] = draw(hostile_json())
    if kind == "junk":
        return draw(st.one_of(hostile_json(), st.just(item)))
    return item


@st.composite
def ops(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from(["put", "put", "delete", "get", "bogus", "junk"]))
    if op == "junk":
        return draw(hostile_json())
    args: dict[str, Any] = {"key": draw(keys())}
    if op == "put" or draw(st.integers(0, 5)) == 0:
        args["value"] = draw(hostile_json())
    item: dict[str, Any] = {op: args}
    if draw(st.integers(0, 8)) == 0:
        item["extra"] = {"key": "f0"}  # two ops in one item
    return item


def branch(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(items, max_size=4), st.lists(items, max_size=4), hostile_json())


@st.composite
def plain_txns(draw: st.DrawFn) -> bytes:
    """A well-formed transaction on the fuzz's keys: most commit (or fail a compare)."""
    key = st.sampled_from(FUZZ_KEYS)
    value = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.none())
    put = st.builds(lambda k, v: {"put": {"key": k, "value": v}}, key, value)
    get = st.builds(lambda k: {"get": {"key": k}}, key)
    delete = st.builds(lambda k: {"delete": {"key": k}}, key)
    compare = st.one_of(
        st.builds(lambda k, v: {"key": k, "version": v}, key, st.integers(0, 3)),
        st.builds(lambda k, v: {"key": k, "value": v}, key, value),
    )
    body = {
        "compare": draw(st.lists(compare, max_size=2)),
        "success": draw(st.lists(st.one_of(put, get, delete), min_size=1, max_size=3)),
        "failure": draw(st.lists(st.one_of(put, get), max_size=2)),
    }
    return json.dumps(body).encode()


@st.composite
def txn_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["plain"] * 4 + ["txn"] * 6 + ["garbage", "json"]))
    if kind == "plain":
        return draw(plain_txns())
    if kind == "garbage":
        return draw(st.sampled_from(JSON_GARBAGE))
    if kind == "json":
        return json.dumps(draw(hostile_json())).encode()
    body: dict[str, Any] = {}
    for name, items in (("compare", compares()), ("success", ops()), ("failure", ops())):
        if draw(st.integers(0, 3)) > 0:
            body[name] = draw(branch(items))
    if draw(st.integers(0, 10)) == 0:
        body[draw(hostile_texts())] = 1
    text = json.dumps(body)
    if draw(st.integers(0, 10)) == 0:
        text = text.replace("1", "NaN", 1)
    return text.encode("utf-8", "surrogatepass")
