"""Fuzzing the client port of a live 3-node cluster of each server protocol (issue 10).

Hypothesis draws raw HTTP requests — methods (odd ones too), paths with random
percent-encodings (invalid UTF-8, bad escapes, raw bytes), query names and values,
headers (weird ``X-Request-Id`` values above all), bodies and Content-Length
mismatches — and each is sent to every node (a Multi-Paxos follower forwards writes to
the leader).  Meanwhile client workers run the Jepsen workload of tests/server/jepsen.py.

Asserted:
  * no node process ever exits, and none halts (``/v1/status`` ``halted``);
  * every answer is well-formed HTTP; an error answer has the JSON body ``{"error":
    CODE, "message": TEXT, ...}``; no answer is a 500;
  * a successful key-value operation names the key the edge rules decode from its path;
  * the history of the workers' operations together with every fuzzed key-value
    operation whose meaning is plain (recorded as ok, fail or unknown from its answer)
    is linearizable.  Fuzzed requests that are not recorded never touch the
    workload's keys, and every syntactically valid ``X-Request-Id`` is fresh.

The default run is a fixed, derandomized number of examples (well under a minute per
protocol); ``-m slow`` runs many more.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.server import edge
from consensuskit.server.cluster import LocalCluster
from consensuskit.sim.history import OpRecord
from tests.fuzzing import live_fuzz
from tests.server.http_raw import Answer, check_error_body, exchange
from tests.server.jepsen import ClientLoad, HistoryRecorder, Workload, check_linearizable
from tests.server.test_processes import MAX_VALUE, PROTOCOLS_SLOW_LEADERLESS, make_cluster

pytestmark = pytest.mark.timeout(300)

DEFAULT_EXAMPLES = 300
SLOW_EXAMPLES = 1500
WORKLOAD = Workload(keys=4, workers=2, seed=7, timeout=1.0, deadline=4.0, think=(0.0, 0.02))
WORKLOAD_KEYS = [WORKLOAD.key(i) for i in range(WORKLOAD.keys)]
FRESH = b"\x00FRESH-REQUEST-ID\x00"  # replaced by a new valid id each time it is sent
BYTES_TAG = "\x00b64:"  # how a value that is not UTF-8 appears in the history


# ---------------------------------------------------------------------- the cluster
@dataclass
class Target:
    cluster: LocalCluster
    recorder: HistoryRecorder
    pids: dict[str, int | None]
    ports: dict[str, int]
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module", params=PROTOCOLS_SLOW_LEADERLESS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp(f"fuzz-http-{request.param}")
    with make_cluster(root / "data", protocol=request.param) as cluster:
        cluster.start()
        cluster.wait_ready(30, every_node=True)
        recorder = HistoryRecorder()
        load = ClientLoad(cluster.endpoints, WORKLOAD, recorder).start()
        ports = {n: cluster.layout.node(n).client_port for n in cluster.nodes}
        found = Target(cluster, recorder, {n: p.pid for n, p in cluster.nodes.items()}, ports)
        try:
            yield found
        finally:
            load.stop()
        assert_all_alive(found)
        _canonical_reads(recorder)
        check_linearizable(recorder, root / "history.jsonl")
        assert recorder.counts()["ok"] > 20, recorder.counts()


def assert_all_alive(target: Any) -> None:
    """No node of ``target.cluster`` exited or was restarted (``target.pids``), and none
    says it halted (every service's fuzz asks this)."""
    cluster = target.cluster
    dead = cluster.dead_nodes()
    assert dead == [], [(n.node_id, n.returncode, n.log_tail(30)) for n in dead]
    assert {n: p.pid for n, p in cluster.nodes.items()} == target.pids
    for node, status in cluster.statuses(timeout=5).items():
        assert isinstance(status, dict), (node, status)
        assert status["halted"] is False, (node, status)


# ---------------------------------------------------------------------- requests
@dataclass
class Fuzzed:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool  # False: the Content-Length promises more than is sent
    single: bool  # exactly one request in the bytes (one answer expected)
    recordable: bool  # a plain key-value operation whose effect the history can hold

    def payload(self, request_id: bytes) -> bytes:
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: fuzz"]
        lines += [k + b": " + v.replace(FRESH, request_id) for k, v in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


ODD_METHODS = [
    b"POST",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"BREW",
    b"get",
    b"PUT\t",
    b"G\xffT",
    b"",
    b"*",
]
OTHER_PATHS = [
    b"/v1/kv",
    b"/v1/kv/",
    b"/v1/status",
    b"/v1/members",
    b"/v1/members/n2",
    b"/v1/leader/transfer",
    b"/v1/debug/faults",
    b"/metrics",
    b"/",
    b"*",
    b"//v1/kv/k0",
    b"/v1/kv/../status",
    b"http://fuzz/v1/kv/k0",
]
QUERY_NAMES = ["cas_version", "prev_value", "consistency", "prefix", "limit"]


def _escape_some(text: str, draw: st.DrawFn) -> bytes:
    """Percent-encode ``text`` as UTF-8, escaping each character or not at random
    (unreserved characters may stay; anything else must be escaped)."""
    out = []
    for ch in text:
        safe = ch.isascii() and (ch.isalnum() or ch in "-._~")
        if safe and draw(st.booleans()):
            out.append(ch.encode())
        else:
            out.append(quote(ch, safe="").encode() if not safe else b"%%%02X" % ord(ch))
    return b"".join(out)


@st.composite
def raw_key_paths(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["workload", "workload", "text", "bytes", "malformed", "raw", "long"]))
    if kind == "workload":
        return _escape_some(draw(st.sampled_from(WORKLOAD_KEYS)), draw)
    if kind == "text":
        return _escape_some(draw(st.text(min_size=0, max_size=12)), draw)
    if kind == "bytes":  # any bytes, escaped: often not UTF-8
        return b"".join(b"%%%02X" % b for b in draw(st.binary(min_size=1, max_size=8)))
    if kind == "malformed":
        return draw(
            st.sampled_from([b"%", b"a%", b"%G1", b"%2", b"%%41", b"a%zzb", b"%FF%FE", b"%C3", b"%ED%A0%80"])
        )
    if kind == "raw":  # bytes no client should send unescaped
        return (
            draw(st.binary(min_size=1, max_size=6)).replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")
        )
    return b"k" * draw(st.sampled_from([4096, 4097]))


@st.composite
def query_values(draw: st.DrawFn) -> bytes:
    return draw(
        st.one_of(
            st.sampled_from(
                [
                    b"0",
                    b"1",
                    b"9223372036854775807",
                    b"9223372036854775808",
                    b"99999999999999999999999",
                    b"1" * 5000,
                    b"%C2%B2",
                    b"-1",
                    b"1_0",
                    b"linearizable",
                    b"lease",
                    b"stale",
                    b"eventual",
                    b"",
                    b"%FF",
                    b"%",
                    b"a+b",
                ]
            ),
            st.text(max_size=8).map(lambda t: quote(t, safe="").encode()),
            st.integers(min_value=0, max_value=2**70).map(lambda i: str(i).encode()),
        )
    )


@st.composite
def request_ids(draw: st.DrawFn) -> bytes:
    return draw(
        st.one_of(
            st.just(FRESH),
            st.sampled_from(
                [
                    b"evil:99999999999999999999999",
                    b"c\xff:1",
                    b"c\xc3\xa9:1",
                    b"anon.x:1",
                    b"read.x:1",
                    b"c:0",
                    b"c:",
                    b":1",
                    b"c:" + b"1" * 5000,
                    b"c d:1",
                    b"c:%C2%B2",
                    b"x" * 129 + b":1",
                    b"",
                ]
            ),
            st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
        )
    )


EXTRA_HEADERS = [
    (b"Accept", b"application/octet-stream"),
    (b"Connection", b"close"),
    (b"Connection", b"upgrade"),
    (b"Expect", b"100-continue"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Content-Encoding", b"gzip"),
    (b"Upgrade", b"websocket"),
    (b"X-Odd", b"\xff\xfe"),
    (b"Bad Header", b"x"),
    (b"Authorization", b"Bearer wrong"),
]


@st.composite
def plain_requests(draw: st.DrawFn) -> Fuzzed:
    """Well-formed key-value operations on the workload's keys (escaped at random): the
    fuzzed operations that succeed and go into the history."""
    method = draw(st.sampled_from([b"GET", b"PUT", b"PUT", b"DELETE"]))
    path = b"/v1/kv/" + _escape_some(draw(st.sampled_from(WORKLOAD_KEYS)), draw)
    query = b""
    if method == b"GET":
        query = draw(st.sampled_from([b"consistency=linearizable", b"consistency=lease", b""]))
    elif method == b"PUT":
        query = draw(
            st.sampled_from([b"", b"", b"cas_version=0", b"cas_version=1", b"cas_version=2", b"prev_value=v"])
        )
    headers: list[tuple[bytes, bytes]] = []
    if method != b"GET" and draw(st.booleans()):
        headers.append((b"X-Request-Id", FRESH))
    body = draw(st.one_of(st.sampled_from([b"v", b"w"]), st.binary(max_size=8))) if method == b"PUT" else b""
    if method == b"PUT":
        headers.append((b"Content-Length", b"%d" % len(body)))
    target = path + (b"?" + query if query else b"")
    return Fuzzed(method, target, headers, body, complete=True, single=True, recordable=True)


@st.composite
def wild_requests(draw: st.DrawFn) -> Fuzzed:
    method = draw(st.sampled_from([b"GET", b"PUT", b"DELETE"] * 3 + ODD_METHODS))
    on_kv = draw(st.integers(0, 9)) < 8
    path = b"/v1/kv/" + draw(raw_key_paths()) if on_kv else draw(st.sampled_from(OTHER_PATHS))
    pairs = draw(
        st.lists(st.tuples(st.sampled_from([*QUERY_NAMES, "x", "%FF", ""]), query_values()), max_size=2)
    )
    query = b"&".join(name.encode() + b"=" + value for name, value in pairs)
    headers: list[tuple[bytes, bytes]] = []
    if method in (b"PUT", b"DELETE") and draw(st.booleans()):
        headers.append((b"X-Request-Id", draw(request_ids())))
    extras = draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=2, unique=True))
    headers += extras
    body = draw(
        st.one_of(
            st.binary(max_size=40),
            st.text(max_size=20).map(str.encode),
            st.sampled_from([b"x" * MAX_VALUE, b"x" * (MAX_VALUE + 1)]),
        )
    )
    if method not in (b"PUT", b"POST") and draw(st.integers(0, 3)) > 0:
        body = b""
    mode = draw(st.sampled_from(["exact"] * 6 + ["none", "short", "long", "garbage", "twice"]))
    complete, single = True, True
    if mode == "exact" and (body or method == b"PUT"):
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif mode == "short" and body:
        headers.append((b"Content-Length", b"%d" % (len(body) - 1)))
        single = False
    elif mode == "long":
        headers.append((b"Content-Length", b"%d" % (len(body) + 5)))
        complete = False
    elif mode == "garbage":
        headers.append(
            (b"Content-Length", draw(st.sampled_from([b"-1", b"1x", b"9" * 30, b"", b"\xc2\xb2"])))
        )
    elif mode == "twice":
        headers += [(b"Content-Length", b"%d" % len(body)), (b"Content-Length", b"%d" % (len(body) + 1))]
    elif body:
        single = False  # no length: the body is read as the next request
    target = path + (b"?" + query if query else b"")
    recordable = (
        on_kv
        and method in (b"GET", b"PUT", b"DELETE")
        and mode == "exact"
        and all(name in (b"X-Request-Id", b"Connection", b"Accept") for name, _ in extras)
        and (method != b"GET" or body == b"")
    )
    fuzzed = Fuzzed(method, target, headers, body, complete, single, recordable)
    if not recordable and _may_name_a_workload_key(fuzzed.target):
        # What the history cannot describe must not touch the keys it describes (an
        # absolute-form target such as http://fuzz/v1/kv/k0 names k0 too).
        fuzzed.target = fuzzed.target.replace(b"/v1/kv/", b"/v1/kv/other-", 1)
    return fuzzed


