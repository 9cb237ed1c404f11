"""Fuzzing the AP services' HTTP edges on live gossip clusters: ``gossip-map``
(``PUT``/``GET /v1/map/KEY``, services/gossip_map_http.py, ``consensuskit up --protocol
gossip``) and ``eventual-kv`` (the kv routes, server/kv_routes.py, on ``--protocol
gossip-kv``: tests/server/test_fuzz_http.py's kv requests, without its linearizability
check, which an AP store does not promise).

Asserted: no node exits, restarts or halts; every answer is well-formed HTTP, an error the
JSON ``{"error", "message"}`` body, never a 500; and afterwards a write on one node is
read on another once it spread.  Default: a fixed, derandomized run; ``-m slow``: more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import strategies as st

from tests.server.test_fuzz_http import plain_requests, raw_key_paths, wild_requests
from tests.server.test_processes import MAX_VALUE
from tests.services.http_fuzz import DEFAULT_EXAMPLES, SLOW_EXAMPLES, Live, live_cluster, run_fuzz, wild

pytestmark = pytest.mark.timeout(300)

OPTIONS = {
    "max_value_bytes": MAX_VALUE,
    "request_timeout": 2.0,
    "options": {"anti_entropy_period": 0.2, "rumor_period": 0.05},
}
MAP_PATHS = st.one_of(
    raw_key_paths().map(lambda key: b"/v1/map/" + key),
    st.sampled_from([b"/v1/map/", b"/v1/map", b"/v1/map//x", b"/v1/map/a/b", b"/v1/map/%2F", b"/v1/map/%00"]),
)
BODIES = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"x" * MAX_VALUE, b"x" * (MAX_VALUE + 1), b"\xed\xa0\x80"]),
)


@pytest.fixture(scope="module", params=["gossip", "gossip-kv"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data"
    with live_cluster(root, request.param, 3, OPTIONS) as found:
        yield found


def requests(live: Live) -> st.SearchStrategy:
    if live.cluster.layout.protocol == "gossip":
        return wild(MAP_PATHS, BODIES, (b"PUT", b"GET"))
    return st.one_of(plain_requests(), wild_requests())


def spreads(live: Live) -> None:
    """A write on n1 is read on n3 once gossip carried it."""
    gossip_map = live.cluster.layout.protocol == "gossip"
    path = "/v1/map/after-fuzz" if gossip_map else "/v1/kv/after-fuzz"
    status, body = live.call(0, "PUT", path, b"spread")
    assert status == 200, (status, body)
    deadline = time.monotonic() + 10
    while True:
        status, body = live.call(2, "GET", path + ("" if gossip_map else "?consistency=stale"))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and body["value"] == "spread", (status, body)


def test_fuzzed_requests_never_halt_a_node_nor_get_a_500(live: Live) -> None:
    run_fuzz(live, requests(live), DEFAULT_EXAMPLES)
    assert live.statuses.get(400, 0) > 0 and live.statuses.get(200, 0) > 0, live.statuses
    spreads(live)


@pytest.mark.slow
def test_fuzzed_requests_long(live: Live) -> None:
    run_fuzz(live, requests(live), SLOW_EXAMPLES)
    spreads(live)
