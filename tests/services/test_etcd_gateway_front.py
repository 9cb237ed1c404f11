"""The etcd gateway's hot calls on the server's lean front (services/etcd_gateway.py
``FastGateway`` on server/fast_http.py): the same bytes as the aiohttp routes, on the
leader and on a follower (which forwards), and every body the front does not read left
to aiohttp, which answers it as before."""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import urlsplit

import pytest

from tests.server.runtime_harness import Cluster, async_test

pytestmark = pytest.mark.timeout(90)

IDS = ["n1", "n2", "n3"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def exchange(
    c: Cluster, node: str, path: str, body: bytes, *, slow: bool = False
) -> tuple[int, dict, bytes]:
    """One POST on a fresh connection; ``slow``: forced through aiohttp (Connection: close
    is a header the lean front leaves to it)."""
    url = urlsplit(c.url(node))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        extra = "Connection: close\r\n" if slow else ""
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        return int(lines[0].split(" ")[1]), headers, await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()


def served_fast(headers: dict) -> bool:
    return "server" not in headers  # aiohttp names itself; the lean front does not


def without_revision(raw: bytes) -> dict:
    body = json.loads(raw)
    body.get("header", {}).pop("revision", None)
    return body


@async_test
async def test_the_lean_front_answers_the_bytes_of_the_aiohttp_routes(tmp_path):
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        follower = next(n for n in IDS if n != leader)
        put = json.dumps({"key": b64("f/a"), "value": b64("1"), "prev_kv": True}).encode()
        for _ in range(50):  # the first write waits for the leader's first commit
            status, _, _ = await exchange(c, leader, "/v3/kv/put", put)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        reads = [
            ("/v3/kv/range", {"key": b64("f/a")}),
            ("/v3/kv/range", {"key": b64("f/"), "range_end": b64("f0"), "limit": "1", "serializable": False}),
            ("/v3/kv/range", {"key": b64("f/none")}),
            ("/v3/kv/range", {"key": b64("f/a"), "revision": 10**9}),  # future revision: 400, code 11
            ("/v3/kv/deleterange", {"key": b64("f/none"), "prev_kv": True}),  # deletes nothing
            ("/v3/kv/put", {"key": ""}),  # empty key: 400, code 3
        ]
        for node in (leader, follower):
            for path, body in reads:
                raw = json.dumps(body).encode()
                fast = await exchange(c, node, path, raw)
                slow = await exchange(c, node, path, raw, slow=True)
                assert served_fast(fast[1]) and not served_fast(slow[1])
                assert (fast[0], fast[2]) == (slow[0], slow[2]), (node, path, body)
                assert fast[1]["content-type"] == slow[1]["content-type"] == "application/json; charset=utf-8"
            # Writes: each pair finds the same state (a put over an existing key, a delete
            # of one), so only revisions differ.
            put_b = json.dumps({"key": b64("f/b"), "value": b64("2"), "prev_kv": True}).encode()
            delete_b = json.dumps({"key": b64("f/b"), "prev_kv": True}).encode()
            await exchange(c, node, "/v3/kv/put", put_b)
            pairs = []
            for path, raw, setup in (("/v3/kv/put", put_b, None), ("/v3/kv/deleterange", delete_b, put_b)):
                fast = await exchange(c, node, path, raw)
                if setup is not None:
                    await exchange(c, node, "/v3/kv/put", setup)
                slow = await exchange(c, node, path, raw, slow=True)
                pairs.append((path, fast, slow))
            for path, fast, slow in pairs:
                assert served_fast(fast[1]) and fast[0] == slow[0] == 200
                fast_body, slow_body = without_revision(fast[2]), without_revision(slow[2])
                for answer in (fast_body, slow_body):
                    for kv in answer.get("prev_kv", {}), *answer.get("prev_kvs", ()):
                        for field in ("mod_revision", "create_revision", "version"):
                            kv.pop(field, None)
                assert fast_body == slow_body and ("prev_kv" in fast_body or "prev_kvs" in fast_body), (
                    node,
                    path,
                )
        status, _, raw = await exchange(c, leader, "/v3/kv/range", json.dumps({"key": b64("f/a")}).encode())
        assert status == 200 and json.loads(raw)["kvs"][0]["value"] == b64("1")


@async_test
async def test_bodies_the_lean_front_does_not_read_get_the_aiohttp_answers(tmp_path):
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        cases = [
            b'{"key": "Zm9v", "value": ',  # malformed JSON
            b'{"key": "no base64!", "value": "YmFy"}',  # malformed base64
            b'{"key": 5}',  # a wrong type
            b'["key"]',  # not an object
            b'{"key": "Zm9v", "ignore_value": true}',  # a field the front leaves to protobuf
            b"",  # no body
        ]
        for raw in cases:
            answer = await exchange(c, leader, "/v3/kv/put", raw)
            slow = await exchange(c, leader, "/v3/kv/put", raw, slow=True)
            assert not served_fast(answer[1]), raw
            assert answer[0] == slow[0], raw
            # protobuf's JSON mapping reads some base64 etcd's would refuse: a write, at a
            # later revision for the second
            assert without_revision(answer[2]) == without_revision(slow[2]), raw
        status, _, body = await exchange(c, leader, "/v3/kv/put", cases[0])
        assert (
            status == 400
            and json.loads(body)["code"] == 3
            and "bad request body" in json.loads(body)["error"]
        )
        status, _, body = await exchange(c, leader, "/v3/kv/range", b'{"key": "Zm9v", "limit": "x"}')
        assert status == 400 and json.loads(body)["code"] == 3


@async_test
async def test_the_gateway_ignores_fields_it_does_not_know_as_etcds_does(tmp_path):
    """etcd's grpc-gateway drops unknown fields, at any depth (a newer client's); an
    unknown enum name or a body that is no JSON object is still refused, 400 code 3."""
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        put = b'{"key": "Zm9v", "value": "YmFy", "newer_field": {"x": 1}}'
        assert (await exchange(c, leader, "/v3/kv/put", put))[0] == 200
        txn = (
            b'{"compare": [{"key": "Zm9v", "target": "VALUE", "value": "YmFy", "extra": 1}],'
            b' "success": [{"request_range": {"key": "Zm9v", "extra": true}}], "extra": []}'
        )
        status, _, body = await exchange(c, leader, "/v3/kv/txn", txn)
        answer = json.loads(body)
        assert status == 200 and answer["succeeded"], answer
        assert answer["responses"][0]["response_range"]["kvs"][0]["value"] == "YmFy"
        for refused in (b'{"key": "Zm9v", "sort_order": "SIDEWAYS"}', b"[]", b'"Zm9v"'):
            status, _, body = await exchange(c, leader, "/v3/kv/range", refused)
            assert status == 400 and json.loads(body)["code"] == 3, refused
            assert json.loads(body)["error"].startswith("bad request body"), refused


@async_test
async def test_a_put_near_the_request_limit_goes_through_both_paths_and_one_over_it_is_refused(tmp_path):
    """The gateway reads a body as large as a request at etcd's limit, base64'd, on the
    lean front and on aiohttp alike; a larger request gets etcd's 'request is too large'."""
    async with Cluster(tmp_path, IDS, service="etcd") as c:
        leader = await c.wait_leader()
        limit = (1 << 20) + 4096 + 512 * 1024  # the defaults' (services/etcd_api.py)
        fits = base64.b64encode(b"v" * (limit - 1000)).decode()
        over = base64.b64encode(b"w" * (limit + 1)).decode()
        for slow in (False, True):
            body = json.dumps({"key": b64(f"big{slow}"), "value": fits}).encode()
            status, headers, raw = await exchange(c, leader, "/v3/kv/put", body, slow=slow)
            assert status == 200 and served_fast(headers) is not slow, raw[:300]
            body = json.dumps({"key": b64(f"big{slow}"), "value": over}).encode()
            status, headers, raw = await exchange(c, leader, "/v3/kv/put", body, slow=slow)
            too_large = (400, 3, "etcdserver: request is too large")
            answer = json.loads(raw)
            assert (status, answer["code"], answer["message"]) == too_large, (slow, answer)
            # A body over the gateway's own limit, never read whole: the same answer.
            huge = json.dumps({"key": b64(f"huge{slow}"), "value": fits + fits}).encode()
            status, headers, raw = await exchange(c, leader, "/v3/kv/put", huge, slow=slow)
            answer = json.loads(raw)
            assert (status, answer["code"], answer["message"]) == too_large, (slow, answer)
            assert headers["connection"] == "close"


@async_test
async def test_json_nested_too_deep_is_400_code_3_on_both_fronts(tmp_path):
    """Found by the gateway fuzz (tests/services/test_etcd_gateway_fuzz.py): a body nested
    deeper than Python's JSON parser goes raised RecursionError.  On the lean front
    (``plain_body``) it broke the connection with no answer at all; on aiohttp it was a
    500.  Now the lean front leaves it to aiohttp, which answers 400 code 3."""
    async with Cluster(tmp_path, IDS[:1], service="etcd") as c:
        leader = await c.wait_leader()
        deep = b"[" * 100_000
        in_a_field = b'{"key": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        # Txns in Txns: a valid shape, but deeper than protobuf's JSON mapping goes.
        txns = b'{"success": [{"request_txn": ' * 600 + b"{}" + b"}]}" * 600
        for path, raw in [
            ("/v3/kv/put", deep),
            ("/v3/kv/range", in_a_field),
            ("/v3/kv/deleterange", deep),
            ("/v3/kv/txn", in_a_field),
            ("/v3/kv/txn", txns),
            ("/v3/lease/grant", deep),
        ]:
            for slow in (False, True):
                status, _, body = await exchange(c, leader, path, raw, slow=slow)
                answer = json.loads(body)
                assert status == 400 and answer["code"] == 3, (path, slow, answer)
                assert answer["message"].startswith("bad request body"), answer
        put = json.dumps({"key": b64("after"), "value": b64("1")}).encode()
        assert (await exchange(c, leader, "/v3/kv/put", put))[0] == 200
