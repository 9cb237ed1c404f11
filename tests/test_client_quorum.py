"""The f+1 client (``replies=N``): every endpoint at once under one request id, and the
answer N distinct nodes gave alike; one node's answer alone is never trusted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from consensuskit.client import AsyncClient, NotFound, Unavailable
from consensuskit.core import keys
from consensuskit.server.reply_signing import ReplySigner

pytestmark = pytest.mark.timeout(60)

TRUE = {"key": "k", "value": "a", "version": 1}


async def serve(
    bodies: list[tuple[int, dict[str, Any]]],
    seen: list[tuple[int, str, str | None]],
    signers: list[tuple[str, bytes] | None] | None = None,
) -> Any:
    """One fake node per body: it answers every request with it (status, JSON), signed
    as ``signers[i]`` says ((node id, node key): what reply_signing.py sends)."""
    runners, urls = [], []
    for i, (status, body) in enumerate(bodies):

        async def handle(request: web.Request, i: int = i, status: int = status, body: Any = body) -> Any:
            seen.append((i, request.method, request.headers.get("X-Request-Id")))
            raw = json.dumps(body).encode()
            headers = {}
            who = signers[i] if signers else None
            if who is not None:
                rid = request.headers.get("X-Request-Id", "")
                headers[keys.REPLY_SIGNATURE_HEADER] = ReplySigner(*who).header(rid, status, raw)
            return web.Response(body=raw, status=status, content_type="application/json", headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    return runners, urls


def run(
    bodies: list[tuple[int, dict[str, Any]]], action: Any, signers: Any = None, **options: Any
) -> tuple[Any, list[Any]]:
    async def main() -> tuple[Any, list[Any]]:
        seen: list[tuple[int, str, str | None]] = []
        runners, urls = await serve(bodies, seen, signers)
        try:
            async with AsyncClient(urls, timeout=0.5, deadline=2.0, **options) as client:
                try:
                    return await action(client), seen
                except Exception as exc:  # returned for the test to look at
                    return exc, seen
        finally:
            for runner in runners:
                await runner.cleanup()

    return asyncio.run(main())


def test_one_liar_is_outvoted_and_the_index_of_a_read_may_differ():
    bodies = [(200, {**TRUE, "index": 5}), (200, {**TRUE, "index": 6}), (200, {**TRUE, "value": "lie"})]
    entry, seen = run(bodies, lambda c: c.get("k"), replies=2)
    assert (entry.value, entry.version) == ("a", 1)
    # Every node was asked (the third may still be on its way when two agreed).
    assert {i for i, _, _ in seen} >= {0, 1}


def test_two_liars_alike_win_with_replies_2_but_not_with_replies_3():
    lie = {**TRUE, "value": "lie", "index": 5}
    bodies = [(200, {**TRUE, "index": 5}), (200, lie), (200, lie)]
    entry, _ = run(bodies, lambda c: c.get("k"), replies=2)
    assert entry.value == "lie"  # f+1 liars are more than the client tolerates
    outcome, _ = run(bodies, lambda c: c.get("k"), replies=3)
    assert isinstance(outcome, Unavailable) and "no 3 matching answers" in outcome.message


def test_a_write_goes_everywhere_under_one_request_id():
    written = {"key": "k", "version": 2, "index": 7}
    bodies = [(200, written), (200, written), (200, {**written, "version": 99})]
    answer, seen = run(bodies, lambda c: c.put("k", "b"), replies=2)
    assert answer.version == 2
    ids = {rid for _, method, rid in seen if method == "PUT"}
    assert len(ids) == 1 and None not in ids


def test_an_error_answer_needs_the_quorum_too():
    missing = {"error": "not-found", "message": "key 'k' not found", "key": "k"}
    bodies = [(404, missing), (404, {**missing, "index": 3}), (200, {**TRUE, "index": 3})]
    outcome, _ = run(bodies, lambda c: c.get("k"), replies=2)
    assert isinstance(outcome, NotFound)


def test_replies_beyond_the_endpoints_is_a_clear_error():
    with pytest.raises(ValueError, match="2 matching replies need as many endpoints"):
        AsyncClient(["127.0.0.1:1"], replies=2)


SEEDS = {n: bytes([i + 1]) * 32 for i, n in enumerate(("n1", "n2", "n3"))}
PUBLIC = {n: keys.public_keys(seed)["ed25519"] for n, seed in SEEDS.items()}


def test_with_reply_keys_answers_count_by_their_verified_signer():
    lie = {**TRUE, "value": "lie", "index": 5}
    bodies = [(200, {**TRUE, "index": 5}), (200, lie), (200, lie)]
    # n2 answers honestly signed as itself; the third endpoint repeats n2's lie signed
    # with n2's key too (one node behind two endpoints): one signer, not two.
    signers = [("n1", SEEDS["n1"]), ("n2", SEEDS["n2"]), ("n2", SEEDS["n2"])]
    outcome, _ = run(bodies, lambda c: c.get("k"), signers, replies=2, reply_keys=PUBLIC)
    assert isinstance(outcome, Unavailable), outcome  # the lie has one signer only
    # Claiming n3 with n2's key: no valid signature, the answer does not count.
    signers = [("n1", SEEDS["n1"]), ("n2", SEEDS["n2"]), ("n3", SEEDS["n2"])]
    outcome, _ = run(bodies, lambda c: c.get("k"), signers, replies=2, reply_keys=PUBLIC)
    assert isinstance(outcome, Unavailable) and "without a valid node signature" in str(outcome.last_error)
    # Two honest signers agree.
    bodies = [(200, {**TRUE, "index": 5}), (200, {**TRUE, "index": 5}), (200, lie)]
    signers = [("n1", SEEDS["n1"]), ("n2", SEEDS["n2"]), ("n3", SEEDS["n3"])]
    entry, _ = run(bodies, lambda c: c.get("k"), signers, replies=2, reply_keys=PUBLIC)
    assert entry.value == "a"