def _may_name_a_workload_key(target: bytes) -> bool:
    text = unquote(target.decode("latin-1"), errors="replace")
    return any(key in text for key in WORKLOAD_KEYS)


def _decoded_key(fuzzed: Fuzzed) -> str | None:
    path = fuzzed.target.partition(b"?")[0]
    try:
        return edge.key_from_path(path.decode("ascii"), "/v1/kv/", 4096)
    except (UnicodeDecodeError, edge.EdgeError):
        return None


def _query(fuzzed: Fuzzed) -> dict[str, str] | None:
    try:
        return edge.parse_query(fuzzed.target.partition(b"?")[2].decode("ascii"))
    except (UnicodeDecodeError, edge.EdgeError):
        return None


# ---------------------------------------------------------------------- checking
def check_answers(fuzzed: Fuzzed, answers: list[Answer]) -> None:
    if fuzzed.complete:
        assert answers, "no answer"
    for answer in answers:
        assert 100 <= answer.status <= 599, answer
        assert answer.status != 500, (answer, answer.body[:300])
        if answer.status < 200 or (fuzzed.method == b"HEAD" and answer is _first_final(answers)):
            continue  # 100 Continue, or the answer to HEAD: no body
        if answer.status >= 400:
            check_error_body(answer)
        elif answer.status == 200 and answer.body and "json" in answer.headers.get("content-type", ""):
            assert isinstance(answer.json(), (dict, list)), answer


