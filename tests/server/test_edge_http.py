"""Named regression tests for issue 10, items 1 and 8: each request that halted a node or
got a 500 (or a wrong answer) now gets its exact 400, with the same status and error
code on the fast path and on aiohttp, on every node (leader and followers: a
Multi-Paxos follower forwards), over Raft and Multi-Paxos.  No node halts.

In-process 3-node clusters (real TCP, real DiskStorage); the same three item-1 requests
against real node processes: test_edge_processes.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from consensuskit.server import edge
from tests.server.runtime_harness import ADMIN_TOKEN, Cluster, async_test

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]
MAX_VALUE = 64
PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {
    "raft": {"election_timeout": 0.3, "heartbeat_interval": 0.05},
    "multipaxos": {"election_timeout": 0.6, "heartbeat_interval": 0.1, "lease_duration": 0.8, "alpha": 3},
    "zab": {"election_timeout": 0.3, "tick": 0.05},
}
PROTOCOLS = tuple(PROTOCOL_OPTIONS)
FIVE_THOUSAND_DIGITS = b"1" * 5000

# name -> (method, target, extra headers, body, expected status, expected error code)
CASES: dict[str, tuple[bytes, bytes, dict[bytes, bytes], bytes, int, str]] = {
    # Item 1: each of these halted the node (exit 70); on Multi-Paxos a follower too.
    "item1-cas-version-over-2^64": (
        b"PUT",
        b"/v1/kv/k1?cas_version=99999999999999999999999",
        {},
        b"v",
        400,
        "bad-request",
    ),
    "item1-request-id-seq-over-2^64": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"evil:99999999999999999999999"},
        b"v",
        400,
        "bad-request-id",
    ),
    "item1-request-id-non-utf8-byte": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"c\xff:1"},
        b"v",
        400,
        "bad-request-id",
    ),
    "item1-delete-request-id-seq-over-2^64": (
        b"DELETE",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"evil:99999999999999999999999"},
        b"",
        400,
        "bad-request-id",
    ),
    # Item 8: 500 instead of 400, and inconsistent decoding.
    "item8-cas-version-superscript-two": (
        b"PUT",
        b"/v1/kv/k1?cas_version=%C2%B2",
        {},
        b"v",
        400,
        "bad-request",
    ),
    "item8-limit-superscript-two": (b"GET", b"/v1/kv?limit=%C2%B2", {}, b"", 400, "bad-request"),
    "item8-limit-raw-superscript-two": (b"GET", b"/v1/kv?limit=\xc2\xb2", {}, b"", 400, "bad-request"),
    "item8-cas-version-5000-digits": (
        b"PUT",
        b"/v1/kv/k1?cas_version=" + FIVE_THOUSAND_DIGITS,
        {},
        b"v",
        400,
        "bad-request",
    ),
    "item8-limit-5000-digits": (b"GET", b"/v1/kv?limit=" + FIVE_THOUSAND_DIGITS, {}, b"", 400, "bad-request"),
    "item8-request-id-seq-5000-digits": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"c:" + FIVE_THOUSAND_DIGITS},
        b"v",
        400,
        "bad-request-id",
    ),
    "item8-content-length-5000-digits": (
        b"PUT",
        b"/v1/kv/k1",
        {b"Content-Length": FIVE_THOUSAND_DIGITS},
        b"v",
        400,
        "bad-request",
    ),
    "item8-invalid-utf8-key-put": (b"PUT", b"/v1/kv/%FF%FE", {}, b"v", 400, "bad-key"),
    "item8-invalid-utf8-key-get": (b"GET", b"/v1/kv/%FF%FE", {}, b"", 400, "bad-key"),
    "item8-invalid-utf8-key-delete": (b"DELETE", b"/v1/kv/%FF%FE", {}, b"", 400, "bad-key"),
    "item8-bad-escape-in-key": (b"PUT", b"/v1/kv/a%zz", {}, b"v", 400, "bad-key"),
    "item8-request-id-utf8-client": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"c\xc3\xa9:1"},
        b"v",
        400,
        "bad-request-id",
    ),
    "item8-two-request-ids": (
        b"PUT",
        b"/v1/kv/k1",
        {b"X-Request-Id": b"a:1", b"x-request-id": b"b:1"},
        b"v",
        400,
        "bad-request-id",
    ),
    "item8-empty-key-put": (b"PUT", b"/v1/kv/", {}, b"v", 400, "bad-key"),
    "item8-empty-key-get": (b"GET", b"/v1/kv/", {}, b"", 400, "bad-key"),
    "item8-empty-key-delete": (b"DELETE", b"/v1/kv/", {}, b"", 400, "bad-key"),
    "item8-prefix-invalid-utf8": (b"GET", b"/v1/kv?prefix=%FF", {}, b"", 400, "bad-request"),
    "item8-repeated-query-name": (b"GET", b"/v1/kv?limit=1&limit=2", {}, b"", 400, "bad-request"),
    "item8-prev-value-over-the-limit": (
        b"PUT",
        b"/v1/kv/k1?prev_value=" + b"p" * (MAX_VALUE + 1),
        {},
        b"v",
        413,
        "too-large",
    ),
    "body-that-does-not-gunzip": (
        b"PUT",
        b"/v1/kv/k1",
        {b"Content-Encoding": b"gzip"},
        b"\x00\x00",
        400,
        "bad-request",
    ),
    "item8-prefix-over-the-key-limit": (b"GET", b"/v1/kv?prefix=" + b"p" * 4097, {}, b"", 400, "bad-key"),
}


def raw_request(method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: test"]
    lines += [k + b": " + v for k, v in headers.items()]
    if not any(k.lower() == b"content-length" for k in headers) and (body or method == b"PUT"):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(c: Cluster, node: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: (status, headers, decoded JSON body)."""
    url = urlsplit(c.url(node))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
        return status, headers, json.loads(body)
    finally:
        writer.close()


