"""Fuzzing a service's HTTP edge on a live cluster of real node processes: the pieces the
per-service fuzz tests share (tests/services/test_*_fuzz.py).

The raw requests, their checks and the hostile header and query values are
tests/server/test_fuzz_http.py's (issue 10's kv fuzz), imported, not copied: a
``Fuzzed`` request is sent with tests/server/http_raw.py and its answers checked by
``check_answers`` (well-formed HTTP, an error is the JSON ``{"error", "message"}`` body,
never a 500).  What this module adds: a cluster of any protocol and service
(``live_cluster``), requests on any service's paths with any bodies (``wild``), and the
liveness check (no node exits, restarts or halts).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consensuskit.server.cluster import ClusterLayout, LocalCluster, free_base_port
from tests.fuzzing import live_fuzz
from tests.server.http_raw import Answer, exchange, request_bytes
from tests.server.test_fuzz_http import (
    EXTRA_HEADERS,
    FRESH,
    ODD_METHODS,
    Fuzzed,
    _valid_ids_are_fresh,
    assert_all_alive,
    check_answers,
    exchange_fuzzed,
    query_values,
    request_ids,
)

DEFAULT_EXAMPLES = 150
SLOW_EXAMPLES = 1000


@dataclass
class Live:
    cluster: LocalCluster
    pids: dict[str, int | None]
    ports: dict[str, int]
    token: str
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    fresh: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    def port(self, index: int) -> int:
        return self.ports[sorted(self.ports)[index % len(self.ports)]]

    def call(self, node_index: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A plain JSON request (with the admin token): (status, decoded body)."""
        raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body or b""
        headers = {b"Authorization": b"Bearer " + self.token.encode()}
        if raw:
            headers[b"Content-Type"] = b"application/json"
        (answer,) = exchange(
            self.port(node_index), request_bytes(method.encode(), path.encode(), headers, raw), expect=1
        )
        try:
            return answer.status, answer.json()
        except ValueError:
            return answer.status, answer.body


@contextlib.contextmanager
def live_cluster(root: Path, protocol: str, nodes: int, node_options: dict[str, Any]) -> Iterator[Live]:
    layout = ClusterLayout.prepare(
        root, nodes, free_base_port(3 * nodes), node_options=node_options, protocol=protocol
    )
    with LocalCluster(layout) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        ports = {n: layout.node(n).client_port for n in cluster.nodes}
        live = Live(cluster, {n: p.pid for n, p in cluster.nodes.items()}, ports, layout.admin_token)
        yield live
        assert_all_alive(live)


# ---------------------------------------------------------------------- requests
@st.composite
def wild(
    draw: st.DrawFn,
    paths: st.SearchStrategy[bytes],
    bodies: st.SearchStrategy[bytes],
    methods: tuple[bytes, ...],
    token: bytes | None = None,
) -> Fuzzed:
    """A raw request on the service's ``paths`` with one of its ``bodies``: its methods
    most often, odd ones too; odd queries, headers and Content-Length framings as the kv
    fuzz draws them (tests/server/test_fuzz_http.py ``wild_requests``)."""
    method = draw(st.sampled_from(list(methods) * 3 + ODD_METHODS))
    path = draw(paths)
    pairs = draw(st.lists(st.tuples(st.sampled_from(["x", "%FF", "", "key"]), query_values()), max_size=2))
    query = b"&".join(name.encode() + b"=" + value for name, value in pairs)
    headers: list[tuple[bytes, bytes]] = []
    if token is not None and draw(st.integers(0, 3)) > 0:
        headers.append((b"Authorization", b"Bearer " + token))
    if draw(st.booleans()):
        headers.append((b"X-Request-Id", draw(request_ids())))
    headers += draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 0:
        charset = draw(st.sampled_from([b"nope", b"utf-16", b"latin-1", b"", b"\xff"]))
        headers.append((b"Content-Type", b"application/json; charset=" + charset))
    body = draw(bodies)
    mode = draw(st.sampled_from(["exact"] * 8 + ["none", "short", "long", "garbage", "twice"]))
    complete, single = True, True
    if mode == "exact" and (body or method in (b"PUT", b"POST")):
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif mode == "short" and body:
        headers.append((b"Content-Length", b"%d" % (len(body) - 1)))
        single = False
    elif mode == "long":
        headers.append((b"Content-Length", b"%d" % (len(body) + 5)))
        complete = False
    elif mode == "garbage":
        headers.append((b"Content-Length", draw(st.sampled_from([b"-1", b"1x", b"9" * 30, b""]))))
    elif mode == "twice":
        headers += [(b"Content-Length", b"%d" % len(body)), (b"Content-Length", b"%d" % (len(body) + 1))]
    elif body:
        single = False  # no length: the body is read as the next request
    target = path + (b"?" + query if query else b"")
    return _valid_ids_are_fresh(Fuzzed(method, target, headers, body, complete, single, recordable=False))


def send(
    live: Live,
    node_index: int,
    fuzzed: Fuzzed,
    check: Callable[[Fuzzed, Answer], None] | None = None,
    check_all: Callable[[Fuzzed, list[Answer]], None] = check_answers,
) -> None:
    """Send ``fuzzed`` to one node; check its answers (``check_all``: the kv fuzz's
    ``check_answers`` unless a service answers differently) and that no node died."""
    request_id = b"fz%d:1" % next(live.fresh)
    answers = exchange_fuzzed(live.cluster, live.port(node_index), fuzzed, request_id, check_all)
    live.sent += 1
    for answer in answers:
        live.statuses[answer.status] = live.statuses.get(answer.status, 0) + 1
        if check is not None and answer.status >= 200:
            check(fuzzed, answer)


def run_fuzz(
    live: Live,
    requests: st.SearchStrategy[Fuzzed],
    examples: int,
    check: Callable[[Fuzzed, Answer], None] | None = None,
    check_all: Callable[[Fuzzed, list[Answer]], None] = check_answers,
) -> None:
    @live_fuzz(examples)
    @given(requests, st.integers(0, 10))
    def one(fuzzed: Fuzzed, node_index: int) -> None:
        send(live, node_index, fuzzed, check, check_all)

    one()
    assert_all_alive(live)
    print(f"fuzz: {live.sent} requests, answers by status {dict(sorted(live.statuses.items()))}")


# ---------------------------------------------------------------------- bodies
def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


JSON_GARBAGE = [
    b"",
    b"null",
    b"[]",
    b"{",
    b'{"a": }',
    b"NaN",
    b"\xff\xfe",
    b'"\\ud800"',
    b"1" * 5000,
    deep_json(100_000)[:100_000],
    deep_json(3000),
    deep_json(400),
]


def hostile_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["", "a", "\x00", "\ud800", "a/b", "é", "k" * 4096, "k" * 4097, " ", "%FF", "../x"]),
        st.text(max_size=12),
    )


def hostile_json() -> st.SearchStrategy[Any]:
    """Any JSON value, with the edges: huge and negative ints, floats, deep nesting."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_texts(), inner, max_size=3),
        max_leaves=8,
    )


__all__ = ["FRESH", "Live", "live_cluster", "run_fuzz", "send", "wild"]
