"""Fuzzing the shard-kv service's HTTP edge on a live sharded-raft cluster (``consensuskit
up --protocol sharded-raft --shards 2``): the kv routes (tests/server/test_fuzz_http.py's
requests, each key served by its shard) and ``POST /v1/txn`` across shards
(tests/services/txn_bodies.py).  Asserted: no node exits, restarts or halts; every
answer is well-formed HTTP, an error the JSON ``{"error", "message"}`` body, never a
500; and afterwards a kv put and a cross-shard transaction go through on every node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import strategies as st

from consensuskit.protocols.sharded import shard_of
from tests.server.test_fuzz_http import plain_requests, wild_requests
from tests.server.test_processes import MAX_VALUE
from tests.services.http_fuzz import DEFAULT_EXAMPLES, SLOW_EXAMPLES, Live, live_cluster, run_fuzz, wild
from tests.services.txn_bodies import txn_bodies

pytestmark = pytest.mark.timeout(300)

OPTIONS = {
    "max_value_bytes": MAX_VALUE,
    "request_timeout": 5.0,
    "options": {"shards": 2},
}
TXN_PATHS = st.sampled_from([b"/v1/txn", b"/v1/txn/", b"/v1/txn?x=1"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("fuzz-shard-kv") / "data"
    with live_cluster(root, "sharded-raft", 3, OPTIONS) as found:
        yield found


def requests(live: Live) -> st.SearchStrategy:
    txns = wild(TXN_PATHS, txn_bodies(), (b"POST",), token=live.token.encode())
    return st.one_of(plain_requests(), wild_requests(), txns)


def still_serves(live: Live) -> None:
    keys = ["ok0", next(f"ok{i}" for i in range(1, 100) if shard_of(f"ok{i}", 2) != shard_of("ok0", 2))]
    for node in range(3):
        status, body = live.call(node, "PUT", f"/v1/kv/ok-kv{node}", b"v")
        assert status in (200, 421), (status, body)  # 421: ask the shard's leader
        put = {"success": [{"put": {"key": k, "value": node}} for k in keys]}
        status, body = live.call(node, "POST", "/v1/txn", put)
        assert status == 200 and body["succeeded"], (status, body)
        status, body = live.call(node, "POST", "/v1/txn", {"success": [{"get": {"key": k}} for k in keys]})
        assert status == 200 and [r["get"]["value"] for r in body["responses"]] == [node, node], body


def test_fuzzed_requests_never_halt_a_node_nor_get_a_500(live: Live) -> None:
    run_fuzz(live, requests(live), DEFAULT_EXAMPLES)
    assert live.statuses.get(400, 0) > 0 and live.statuses.get(200, 0) > 0, live.statuses
    still_serves(live)


@pytest.mark.slow
def test_fuzzed_requests_long(live: Live) -> None:
    run_fuzz(live, requests(live), SLOW_EXAMPLES)
    still_serves(live)