def _first_final(answers: list[Answer]) -> Answer | None:
    return next((a for a in answers if a.status >= 200), None)


def record(target: Target, fuzzed: Fuzzed, request_id: bytes, answer: Answer, invoke: float) -> None:
    """Put a plain key-value operation into the history, as its answer tells its fate."""
    key = _decoded_key(fuzzed)
    query = _query(fuzzed)
    if key is None or query is None or answer.status in (400, 413):
        return  # refused at the edge: it never reached the node
    body: dict[str, Any] = answer.json() if "json" in answer.headers.get("content-type", "") else {}
    if answer.status == 200 and "key" in body:
        assert body["key"] == key, (fuzzed.target, body)  # one decoding of the path everywhere
    method = fuzzed.method
    op = {b"GET": "get", b"PUT": "put", b"DELETE": "delete"}[method]
    if method == b"GET" and (
        query.get("consistency") != "linearizable" or dict(fuzzed.headers).get(b"Accept")
    ):
        return  # reads that are not linearizable, or raw: the history needs none of them
    expected = expected_version = None
    value = _canonical_body(fuzzed.body) if method == b"PUT" else None
    if "cas_version" in query:
        op, expected_version = "cas", int(query["cas_version"])
    elif "prev_value" in query:
        op, expected = "cas", query["prev_value"]
    n = next(target.counter)
    rec = OpRecord(
        process=f"fuzz{n}",
        seq=1,
        op=op,
        key=key,
        value=value,
        expected=expected,
        expected_version=expected_version,
        invoke=invoke,
    )
    status = answer.status
    if status == 200 or (status == 412 and op == "cas") or (status == 404 and op == "get"):
        rec.status, rec.complete = "ok", target.recorder.now()
        if op == "get":
            rec.result = (
                {"value": None, "version": 0}
                if status == 404
                else {"value": _canonical_answer(body), "version": body["version"]}
            )
        elif op == "put":
            rec.result = {"version": body["version"]}
        elif op == "delete":
            rec.result = {"deleted": body["deleted"]}
        elif status == 200:
            rec.result = {"swapped": True, "version": body["version"]}
        else:
            value_now = _canonical_answer(body) if body.get("version") else None
            rec.result = {"swapped": False, "value": value_now, "version": body.get("version", 0)}
        rec.index = body.get("index")
    elif body.get("outcome") == "not-applied" or status == 421:
        rec.status = "fail"
    else:  # 503 timeout or leadership-lost: may have been applied
        assert status == 503 and body.get("outcome") == "unknown", (status, body)
        rec.status = "unknown"
    target.recorder.add(rec)


