"""Fuzzing the txn service's HTTP edge (``POST /v1/txn``, services/txn_http.py) on a live
2PC cluster (``consensuskit up --protocol 2pc --participants 3 --nodes 4``).

Hypothesis draws raw requests (tests/services/http_fuzz.py ``wild``: odd methods,
queries, headers, charsets and Content-Length framings) whose bodies are transactions
with hostile keys, values, versions and shapes, or JSON that is none.  Asserted: no node
exits, restarts or halts; every answer is well-formed HTTP, an error the JSON
``{"error", "message"}`` body, never a 500; a 200 is a decided transaction; and the
service still commits and reads a transaction across the participants afterwards.
Default: a fixed, derandomized run (well under a minute); ``-m slow`` runs more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import strategies as st

from consensuskit.protocols.commit import owner
from tests.server.http_raw import Answer
from tests.server.test_fuzz_http import Fuzzed
from tests.services.http_fuzz import DEFAULT_EXAMPLES, SLOW_EXAMPLES, Live, live_cluster, run_fuzz, wild
from tests.services.txn_bodies import txn_bodies

pytestmark = pytest.mark.timeout(300)

PARTICIPANTS = ("n1", "n2", "n3")
OPTIONS = {
    "request_timeout": 5.0,
    "options": {"participants": 3, "vote_timeout": 1.0, "ack_timeout": 1.0, "decision_timeout": 1.5},
}
PATHS = st.sampled_from(
    [b"/v1/txn", b"/v1/txn/", b"/v1/txn?x=1", b"/v1/txn/../txn", b"/v1/tx%6E", b"/v1/kv/f0"]
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_cluster(tmp_path_factory.mktemp("fuzz-txn") / "data", "2pc", 4, OPTIONS) as found:
        yield found


def requests(live: Live) -> st.SearchStrategy[Fuzzed]:
    return wild(PATHS, txn_bodies(), (b"POST",), token=live.token.encode())


def check_txn_answer(fuzzed: Fuzzed, answer: Answer) -> None:
    if answer.status == 200 and fuzzed.target.startswith(b"/v1/txn"):
        body = answer.json()
        assert isinstance(body["succeeded"], bool) and isinstance(body["responses"], list), body
    if answer.status == 409:
        assert answer.json()["error"] == "aborted", answer


def still_serves(live: Live) -> None:
    """A transaction across the three participants commits and reads back, anywhere."""
    keys = [next(f"ok{i}" for i in range(100) if owner(f"ok{i}", PARTICIPANTS) == p) for p in PARTICIPANTS]
    for node in range(4):
        put = {"success": [{"put": {"key": k, "value": f"v{node}"}} for k in keys]}
        status, body = live.call(node, "POST", "/v1/txn", put)
        assert status == 200 and body["succeeded"], (status, body)
        status, body = live.call(node, "POST", "/v1/txn", {"success": [{"get": {"key": k}} for k in keys]})
        assert status == 200 and [r["get"]["value"] for r in body["responses"]] == [f"v{node}"] * 3, body


def test_fuzzed_txn_requests_never_halt_a_node_nor_get_a_500(live: Live) -> None:
    run_fuzz(live, requests(live), DEFAULT_EXAMPLES, check_txn_answer)
    assert live.statuses.get(400, 0) > 0 and live.statuses.get(200, 0) > 0, live.statuses
    still_serves(live)


@pytest.mark.slow
def test_fuzzed_txn_requests_long(live: Live) -> None:
    run_fuzz(live, requests(live), SLOW_EXAMPLES, check_txn_answer)
    still_serves(live)