def served_fast(headers: dict[str, str]) -> bool:
    return "server" not in headers  # aiohttp names itself; the fast path does not


def cluster(tmp_path: Path, protocol: str) -> Cluster:
    return Cluster(
        tmp_path,
        IDS,
        protocol=protocol,
        max_value_bytes=MAX_VALUE,
        options=dict(PROTOCOL_OPTIONS[protocol]),
    )


async def wait_serving(c: Cluster, timeout: float = 15.0) -> str:
    """A node that takes writes (the leader), once a write went through it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for node in c.ids:
            status, _, _ = await exchange(c, node, raw_request(b"PUT", b"/v1/kv/ready", {}, b"1"))
            if status == 200 and c.servers[node].runtime.node.status()["role"] == "leader":
                return node
        await asyncio.sleep(0.1)
    raise AssertionError("no node took a write")


def assert_no_node_halted(c: Cluster) -> None:
    failures = {n: s.runtime.failure for n, s in c.servers.items() if s.runtime.failure is not None}
    assert failures == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_named_request_gets_its_400_on_both_paths_and_every_node(tmp_path, protocol):
    @async_test
    async def main() -> None:
        async with cluster(tmp_path, protocol) as c:
            await wait_serving(c)
            for name, (method, target, headers, body, status, code) in CASES.items():
                for node in c.ids:
                    for forced in (False, True):  # Connection: close is served by aiohttp only
                        extra = {b"Connection": b"close"} if forced else {}
                        got, got_headers, answer = await exchange(
                            c, node, raw_request(method, target, {**headers, **extra}, body)
                        )
                        where = (name, node, "aiohttp" if forced else "fast front")
                        assert (got, answer.get("error")) == (status, code), (where, answer)
                        assert isinstance(answer["message"], str) and answer["message"], where
                        assert got_headers["content-type"].startswith("application/json"), where
                        if forced:
                            assert not served_fast(got_headers), where
            assert_no_node_halted(c)
            leader = await wait_serving(c)
            for node in c.ids:  # everyone still serves
                status, _, answer = await exchange(
                    c, node, raw_request(b"GET", b"/v1/kv/ready?consistency=stale", {}, b"")
                )
                assert status == 200 and answer["value"] == "1", (node, answer)
            assert leader in c.ids

    main()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_key_has_one_spelling_up_to_escaping(tmp_path, protocol):
    """Item 8: %FF%FE was stored literally while valid escapes were decoded, so the key
    named by /v1/kv/%25FF%25FE was also reachable as /v1/kv/%FF%FE."""

    @async_test
    async def main() -> None:
        async with cluster(tmp_path, protocol) as c:
            leader = await wait_serving(c)
            put = await exchange(c, leader, raw_request(b"PUT", b"/v1/kv/%25FF%25FE", {}, b"literal"))
            assert put[0] == 200 and put[2]["key"] == "%FF%FE"
            bad = await exchange(c, leader, raw_request(b"GET", b"/v1/kv/%FF%FE", {}, b""))
            assert (bad[0], bad[2]["error"]) == (400, "bad-key")
            put = await exchange(c, leader, raw_request(b"PUT", b"/v1/kv/%41b%2Fc", {}, b"escaped"))
            assert put[0] == 200 and put[2]["key"] == "Ab/c"
            put = await exchange(c, leader, raw_request(b"PUT", b"/v1/kv/a%0Ab", {}, b"newline"))
            assert put[0] == 200 and put[2]["key"] == "a\nb"  # found by the fuzz suite: it was 404
            for target in (b"/v1/kv/Ab/c", b"/v1/kv/Ab%2fc", b"/v1/kv/%41%62%2F%63"):
                got = await exchange(c, leader, raw_request(b"GET", target, {}, b""))
                assert got[0] == 200 and (got[2]["key"], got[2]["value"]) == ("Ab/c", "escaped"), target
            listing = await exchange(c, leader, raw_request(b"GET", b"/v1/kv?prefix=%25FF", {}, b""))
            assert [i["key"] for i in listing[2]["items"]] == ["%FF%FE"]
            assert_no_node_halted(c)

    main()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_value_the_log_cannot_hold_fails_that_request_alone(tmp_path, protocol, monkeypatch):
    """Defence in depth: with the request-id and integer checks switched off (as if a
    new field forgot them), the encode-once check still answers 400 on both paths, on
    every node, and nothing reaches the protocol."""

    def lax_request_id(header: str) -> tuple[str, int]:
        client_id, _, seq = header.rpartition(":")
        return client_id, int(seq)

    monkeypatch.setattr(edge, "parse_request_id", lax_request_id)
    monkeypatch.setattr(edge, "parse_int", lambda text, name, **_: int(text))

    @async_test
    async def main() -> None:
        async with cluster(tmp_path, protocol) as c:
            await wait_serving(c)
            # (method, target, headers, body, paths): the fast path reads a header as
            # latin-1, so the raw byte 0xff is a surrogate (unstorable) on aiohttp only.
            both, aiohttp_only = (False, True), (True,)
            requests = [
                (b"PUT", b"/v1/kv/k1", {b"X-Request-Id": b"evil:99999999999999999999999"}, b"v", both),
                (b"DELETE", b"/v1/kv/k1", {b"X-Request-Id": b"evil:99999999999999999999999"}, b"", both),
                (b"PUT", b"/v1/kv/k1", {b"X-Request-Id": b"c\xff:1"}, b"v", aiohttp_only),
                (b"PUT", b"/v1/kv/k1?cas_version=99999999999999999999999", {}, b"v", both),
                (b"GET", b"/v1/kv?limit=99999999999999999999999", {}, b"", both),
            ]
            for node in c.ids:
                before = dict(c.servers[node].runtime.stats.requests)
                for method, target, headers, body, paths in requests:
                    for forced in paths:
                        extra = {b"Connection": b"close"} if forced else {}
                        status, got_headers, answer = await exchange(
                            c, node, raw_request(method, target, {**headers, **extra}, body)
                        )
                        assert (status, answer["error"]) == (400, "bad-request"), (node, target, answer)
                        assert "cannot be stored" in answer["message"]
                        if (
                            target == b"/v1/kv/k1"
                            and b"evil" in headers.get(b"X-Request-Id", b"")
                            and not forced
                        ):
                            assert served_fast(got_headers)  # the fast path's own check answered
                # Only the writes of wait_serving reached the node: these never did.
                after = c.servers[node].runtime.stats.requests
                assert after.get("delete", 0) == before.get("delete", 0)
                assert after.get("cas", 0) == before.get("cas", 0) and after.get("list", 0) == before.get(
                    "list", 0
                )
            assert_no_node_halted(c)
            await wait_serving(c)

    main()


def test_json_nested_too_deep_is_400_not_500(tmp_path):
    """An admin body of 60,000 '[' raised RecursionError in json.loads: a 500."""

    @async_test
    async def main() -> None:
        async with cluster(tmp_path, "raft") as c:
            leader = await wait_serving(c)
            for path in (b"/v1/members", b"/v1/leader/transfer"):
                headers = {b"Authorization": b"Bearer " + ADMIN_TOKEN.encode()}
                status, _, answer = await exchange(
                    c, leader, raw_request(b"POST", path, headers, b"[" * 60_000)
                )
                assert (status, answer["error"]) == (400, "bad-json"), (path, answer)
            assert_no_node_halted(c)

    main()