def _canonical_reads(recorder: HistoryRecorder) -> None:
    """The workers' client decodes a value stored as bytes (a fuzzed body that is not
    UTF-8) to bytes: write it as the fuzzed operations do."""
    for rec in recorder.records:
        result = rec.result
        if isinstance(result, dict) and isinstance(result.get("value"), bytes):
            rec.result = {**result, "value": BYTES_TAG + base64.b64encode(result["value"]).decode()}


def _canonical_body(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return BYTES_TAG + base64.b64encode(body).decode()


def _canonical_answer(body: dict[str, Any]) -> str:
    if body.get("encoding") == "base64":
        return BYTES_TAG + body["value"]
    return body["value"]


def _expects_continue(fuzzed: Fuzzed) -> bool:
    return any(name == b"Expect" for name, _ in fuzzed.headers)


def exchange_fuzzed(
    cluster: LocalCluster,
    port: int,
    fuzzed: Fuzzed,
    request_id: bytes,
    check_all: Callable[[Fuzzed, list[Answer]], None] = check_answers,
) -> list[Answer]:
    """Send ``fuzzed`` as ``request_id``; its answers, checked by ``check_all``, once it
    is sure no node of ``cluster`` died of it."""
    answers = exchange(
        port,
        fuzzed.payload(request_id),
        head=fuzzed.method == b"HEAD",
        complete=fuzzed.complete,
        expect=1 if fuzzed.single and fuzzed.complete and not _expects_continue(fuzzed) else None,
    )
    check_all(fuzzed, answers)
    dead = cluster.dead_nodes()
    assert dead == [], [(n.node_id, n.returncode, n.log_tail(40)) for n in dead]
    return answers


def send_everywhere(target: Target, fuzzed: Fuzzed) -> None:
    for node in sorted(target.ports):
        n = next(target.counter)
        request_id = b"fz%d:1" % n
        invoke = target.recorder.now()
        answers = exchange_fuzzed(target.cluster, target.ports[node], fuzzed, request_id)
        target.sent += 1
        for answer in answers:
            target.statuses[answer.status] = target.statuses.get(answer.status, 0) + 1
        final = _first_final(answers)
        if fuzzed.recordable and final is not None:
            record(target, fuzzed, request_id, final, invoke)


def _valid_ids_are_fresh(fuzzed: Fuzzed) -> Fuzzed:
    """A syntactically valid id other than FRESH could repeat across examples and be
    answered from the session (issue 10 item 7): make it fresh."""
    headers = []
    for name, value in fuzzed.headers:
        if name == b"X-Request-Id" and value != FRESH:
            try:
                edge.parse_request_id(value.decode("utf-8"))
            except (UnicodeDecodeError, edge.EdgeError):
                pass
            else:
                value = FRESH
        headers.append((name, value))
    fuzzed.headers = headers
    return fuzzed


def run_fuzz(target: Target, examples: int) -> None:
    @live_fuzz(examples)
    @given(st.one_of(plain_requests(), wild_requests()).map(_valid_ids_are_fresh))
    def one(fuzzed: Fuzzed) -> None:
        send_everywhere(target, fuzzed)

    one()
    assert_all_alive(target)
    print(f"fuzz: {target.sent} requests, answers by status {dict(sorted(target.statuses.items()))}")


def test_fuzzed_http_requests_never_halt_a_node_nor_break_linearizability(target: Target) -> None:
    run_fuzz(target, DEFAULT_EXAMPLES)
    assert target.statuses.get(400, 0) > 0 and target.statuses.get(200, 0) > 0, target.statuses


@pytest.mark.slow
def test_fuzzed_http_requests_long(target: Target) -> None:
    run_fuzz(target, SLOW_EXAMPLES)
