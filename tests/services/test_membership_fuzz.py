"""Fuzzing the membership service's HTTP edge (``GET /v1/members``, ``/v1/members/ID``:
services/membership_http.py) on a live SWIM cluster (``consensuskit up --protocol
swim``): odd methods, ids with any escaping or bytes, queries, headers and framings.
Asserted: no node exits, restarts or halts; every answer is well-formed HTTP, an error
the JSON ``{"error", "message"}`` body, never a 500; and every node still lists the
three members afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import strategies as st

from tests.server.test_fuzz_http import Fuzzed, raw_key_paths
from tests.services.http_fuzz import DEFAULT_EXAMPLES, SLOW_EXAMPLES, Live, live_cluster, run_fuzz, wild

pytestmark = pytest.mark.timeout(300)

PATHS = st.one_of(
    raw_key_paths().map(lambda member: b"/v1/members/" + member),
    st.sampled_from(
        [b"/v1/members", b"/v1/members/", b"/v1/members/n1", b"/v1/members/n1/x", b"/v1/members/n%31"]
    ),
)
PLAIN = st.sampled_from([b"/v1/members", b"/v1/members/n1", b"/v1/members/n3", b"/v1/members/n9"]).map(
    lambda path: Fuzzed(b"GET", path, [], b"", complete=True, single=True, recordable=False)
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_cluster(
        tmp_path_factory.mktemp("fuzz-swim") / "data", "swim", 3, {"request_timeout": 2.0}
    ) as found:
        yield found


def lists_everyone(live: Live) -> None:
    for node in range(3):
        status, body = live.call(node, "GET", "/v1/members")
        assert status == 200 and sorted(m["id"] for m in body) == ["n1", "n2", "n3"], (status, body)
        status, body = live.call(node, "GET", "/v1/members/n2")
        assert status == 200 and body["id"] == "n2", (status, body)


def test_fuzzed_requests_never_halt_a_node_nor_get_a_500(live: Live) -> None:
    run_fuzz(live, st.one_of(PLAIN, wild(PATHS, st.binary(max_size=20), (b"GET",))), DEFAULT_EXAMPLES)
    assert live.statuses.get(404, 0) > 0 and live.statuses.get(200, 0) > 0, live.statuses
    lists_everyone(live)


@pytest.mark.slow
def test_fuzzed_requests_long(live: Live) -> None:
    run_fuzz(live, st.one_of(PLAIN, wild(PATHS, st.binary(max_size=20), (b"GET",))), SLOW_EXAMPLES)
    lists_everyone(live)
